"""NAdam (Dozat 2016): Adam with Nesterov momentum, as ``torch.optim.NAdam``."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, is_literal_zero, named, step_number
from gradxform._core.module import static_field
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.options import check_dtype_option, check_flag, gradient_preamble
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["nadam", "nadamw", "scale_by_nadam"]


class ScaleByNadamState(NamedTuple):
  """State of :func:`scale_by_nadam`: ``mu_product`` is ``∏ μ_i`` (a scalar), ``mu``/``nu`` the moments."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu_product: jax.Array
  mu: Any
  nu: Any


class _ScaleByNadam(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b1: Any
  b2: Any
  eps: Any
  momentum_decay: Any
  mu_dtype: Optional[Any] = static_field(default=None)
  nu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByNadamState

  def init_fields(self, params):
    b1 = self.resolve(jnp.zeros([], jnp.int32))["b1"]
    return {"mu_product": jnp.ones([], b1.dtype),
            "mu": _tree.zeros_like("scale_by_nadam", params, self.mu_dtype),
            "nu": _tree.zeros_like("scale_by_nadam", params, self.nu_dtype)}

  def apply(self, updates, state, params, hp, **extra):
    b1, b2, psi = hp["b1"], hp["b2"], hp["momentum_decay"].astype(hp["b1"].dtype)
    t = step_number(state, hp, "b1")
    mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
    mu_product = state.mu_product.astype(b1.dtype) * mu_t
    scalars = {
        "b1": b1, "b2": b2, "eps": hp["eps"],
        "grad_coef": (1 - mu_t) / (1 - mu_product),
        "mom_coef": mu_next / (1 - mu_product * mu_next),
        "correction": 1 - b2.astype(b1.dtype) ** t,
    }

    def rule(g, mu, nu, b1, b2, eps, grad_coef, mom_coef, correction, stored):
      mu, nu = stored(b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g * g)
      denom = jnp.sqrt(nu / correction) + eps
      return _guards.divide_or_zero(grad_coef * g + mom_coef * mu, denom, at_least=eps), mu, nu

    updates, mu, nu = _tree.leafwise("scale_by_nadam", rule, updates, state.mu, state.nu, scalars=scalars,
                                     check_dtype=(self.mu_dtype is None, self.nu_dtype is None), stored=True)
    return updates, {"mu_product": mu_product.astype(state.mu_product.dtype), "mu": mu, "nu": nu}


def scale_by_nadam(
    b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, momentum_decay: Any = 4e-3, *,
    mu_dtype: Optional[Any] = None, nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
  """NAdam (Dozat 2016) with torch's momentum-decay schedule, as ``torch.optim.NAdam``.

  .. math::

     \\mu_t = \\beta_1\\,(1 - \\tfrac12\\, 0.96^{t\\psi}), \\quad
     \\Pi_t = \\textstyle\\prod_{i \\le t} \\mu_i, \\quad
     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2

     u_t = \\Big(\\frac{1-\\mu_t}{1-\\Pi_t}\\, g_t + \\frac{\\mu_{t+1}}{1-\\Pi_t\\,\\mu_{t+1}}\\, m_t\\Big)
           \\Big/ \\big(\\sqrt{v_t / (1-\\beta_2^t)} + \\epsilon\\big)

  ``ψ = momentum_decay``. With ``momentum_decay=0`` every ``μ_t = β₁/2``; optax's
  ``nadam`` (constant ``β₁`` in the Nesterov term) is not reproduced by any
  setting of this rule.

  Args:
    b1, b2: moment decays in [0, 1).
    eps: ``ε ≥ 0`` outside the root.
    momentum_decay: ``ψ ≥ 0``.
    mu_dtype, nu_dtype: dtypes of ``m`` and ``v`` (default: the parameters');
      ``u_t`` is computed from them as stored (rounded to these dtypes).

  References:
    Dozat, 2016, "Incorporating Nesterov Momentum into Adam",
    https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
  """
  check_betas("scale_by_nadam", b1, b2, eps)
  check_hyperparameter("scale_by_nadam", "momentum_decay", momentum_decay, low=0.0,
                       hint="momentum_decay (ψ) must be non-negative; torch uses 4e-3.")
  return _ScaleByNadam(b1, b2, eps, momentum_decay,
                       mu_dtype=check_dtype_option("scale_by_nadam", "mu_dtype", mu_dtype),
                       nu_dtype=check_dtype_option("scale_by_nadam", "nu_dtype", nu_dtype))


@named
def nadam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
          momentum_decay: Any = 4e-3, *, weight_decay: Any = 0.0, decoupled_weight_decay: bool = False,
          maximize: bool = False, mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """NAdam, as ``torch.optim.NAdam``: ``chain([scale(-1)], [add_decayed_weights(λ)], scale_by_nadam(...), scale_by_learning_rate(lr))``.

  .. math::

     g \\leftarrow \\pm g + \\lambda p, \\qquad p \\leftarrow p - \\eta\\, u_t
     \\;\\text{(}u_t\\text{ of :func:`scale_by_nadam`)}

  With ``decoupled_weight_decay=True`` the decay moves after the NAdam
  direction, ``p ← p − η(u_t + λp)``, as torch's ``NAdam(decoupled_weight_decay=True)``
  (:func:`nadamw`).

  Args:
    learning_rate: ``η ≥ 0``.
    b1, b2, eps, momentum_decay, mu_dtype, nu_dtype: as in :func:`scale_by_nadam`.
    weight_decay: ``λ ≥ 0``; L2 coupled into the gradient (torch's default 0).
    decoupled_weight_decay: apply ``λ`` decoupled (torch's option).
    maximize: negate the gradient first, as torch's ``maximize=True``.

  References:
    Dozat, 2016, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
  """
  decoupled = check_flag("nadam", "decoupled_weight_decay", decoupled_weight_decay)
  stages = gradient_preamble("nadam", maximize, 0.0 if decoupled else weight_decay)
  stages.append(scale_by_nadam(b1, b2, eps, momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype))
  if decoupled and not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)


@named
def nadamw(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
           momentum_decay: Any = 4e-3, weight_decay: Any = 1e-2, *, maximize: bool = False,
           mask: Any = None, mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """NAdamW: ``torch.optim.NAdam(decoupled_weight_decay=True)``, under optax's name.

  ``chain([scale(-1)], scale_by_nadam(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))``:
  ``p ← p − η(u_t + λp)``, which equals torch's ``p ← p(1 − ηλ)`` followed by
  the NAdam step. The default ``λ = 1e-2`` is :func:`adamw`'s (torch's AdamW);
  ``optax.nadamw`` defaults to 1e-4 and uses optax's NAdam (a constant ``β₁``
  in the Nesterov term, no momentum schedule), which this rule does not reproduce.

  References:
    Dozat, 2016, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ; Loshchilov
    & Hutter, 2019, https://arxiv.org/abs/1711.05101
  """
  stages = gradient_preamble("nadamw", maximize)
  stages += [scale_by_nadam(b1, b2, eps, momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
             add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate)]
  return chain(*stages)
