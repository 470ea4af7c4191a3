"""AdEMAMix (Pagliardini et al. 2024): Adam plus a slow momentum; and its simplified form (Morwani et al. 2025)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import (Transform, check_betas, check_hyperparameter, is_literal_zero, named,
                                         step_number)
from gradxform._core.module import static_field
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.options import check_dtype_option

__all__ = ["ademamix", "scale_by_ademamix", "scale_by_simplified_ademamix", "simplified_ademamix"]


def _half_life(beta):
  """Steps until a weight decays by half under ``β`` (minus one), the paper code's ``f``."""
  return math.log(0.5) / jnp.log(beta + 1e-8) - 1


def warmup_b3(t, b1, b3, warmup):
  """The paper's ``β₃`` warmup: the half-life grows linearly from ``β₁``'s to ``β₃``'s over ``warmup`` steps."""
  a = t / warmup
  half_life = (1 - a) * _half_life(b1) + a * _half_life(b3)
  return jnp.where(t < warmup, 0.5 ** (1 / (half_life + 1)), b3)


class ScaleByAdemamixState(NamedTuple):
  """State of :func:`scale_by_ademamix`: the fast EMA ``m1``, the slow EMA ``m2`` and ``nu``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  m1: Any
  m2: Any
  nu: Any


class _ScaleByAdemamix(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b1: Any
  b2: Any
  b3: Any
  alpha: Any
  eps: Any
  eps_root: Any
  alpha_warmup: Any = None  # None: no warmup
  b3_warmup: Any = None
  mu_dtype: Optional[Any] = static_field(default=None)
  nu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByAdemamixState

  def init_fields(self, params):
    name = "scale_by_ademamix"
    return {"m1": _tree.zeros_like(name, params, self.mu_dtype),
            "m2": _tree.zeros_like(name, params, self.mu_dtype),
            "nu": _tree.zeros_like(name, params, self.nu_dtype)}

  def apply(self, updates, state, params, hp, **extra):
    b1, b2, b3, alpha = hp["b1"], hp["b2"], hp["b3"].astype(hp["b1"].dtype), hp["alpha"]
    t = step_number(state, hp, "b1")
    if "alpha_warmup" in hp:
      alpha = alpha * jnp.minimum(t / hp["alpha_warmup"].astype(t.dtype), 1).astype(alpha.dtype)
    if "b3_warmup" in hp:
      b3 = warmup_b3(t, b1, b3, hp["b3_warmup"].astype(t.dtype))
    scalars = {"b1": b1, "b2": b2, "b3": b3, "alpha": alpha, "eps": hp["eps"], "eps_root": hp["eps_root"],
               "correction1": 1 - b1 ** t, "correction2": 1 - b2.astype(t.dtype) ** t}

    def rule(g, m1, m2, nu, b1, b2, b3, alpha, eps, eps_root, correction1, correction2, stored):
      m1, m2, nu = stored(b1 * m1 + (1 - b1) * g, b3 * m2 + (1 - b3) * g, b2 * nu + (1 - b2) * g * g)
      u = (m1 / correction1 + alpha * m2) / (jnp.sqrt(nu / correction2 + eps_root) + eps)
      return u, m1, m2, nu

    dtype_checks = (self.mu_dtype is None, self.mu_dtype is None, self.nu_dtype is None)
    updates, m1, m2, nu = _tree.leafwise("scale_by_ademamix", rule, updates, state.m1, state.m2, state.nu,
                                         scalars=scalars, check_dtype=dtype_checks, stored=True)
    return updates, {"m1": m1, "m2": m2, "nu": nu}


def _check_warmup(name, which, value):
  if value is not None:
    check_hyperparameter(name, which, value, low=0.0, low_open=True,
                         hint=f"{which} is a number of steps; pass a positive number, or None for no warmup.")


def scale_by_ademamix(b1: Any = 0.9, b2: Any = 0.999, b3: Any = 0.9999, alpha: Any = 6.0, eps: Any = 1e-8,
                      eps_root: Any = 0.0, *, alpha_warmup: Any = None, b3_warmup: Any = None,
                      mu_dtype: Optional[Any] = None, nu_dtype: Optional[Any] = None) -> GradientTransformation:
  """AdEMAMix's direction (Pagliardini et al. 2024), as ``optax.contrib.scale_by_ademamix``.

  .. math::

     m^{(1)}_t = \\beta_1 m^{(1)}_{t-1} + (1-\\beta_1) g_t, \\quad
     m^{(2)}_t = \\beta_3 m^{(2)}_{t-1} + (1-\\beta_3) g_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2

     u_t = \\frac{m^{(1)}_t / (1-\\beta_1^t) + \\alpha\\, m^{(2)}_t}
                {\\sqrt{v_t / (1-\\beta_2^t) + \\epsilon_{root}} + \\epsilon}

  The slow EMA ``m⁽²⁾`` (``β₃`` close to 1) is not bias-corrected. With
  ``alpha_warmup = T_α`` the mixing coefficient is ``α_t = α·min(t/T_α, 1)``;
  with ``b3_warmup = T_β`` the half-life of ``β₃`` grows linearly from ``β₁``'s:
  ``β₃(t) = 0.5^{1/(h_t + 1)}``, ``h_t = (1 − t/T_β) f(β₁) + (t/T_β) f(β₃)``,
  ``f(β) = ln 0.5 / ln(β + 10⁻⁸) − 1``, for ``t < T_β`` (the schedulers of the
  paper's code, with ``t`` the 1-based step). ``α`` and ``β₃`` may also be any
  schedule of the update count (as optax's).

  Args:
    b1: fast momentum decay ``β₁`` in [0, 1).
    b2: second-moment decay ``β₂`` in [0, 1).
    b3: slow momentum decay ``β₃`` in [0, 1).
    alpha: ``α ≥ 0``, the weight of the slow EMA (optax: 6.0 here, 5.0 in
      :func:`ademamix`; the paper's code uses 2.0 to 8.0).
    eps: ``ε ≥ 0`` outside the root; eps_root: ``ε_root ≥ 0`` inside it.
    alpha_warmup: ``T_α > 0`` steps of linear warmup of ``α`` (None: none).
    b3_warmup: ``T_β > 0`` steps of the half-life warmup of ``β₃`` (None: none).
    mu_dtype: dtype of both EMAs; nu_dtype: of ``v`` (default: the parameters').

  Returns:
    A transform with state :class:`ScaleByAdemamixState`.

  References:
    Pagliardini, Ablin & Grangier, 2024, "The AdEMAMix Optimizer: Better,
    Faster, Older", https://arxiv.org/abs/2409.03137
  """
  mu_dtype = check_dtype_option("scale_by_ademamix", "mu_dtype", mu_dtype)
  nu_dtype = check_dtype_option("scale_by_ademamix", "nu_dtype", nu_dtype)
  name = "scale_by_ademamix"
  check_betas(name, b1, b2, eps)
  check_hyperparameter(name, "b3", b3, low=0.0, high=1.0, high_open=True,
                       hint="b3 is the decay of the slow EMA; use a value in [0, 1) such as 0.9999.")
  check_hyperparameter(name, "alpha", alpha, low=0.0,
                       hint="alpha weighs the slow EMA; use a non-negative value such as 5.0.")
  check_hyperparameter(name, "eps_root", eps_root, low=0.0, hint="eps_root must be non-negative.")
  _check_warmup(name, "alpha_warmup", alpha_warmup)
  _check_warmup(name, "b3_warmup", b3_warmup)
  return _ScaleByAdemamix(b1, b2, b3, alpha, eps, eps_root, alpha_warmup, b3_warmup,
                          mu_dtype=mu_dtype, nu_dtype=nu_dtype)


@named
def ademamix(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, b3: Any = 0.9999, alpha: Any = 5.0,
             eps: Any = 1e-8, eps_root: Any = 0.0, weight_decay: Any = 0.0, *, alpha_warmup: Any = None,
             b3_warmup: Any = None, mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """AdEMAMix, as ``optax.contrib.ademamix``: ``chain(scale_by_ademamix(...), add_decayed_weights(wd), scale_by_learning_rate(lr))``.

  ``p ← p − η(u + λp)`` (decoupled decay, as the paper's code). The paper
  pairs ``alpha_warmup = b3_warmup =`` the number of training steps with
  ``α`` in 2 to 8 and ``β₃ = 0.9999``. (A literal 0 weight decay leaves that stage out.)

  References:
    Pagliardini, Ablin & Grangier, 2024, https://arxiv.org/abs/2409.03137
  """
  mu_dtype = check_dtype_option("ademamix", "mu_dtype", mu_dtype)
  nu_dtype = check_dtype_option("ademamix", "nu_dtype", nu_dtype)
  stages = [scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, alpha_warmup=alpha_warmup,
                              b3_warmup=b3_warmup, mu_dtype=mu_dtype, nu_dtype=nu_dtype)]
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)


class ScaleBySimplifiedAdemamixState(NamedTuple):
  """State of :func:`scale_by_simplified_ademamix`: the accumulated momentum ``mu`` and ``nu``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any


class _ScaleBySimplifiedAdemamix(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b1: Any
  b2: Any
  alpha: Any
  eps: Any
  eps_root: Any
  State = ScaleBySimplifiedAdemamixState

  def init_fields(self, params):
    name = "scale_by_simplified_ademamix"
    return {"mu": _tree.zeros_like(name, params), "nu": _tree.zeros_like(name, params)}

  def apply(self, updates, state, params, hp, **extra):
    t = step_number(state, hp, "b2")
    scalars = {**hp, "correction2": 1 - hp["b2"] ** t}

    def rule(g, mu, nu, b1, b2, alpha, eps, eps_root, correction2, stored):
      mu, nu = stored(b1 * mu + g, b2 * nu + (1 - b2) * g * g)
      return (mu + alpha * g) / (jnp.sqrt(nu / correction2 + eps_root) + eps), mu, nu

    updates, mu, nu = _tree.leafwise("scale_by_simplified_ademamix", rule, updates, state.mu, state.nu,
                                     scalars=scalars, stored=True)
    return updates, {"mu": mu, "nu": nu}


def scale_by_simplified_ademamix(b1: Any = 0.99, b2: Any = 0.95, alpha: Any = 0.0, eps: Any = 1e-8,
                                 eps_root: Any = 0.0) -> GradientTransformation:
  """Simplified AdEMAMix's direction (Morwani et al. 2025), as ``optax.contrib.scale_by_simplified_ademamix``.

  One undamped momentum instead of two EMAs:

  .. math::

     m_t = \\beta_1 m_{t-1} + g_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2, \\quad
     u_t = \\frac{m_t + \\alpha g_t}{\\sqrt{v_t / (1-\\beta_2^t) + \\epsilon_{root}} + \\epsilon}

  ``m`` sums the gradients (no ``1 − β₁`` factor), so the step is about
  ``1/(1 − β₁)`` times Adam's: scale the learning rate down accordingly.

  Args:
    b1: momentum decay ``β₁`` in [0, 1) (default 0.99).
    b2: second-moment decay ``β₂`` in [0, 1) (default 0.95).
    alpha: ``α ≥ 0``, the extra weight of the current gradient.
    eps, eps_root: ``ε`` outside and ``ε_root`` inside the root.

  Returns:
    A transform with state :class:`ScaleBySimplifiedAdemamixState`.

  References:
    Morwani, Shapira, Vyas, Malach, Kakade & Janson, 2025, "Connections between
    Schedule-Free Optimizers, AdEMAMix, and Accelerated SGD Variants",
    https://arxiv.org/abs/2502.02431
  """
  name = "scale_by_simplified_ademamix"
  check_betas(name, b1, b2, eps)
  check_hyperparameter(name, "alpha", alpha, low=0.0, hint="alpha must be non-negative.")
  check_hyperparameter(name, "eps_root", eps_root, low=0.0, hint="eps_root must be non-negative.")
  return _ScaleBySimplifiedAdemamix(b1, b2, alpha, eps, eps_root)


@named
def simplified_ademamix(learning_rate: Any, b1: Any = 0.99, b2: Any = 0.95, alpha: Any = 0.0, eps: Any = 1e-8,
                        eps_root: Any = 0.0, weight_decay: Any = 0.0) -> GradientTransformation:
  """Simplified AdEMAMix, as ``optax.contrib.simplified_ademamix``.

  ``chain(scale_by_simplified_ademamix(...), add_decayed_weights(wd), scale_by_learning_rate(lr))``.
  (A literal 0 weight decay leaves that stage out.)

  References:
    Morwani et al., 2025, https://arxiv.org/abs/2502.02431
  """
  stages = [scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root)]
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
