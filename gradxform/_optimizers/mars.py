"""MARS (Yuan et al. 2024): variance-reduced gradients ("corrected" by the previous gradient) fed to AdamW or Lion."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, is_literal_zero, named, step_number
from gradxform._core.module import static_field
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.options import check_dtype_option

__all__ = ["mars", "scale_by_mars"]

_VARIANTS = ("adamw", "lion")


class ScaleByMarsState(NamedTuple):
  """State of :func:`scale_by_mars`: the moments ``mu``, ``nu`` (``None`` for Lion) and the previous gradient."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any
  last_grad: Any


class _ScaleByMars(Transform):
  b1: Any
  b2: Any
  eps: Any
  gamma: Any
  max_norm: Any  # None: no clipping of the corrected gradient
  variant: str = static_field(default="adamw")
  mu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByMarsState

  def init_fields(self, params):
    name = "scale_by_mars"
    nu = _tree.zeros_like(name, params) if self.variant == "adamw" else None
    return {"mu": _tree.zeros_like(name, params, self.mu_dtype), "nu": nu,
            "last_grad": _tree.zeros_like(name, params)}

  def apply(self, updates, state, params, hp, **extra):
    t = step_number(state, hp, "b1")
    scalars = {**hp, "correction1": 1 - hp["b1"] ** t, "correction2": 1 - hp["b2"].astype(t.dtype) ** t}
    clip, adam = self.max_norm is not None, self.variant == "adamw"

    def rule(g, mu, nu, last_grad, b1, b2, eps, gamma, correction1, correction2, stored, max_norm=None):
      c = g + gamma * (b1 / (1 - b1)) * (g - last_grad)
      if clip:  # c ← c / ‖c‖ where ‖c‖ > max_norm (per leaf)
        norm = jnp.sqrt(jnp.sum(c * c))
        c = c * jnp.where(norm > max_norm, max_norm / jnp.where(norm > max_norm, norm, 1), 1)
      if adam:
        mu, nu = stored(b1 * mu + (1 - b1) * c, b2 * nu + (1 - b2) * c * c)
        u = (mu / correction1) / (jnp.sqrt(nu / correction2) + eps)
      else:
        mu, = stored(b1 * mu + (1 - b1) * c)
        u = jnp.sign(mu)
      # "+ 0 * u": exactly g, but written after the loops that read the old g_{t-1} (in place when donated)
      return u, mu, nu, g + 0 * u

    updates, mu, nu, last_grad = _tree.leafwise(
        "scale_by_mars", rule, updates, state.mu, state.nu, state.last_grad, scalars=scalars,
        check_dtype=(self.mu_dtype is None, True, True), stored=True)
    return updates, {"mu": mu, "nu": nu, "last_grad": last_grad}


def scale_by_mars(b1: Any = 0.95, b2: Any = 0.99, eps: Any = 1e-8, gamma: Any = 0.025, max_norm: Any = 1.0, *,
                  variant: str = "adamw", mu_dtype: Optional[Any] = None) -> GradientTransformation:
  """MARS's direction (Yuan et al. 2024, MARS-AdamW and MARS-Lion, "approx"), as the paper's code.

  The gradient is corrected by the previous one (``g_0 = 0``), optionally
  clipped per leaf, and fed to Adam (``variant="adamw"``) or to a sign step
  (``variant="lion"``):

  .. math::

     c_t = g_t + \\gamma \\frac{\\beta_1}{1-\\beta_1} (g_t - g_{t-1}), \\quad
     c_t \\leftarrow c_t \\cdot \\min(1, \\tau / \\lVert c_t \\rVert), \\quad
     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) c_t

     \\text{adamw: } v_t = \\beta_2 v_{t-1} + (1-\\beta_2) c_t^2, \\;
     u_t = \\frac{m_t / (1-\\beta_1^t)}{\\sqrt{v_t / (1-\\beta_2^t)} + \\epsilon}; \\qquad
     \\text{lion: } u_t = \\operatorname{sign}(m_t)

  ``τ = max_norm`` (1.0 in the paper's code, the norm of each leaf's ``c_t``).
  This is the paper's practical "approx" form: ``g_{t-1}`` is the previous
  step's gradient (at the previous parameters and batch), kept in the state,
  not a second gradient evaluation on the current batch.

  Args:
    b1: momentum decay ``β₁`` in [0, 1) (default 0.95, as the paper's code).
    b2: second-moment decay ``β₂`` in [0, 1) (default 0.99; unused by Lion).
    eps: ``ε ≥ 0`` outside the root.
    gamma: ``γ ≥ 0``, the strength of the correction (0.025; ``γ = 0`` is
      Adam on the clipped gradient).
    max_norm: ``τ > 0``, or ``None`` for no clipping of ``c_t``.
    variant: ``"adamw"`` or ``"lion"``.
    mu_dtype: dtype of ``m`` (default: the parameters').

  Returns:
    A transform with state :class:`ScaleByMarsState` (three parameter copies
    for AdamW: ``m``, ``v`` and the previous gradient; two for Lion).

  References:
    Yuan, Liu, Wu, Zhou & Gu, 2024, "MARS: Unleashing the Power of Variance
    Reduction for Training Large Models", https://arxiv.org/abs/2411.10438
  """
  mu_dtype = check_dtype_option("scale_by_mars", "mu_dtype", mu_dtype)
  name = "scale_by_mars"
  if variant not in _VARIANTS:
    raise ValueError(f"{name}: variant={variant!r} is not supported; use 'adamw' or 'lion'.")
  check_betas(name, b1, b2, eps)
  check_hyperparameter(name, "gamma", gamma, low=0.0,
                       hint="gamma scales the gradient correction; use a non-negative value such as 0.025.")
  if max_norm is not None:
    check_hyperparameter(name, "max_norm", max_norm, low=0.0, low_open=True,
                         hint="max_norm bounds each leaf's corrected gradient; pass a positive number "
                              "(the paper's 1.0) or None for no clipping.")
  return _ScaleByMars(b1, b2, eps, gamma, max_norm, variant=variant, mu_dtype=mu_dtype)


@named
def mars(learning_rate: Any, b1: Any = 0.95, b2: Any = 0.99, eps: Any = 1e-8, weight_decay: Any = 0.0,
         gamma: Any = 0.025, max_norm: Any = 1.0, *, variant: str = "adamw",
         mu_dtype: Any = None) -> GradientTransformation:
  """MARS-AdamW or MARS-Lion: ``chain(scale_by_mars(...), add_decayed_weights(wd), scale_by_learning_rate(lr))``.

  ``p ← p − η(u + λp)``, as the paper's code (which uses lr 3e-3 for
  GPT-2). The paper's code steps 1-D parameters with plain AdamW by default
  (``optimize_1d=False``, betas (0.9, 0.95), weight decay 0.1); here every
  leaf gets MARS: use :func:`gradxform.partition` to give vectors AdamW.
  (A literal 0 weight decay leaves that stage out.)

  References:
    Yuan et al., 2024, https://arxiv.org/abs/2411.10438
  """
  mu_dtype = check_dtype_option("mars", "mu_dtype", mu_dtype)
  stages = [scale_by_mars(b1, b2, eps, gamma, max_norm, variant=variant, mu_dtype=mu_dtype)]
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
