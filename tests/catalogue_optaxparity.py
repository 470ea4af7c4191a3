"""Catalogue entries for the optimizers that reproduce optax (torch.optim has none of them).

Each has a NumPy reference from its paper (tests/references_optaxparity.py);
tests/test_optaxparity.py compares them with optax itself. ``noisy_sgd`` has
no NumPy reference (its noise is JAX's PRNG): only the optax comparison.
"""

import gradxform as gx
from tests import references as ref
from tests import references_optaxparity as rp
from tests.catalogue import Case, _converge

_LR = ref.LearningRate

PRIMITIVES = [
    Case("scale_by_trust_ratio", lambda: gx.scale_by_trust_ratio(min_norm=0.5, trust_coefficient=0.3, eps=0.1),
         lambda: rp.TrustRatio(0.5, 0.3, 0.1)),
    Case("scale_by_param_block_norm", lambda: gx.scale_by_param_block_norm(0.7), lambda: rp.ParamBlockNorm(0.7)),
    Case("scale_by_param_block_rms", lambda: gx.scale_by_param_block_rms(0.05),
         lambda: rp.ParamBlockNorm(0.05, rms=True)),
    Case("normalize_by_update_norm", lambda: gx.normalize_by_update_norm(-0.3, eps=0.1),
         lambda: rp.NormalizeByUpdateNorm(-0.3, 0.1)),
    Case("scale_by_belief", lambda: gx.scale_by_belief(0.8, 0.9, eps=0.3, eps_root=0.1),
         lambda: rp.AdaBelief(0.8, 0.9, 0.3, 0.1)),
    Case("scale_by_belief_nesterov", lambda: gx.scale_by_belief(0.8, 0.9, eps=0.3, eps_root=0.1, nesterov=True),
         lambda: rp.AdaBelief(0.8, 0.9, 0.3, 0.1, nesterov=True)),
    Case("scale_by_yogi", lambda: gx.scale_by_yogi(0.8, 0.9, eps=0.3, eps_root=0.1, initial_accumulator_value=0.2),
         lambda: rp.Yogi(0.8, 0.9, 0.3, 0.1, 0.2)),
    Case("scale_by_adan_paper", lambda: gx.scale_by_adan(0.8, 0.7, 0.9, eps=0.3, eps_root=0.1, paper_weighting=True),
         lambda: rp.Adan(0.8, 0.7, 0.9, 0.3, 0.1)),
    Case("scale_by_adan", lambda: gx.scale_by_adan(0.8, 0.7, 0.9, eps=0.3),
         lambda: rp.Adan(0.8, 0.7, 0.9, 0.3, legacy_optax=True)),
    Case("scale_by_novograd", lambda: gx.scale_by_novograd(0.8, 0.6, eps=0.3, eps_root=0.1, weight_decay=0.2),
         lambda: rp.NovoGrad(0.8, 0.6, 0.3, 0.1, 0.2)),
    Case("scale_by_optimistic_gradient", lambda: gx.scale_by_optimistic_gradient(0.7, 0.4),
         lambda: rp.Optimistic(0.7, 0.4)),
    Case("scale_by_sm3", lambda: gx.scale_by_sm3(0.7, b2=0.9, eps=0.1), lambda: rp.SM3(0.7, 0.9, 0.1)),
    Case("scale_by_sm3_sums", lambda: gx.scale_by_sm3(0.7, eps=0.1), lambda: rp.SM3(0.7, 1.0, 0.1)),
    Case("scale_by_distance_over_gradients",
         lambda: gx.scale_by_distance_over_gradients(0.05, eps=0.1, param_dtype=None, global_scale=-1.0),
         lambda: rp.DistanceOverGradients(0.05, 0.1, -1.0)),
]

OPTIMIZERS = [
    Case("lamb", lambda: gx.lamb(0.05, b1=0.8, b2=0.9, eps=0.3, eps_root=0.1, weight_decay=0.2),
         lambda: ref.Chain(ref.Adam(0.8, 0.9, 0.3, eps_root=0.1), ref.DecayedWeights(0.2), rp.TrustRatio(), _LR(0.05))),
    Case("lars", lambda: gx.lars(0.1, weight_decay=0.2, trust_coefficient=0.05, eps=0.1, momentum=0.7),
         lambda: ref.Chain(ref.DecayedWeights(0.2), rp.TrustRatio(0.0, 0.05, 0.1), _LR(0.1), ref.Momentum(0.7))),
    Case("lars_nesterov_masks",
         # decay the matrices only; the trust ratio on the vectors only (any tree: masks by leaf shape)
         lambda: gx.lars(0.1, weight_decay=0.2, weight_decay_mask=lambda path, p: p.ndim >= 2, trust_coefficient=0.05,
                         trust_ratio_mask=lambda path, p: p.ndim < 2, momentum=0.7, nesterov=True),
         lambda: ref.Chain(ref.DecayedWeights(0.2, mask=[False, True]), _MaskedRatio([True, False], 0.05), _LR(0.1),
                           ref.Momentum(0.7, nesterov=True))),
    Case("adabelief", lambda: gx.adabelief(0.05, b1=0.8, b2=0.9, eps=0.3, eps_root=0.1),
         lambda: ref.Chain(rp.AdaBelief(0.8, 0.9, 0.3, 0.1), _LR(0.05))),
    Case("yogi", lambda: gx.yogi(0.05, b1=0.8, b2=0.9, eps=0.3), lambda: ref.Chain(rp.Yogi(0.8, 0.9, 0.3), _LR(0.05))),
    Case("adan_paper", lambda: gx.adan(0.05, b1=0.8, b2=0.7, b3=0.9, eps=0.3, eps_root=0.1, weight_decay=0.2,
                                       paper_weighting=True),
         lambda: ref.Chain(rp.Adan(0.8, 0.7, 0.9, 0.3, 0.1), ref.DecayedWeights(0.2), _LR(0.05))),
    Case("novograd", lambda: gx.novograd(0.05, b1=0.8, b2=0.6, eps=0.3, weight_decay=0.2),
         lambda: ref.Chain(rp.NovoGrad(0.8, 0.6, 0.3, 0.0, 0.2), _LR(0.05))),
    Case("sign_sgd", lambda: gx.sign_sgd(0.05), lambda: ref.Chain(ref.Sign(), _LR(0.05)), atol32=0.0),
    Case("signum", lambda: gx.signum(0.05, momentum=0.7),
         lambda: ref.Chain(ref.Ema(0.7, debias=False), ref.Sign(), _LR(0.05)), atol32=0.0),
    Case("optimistic_gradient_descent", lambda: gx.optimistic_gradient_descent(0.05, alpha=0.7, beta=0.4),
         lambda: ref.Chain(rp.Optimistic(0.7, 0.4), _LR(0.05))),
    Case("optimistic_adam", lambda: gx.optimistic_adam(0.05, optimism=0.02, b1=0.8, b2=0.9, eps=0.3),
         lambda: ref.Chain(rp.NesterovAdam(0.8, 0.9, 0.3), rp.Optimistic(0.05, 0.02), ref.Scale(-1.0))),
    Case("optimistic_adam_v2", lambda: gx.optimistic_adam_v2(0.05, alpha=0.7, beta=0.4, b1=0.8, b2=0.9, eps=0.3),
         lambda: ref.Chain(rp.NesterovAdam(0.8, 0.9, 0.3), rp.Optimistic(0.7, 0.4), _LR(0.05))),
    Case("sm3", lambda: gx.sm3(0.05, momentum=0.7), lambda: ref.Chain(rp.SM3(0.7, 1.0, 1e-8), _LR(0.05))),
    Case("fromage", lambda: gx.fromage(0.05, min_norm=0.3),
         lambda: ref.Chain(rp.TrustRatio(0.3), rp.FromageStep(0.05))),
]


class _MaskedRatio:
  """The trust ratio on the leaves where ``mask`` is true."""

  def __init__(self, mask, coef):
    self.mask, self.inner = mask, rp.TrustRatio(0.0, coef, 0.0)

  def __call__(self, grads, params):
    ratio = self.inner(grads, params)
    return [r if m else g for r, g, m in zip(ratio, grads, self.mask)]


CONVERGE = {
    "adabelief": _converge(gx.adabelief, (0.1, 1000, 1e-3), (0.1, 1000, 1e-3), (0.05, 5000, 1e-3)),
    "yogi": _converge(gx.yogi, (0.1, 1000, 1e-3), (0.1, 1000, 1e-3), (0.05, 5000, 1e-3)),
    "adan": _converge(gx.adan, (0.1, 1000, 1e-3), (0.1, 1000, 1e-3), (0.005, 5000, 1e-3)),
    "sm3": _converge(gx.sm3, (0.5, 1000, 1e-3), (0.5, 1000, 1e-3), (0.2, 20000, 1e-3)),
    "optimistic_gradient_descent": _converge(gx.optimistic_gradient_descent, (0.3, 500, 1e-5), (0.005, 4000, 1e-5),
                                             (5e-4, 40000, 1e-3)),
}
