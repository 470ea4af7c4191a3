"""Catalogue entries for the Adam relatives (ADOPT, AdEMAMix, MARS, LaProp) and the cautious / schedule-free wrappers."""

import gradxform as gx
from tests import references as ref
from tests import references_relatives as rr
from tests.catalogue import Case, _converge

_LR = ref.LearningRate

# Off-default hyperparameters (large eps, short memories) make every term visible over the 8-step stream.
PRIMITIVES = [
    Case("scale_by_adopt", lambda: gx.scale_by_adopt(0.8, 0.9, eps=0.3), lambda: rr.Adopt(0.8, 0.9, 0.3)),
    Case("scale_by_adopt_nesterov_unclipped", lambda: gx.scale_by_adopt(0.8, 0.9, eps=0.3, nesterov=True,
                                                                        clip_value=None),
         lambda: rr.Adopt(0.8, 0.9, 0.3, clip_power=None, nesterov=True)),
    Case("scale_by_ademamix", lambda: gx.scale_by_ademamix(0.8, 0.9, 0.95, alpha=3.0, eps=0.3, eps_root=0.1),
         lambda: rr.Ademamix(0.8, 0.9, 0.95, 3.0, 0.3, eps_root=0.1)),
    Case("scale_by_ademamix_warmup", lambda: gx.scale_by_ademamix(0.8, 0.9, 0.99, alpha=3.0, eps=0.3,
                                                                  alpha_warmup=5, b3_warmup=6),
         lambda: rr.Ademamix(0.8, 0.9, 0.99, 3.0, 0.3, alpha_warmup=5, b3_warmup=6)),
    Case("scale_by_simplified_ademamix", lambda: gx.scale_by_simplified_ademamix(0.8, 0.9, alpha=2.0, eps=0.3,
                                                                                eps_root=0.1),
         lambda: rr.SimplifiedAdemamix(0.8, 0.9, 2.0, 0.3, eps_root=0.1)),
    # max_norm 2.0: some steps' corrected gradients are clipped, others not
    Case("scale_by_mars", lambda: gx.scale_by_mars(0.8, 0.9, eps=0.3, gamma=0.5, max_norm=2.0),
         lambda: rr.Mars(0.8, 0.9, 0.3, 0.5, max_norm=2.0)),
    Case("scale_by_mars_lion", lambda: gx.scale_by_mars(0.8, gamma=0.5, max_norm=None, variant="lion"),
         lambda: rr.Mars(0.8, 0.99, 1e-8, 0.5, max_norm=None, variant="lion"), atol32=0.0, bf16_atol=0.5),
    Case("scale_by_laprop", lambda: gx.scale_by_laprop(0.8, 0.9, eps=0.3), lambda: rr.Laprop(0.8, 0.9, 0.3)),
]

OPTIMIZERS = [
    Case("adopt", lambda: gx.adopt(0.05, b1=0.8, b2=0.9, eps=0.3), lambda: ref.Chain(rr.Adopt(0.8, 0.9, 0.3), _LR(0.05))),
    Case("ademamix", lambda: gx.ademamix(0.05, b1=0.8, b2=0.9, b3=0.95, alpha=3.0, eps=0.3, weight_decay=0.1),
         lambda: ref.Chain(rr.Ademamix(0.8, 0.9, 0.95, 3.0, 0.3), ref.DecayedWeights(0.1), _LR(0.05))),
    Case("simplified_ademamix", lambda: gx.simplified_ademamix(0.01, b1=0.8, b2=0.9, alpha=2.0, eps=0.3,
                                                               weight_decay=0.1),
         lambda: ref.Chain(rr.SimplifiedAdemamix(0.8, 0.9, 2.0, 0.3), ref.DecayedWeights(0.1), _LR(0.01))),
    Case("mars", lambda: gx.mars(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.1, gamma=0.5, max_norm=2.0),
         lambda: ref.Chain(rr.Mars(0.8, 0.9, 0.3, 0.5, max_norm=2.0), ref.DecayedWeights(0.1), _LR(0.05))),
    Case("mars_lion", lambda: gx.mars(0.05, b1=0.8, weight_decay=0.1, gamma=0.5, variant="lion"),
         lambda: ref.Chain(rr.Mars(0.8, 0.99, 1e-8, 0.5, variant="lion"), ref.DecayedWeights(0.1), _LR(0.05)),
         bf16_atol=0.5),
    Case("laprop", lambda: gx.laprop(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.1),
         lambda: ref.Chain(rr.Laprop(0.8, 0.9, 0.3), ref.DecayedWeights(0.1), _LR(0.05))),
    # the paper's C-AdamW: the mask acts on Adam's direction, not on the weight decay
    Case("cautious_adamw", lambda: gx.chain(gx.cautious(gx.scale_by_adam(0.8, 0.9, eps=0.3), negated=False),
                                            gx.add_decayed_weights(0.1), gx.scale_by_learning_rate(0.05)),
         lambda: ref.Chain(rr.CautiousAdam(0.8, 0.9, 0.3), ref.DecayedWeights(0.1), _LR(0.05)), bf16_atol=0.5),
    # a whole named optimizer wrapped: its updates are negated, so the mask keeps -u * g > 0
    Case("cautious_adam", lambda: gx.cautious(gx.adam(0.05, b1=0.8, b2=0.9, eps=0.3)),
         lambda: ref.Chain(rr.CautiousAdam(0.8, 0.9, 0.3), _LR(0.05)), bf16_atol=0.5),
    # schedule-free with bf16 parameters keeps z in bf16 too (pass state_dtype=jnp.float32 in practice): coarse bf16 bound
    Case("schedule_free_sgd", lambda: gx.schedule_free_sgd(0.1, b1=0.8, weight_decay=0.05, weight_lr_power=1.5),
         lambda: rr.ScheduleFree(ref.Chain(ref.DecayedWeights(0.05), _LR(0.1)), 0.1, 0.8, 1.5), bf16_atol=0.5),
    Case("schedule_free_adamw", lambda: gx.schedule_free_adamw(0.05, warmup_steps=3, b1=0.8, b2=0.9, eps=0.3,
                                                               weight_decay=0.1),
         lambda: rr.ScheduleFree(
             ref.Chain(ref.Adam(0.0, 0.9, 0.3),  # Adam without momentum: g / (sqrt(v_hat) + eps)
                       ref.DecayedWeights(0.1), _LR(lambda k: 0.05 * min(k, 3) / 3)),
             lambda k: 0.05 * min(k + 1, 3) / 3, 0.8), bf16_atol=0.5),
    Case("schedule_free_radam", lambda: gx.schedule_free_radam(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.1),
         lambda: rr.ScheduleFree(
             ref.Chain(rr.RectifiedRms(0.9, 0.3), ref.DecayedWeights(0.1), _LR(rr.rectified_lr(0.05, 0.9))),
             rr.rectified_lr(0.05, 0.9), 0.8), bf16_atol=0.5),
]

# Defaults, tuned learning rates: (learning rate, steps, distance to the minimizer allowed) per problem.
CONVERGE = {
    "adopt": _converge(gx.adopt, (0.3, 1000, 1e-4), (0.3, 1000, 1e-4), (0.3, 5000, 1e-3)),
    # b3 = 0.9999 without warmup: the slow EMA is still mostly its first gradients after 1000 steps
    "ademamix": _converge(gx.ademamix, (1.0, 1000, 1e-3), (1.0, 1000, 2e-3), (0.1, 5000, 2e-2)),
    # the undamped momentum (b1 = 0.99) orbits the quadratic's minimum for long: Rosenbrock only
    "simplified_ademamix": _converge(gx.simplified_ademamix, None, None, (1e-3, 5000, 2e-3)),
    "mars": _converge(gx.mars, (0.1, 1000, 1e-5), (0.1, 1000, 1e-5), (3e-3, 5000, 1e-4)),
    # sign steps: within about one learning rate of the minimum
    "mars_lion": _converge(lambda lr: gx.mars(lr, variant="lion"), (3e-3, 1000, 5e-3), (0.1, 1000, 1e-4),
                           (3e-3, 5000, 1e-2)),
    "laprop": _converge(gx.laprop, (0.1, 1000, 1e-5), (0.1, 1000, 1e-5), (0.03, 5000, 1e-4)),
    "cautious_adam": _converge(lambda lr: gx.cautious(gx.adam(lr)), (0.1, 1000, 1e-5), (0.1, 1000, 1e-5),
                               (0.01, 5000, 1e-4)),
    # the parameters are the gradient points y (the evaluation sequence x is closer still)
    "schedule_free_sgd": _converge(gx.schedule_free_sgd, (1.0, 1000, 1e-5), (0.1, 1000, 1e-3), (0.01, 5000, 2e-2)),
    "schedule_free_adamw": _converge(gx.schedule_free_adamw, (0.3, 1000, 1e-5), (0.3, 1000, 1e-5), (0.1, 5000, 0.1)),
    "schedule_free_radam": _converge(gx.schedule_free_radam, (1.0, 1000, 1e-5), (1.0, 1000, 1e-5), (0.1, 5000, 0.05)),
}
