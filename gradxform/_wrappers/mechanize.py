"""Mechanic (Cutkosky, Defazio & Mehta 2023): learns the scale of any optimizer's updates by online betting."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import as_transform
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field
from gradxform._core.objective import scalar_dtype, vdot
from gradxform._optimizers.dog import copy_params
from gradxform._wrappers.averaging import _check_params

__all__ = ["MechanicState", "mechanize"]


class MechanicState(NamedTuple):
  """State of :func:`mechanize`.

  ``s`` holds the ``n`` scale factors ``s_i`` (their sum ``Σ s_i`` is the
  learned step size multiplying the inner optimizer's updates); ``r``, ``m``,
  ``v`` are the betting state per ``β_i`` (vectors of length ``num_betas``, in
  the parameters' widest dtype, at least float32); ``x0`` is the reference
  point (the parameters at the first update); ``inner_state`` the wrapped
  optimizer's state.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  inner_state: Any
  r: jax.Array
  m: jax.Array
  v: jax.Array
  s: jax.Array
  x0: Any

  def diagnostics(self) -> dict:
    """``step_size``: the learned scale ``Σ s_i``, for :func:`gradxform.diagnostics`."""
    return {"step_size": jnp.sum(self.s)}


class _Mechanize(Transform):
  inner: GradientTransformation
  weight_decay: Any
  eps: Any
  s_init: Any
  num_betas: int = static_field(default=6)
  State = MechanicState

  def init_fields(self, params):
    dtype = scalar_dtype(params)
    s_init = self.resolve(jnp.zeros([], jnp.int32))["s_init"].astype(dtype)
    zeros = jnp.zeros([self.num_betas], dtype)
    return {"inner_state": self.inner.init(params), "r": zeros, "m": zeros, "v": zeros,
            "s": jnp.full([self.num_betas], s_init, dtype), "x0": copy_params("mechanize", params)}

  def apply(self, updates, state, params, hp, **extra):
    name = "mechanize"
    _tree.require_params(name, params, "measure the distance from the reference point x_0")
    _check_params(name, params, state.x0)
    inner_updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)
    dtype = state.s.dtype
    hp = {k: v.astype(dtype) for k, v in hp.items()}
    eps, first = hp["eps"], state.count == 0
    x0 = jax.tree.map(lambda p, x0: jnp.where(first, p, x0), params, state.x0)
    s_sum = jnp.sum(state.s)
    grad_norm = jnp.sqrt(vdot(updates, updates, dtype))
    param_norm = jnp.sqrt(vdot(params, params, dtype))
    decay = hp["weight_decay"] * s_sum * grad_norm / (param_norm + eps)
    cast = lambda x: jnp.asarray(x).astype(_tree.compute_dtype(jnp.result_type(x)))
    # Δ_{t-1} = (x_0 − x_t)/(Σs + ε): the inner optimizer's accumulated updates, unscaled
    delta_prev = jax.tree.map(lambda x, x0: (cast(x0) - cast(x)) / (s_sum + eps).astype(cast(x).dtype),
                              params, x0)
    h = vdot(jax.tree.map(lambda g, p: cast(g) + decay.astype(cast(g).dtype) * cast(p), updates, params),
             delta_prev, dtype)
    betas = 1 - jnp.asarray([0.1 ** i for i in range(1, self.num_betas + 1)], dtype)
    m = jnp.maximum(betas * state.m, jnp.abs(h) + eps)
    v = betas ** 2 * state.v + h ** 2
    r = betas * state.r + jnp.clip(h, -state.m, state.m) * state.s
    wealth = hp["s_init"] / self.num_betas * m + jnp.maximum(r, 0)
    s = wealth / (jnp.sqrt(v) + eps)
    scale = jnp.sum(s)

    def step(u, d, x, x0):
      """x_{t+1} − x_t with x_{t+1} = x_0 − Σs·(Δ_{t-1} − u)."""
      if u is None:
        return None
      dt = cast(x).dtype
      return ((cast(x0) - scale.astype(dt) * (d - cast(u))) - cast(x)).astype(jnp.result_type(x))

    try:
      new_updates = jax.tree.map(step, inner_updates, delta_prev, params, x0, is_leaf=_tree.is_none)
    except ValueError:
      raise _tree._structure_error(name, "inner optimizer's update", inner_updates, params) from None
    return new_updates, {"inner_state": inner_state, "r": r, "m": m, "v": v, "s": s,
                         "x0": jax.tree.map(lambda a, b: a.astype(b.dtype), x0, state.x0)}


def mechanize(base_optimizer: Any, weight_decay: Any = 1e-2, eps: Any = 1e-8, s_init: Any = 1e-6,
              num_betas: int = 6) -> GradientTransformation:
  """Mechanic (Cutkosky et al. 2023, Algorithm 1), as ``optax.contrib.mechanize``: learns the step size of any optimizer.

  With ``u_t`` the inner optimizer's update (a negated step, as every named
  optimizer returns; its learning rate is best left at 1.0 or a schedule
  peaking at 1.0), ``Δ_{t-1} = (x_0 − x_t)/(Σs + ε)`` and ``β_i = 1 − 10^{-i}``:

  .. math::

     h_t = \\Big\\langle g_t + \\lambda\\, \\Sigma s\\, \\frac{\\|g_t\\|}{\\|x_t\\| + \\epsilon} x_t,\\ \\Delta_{t-1} \\Big\\rangle, \\\\
     m_i \\leftarrow \\max(\\beta_i m_i, |h_t| + \\epsilon), \\quad
     v_i \\leftarrow \\beta_i^2 v_i + h_t^2, \\quad
     r_i \\leftarrow \\beta_i r_i + \\operatorname{clip}(h_t, \\pm m_i^{old})\\, s_i, \\\\
     s_i \\leftarrow \\frac{s_{init} m_i / n + \\max(r_i, 0)}{\\sqrt{v_i} + \\epsilon}, \\qquad
     x_{t+1} = x_0 - \\Big(\\textstyle\\sum_i s_i\\Big) (\\Delta_{t-1} - u_t)

  The output is ``x_{t+1} − x_t``; ``x_0`` is the parameters at the first
  update. Extra arguments (``value=`` ...) pass through to the inner optimizer.

  Args:
    base_optimizer: the optimizer whose updates are scaled (gradxform or optax).
    weight_decay: ``λ ≥ 0``, Mechanic's own decay (not the inner optimizer's).
    eps: ``ε > 0``.
    s_init: ``s_{init} > 0``, the initial scale (each ``s_i`` starts there).
    num_betas: ``n ≥ 1``, how many decay rates ``β_i = 1 − 10^{-i}``.

  Returns:
    A transform with state :class:`MechanicState`: ``state.s.sum()`` is the
    learned step size.

  References:
    Cutkosky, Defazio & Mehta, 2023, "Mechanic: A Learning Rate Tuner",
    https://arxiv.org/abs/2306.00144
  """
  inner = as_transform(base_optimizer, "mechanize")
  check_hyperparameter("mechanize", "weight_decay", weight_decay, low=0.0,
                       hint="weight_decay is Mechanic's own decay; it must be >= 0 (e.g. 1e-2).")
  check_hyperparameter("mechanize", "eps", eps, low=0.0, low_open=True,
                       hint="eps must be a small positive number (e.g. 1e-8).")
  check_hyperparameter("mechanize", "s_init", s_init, low=0.0, low_open=True,
                       hint="s_init is the initial scale; use a small positive number (e.g. 1e-6).")
  if isinstance(num_betas, bool) or not isinstance(num_betas, int) or num_betas < 1:
    raise ValueError(f"mechanize: num_betas={num_betas!r} must be a positive integer (the number of decay rates "
                     "1 - 10^-i, e.g. 6).")
  return _Mechanize(inner, weight_decay, eps, s_init, num_betas=num_betas)
