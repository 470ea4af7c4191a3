"""LaProp (Ziyin et al. 2020): momentum of the RMS-normalized gradient (Adam with the two stages swapped)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, is_literal_zero, named, step_number
from gradxform._core.module import static_field
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.options import check_dtype_option

__all__ = ["laprop", "scale_by_laprop"]


class ScaleByLapropState(NamedTuple):
  """State of :func:`scale_by_laprop`: ``mu`` (momentum of normalized gradients) and ``nu``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any


class _ScaleByLaprop(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b1: Any
  b2: Any
  eps: Any
  mu_dtype: Optional[Any] = static_field(default=None)
  nu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByLapropState

  def init_fields(self, params):
    return {"mu": _tree.zeros_like("scale_by_laprop", params, self.mu_dtype),
            "nu": _tree.zeros_like("scale_by_laprop", params, self.nu_dtype)}

  def apply(self, updates, state, params, hp, **extra):
    t = step_number(state, hp, "b1")
    scalars = {**hp, "correction1": 1 - hp["b1"] ** t, "correction2": 1 - hp["b2"].astype(t.dtype) ** t}

    def rule(g, mu, nu, b1, b2, eps, correction1, correction2, stored):
      _, nu = stored(None, b2 * nu + (1 - b2) * g * g)  # v first: the momentum reads it as stored
      normed = _guards.divide_or_zero(g, jnp.sqrt(nu / correction2) + eps, at_least=eps)
      mu, _ = stored(b1 * mu + (1 - b1) * normed, None)
      return mu / correction1, mu, nu

    updates, mu, nu = _tree.leafwise("scale_by_laprop", rule, updates, state.mu, state.nu, scalars=scalars,
                                     check_dtype=(self.mu_dtype is None, self.nu_dtype is None), stored=True)
    return updates, {"mu": mu, "nu": nu}


def scale_by_laprop(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-15, *, mu_dtype: Optional[Any] = None,
                    nu_dtype: Optional[Any] = None) -> GradientTransformation:
  """LaProp's direction (Ziyin et al. 2020), as the paper's code.

  .. math::

     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2, \\quad
     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) \\frac{g_t}{\\sqrt{v_t/(1-\\beta_2^t)} + \\epsilon}, \\quad
     u_t = \\frac{m_t}{1-\\beta_1^t}

  Adam divides the momentum by the RMS; LaProp takes the momentum of
  RMS-divided gradients, which decouples ``β₁`` from ``β₂`` (any ``β₁ < 1``
  with any ``β₂``). Defaults are the paper code's (``ε = 1e-15``).

  Args:
    b1: momentum decay ``β₁`` in [0, 1).
    b2: second-moment decay ``β₂`` in [0, 1).
    eps: ``ε ≥ 0`` outside the root.
    mu_dtype, nu_dtype: dtypes of ``m`` and ``v`` (default: the parameters');
      each is read as stored.

  Returns:
    A transform with state :class:`ScaleByLapropState`.

  References:
    Ziyin, Wang & Ueda, 2020, "LaProp: Separating Momentum and Adaptivity in
    Adam", https://arxiv.org/abs/2002.04839
  """
  mu_dtype = check_dtype_option("scale_by_laprop", "mu_dtype", mu_dtype)
  nu_dtype = check_dtype_option("scale_by_laprop", "nu_dtype", nu_dtype)
  check_betas("scale_by_laprop", b1, b2, eps)
  return _ScaleByLaprop(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype)


@named
def laprop(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-15, weight_decay: Any = 0.0, *,
           mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """LaProp: ``chain(scale_by_laprop(b1, b2, eps), add_decayed_weights(wd), scale_by_learning_rate(lr))``.

  With a constant learning rate this is the paper's code step for step. Its
  code keeps ``η`` inside the momentum (``m ← β₁m + (1−β₁)η·g/…``, debiased by
  the same average of past ``η``), so under a schedule a step there mixes past
  learning rates, where here ``η_t`` scales the whole step. Weight decay is
  decoupled, ``p ← p − η(u + λp)`` as AdamW; the paper's code applies
  ``p ← p(1 − λ)`` after the step, without ``η``: pass ``λ/η`` to match it to
  first order. (A literal 0 weight decay leaves that stage out.)

  References:
    Ziyin, Wang & Ueda, 2020, https://arxiv.org/abs/2002.04839
  """
  mu_dtype = check_dtype_option("laprop", "mu_dtype", mu_dtype)
  nu_dtype = check_dtype_option("laprop", "nu_dtype", nu_dtype)
  stages = [scale_by_laprop(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype)]
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
