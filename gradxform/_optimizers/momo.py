"""MoMo (Schaipp et al. 2023): momentum with a Polyak-type step size from a model of the loss."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, named, step_number
from gradxform._core.module import static_field
from gradxform._core.objective import scalar_dtype, vdot
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["ScaleByMomoAdamState", "ScaleByMomoState", "momo", "momo_adam", "scale_by_momo",
           "scale_by_momo_adam"]

_TINY = float(np.finfo(np.float64).eps)  # optax's threshold on the momentum's squared norm


def _loss_value(name: str, extra: dict, params: Any, dtype: Any) -> jax.Array:
  value = extra.get("value")
  if value is None:
    value_fn = extra.get("value_fn")
    if value_fn is None:
      raise TypeError(
          f"{name}: needs the loss at params as the extra argument value (MoMo's step is a Polyak step on a "
          "model of the loss), but update() got none. gx.step(opt, loss_fn, params, state) passes it; by hand, "
          "call opt.update(grads, state, params, value=loss).")
    value = value_fn(params)
  return jnp.asarray(value).astype(dtype)


def _polyak_step(hp, state, barf, gamma, norm, iprod, bc1, adapt):
  """MoMo's truncated step ``τ``, the lower bound used, and the next one (``bc1 = 1`` for MoMo)."""
  alpha, decay = hp["learning_rate"], 1 + hp["learning_rate"] * hp["weight_decay"]
  lower_bound = hp["lower_bound"]
  lb = state.lb
  if adapt:
    cap = decay * (barf - gamma) + iprod
    lb = jnp.where(cap < decay * bc1 * state.lb, jnp.maximum(cap / (2 * bc1 * decay), lower_bound), state.lb)
  gap = jnp.maximum(decay * (barf - bc1 * lb - gamma) + iprod, 0)
  t1 = jnp.where(norm <= _TINY, 0, gap / jnp.where(norm <= _TINY, 1, norm))
  tau = jnp.minimum(alpha / bc1, t1)
  new_lb = jnp.maximum(((barf + iprod - gamma) - tau * norm / 2) / bc1, lower_bound) if adapt else state.lb
  return tau, new_lb


def _check(name: str, learning_rate: Any, lower_bound: Any, weight_decay: Any, adapt_lower_bound: Any) -> None:
  check_hyperparameter(name, "learning_rate", learning_rate, low=0.0,
                       hint="learning_rate caps MoMo's step size; choose it large (e.g. 1.0).")
  check_hyperparameter(name, "lower_bound", lower_bound,
                       hint="lower_bound is a lower bound on the loss (0 for non-negative losses).")
  check_hyperparameter(name, "weight_decay", weight_decay, low=0.0, hint="weight_decay must be non-negative.")
  if not isinstance(adapt_lower_bound, bool):
    raise TypeError(f"{name}: adapt_lower_bound must be True or False, got {adapt_lower_bound!r}.")


class ScaleByMomoState(NamedTuple):
  """State of :func:`scale_by_momo`.

  ``step_size`` is the Polyak-type step ``τ_t`` of the last update; ``barf``
  (``f̄``), ``gamma`` (``γ``) and ``lb`` (the loss's lower bound ``f_*``) are
  scalars in the parameters' widest dtype (at least float32); ``exp_avg`` is ``d``.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  exp_avg: Any
  barf: jax.Array
  gamma: jax.Array
  lb: jax.Array
  step_size: jax.Array

  def diagnostics(self) -> dict:
    """``step_size`` (``τ_t``) and ``lb`` (the loss's lower bound), for :func:`gradxform.diagnostics`."""
    return {"step_size": self.step_size, "lb": self.lb}


class _ScaleByMomo(Transform):
  learning_rate: Any
  b1: Any
  lower_bound: Any
  weight_decay: Any
  adapt_lower_bound: bool = static_field(default=False)
  State = ScaleByMomoState

  def init_fields(self, params):
    dtype = scalar_dtype(params)
    zero = jnp.zeros([], dtype)
    return {"exp_avg": _tree.zeros_like("scale_by_momo", params), "barf": zero, "gamma": zero, "step_size": zero,
            "lb": self.resolve(jnp.zeros([], jnp.int32))["lower_bound"].astype(dtype)}

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_momo"
    _tree.require_params(name, params, "form the model of the loss")
    dtype = state.barf.dtype
    hp = {k: v.astype(dtype) for k, v in hp.items()}
    b1 = jnp.where(state.count == 0, 0, hp["b1"])  # the averages start at the first values
    barf = b1 * state.barf + (1 - b1) * _loss_value(name, extra, params, dtype)
    gamma = b1 * state.gamma + (1 - b1) * vdot(updates, params, dtype)

    def average(g, d, b1, stored):
      d, = stored(b1 * d + (1 - b1) * g)
      return g, d

    _, exp_avg = _tree.leafwise(name, average, updates, state.exp_avg, scalars={"b1": b1}, stored=True)
    tau, lb = _polyak_step(hp, state, barf, gamma, vdot(exp_avg, exp_avg, dtype), vdot(exp_avg, params, dtype),
                           1, self.adapt_lower_bound)
    decay = hp["learning_rate"] * hp["weight_decay"]
    updates, _, _ = _tree.leafwise(name, lambda g, d, p, tau, c: (c * p + tau * d, d, p), updates, exp_avg, params,
                                   check_dtype=(False, False), scalars={"tau": tau, "c": decay / (1 + decay)})
    return updates, {"exp_avg": exp_avg, "barf": barf, "gamma": gamma, "lb": lb, "step_size": tau}


def scale_by_momo(learning_rate: Any = 1.0, b1: Any = 0.9, lower_bound: Any = 0.0, weight_decay: Any = 0.0,
                  adapt_lower_bound: bool = False) -> GradientTransformation:
  """MoMo's step (Schaipp et al. 2023, Algorithm 1), as ``optax.contrib.momo``.

  With ``α`` the learning rate, ``λ`` the weight decay, ``f_t`` the loss at
  ``x_t`` and ``β_1 = 0`` at the first step (the averages start there):

  .. math::

     \\bar f_t = \\beta \\bar f_{t-1} + (1-\\beta) f_t, \\quad
     d_t = \\beta d_{t-1} + (1-\\beta) g_t, \\quad
     \\gamma_t = \\beta \\gamma_{t-1} + (1-\\beta) \\langle g_t, x_t \\rangle, \\\\
     \\tau_t = \\min\\Big(\\alpha, \\frac{\\big((1+\\alpha\\lambda)(\\bar f_t - f_* - \\gamma_t)
       + \\langle d_t, x_t \\rangle\\big)_+}{\\|d_t\\|^2}\\Big), \\qquad
     u_t = \\frac{\\alpha\\lambda}{1+\\alpha\\lambda} x_t + \\tau_t d_t

  (``τ = 0`` while ``‖d‖² ≤ 2.2e-16``). ``adapt_lower_bound`` estimates
  ``f_*`` on the fly, from ``lower_bound`` up (the paper's Algorithm 3). The
  output is the step to subtract: follow it with ``scale_by_learning_rate(1.0)``,
  or use :func:`momo`. ``update`` needs the loss as the extra argument
  ``value`` (``gx.step`` passes it).

  Args:
    learning_rate: ``α ≥ 0``, the largest step size (1.0: choose it large).
    b1: ``β``, the decay of the averages (optax's ``beta``).
    lower_bound: ``f_*``, a lower bound on the loss (0 for non-negative losses).
    weight_decay: ``λ ≥ 0``.
    adapt_lower_bound: estimate ``f_*`` online.

  Returns:
    A transform with state :class:`ScaleByMomoState` (``step_size`` holds ``τ_t``).

  References:
    Schaipp, Ohana, Eickenberg, Defazio & Gower, 2023, "MoMo: Momentum Models
    for Adaptive Learning Rates", https://arxiv.org/abs/2305.07583
  """
  check_hyperparameter("scale_by_momo", "b1", b1, low=0.0, high=1.0, high_open=True,
                       hint="b1 is the averages' decay rate; use a value in [0, 1).")
  _check("scale_by_momo", learning_rate, lower_bound, weight_decay, adapt_lower_bound)
  return _ScaleByMomo(learning_rate, b1, lower_bound, weight_decay, adapt_lower_bound=adapt_lower_bound)


@named
def momo(learning_rate: Any = 1.0, b1: Any = 0.9, lower_bound: Any = 0.0, weight_decay: Any = 0.0,
         adapt_lower_bound: bool = False) -> GradientTransformation:
  """MoMo, as ``optax.contrib.momo``: ``chain(scale_by_momo(...), scale_by_learning_rate(1.0))``.

  SGD with momentum and the step size ``min(α, Polyak-type step)`` of
  :func:`scale_by_momo` (``state[0].step_size``); its update needs the
  extra argument ``value`` (the loss; ``gx.step`` passes it). optax calls
  ``b1`` ``beta``.

  References:
    Schaipp et al., 2023, https://arxiv.org/abs/2305.07583
  """
  return chain(scale_by_momo(learning_rate, b1, lower_bound, weight_decay, adapt_lower_bound),
               scale_by_learning_rate(1.0))


class ScaleByMomoAdamState(NamedTuple):
  """State of :func:`scale_by_momo_adam`: as :class:`ScaleByMomoState`, plus ``exp_avg_sq`` (Adam's ``v``)."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  exp_avg: Any
  exp_avg_sq: Any
  barf: jax.Array
  gamma: jax.Array
  lb: jax.Array
  step_size: jax.Array

  def diagnostics(self) -> dict:
    """``step_size`` (``τ_t``) and ``lb`` (the loss's lower bound), for :func:`gradxform.diagnostics`."""
    return {"step_size": self.step_size, "lb": self.lb}


class _ScaleByMomoAdam(Transform):
  learning_rate: Any
  b1: Any
  b2: Any
  eps: Any
  lower_bound: Any
  weight_decay: Any
  adapt_lower_bound: bool = static_field(default=False)
  State = ScaleByMomoAdamState

  def init_fields(self, params):
    name = "scale_by_momo_adam"
    dtype = scalar_dtype(params)
    zero = jnp.zeros([], dtype)
    return {"exp_avg": _tree.zeros_like(name, params), "exp_avg_sq": _tree.zeros_like(name, params),
            "barf": zero, "gamma": zero, "step_size": zero,
            "lb": self.resolve(jnp.zeros([], jnp.int32))["lower_bound"].astype(dtype)}

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_momo_adam"
    _tree.require_params(name, params, "form the model of the loss")
    dtype = state.barf.dtype
    hp = {k: v.astype(dtype) for k, v in hp.items()}
    b1, b2 = hp["b1"], hp["b2"]
    t = step_number(state, hp, "b1")
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    barf = b1 * state.barf + (1 - b1) * _loss_value(name, extra, params, dtype)
    gamma = b1 * state.gamma + (1 - b1) * vdot(updates, params, dtype)

    def moments(g, m, v, b1, b2, bc2, eps, stored):
      m, v = stored(b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g)
      return m / (eps + jnp.sqrt(v / bc2)), m, v

    scalars = {"b1": b1, "b2": b2, "bc2": bc2, "eps": hp["eps"]}
    weighted, m, v = _tree.leafwise(name, moments, updates, state.exp_avg, state.exp_avg_sq, scalars=scalars,
                                    stored=True)
    tau, lb = _polyak_step(hp, state, barf, gamma, vdot(m, weighted, dtype), vdot(m, params, dtype), bc1,
                           self.adapt_lower_bound)
    decay = hp["learning_rate"] * hp["weight_decay"]
    updates, _ = _tree.leafwise(name, lambda w, p, tau, c: (c * p + tau * w, p), weighted, params,
                                   check_dtype=(False,), scalars={"tau": tau, "c": decay / (1 + decay)})
    return updates, {"exp_avg": m, "exp_avg_sq": v, "barf": barf, "gamma": gamma, "lb": lb, "step_size": tau}


def scale_by_momo_adam(learning_rate: Any = 1e-2, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
                       lower_bound: Any = 0.0, weight_decay: Any = 0.0,
                       adapt_lower_bound: bool = False) -> GradientTransformation:
  """MoMo-Adam's step (Schaipp et al. 2023, Algorithm 2), as ``optax.contrib.momo_adam``.

  With ``D_t = ε + √(v_t/(1−β₂ᵗ))`` (Adam's preconditioner), ``ρ_t = 1 − β₁ᵗ``
  and ``m_t``, ``v_t``, ``f̄_t``, ``γ_t`` the ``β₁``/``β₂`` averages of
  ``g``, ``g²``, the loss and ``⟨g_t, x_t⟩`` (from zero):

  .. math::

     \\tau_t = \\min\\Big(\\frac{\\alpha}{\\rho_t}, \\frac{\\big((1+\\alpha\\lambda)(\\bar f_t - \\rho_t f_* - \\gamma_t)
       + \\langle m_t, x_t \\rangle\\big)_+}{\\langle m_t, m_t / D_t \\rangle}\\Big), \\qquad
     u_t = \\frac{\\alpha\\lambda}{1+\\alpha\\lambda} x_t + \\tau_t \\frac{m_t}{D_t}

  Otherwise as :func:`scale_by_momo` (its ``value`` extra argument, ``adapt_lower_bound``).

  Args:
    learning_rate: ``α ≥ 0`` (optax's default 1e-2).
    b1, b2, eps: Adam's decay rates and ``ε`` (outside the root).
    lower_bound, weight_decay, adapt_lower_bound: as in :func:`scale_by_momo`.

  Returns:
    A transform with state :class:`ScaleByMomoAdamState` (``step_size`` holds ``τ_t``).

  References:
    Schaipp et al., 2023, https://arxiv.org/abs/2305.07583
  """
  check_betas("scale_by_momo_adam", b1, b2, eps)
  _check("scale_by_momo_adam", learning_rate, lower_bound, weight_decay, adapt_lower_bound)
  return _ScaleByMomoAdam(learning_rate, b1, b2, eps, lower_bound, weight_decay,
                          adapt_lower_bound=adapt_lower_bound)


@named
def momo_adam(learning_rate: Any = 1e-2, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, lower_bound: Any = 0.0,
              weight_decay: Any = 0.0, adapt_lower_bound: bool = False) -> GradientTransformation:
  """MoMo-Adam, as ``optax.contrib.momo_adam``: ``chain(scale_by_momo_adam(...), scale_by_learning_rate(1.0))``.

  Adam(W) with the Polyak-type step size of :func:`scale_by_momo_adam`
  (``state[0].step_size``); its update needs the extra argument ``value``.

  References:
    Schaipp et al., 2023, https://arxiv.org/abs/2305.07583
  """
  return chain(scale_by_momo_adam(learning_rate, b1, b2, eps, lower_bound, weight_decay, adapt_lower_bound),
               scale_by_learning_rate(1.0))
