"""D-Adaptation (Defazio & Mishchenko 2023): AdamW whose step size ``d`` is a lower bound on the distance to a solution."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, named, step_number
from gradxform._core.objective import scalar_dtype, vdot
from gradxform._optimizers.prodigy import check_d_options, l1_norm
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["ScaleByDadaptAdamwState", "dadapt_adamw", "scale_by_dadapt_adamw"]


class ScaleByDadaptAdamwState(NamedTuple):
  """State of :func:`scale_by_dadapt_adamw`.

  ``d`` is the estimated step size ``d_t`` (optax's ``estim_lr``) and
  ``numerator_weighted`` the running numerator ``r_t`` of its estimate (scalars
  in the parameters' widest dtype, at least float32); ``exp_avg``,
  ``exp_avg_sq`` and ``grad_sum`` are ``m``, ``v`` and ``s``.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  exp_avg: Any
  exp_avg_sq: Any
  grad_sum: Any
  d: jax.Array
  numerator_weighted: jax.Array

  def diagnostics(self) -> dict:
    """``d``: the estimated step size (for :func:`gradxform.diagnostics`)."""
    return {"d": self.d}


class _ScaleByDadaptAdamw(Transform):
  learning_rate: Any
  b1: Any
  b2: Any
  eps: Any
  estim_lr0: Any
  weight_decay: Any
  State = ScaleByDadaptAdamwState

  def init_fields(self, params):
    name = "scale_by_dadapt_adamw"
    dtype = scalar_dtype(params)
    return {"exp_avg": _tree.zeros_like(name, params), "exp_avg_sq": _tree.zeros_like(name, params),
            "grad_sum": _tree.zeros_like(name, params),
            "d": self.resolve(jnp.zeros([], jnp.int32))["estim_lr0"].astype(dtype),
            "numerator_weighted": jnp.zeros([], dtype)}

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_dadapt_adamw"
    _tree.require_params(name, params, "apply the decoupled weight decay")
    dtype = state.d.dtype
    hp = {k: v.astype(dtype) for k, v in hp.items()}
    b1, b2 = hp["b1"], hp["b2"]
    sb2 = jnp.sqrt(b2)
    t = step_number(state, hp, "b1")
    dlr = state.d * hp["learning_rate"] * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)

    def weighted(s, v):
      dt = _tree.compute_dtype(jnp.result_type(s))
      return s.astype(dt) / (jnp.sqrt(v.astype(dt)) + hp["eps"].astype(dt))

    # <g_t, s_{t-1} / (sqrt(v_{t-1}) + eps)>, from the previous state
    numerator_acum = vdot(updates, jax.tree.map(weighted, state.grad_sum, state.exp_avg_sq), dtype)

    def rule(g, m, v, s, p, dlr, b1, b2, sb2, eps, weight_decay, after, stored):
      # A donated step updates v and s in place: "+ after" adds 0 * numerator_acum (exactly zero) so that the
      # loops overwriting them run after the reduction that reads their old values, and rem(x, inf) = x (finite
      # x) materializes each in a loop of its own, so that no later loop recomputes it from the old value.
      inf = jnp.full_like(g, jnp.inf)
      m, v, s = stored(b1 * m + (1 - b1) * dlr * g, lax.rem(b2 * v + (1 - b2) * g * g + after, inf),
                       lax.rem(sb2 * s + (1 - sb2) * dlr * g + after, inf))
      return m / (jnp.sqrt(v) + eps) + weight_decay * dlr * p, m, v, s, p

    updates, m, v, s, _ = _tree.leafwise(
        name, rule, updates, state.exp_avg, state.exp_avg_sq, state.grad_sum, params,
        check_dtype=(True, True, True, False), stored=True,
        scalars={"dlr": dlr, "b1": b1, "b2": b2, "sb2": sb2, "eps": hp["eps"], "weight_decay": hp["weight_decay"],
                 # rem(·, inf) keeps 0 (and NaN) and is "expensive" to XLA, so the N-leaf inner product behind it
                 # is computed once instead of copied into each leaf's loop (O(N²) to compile otherwise)
                 "after": lax.rem(0 * numerator_acum, jnp.asarray(jnp.inf, numerator_acum.dtype))})
    numerator = sb2 * state.numerator_weighted + (1 - sb2) * dlr * numerator_acum
    denominator = (1 - sb2) * l1_norm(s, dtype)
    # optax's estimate is 0/0 = NaN while every gradient so far was zero; d then stays as it was
    estimate = numerator / jnp.where(denominator > 0, denominator, 1)
    new_d = jnp.where(denominator > 0, jnp.maximum(state.d, estimate), state.d)
    return updates, {"exp_avg": m, "exp_avg_sq": v, "grad_sum": s, "d": new_d, "numerator_weighted": numerator}


def scale_by_dadapt_adamw(learning_rate: Any = 1.0, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
                          estim_lr0: Any = 1e-6, weight_decay: Any = 0.0) -> GradientTransformation:
  """D-Adapted AdamW's step (Defazio & Mishchenko 2023, Algorithm 4), as ``optax.contrib.dadapt_adamw``.

  With ``η_t`` the learning rate (a multiplier, 1 by default),
  ``d̂_t = d_t η_t √(1−β₂ᵗ)/(1−β₁ᵗ)`` and ``β = √β₂``:

  .. math::

     r_t = \\beta r_{t-1} + (1-\\beta)\\, \\hat d_t
           \\Big\\langle g_t, \\frac{s_{t-1}}{\\sqrt{v_{t-1}} + \\epsilon} \\Big\\rangle, \\\\
     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) \\hat d_t g_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2, \\quad
     s_t = \\beta s_{t-1} + (1-\\beta) \\hat d_t g_t, \\\\
     d_{t+1} = \\max\\Big(d_t, \\frac{r_t}{(1-\\beta)\\|s_t\\|_1}\\Big), \\quad
     u_t = \\frac{m_t}{\\sqrt{v_t} + \\epsilon} + \\lambda \\hat d_t x_t

  The step sizes are accumulated inside ``m``, so the learning rate is an
  argument here, not a separate stage: follow with
  ``scale_by_learning_rate(1.0)``, or use :func:`dadapt_adamw`. While every
  gradient so far is zero optax's ``d`` becomes NaN; here it keeps its value.

  Args:
    learning_rate: ``η ≥ 0``, a multiplier of the estimated step size (its
      schedule's shape, e.g. a linear decay from 1.0 with warmup).
    b1, b2: Adam's decay rates (optax's ``betas``).
    eps: ``ε`` of Adam's denominator.
    estim_lr0: ``d_0 > 0``, the initial under-estimate of the step size.
    weight_decay: ``λ ≥ 0``, decoupled weight decay scaled by ``d̂_t``.

  Returns:
    A transform with state :class:`ScaleByDadaptAdamwState`; ``d`` is the estimated step size.

  References:
    Defazio & Mishchenko, 2023, "Learning-Rate-Free Learning by
    D-Adaptation", https://arxiv.org/abs/2301.07733
  """
  name = "scale_by_dadapt_adamw"
  check_betas(name, b1, b2)
  check_d_options(name, learning_rate, eps, estim_lr0, weight_decay)
  return _ScaleByDadaptAdamw(learning_rate, b1, b2, eps, estim_lr0, weight_decay)


@named
def dadapt_adamw(learning_rate: Any = 1.0, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
                 estim_lr0: Any = 1e-6, weight_decay: Any = 0.0) -> GradientTransformation:
  """D-Adapted AdamW, as ``optax.contrib.dadapt_adamw``: ``chain(scale_by_dadapt_adamw(...), scale_by_learning_rate(1.0))``.

  Learning-rate-free AdamW: the step size ``d`` is estimated from the
  gradients seen (see :func:`scale_by_dadapt_adamw`; ``state[0].d`` holds it).
  ``learning_rate`` is a multiplier of ``d`` (1.0 by default).

  References:
    Defazio & Mishchenko, 2023, https://arxiv.org/abs/2301.07733
  """
  return chain(scale_by_dadapt_adamw(learning_rate, b1, b2, eps, estim_lr0, weight_decay),
               scale_by_learning_rate(1.0))
