"""Adamax (Kingma & Ba 2015, Section 7.1): Adam with the infinity norm, as ``torch.optim.Adamax``."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, named
from gradxform._core.module import static_field
from gradxform._transforms.accumulators import _Ema
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.options import check_dtype_option, gradient_preamble
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["adamax", "adamaxw", "scale_by_adamax"]


class ScaleByAdamaxState(NamedTuple):
  """State of :func:`scale_by_adamax`: ``inf_norm`` is ``u``, ``numerator.ema`` is ``m``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  inf_norm: Any
  numerator: Any


class _ScaleByAdamax(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b2: Any
  eps: Any
  numerator: GradientTransformation
  nu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByAdamaxState
  counts = False  # its own rule does not read the step
  nested = ("numerator",)  # the bias-corrected first moment uses this count

  def init_fields(self, params):
    return {"inf_norm": _tree.zeros_like("scale_by_adamax", params, self.nu_dtype),
            "numerator": self.numerator.init(params)}

  def apply(self, updates, state, params, hp, **extra):
    numerator, numerator_state = self.numerator.update(updates, state.numerator, params, **extra)

    def rule(g, inf_norm, num, b2, eps, stored):
      inf_norm, = stored(jnp.maximum(b2 * inf_norm, jnp.abs(g) + eps))
      return _guards.divide_or_zero(num, inf_norm), inf_norm, num

    updates, inf_norm, _ = _tree.leafwise("scale_by_adamax", rule, updates, state.inf_norm, numerator,
                                          scalars=hp, check_dtype=(self.nu_dtype is None, True),
                                          stored=True)
    return updates, {"inf_norm": inf_norm, "numerator": numerator_state}


def scale_by_adamax(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *, mu_dtype: Optional[Any] = None,
                    nu_dtype: Optional[Any] = None) -> GradientTransformation:
  """Adamax (Kingma & Ba 2015, Algorithm 2), as ``torch.optim.Adamax``.

  .. math::

     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
     u^{\\infty}_t = \\max(\\beta_2 u^{\\infty}_{t-1}, |g_t| + \\epsilon), \\quad
     u_t = \\frac{m_t}{(1-\\beta_1^t)\\, u^{\\infty}_t}

  eps is added to ``|g|`` inside the max, as torch and optax do. Like Adam
  it is a bias-corrected :func:`ema` (the numerator) divided by a per-coordinate
  scale of the same gradient. ``mu_dtype``/``nu_dtype`` set the dtypes of ``m``
  and ``u^∞`` (default: the parameters'); ``u_t`` is computed from them as
  stored (rounded to these dtypes), as in :func:`scale_by_adam`.

  References:
    Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization", Section 7.1,
    https://arxiv.org/abs/1412.6980
  """
  check_betas("scale_by_adamax", b1, b2, eps)
  mu_dtype = check_dtype_option("scale_by_adamax", "mu_dtype", mu_dtype)
  return _ScaleByAdamax(b2, eps, _Ema(b1, debias=True, dtype=mu_dtype, name="scale_by_adamax",
                                                   public_names=(("decay", "b1"),)),
                        nu_dtype=check_dtype_option("scale_by_adamax", "nu_dtype", nu_dtype))


@named
def adamax(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *,
           weight_decay: Any = 0.0, maximize: bool = False, mu_dtype: Any = None,
           nu_dtype: Any = None) -> GradientTransformation:
  """Adamax, as ``torch.optim.Adamax``: ``chain([scale(-1)], [add_decayed_weights(λ)], scale_by_adamax(b1, b2, eps), scale_by_learning_rate(lr))``.

  .. math::

     g \\leftarrow \\pm g + \\lambda p, \\qquad p \\leftarrow p - \\eta\\, u_t
     \\;\\text{(}u_t\\text{ of :func:`scale_by_adamax`)}

  Args:
    learning_rate: ``η ≥ 0``.
    b1, b2, eps, mu_dtype, nu_dtype: as in :func:`scale_by_adamax`.
    weight_decay: ``λ ≥ 0``, L2 coupled into the gradient (torch's; default 0).
      Decoupled decay is :func:`adamaxw`.
    maximize: negate the gradient first, as torch's ``maximize=True``.

  References:
    Kingma & Ba, 2015, Section 7.1, https://arxiv.org/abs/1412.6980
  """
  stages = gradient_preamble("adamax", maximize, weight_decay)
  stages += [scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
             scale_by_learning_rate(learning_rate)]
  return chain(*stages)


@named
def adamaxw(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
            weight_decay: Any = 1e-4, mask: Any = None, *, mu_dtype: Any = None,
            nu_dtype: Any = None) -> GradientTransformation:
  """Adamax with decoupled weight decay, as ``optax.adamaxw`` (torch has none; optax's default ``λ = 1e-4``).

  ``chain(scale_by_adamax(b1, b2, eps), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))``:
  ``p ← p − η(u_t + λp)``.

  References:
    Kingma & Ba, 2015, Section 7.1, https://arxiv.org/abs/1412.6980; Loshchilov
    & Hutter, 2019, https://arxiv.org/abs/1711.05101
  """
  return chain(scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
               add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))
