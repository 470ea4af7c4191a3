"""optax's L-BFGS: its memory rule, its first step, and its default zoom line search."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

import gradxform as gx
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, named
from gradxform._core.module import static_field
from gradxform._core.objective import ravel, scalar_dtype, unravel_like
from gradxform._second_order.lbfgs import two_loop_recursion
from gradxform._transforms.options import check_flag
from gradxform.optax_like._zoom import scale_by_zoom_linesearch

__all__ = ["ScaleByLBFGSState", "lbfgs", "scale_by_lbfgs"]


class ScaleByLBFGSState(NamedTuple):
  """State of :func:`scale_by_lbfgs`, over the raveled parameters (length ``n``).

  ``diff_params_memory`` and ``diff_updates_memory`` (shape ``(m, n)``) hold
  the last ``m`` pairs ``s_i = w_{i+1} − w_i``, ``y_i = g_{i+1} − g_i``, oldest
  first; ``weights_memory`` their ``ρ_i`` (0 for empty rows). ``params`` and
  ``updates`` are the point and incoming update of the last call. (No field is
  named ``grad`` or ``value``: :func:`optax.value_and_grad_from_state` reads
  those from the line search's state.)
  """

  count: jax.Array  # int32 scalar
  params: jax.Array
  updates: jax.Array
  diff_params_memory: jax.Array
  diff_updates_memory: jax.Array
  weights_memory: jax.Array
  hyperparams: dict  # last, so that the other fields are at optax's positions


class _ScaleByLbfgs(Transform):
  memory_size: int = static_field(default=10)
  scale_init_precond: bool = static_field(default=True)
  State = ScaleByLBFGSState

  def init_fields(self, params):
    dtype = scalar_dtype(params)
    n = sum(int(jnp.size(x)) for x in jax.tree.leaves(params))
    zeros = lambda *shape: jnp.zeros(shape, dtype)
    return {"params": zeros(n), "updates": zeros(n), "diff_params_memory": zeros(self.memory_size, n),
            "diff_updates_memory": zeros(self.memory_size, n), "weights_memory": zeros(self.memory_size)}

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_lbfgs"
    _tree.require_params(name, params, "form the step s = w_k - w_(k-1)")
    _tree.check_floating(name, updates, "update")
    dtype = state.params.dtype
    w, g = ravel(params, dtype), ravel(updates, dtype)
    if w.shape != state.params.shape:
      raise ValueError(f"{name}: the params have {w.size} entries in all, but the state was built for "
                       f"{state.params.size}. Call init() again for the new parameter tree.")
    first = state.count == 0
    s = jnp.where(first, jnp.zeros_like(w), w - state.params)
    y = jnp.where(first, jnp.zeros_like(g), g - state.updates)
    sy = jnp.vdot(y, s)
    rho = jnp.where(sy == 0, jnp.zeros_like(sy), 1 / sy)  # every pair is kept; ρ = 0 only for sᵀy = 0
    push = lambda memory, row: jnp.roll(memory, -1, axis=0).at[-1].set(row)
    s_memory, y_memory, rhos = push(state.diff_params_memory, s), push(state.diff_updates_memory, y), push(
        state.weights_memory, rho)
    if self.scale_init_precond:
      yy = jnp.sum(jnp.square(y))
      gamma = jnp.where(yy > 0, sy / yy, jnp.ones_like(yy))
      gamma = jnp.where(first, jnp.minimum(1, 1 / jnp.sqrt(jnp.sum(jnp.square(g)))), gamma)
    else:
      gamma = jnp.ones((), dtype)
    direction = two_loop_recursion(s_memory, y_memory, rhos, self.memory_size, g, gamma.astype(dtype))
    return unravel_like(direction, updates), {
        "params": w, "updates": g, "diff_params_memory": s_memory, "diff_updates_memory": y_memory,
        "weights_memory": rhos}


def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> GradientTransformation:
  """``optax.scale_by_lbfgs``: the update times optax's limited-memory inverse-Hessian estimate ``P_k``.

  With ``s_i = w_{i+1} − w_i``, ``y_i = u_{i+1} − u_i`` (``u`` the incoming
  update) and ``ρ_i = 1/(s_iᵀy_i)`` (0 when ``s_iᵀy_i = 0``), the two-loop
  recursion applies

  .. math::

     P_{j+1} = (I - \\rho_j s_j y_j^\\top) P_j (I - \\rho_j y_j s_j^\\top) + \\rho_j s_j s_j^\\top,
     \\quad P_{k-m} = \\gamma_k I, \\quad
     \\gamma_k = \\frac{s_{k-1}^\\top y_{k-1}}{y_{k-1}^\\top y_{k-1}}, \\quad \\gamma_0 = \\min(1, 1/\\|u_0\\|)

  (``γ_k = 1`` with ``scale_init_precond=False``, the first step included, or
  when ``y_{k−1} = 0``). Unlike :func:`gradxform.scale_by_lbfgs`, every pair
  enters the memory, curved or not, and ``γ`` comes from the newest pair.
  Reproduces ``optax.scale_by_lbfgs``'s numbers.

  Args:
    memory_size: ``m ≥ 1``, the pairs kept (static).
    scale_init_precond: start from ``γ_k I`` (else ``I``).

  Returns:
    A transform with state :class:`ScaleByLBFGSState`; its update needs ``params``.

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Algorithms 7.4
    and 7.5, https://doi.org/10.1007/978-0-387-40065-5
  """
  scale_init_precond = check_flag("scale_by_lbfgs", "scale_init_precond", scale_init_precond)
  if not isinstance(memory_size, int) or isinstance(memory_size, bool) or memory_size < 1:
    raise ValueError(f"scale_by_lbfgs: memory_size={memory_size!r} must be an integer >= 1 "
                     "(the number of past steps kept; 5 to 20 is typical).")
  return _ScaleByLbfgs(memory_size=memory_size, scale_init_precond=bool(scale_init_precond))


@named
def lbfgs(learning_rate: Optional[Any] = None, memory_size: int = 10, scale_init_precond: bool = True,
          linesearch: Optional[GradientTransformation] = scale_by_zoom_linesearch(
              max_linesearch_steps=20, initial_guess_strategy="one")) -> GradientTransformation:
  """``optax.lbfgs``: ``chain(scale_by_lbfgs, scale(−1) or scale_by_learning_rate, linesearch)``.

  The L-BFGS direction ``P_k g_k`` (:func:`scale_by_lbfgs`) is negated (or
  scaled by ``−η`` with a ``learning_rate``), then the line search picks the
  step: by default :func:`scale_by_zoom_linesearch` with 20 trials starting
  from ``η = 1``; ``linesearch=None`` takes the step as is. The update needs
  ``params`` and, with a line search, ``value``, ``grad`` and ``value_fn``
  (``optax.value_and_grad_from_state`` reuses the search's last evaluation).
  Reproduces ``optax.lbfgs``'s numbers (``gx.lbfgs`` is a different variant:
  curvature-tested pairs and a strong-Wolfe search that negates).

  Args:
    learning_rate: ``None`` (unit scale, the line search chooses) or a fixed ``η``.
    memory_size: the pairs kept.
    scale_init_precond: start from ``γ_k I`` (see :func:`scale_by_lbfgs`).
    linesearch: the step-size stage, or ``None``.

  Returns:
    A chain.

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Algorithm 7.5,
    https://doi.org/10.1007/978-0-387-40065-5; Liu & Nocedal, 1989,
    https://doi.org/10.1007/BF01589116
  """
  scaling = gx.scale(-1.0) if learning_rate is None else gx.scale_by_learning_rate(learning_rate)
  return gx.chain(scale_by_lbfgs(memory_size, scale_init_precond), scaling,
                  gx.identity() if linesearch is None else linesearch)
