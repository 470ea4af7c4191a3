"""The protocol: a gradient transformation is a pure ``(init, update)`` pair.

``init(params) -> state`` builds the optimizer state; ``update(updates, state,
params=None, **extra) -> (updates, state)`` turns gradients into updates. The
objects are pytrees (see :mod:`gradxform._module`), so they cross ``jax.jit``
and ``jax.vmap`` boundaries with their numeric hyperparameters as leaves, and
they duck-type as optax transforms in both directions.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core.module import Module, static_field
from gradxform._core.rounding import stochastic_round
from gradxform._core.tree import keystr, wider

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "apply_updates",
    "identity",
    "stateless",
]


class EmptyState(NamedTuple):
  """The state of a transform that keeps none (an empty pytree)."""


class GradientTransformation(Module):
  """A gradient transformation: ``init(params) -> state`` and ``update(...)``.

  Two ways to make one:

  * call it with two functions, as in optax:
    ``gx.GradientTransformation(init_fn, update_fn)``, where
    ``update_fn(updates, state, params=None, **extra)`` (the ``**extra`` part is
    optional);
  * subclass it: fields become hyperparameters (pytree leaves, so they can be
    traced, vmapped and differentiated), ``static_field()`` marks options, and
    you define ``init`` and ``update`` methods.

  The update of a chained transform is ``u_{k+1} = T_k(u_k)``; see
  :func:`gradxform.chain`.
  """

  def __new__(cls, *args: Any, **kwargs: Any):
    if cls is GradientTransformation:
      return object.__new__(_FunctionTransformation)
    return object.__new__(cls)

  def init(self, params: Any) -> Any:
    """Returns the initial state for ``params``."""
    raise NotImplementedError(f"{type(self).__name__} must define init(params).")

  def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
    """Returns ``(new_updates, new_state)``."""
    raise NotImplementedError(
        f"{type(self).__name__} must define update(updates, state, params=None, **extra)."
    )

  def __iter__(self):
    """``init, update = tx``, optax's idiom (an optax transform is a pair)."""
    return iter((self.init, self.update))


def extra_names(fn: Callable) -> Optional[frozenset]:
  """Which extra keyword arguments ``update`` takes: ``None`` for all (``**kwargs``), else their names.

  optax transforms without extra arguments take none; a function written as
  ``update(updates, state, params=None, *, value)`` takes just ``value``.
  """
  try:
    parameters = list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):
    return None
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
    return None
  positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
  keyword = [p.name for p in positional[3:]] + [
      p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
  return frozenset(keyword)


def call_update(update: Callable, names: Optional[frozenset], updates, state, params, extra):
  """Calls ``update`` with the extra arguments it accepts (see :func:`extra_names`)."""
  if names is not None:
    extra = {k: v for k, v in extra.items() if k in names}
  return update(updates, state, params, **extra)


class _FunctionTransformation(GradientTransformation):
  init_fn: Callable = static_field()
  update_fn: Callable = static_field()
  extra: Optional[frozenset] = static_field(default=None)

  def __init__(self, init: Callable, update: Callable) -> None:
    if not callable(init) or not callable(update):
      raise TypeError(
          "GradientTransformation(init, update) takes two functions: "
          "init(params) -> state and update(updates, state, params=None, **extra) "
          f"-> (updates, state); got {type(init).__name__} and {type(update).__name__}."
      )
    object.__setattr__(self, "init_fn", init)
    object.__setattr__(self, "update_fn", update)
    object.__setattr__(self, "extra", extra_names(update))

  def init(self, params):
    return self.init_fn(params)

  def update(self, updates, state, params=None, **extra):
    return call_update(self.update_fn, self.extra, updates, state, params, extra)


class _Identity(GradientTransformation):

  def init(self, params):
    del params
    return EmptyState()

  def update(self, updates, state, params=None, **extra):
    del params, extra
    return updates, state


def identity() -> GradientTransformation:
  """Leaves updates unchanged: ``u ← g``. Useful as a placeholder in a chain.

  References:
    optax.identity, https://optax.readthedocs.io/en/latest/api/transformations.html
  """
  return _Identity()


class _Stateless(GradientTransformation):
  fn: Callable = static_field()

  def init(self, params):
    del params
    return EmptyState()

  def update(self, updates, state, params=None, **extra):
    del extra
    return self.fn(updates, params), state


def stateless(fn: Callable[[Any, Any], Any]) -> GradientTransformation:
  """A transform without state from a function ``u ← fn(updates, params)``.

  Example: ``gx.stateless(lambda u, p: jax.tree.map(jnp.sign, u))``.

  References:
    optax.stateless, https://optax.readthedocs.io/en/latest/api/transformations.html
  """
  if not callable(fn):
    raise TypeError(f"stateless: expected a function fn(updates, params), got {type(fn).__name__}.")
  return _Stateless(fn)


def apply_updates(params: Any, updates: Any, *, key: Any = None) -> Any:
  """Returns ``p + u`` for every leaf, in each parameter's own dtype.

  The sum is formed in the wider of the two dtypes and cast back, so a float32
  update applied to bfloat16 parameters leaves them bfloat16. ``None`` updates
  leave their parameter unchanged.

  With ``key`` (a PRNG key), parameters narrower than float32 (bfloat16,
  float16) are rounded stochastically instead of to nearest: ``p ← sr(p + u)``
  with ``E[sr(x)] = x`` (:func:`gradxform.stochastic_round`; one key per leaf,
  split from ``key``), so pure bfloat16 training does not lose the updates
  smaller than half a unit in the last place. Pass a new key every step, e.g.
  ``jax.random.fold_in(key, step)``. float32 and wider parameters are unchanged
  by ``key``.

  Raises:
    ValueError: if the trees differ, or an update's shape is not its
      parameter's (no broadcasting: it would silently change the shape).
    TypeError: if a parameter with an update is not floating point.

  References:
    optax.apply_updates, https://optax.readthedocs.io/en/latest/api/apply_updates.html
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(updates, is_leaf=lambda x: x is None)
  try:
    param_leaves = treedef.flatten_up_to(params)
  except (ValueError, TypeError) as error:
    raise ValueError(
        "apply_updates: the updates tree does not match the params tree "
        f"({error}). Pass the updates returned by update() for these params."
    ) from None
  keys = iter(jax.random.split(key, len(flat))) if key is not None else None
  new = []
  for (path, u), p in zip(flat, param_leaves):
    leaf_key = next(keys) if keys is not None else None
    if u is None:
      new.append(p)
      continue
    p, u = jnp.asarray(p), jnp.asarray(u)
    if p.shape != u.shape:
      raise ValueError(
          f"apply_updates: the update at {keystr(path)} has shape {u.shape}, but the parameter "
          f"has shape {p.shape}. Updates must have their parameter's shape (no broadcasting).")
    if not jnp.issubdtype(p.dtype, jnp.inexact):
      raise TypeError(
          f"apply_updates: the parameter at {keystr(path)} has dtype {p.dtype}; only floating-point "
          "parameters can be updated. Keep integer leaves out of the optimized tree, or give them "
          "a None update (e.g. with gx.masked / gx.partition).")
    dtype = wider(p.dtype, u.dtype)
    if leaf_key is not None and jnp.issubdtype(p.dtype, jnp.floating) and jnp.finfo(p.dtype).bits < 32:
      wide = wider(dtype, jnp.float32)
      new.append(stochastic_round(p.astype(wide) + u.astype(wide), p.dtype, leaf_key))
    else:
      new.append((p.astype(dtype) + u.astype(dtype)).astype(p.dtype))
  return jax.tree.unflatten(treedef, new)
