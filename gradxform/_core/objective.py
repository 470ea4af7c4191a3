"""How transforms see the objective, and the little vector algebra they need.

Transforms that need more than the gradient receive the objective through the
extra keyword arguments of ``update`` (which :func:`gradxform.chain` forwards
to every stage):

* ``value``: the loss at ``params``;
* ``grad``: its gradient at ``params`` (the raw gradient, whatever earlier
  stages did to ``updates``);
* ``value_fn``: the loss function ``params -> scalar`` itself, to evaluate it
  (or its derivatives) elsewhere;
* any other keyword (``x=``, ``batch=``): data that ``value_fn`` takes by
  name, passed on to it as optax does (``value_fn(params, x=..., batch=...)``).

:func:`gradxform.step` passes all three. A transform that needs one that is
missing raises a ``TypeError`` at its first call naming the transform and the
argument. The rest of the module is tree algebra in a fixed precision (at
least float32, never relying on implicit dtype promotion): dot products,
``x + a·d``, and raveling a tree to one vector and back.

Complex leaves follow torch.optim's convention: a complex parameter is its real
view (``jnp.stack([z.real, z.imag], -1)``). Dot products are those of the real
views (``Re(vdot(a, b))``), :func:`ravel` lays out the real view, and the
gradient of a real loss is ``∂f/∂Re z + i·∂f/∂Im z`` (torch's; ``jax.grad``
returns its conjugate, which :func:`torch_grad` undoes).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree

__all__ = [
    "axpy",
    "check_like",
    "ravel",
    "ravel_size",
    "require_value_fn",
    "scalar_dtype",
    "torch_grad",
    "unravel_like",
    "value_and_grad",
    "vdot",
]

_HOW = ("gx.step(opt, loss_fn, params, state) and gx.minimize(opt, loss_fn, params) pass "
        "value, grad and value_fn for you; by hand, call opt.update(grads, state, params, "
        "value=loss, grad=grads, value_fn=loss_fn).")


_OBJECTIVE = ("value", "grad", "value_fn")


def data_arguments(value_fn: Callable, extra: dict) -> dict:
  """The extra arguments (``x=``, ``batch=``, ...) that ``value_fn`` accepts by name, as optax passes them.

  All of them if ``value_fn`` takes ``**kwargs``; none of ``value``, ``grad``
  and ``value_fn`` themselves.
  """
  data = {k: v for k, v in extra.items() if k not in _OBJECTIVE}
  if not data:
    return {}
  try:
    parameters = inspect.signature(value_fn).parameters.values()
  except (TypeError, ValueError):
    return {}
  if any(p.kind is p.VAR_KEYWORD for p in parameters):
    return data
  names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
  return {k: v for k, v in data.items() if k in names}


def require_value_fn(transform: str, extra: dict, why: str) -> Callable:
  """The loss function ``extra['value_fn']``, or a ``TypeError`` naming ``transform``.

  Extra data arguments of ``update`` that it accepts by name (``x=``,
  ``batch=``) are bound: the result is a function of the parameters only.
  """
  value_fn = extra.get("value_fn")
  if value_fn is None:
    raise TypeError(
        f"{transform}: needs the loss function as the extra argument value_fn (to {why}), "
        f"but update() got none. {_HOW}")
  if not callable(value_fn):
    raise TypeError(
        f"{transform}: value_fn must be the loss function params -> scalar, got "
        f"{type(value_fn).__name__}. {_HOW}")
  data = data_arguments(value_fn, extra)
  return functools.partial(value_fn, **data) if data else value_fn



def torch_grad(grad: Any) -> Any:
  """``jax.grad``'s gradient with complex leaves conjugated: ``∂f/∂Re z + i·∂f/∂Im z``, torch's convention."""
  return jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, grad)


def value_and_grad(transform: str, extra: dict, params: Any, why: str) -> tuple[Any, Any]:
  """``(value, grad)`` at ``params``: from ``extra`` when given, else from ``value_fn`` (see :func:`torch_grad`)."""
  value, grad = extra.get("value"), extra.get("grad")
  if value is not None and grad is not None:
    return value, grad
  value_fn = require_value_fn(transform, extra, why)
  if value is None and grad is None:
    value, grad = jax.value_and_grad(value_fn)(params)
    return value, torch_grad(grad)
  if value is None:
    return value_fn(params), grad
  return value, torch_grad(jax.grad(value_fn)(params))


def scalar_dtype(tree: Any) -> jnp.dtype:
  """The precision of scalar line-search and curvature arithmetic: the widest leaf (real: float64 for
  complex128), at least float32."""
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.dtype(jnp.float32)
  return _tree.compute_dtype(_tree.wider(*(_tree.real_dtype(jnp.result_type(x)) for x in leaves)))


def vdot(a: Any, b: Any, dtype: Any = None) -> jax.Array:
  """``Σ_leaves Σ_i a_i b_i`` of two trees of the same structure, in ``dtype`` (default: :func:`scalar_dtype`).

  Complex leaves enter as their real views: ``Re(vdot(a, b)) = Σ Re a·Re b + Im a·Im b``.
  """
  dtype = scalar_dtype((a, b)) if dtype is None else dtype
  return _tree.sum_of([_tree.dot(_tree.as_real(jnp.asarray(x)).astype(dtype), _tree.as_real(jnp.asarray(y)).astype(dtype))
                       for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))], dtype)


def axpy(alpha: jax.Array, direction: Any, x: Any) -> Any:
  """``x + α·d`` leaf by leaf, formed in at least float32 and cast back to each ``x`` leaf's dtype."""

  def one(d, p):
    p = jnp.asarray(p)
    dtype = _tree.compute_dtype(p.dtype)
    return (p.astype(dtype) + jnp.asarray(alpha).astype(dtype) * jnp.asarray(d).astype(dtype)).astype(p.dtype)

  return jax.tree.map(one, direction, x)


def ravel(tree: Any, dtype: Any) -> jax.Array:
  """All leaves of ``tree`` as one vector of the real ``dtype`` (each leaf cast explicitly; a complex leaf
  as its real view, two entries per element, as torch's L-BFGS)."""
  # leaves split over Explicit mesh axes are gathered first: one vector has one layout
  leaves = [jnp.ravel(_tree.as_real(_tree.replicated(jnp.asarray(x)))).astype(dtype) for x in jax.tree.leaves(tree)]
  if not leaves:
    return jnp.zeros((0,), dtype)
  return jnp.concatenate(leaves)


def ravel_size(tree: Any) -> int:
  """The length of :func:`ravel`'s vector: the number of entries, a complex one counting twice."""
  return sum(int(jnp.size(x)) * (2 if jnp.iscomplexobj(x) else 1) for x in jax.tree.leaves(tree))


def unravel_like(flat: jax.Array, tree: Any) -> Any:
  """The inverse of :func:`ravel`: a tree like ``tree`` (same shapes and dtypes) from a vector."""
  leaves, treedef = jax.tree.flatten(tree)
  out, start = [], 0
  for leaf in leaves:
    leaf = jnp.asarray(leaf)
    if jnp.iscomplexobj(leaf):  # the real view: (..., 2) entries, back to complex
      piece = _tree.as_complex(flat[start:start + 2 * leaf.size].reshape(leaf.shape + (2,)), leaf.dtype)
      start += 2 * leaf.size
    else:
      piece = flat[start:start + leaf.size].reshape(leaf.shape).astype(leaf.dtype)
      start += leaf.size
    out.append(_tree.sharded_like(piece, leaf))  # back to the leaf's layout (Explicit mesh axes)
  return jax.tree.unflatten(treedef, out)


def check_like(transform: str, what: str, tree: Any, params: Any) -> None:
  """Raises a ``ValueError`` naming the leaf if ``tree`` and ``params`` differ in structure or shapes."""
  if jax.tree.structure(tree) != jax.tree.structure(params):
    raise ValueError(
        f"{transform}: the {what} tree has structure {jax.tree.structure(tree)}, but params have "
        f"{jax.tree.structure(params)}. Pass a {what} with the structure of the params.")
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(tree)[0], jax.tree.leaves(params)):
    if jnp.shape(a) != jnp.shape(b):
      raise ValueError(
          f"{transform}: the {what} at {_tree.keystr(path)} has shape {jnp.shape(a)}, but the "
          f"parameter has shape {jnp.shape(b)}. Pass a {what} shaped like the params.")
