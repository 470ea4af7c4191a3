"""L-BFGS: a quasi-Newton direction from the last ``m`` steps and gradient changes."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform
from gradxform._core.module import static_field
from gradxform._core.objective import ravel, ravel_size, scalar_dtype, unravel_like
from gradxform._core.hyperparams import named as _named
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._second_order.zoom import scale_by_zoom_linesearch
from gradxform._transforms.options import check_flag

__all__ = ["ScaleByLbfgsState", "lbfgs", "scale_by_lbfgs"]


class ScaleByLbfgsState(NamedTuple):
  """State of :func:`scale_by_lbfgs`, over the raveled parameters (length ``n``; a complex entry counts twice).

  ``diffs_params`` and ``diffs_grads`` (shape ``(m, n)``) hold the pairs
  ``s_i = x_{i+1} − x_i`` and ``y_i = g_{i+1} − g_i``, oldest first, newest in
  the last row; ``rhos`` holds ``1 / s_iᵀy_i``; only the last ``num_pairs``
  rows are filled. ``params`` and ``grad`` are the point and gradient of the
  last update.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  diffs_params: jax.Array
  diffs_grads: jax.Array
  rhos: jax.Array
  num_pairs: jax.Array  # int32 scalar
  params: jax.Array
  grad: jax.Array


def two_loop_recursion(diffs_params, diffs_grads, rhos, num_pairs, grad, gamma):
  """``H_k g`` with ``H_k^0 = γI`` (Nocedal & Wright, Algorithm 7.4), masking unfilled rows."""
  m = diffs_params.shape[0]
  dtype = grad.dtype

  def backward(i, carry):  # newest to oldest
    q, alphas = carry
    j = m - 1 - i
    alpha = jnp.where(j >= m - num_pairs, rhos[j] * jnp.vdot(diffs_params[j], q), jnp.zeros((), dtype))
    return q - alpha * diffs_grads[j], alphas.at[j].set(alpha)

  q, alphas = jax.lax.fori_loop(0, m, backward, (grad, jnp.zeros((m,), dtype)))

  def forward(j, r):  # oldest to newest
    beta = rhos[j] * jnp.vdot(diffs_grads[j], r)
    return r + jnp.where(j >= m - num_pairs, alphas[j] - beta, jnp.zeros((), dtype)) * diffs_params[j]

  return jax.lax.fori_loop(0, m, forward, gamma * q)


class _ScaleByLbfgs(Transform):
  memory_size: int = static_field(default=10)
  scale_init_precond: bool = static_field(default=True)
  State = ScaleByLbfgsState
  complex_ok = True  # a complex leaf is raveled as its real view, as torch.optim.LBFGS

  def init_fields(self, params):
    _tree.check_floating("scale_by_lbfgs", params, "parameter", allow_complex=True)
    dtype = scalar_dtype(params)
    n = ravel_size(params)
    zeros = lambda *shape: jnp.zeros(shape, dtype)
    return {"diffs_params": zeros(self.memory_size, n), "diffs_grads": zeros(self.memory_size, n),
            "rhos": zeros(self.memory_size), "num_pairs": jnp.zeros((), jnp.int32),
            "params": zeros(n), "grad": zeros(n)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params("scale_by_lbfgs", params, "form the step s = x_k - x_(k-1)")
    _tree.check_floating("scale_by_lbfgs", updates, "update", allow_complex=True)
    dtype = state.params.dtype
    x, g = ravel(params, dtype), ravel(updates, dtype)
    if x.shape != state.params.shape:
      raise ValueError(
          f"scale_by_lbfgs: the params have {x.size} entries in all, but the state was built for "
          f"{state.params.size}. Call init() again for the new parameter tree.")
    s, y = x - state.params, g - state.grad
    sy = jnp.vdot(s, y)
    # Keep the pair only if it has positive curvature (so H_k stays positive definite), beyond
    # the rounding error of sᵀy itself: ε·Σ|s_i||y_i| scales as sᵀy does, so the test does not
    # depend on the scale of the loss or of the parameters.
    accept = (state.count > 0) & (sy > jnp.finfo(dtype).eps * jnp.vdot(jnp.abs(s), jnp.abs(y))) & jnp.isfinite(sy)
    push = lambda buffer, row: jnp.where(accept, jnp.roll(buffer, -1, axis=0).at[-1].set(row), buffer)
    rho = 1 / jnp.where(accept, sy, 1)
    diffs_params, diffs_grads = push(state.diffs_params, s), push(state.diffs_grads, y)
    rhos = push(state.rhos, rho)
    num_pairs = jnp.where(accept, jnp.minimum(state.num_pairs + 1, self.memory_size), state.num_pairs)
    # H_0 = γI: γ = sᵀy / yᵀy of the newest pair; before any pair, the step is capped at
    # length 1 (γ = min(1, 1/‖g‖)), as L-BFGS-B's first iteration.
    first = jnp.minimum(1, 1 / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(dtype).tiny))
    newest = jnp.vdot(diffs_params[-1], diffs_grads[-1]) / jnp.maximum(
        jnp.vdot(diffs_grads[-1], diffs_grads[-1]), jnp.finfo(dtype).tiny)
    gamma = jnp.where(num_pairs > 0, newest if self.scale_init_precond else 1, first)
    direction = two_loop_recursion(diffs_params, diffs_grads, rhos, num_pairs, g, gamma.astype(dtype))
    return unravel_like(direction, updates), {
        "diffs_params": diffs_params, "diffs_grads": diffs_grads, "rhos": rhos,
        "num_pairs": num_pairs, "params": x, "grad": g}


def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> GradientTransformation:
  """The L-BFGS direction: the incoming gradient times the limited-memory inverse-Hessian estimate.

  From the last ``m`` pairs ``s_i = x_{i+1} − x_i`` and ``y_i = g_{i+1} − g_i``
  (where ``g`` is the incoming update at ``params``), the two-loop recursion
  applies the BFGS inverse-Hessian estimate to ``g_k``:

  .. math::

     H_{i+1} = (I - \\rho_i s_i y_i^\\top) H_i (I - \\rho_i y_i s_i^\\top) + \\rho_i s_i s_i^\\top,
     \\quad \\rho_i = \\frac{1}{s_i^\\top y_i}, \\qquad
     H_k^0 = \\gamma_k I, \\ \\gamma_k = \\frac{s_{k-1}^\\top y_{k-1}}{y_{k-1}^\\top y_{k-1}},
     \\qquad u_k = H_k\\, g_k

  A pair enters the memory only if ``sᵀy > ε_mach · Σ_j |s_j||y_j|``: positive
  curvature beyond the rounding error of ``sᵀy``, a test that does not depend
  on the scale of the loss or of the parameters. It keeps ``H_k`` positive
  definite, so ``u`` is a descent direction. Before the first pair, ``u = min(1, 1/‖g‖) · g``. The memory is
  a ring of arrays of shape ``(m, n)`` over the raveled parameters, and the
  recursion is two ``lax.fori_loop`` loops with masks for unfilled rows, so the
  update is jittable. Complex parameters follow torch's convention, as their
  real view (``x``, ``g``, ``s`` and ``y`` are real vectors). Follow it with a line search
  (:func:`scale_by_zoom_linesearch`, which satisfies the Wolfe conditions that
  BFGS theory assumes) or a learning rate; :func:`lbfgs` does.

  Args:
    memory_size: ``m ≥ 1``, the number of pairs kept (static).
    scale_init_precond: use ``γ_k I`` as the initial inverse Hessian (else ``I``).

  Returns:
    A transform with state :class:`ScaleByLbfgsState`; its update needs ``params``.

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Algorithms 7.4
    and 7.5, https://doi.org/10.1007/978-0-387-40065-5; Liu & Nocedal, 1989,
    https://doi.org/10.1007/BF01589116
  """
  scale_init_precond = check_flag("scale_by_lbfgs", "scale_init_precond", scale_init_precond)
  if not isinstance(memory_size, int) or isinstance(memory_size, bool) or memory_size < 1:
    raise ValueError(f"scale_by_lbfgs: memory_size={memory_size!r} must be an integer >= 1 "
                     "(the number of past steps kept; 5 to 20 is typical).")
  return _ScaleByLbfgs(memory_size=memory_size, scale_init_precond=bool(scale_init_precond))


@_named
def lbfgs(learning_rate: Optional[Any] = None, memory_size: int = 10,
          linesearch: Optional[GradientTransformation] = None) -> GradientTransformation:
  """L-BFGS with a line search (by default a strong-Wolfe zoom search), or a fixed learning rate.

  ``chain(scale_by_lbfgs(memory_size), linesearch)`` with ``linesearch``
  defaulting to :func:`scale_by_zoom_linesearch` (which chooses the step and
  negates it); with a ``learning_rate``, ``chain(scale_by_lbfgs(memory_size),
  scale_by_learning_rate(learning_rate))``. The update needs ``params``, and
  a line search needs ``value``, ``grad`` and ``value_fn``: use ``gx.step`` or
  ``gx.minimize``. Complex parameters follow torch's convention, as their real
  view (as ``torch.optim.LBFGS`` does).

  Args:
    learning_rate: ``None`` (use the line search) or a fixed ``η ≥ 0``.
    memory_size: the number of past pairs kept.
    linesearch: the step-size stage (e.g. ``scale_by_backtracking_linesearch()``).

  Returns:
    A chain.

  Example::

      params, state, num_steps = gx.minimize(gx.lbfgs(), loss_fn, params, max_steps=100)

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Algorithm 7.5,
    https://doi.org/10.1007/978-0-387-40065-5
  """
  if learning_rate is not None and linesearch is not None:
    raise ValueError("lbfgs: pass a learning_rate or a linesearch, not both (a line search chooses "
                     "the step itself).")
  if learning_rate is not None:
    return chain(scale_by_lbfgs(memory_size), scale_by_learning_rate(learning_rate))
  if linesearch is None:
    linesearch = scale_by_zoom_linesearch()
  return chain(scale_by_lbfgs(memory_size), linesearch)
