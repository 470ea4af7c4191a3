"""Running the optimizer for the user: one step (``step``) or a whole minimization (``minimize``)."""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import apply_updates
from gradxform._core.chain import as_transform
from gradxform._core.objective import torch_grad

__all__ = ["MinimizeResult", "minimize", "step"]


def _check_loss_fn(where: str, loss_fn: Any) -> None:
  if not callable(loss_fn):
    raise TypeError(f"{where}: loss_fn must be a function params -> scalar loss, got {type(loss_fn).__name__}.")


def _value_and_grad(where: str, loss_fn: Callable, params: Any) -> tuple[jax.Array, Any]:
  shape = jnp.shape(jax.eval_shape(loss_fn, params))
  if shape != ():
    raise ValueError(f"{where}: loss_fn must return a scalar, got shape {shape}. "
                     "Reduce the loss (e.g. with jnp.mean) before returning it.")
  value, grad = jax.value_and_grad(loss_fn)(params)
  return value, torch_grad(grad)  # complex leaves: torch's gradient, the conjugate of jax.grad's


def step(opt: Any, loss_fn: Callable[..., jax.Array], params: Any, state: Any,
         **data: Any) -> tuple[Any, Any, jax.Array]:
  """One optimizer step on ``loss_fn``, passing the objective to every stage.

  .. math::

     (f, g) = (f(x), \\nabla f(x)), \\qquad
     (u, s) = \\text{opt.update}(g, s, x,\\ \\text{value}=f,\\ \\text{grad}=g,\\ \\text{value\\_fn}=f),
     \\qquad x \\leftarrow x + u

  Transforms that need the loss (line searches, the curvature step, Newton,
  Sophia, Polyak) find it in these extra arguments; the others ignore them.
  Data keywords (``gx.step(opt, loss_fn, params, state, batch=batch)``) go
  to ``loss_fn(params, batch=batch)`` here and wherever a stage evaluates it.
  ``loss_fn`` is a Python function: under ``jax.jit`` make it static or
  close over it, e.g. ``jax.jit(gx.step, static_argnums=1)``, or call
  ``gx.step`` inside a jitted function (close over data batches there).
  Complex parameters follow torch's convention, as their real view: ``g`` is
  torch's gradient ``∂f/∂Re z + i·∂f/∂Im z``, the conjugate of ``jax.grad``'s.

  Args:
    opt: a gradxform transform (an optax transform is wrapped, as in ``chain``).
    loss_fn: ``params -> scalar loss`` (``(params, **data) -> scalar`` with data).
    params: the current parameters.
    state: the optimizer state (``opt.init(params)`` at the start).
    **data: keyword arguments of ``loss_fn`` besides the parameters (a batch).

  Returns:
    ``(new_params, new_state, value)``, where ``value`` is the loss at the
    *old* params (computed with the gradient).

  Example::

      state = opt.init(params)
      for _ in range(100):
        params, state, loss = gx.step(opt, loss_fn, params, state)

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Chapter 2 (line
    search and trust-region iterations), https://doi.org/10.1007/978-0-387-40065-5
  """
  _check_loss_fn("step", loss_fn)
  opt = as_transform(opt, "step")
  value, grad = _value_and_grad("step", functools.partial(loss_fn, **data) if data else loss_fn, params)
  updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss_fn, **data)
  return apply_updates(params, updates), state, value


class MinimizeResult(NamedTuple):
  """What :func:`minimize` returns: the parameters, the optimizer state and the number of steps taken."""

  params: Any
  state: Any
  num_steps: jax.Array  # int32 scalar


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _minimize(opt, loss_fn, params, state, max_steps, tol):
  value, grad = _value_and_grad("minimize", loss_fn, params)

  def cond(carry):
    k, _, _, _, grad = carry
    norm = _tree.global_norm(grad)
    return (k < max_steps) & (norm > tol.astype(norm.dtype))

  def body(carry):
    k, params, state, value, grad = carry
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss_fn)
    params = apply_updates(params, updates)
    value, grad = _value_and_grad("minimize", loss_fn, params)
    return k + 1, params, state, value, grad

  k, params, state, _, _ = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), params, state, value, grad))
  return MinimizeResult(params, state, k)


def minimize(opt: Any, loss_fn: Callable[[Any], jax.Array], params: Any, *, max_steps: int = 100,
             tol: float = 1e-6, state: Optional[Any] = None) -> MinimizeResult:
  """Minimizes ``loss_fn`` from ``params`` with ``opt``, as one jitted ``lax.while_loop``.

  .. math::

     x_{k+1} = x_k + u_k \\ \\text{(as in :func:`step`)} \\quad \\text{while} \\quad
     k < \\text{max\\_steps} \\ \\text{and} \\ \\|\\nabla f(x_k)\\|_2 > \\text{tol}

  It also stops when the gradient is not finite. The loop is compiled once
  per ``loss_fn`` object and optimizer structure: hyperparameters,
  ``max_steps`` and ``tol`` are traced, so new values do not recompile (keep
  the same ``loss_fn`` object to reuse the compiled loop).

  Args:
    opt: a gradxform transform (or an optax one).
    loss_fn: ``params -> scalar loss`` (a Python function; it is a static argument).
    params: the starting point.
    max_steps: the most updates.
    tol: stop once the gradient's Euclidean norm is at most ``tol``.
    state: a state to continue from (default: ``opt.init(params)``).

  Returns:
    A :class:`MinimizeResult` ``(params, state, num_steps)``.

  Example::

      params, state, num_steps = gx.minimize(gx.lbfgs(), loss_fn, params, max_steps=200, tol=1e-8)

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Algorithm 7.5,
    https://doi.org/10.1007/978-0-387-40065-5
  """
  _check_loss_fn("minimize", loss_fn)
  opt = as_transform(opt, "minimize")
  if state is None:
    state = opt.init(params)
  return _minimize(opt, loss_fn, params, state, jnp.asarray(max_steps, jnp.int32), jnp.asarray(tol))
