"""ADOPT (Taniguchi et al. 2024): Adam whose normalization uses the second moment of the *previous* step."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, named
from gradxform._core.module import static_field
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform.schedules._base import Schedule, prepare
from gradxform._transforms.options import check_dtype_option
from gradxform._transforms.options import check_flag

__all__ = ["adopt", "scale_by_adopt"]


class _StepPower(Schedule):
  """``count ** power``: ADOPT's clipping bound ``c_t = t^{1/4}`` (``t = count``, 0 at the first update)."""

  power: Any = 0.25

  def __call__(self, count):
    count, power = prepare(count, self.power)
    return count ** power


class ScaleByAdoptState(NamedTuple):
  """State of :func:`scale_by_adopt`: the first moment ``mu`` and the second moment ``nu``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any


class _ScaleByAdopt(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b1: Any
  b2: Any
  eps: Any
  clip_value: Any  # None: no clipping
  nesterov: bool = static_field(default=False)
  mu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByAdoptState

  def init_fields(self, params):
    return {"mu": _tree.zeros_like("scale_by_adopt", params, self.mu_dtype),
            "nu": _tree.zeros_like("scale_by_adopt", params)}

  def apply(self, updates, state, params, hp, **extra):
    first = state.count == 0
    clip = self.clip_value is not None
    nesterov = self.nesterov

    def rule(g, mu, nu, b1, b2, eps, stored, clip_value=None):
      # The first gradient only initializes v (v_0 = g_0²); m and the update stay 0.
      normed = g / jnp.maximum(jnp.sqrt(nu), eps)  # divides by the *previous* v
      if clip:
        normed = jnp.clip(normed, -clip_value, clip_value)
      new_mu = jnp.where(first, mu, b1 * mu + (1 - b1) * normed)
      new_nu = jnp.where(first, g * g, b2 * nu + (1 - b2) * g * g)
      new_mu, = stored(new_mu)
      u = jnp.where(first, new_mu, b1 * new_mu + (1 - b1) * normed) if nesterov else new_mu
      # "+ 0 * u" adds exactly zero but orders the loop that overwrites v after the ones that read the
      # old v, so a donated state is updated in place (as scale_by_lion does for its momentum)
      return u, new_mu, new_nu + 0 * u

    updates, mu, nu = _tree.leafwise("scale_by_adopt", rule, updates, state.mu, state.nu, scalars=hp,
                                     check_dtype=(self.mu_dtype is None, True), stored=True)
    return updates, {"mu": mu, "nu": nu}


def scale_by_adopt(b1: Any = 0.9, b2: Any = 0.9999, eps: Any = 1e-6, *, nesterov: bool = False,
                   clip_value: Any = _StepPower(0.25),
                   mu_dtype: Optional[Any] = None) -> GradientTransformation:
  """ADOPT's direction (Taniguchi et al. 2024, with its clipping), as ``optax.contrib.scale_by_adopt``.

  The first update only sets ``v_0 = g_0²`` (and returns 0); from then on
  (``t = 1, 2, …`` counts the updates after the first):

  .. math::

     \\tilde g_t = \\operatorname{clip}\\Big(\\frac{g_t}{\\max(\\sqrt{v_{t-1}}, \\epsilon)},\\,
                   -c_t,\\, c_t\\Big), \\quad
     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) \\tilde g_t, \\quad
     u_t = m_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2

  with ``c_t = t^{1/4}``. Unlike Adam, the current gradient is normalized by
  the second moment of the *previous* steps (so ``g_t`` and its scale are
  independent), and the momentum is taken after the normalization. There is
  no bias correction. ``nesterov=True`` returns ``β₁ m_t + (1-β₁) \\tilde g_t``.

  Args:
    b1: momentum decay ``β₁`` in [0, 1).
    b2: second-moment decay ``β₂`` in [0, 1) (the paper's point: any ``β₂``
      works; default 0.9999).
    eps: ``ε > 0``, the floor of ``√v`` (default 1e-6, as the paper and optax).
    nesterov: Nesterov's form of the momentum (optax's option).
    clip_value: ``c_t``: a number, an array, a schedule of the update count
      (0 at the first update) or ``None`` for no clipping (the paper's
      unclipped algorithm). Default ``count ** 0.25``, as the paper and optax.
    mu_dtype: dtype of ``m`` (default: the parameters'); ``u_t`` reads ``m_t``
      as stored.

  Returns:
    A transform with state :class:`ScaleByAdoptState`. Reproduces
    ``optax.contrib.scale_by_adopt`` (whose ``use_clipping=False`` is
    ``clip_value=None`` here).

  References:
    Taniguchi et al., 2024, "ADOPT: Modified Adam Can Converge with Any β₂ with
    the Optimal Rate", https://arxiv.org/abs/2411.02853
  """
  nesterov = check_flag("scale_by_adopt", "nesterov", nesterov)
  mu_dtype = check_dtype_option("scale_by_adopt", "mu_dtype", mu_dtype)
  check_betas("scale_by_adopt", b1, b2)
  check_hyperparameter("scale_by_adopt", "eps", eps, low=0.0, low_open=True,
                       hint="eps is the floor of sqrt(v) that the gradient is divided by; use a "
                            "positive number such as 1e-6.")
  if clip_value is not None:
    check_hyperparameter("scale_by_adopt", "clip_value", clip_value, low=0.0,
                         hint="clip_value bounds the normalized gradient; pass a non-negative "
                              "number, a schedule (the default is count**0.25) or None for no clipping.")
  return _ScaleByAdopt(b1, b2, eps, clip_value, nesterov=bool(nesterov), mu_dtype=mu_dtype)


@named
def adopt(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.9999, eps: Any = 1e-6, *, nesterov: bool = False,
          clip_value: Any = _StepPower(0.25), mu_dtype: Any = None) -> GradientTransformation:
  """ADOPT, as ``optax.contrib.adopt``: ``chain(scale_by_adopt(...), scale_by_learning_rate(lr))``.

  The first update is zero (it only measures the gradient's scale).

  References:
    Taniguchi et al., 2024, https://arxiv.org/abs/2411.02853
  """
  nesterov = check_flag("adopt", "nesterov", nesterov)
  mu_dtype = check_dtype_option("adopt", "mu_dtype", mu_dtype)
  return chain(scale_by_adopt(b1, b2, eps, nesterov=nesterov, clip_value=clip_value, mu_dtype=mu_dtype),
               scale_by_learning_rate(learning_rate))
