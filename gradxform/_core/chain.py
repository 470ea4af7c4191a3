"""Composition: ``chain`` applies transforms one after another."""

from __future__ import annotations

from typing import Any, Optional

from gradxform._core.base import GradientTransformation, call_update, extra_names
from gradxform._core.module import static_field

__all__ = ["chain"]


class _Foreign(GradientTransformation):
  """An optax (or any duck-typed) transform inside a gradxform chain.

  It is kept static: its hyperparameters are closed over, as optax's are.
  """

  transform: Any = static_field()
  extra: Optional[frozenset] = static_field(default=None)

  def init(self, params):
    return self.transform.init(params)

  def update(self, updates, state, params=None, **extra):
    return call_update(self.transform.update, self.extra, updates, state, params, extra)


def as_transform(transform: Any, where: str) -> GradientTransformation:
  """Accepts a gradxform transform, or wraps anything with ``init``/``update`` (optax's)."""
  if isinstance(transform, GradientTransformation):
    return transform
  if callable(getattr(transform, "init", None)) and callable(getattr(transform, "update", None)):
    return _Foreign(transform, extra=extra_names(transform.update))
  raise TypeError(
      f"{where}: expected a gradient transformation (an object with init and "
      f"update, such as gx.adam(...) or optax.adam(...)), got {type(transform).__name__}."
  )


class _Chain(GradientTransformation):
  transforms: tuple
  names: Optional[tuple] = static_field(default=None)

  def init(self, params):
    states = tuple(t.init(params) for t in self.transforms)
    return states if self.names is None else dict(zip(self.names, states))

  def update(self, updates, state, params=None, **extra):
    if self.names is None:
      expected_ok = isinstance(state, tuple) and len(state) == len(self.transforms)
      expected = f"a state tuple of {len(self.transforms)} entries (one per transform)"
    else:
      expected_ok = isinstance(state, dict) and tuple(state) == self.names
      expected = f"a state dict with the stage names {list(self.names)}"
    if not expected_ok:
      got = f"{type(state).__name__}"
      if isinstance(state, (tuple, dict)):
        got += f" of {len(state)}" if isinstance(state, tuple) else f" with keys {list(state)}"
      raise ValueError(f"chain: expected {expected}, got {got}. Pass the state returned "
                       "by this chain's init() or update().")
    inner_states = state if self.names is None else tuple(state.values())
    new_state = []
    for transform, inner in zip(self.transforms, inner_states):
      updates, inner = transform.update(updates, inner, params, **extra)
      new_state.append(inner)
    new_state = tuple(new_state)
    return updates, (new_state if self.names is None else dict(zip(self.names, new_state)))


def chain(*transforms: Any, **named: Any) -> GradientTransformation:
  """Applies transforms in order: ``u ← T_n(… T_2(T_1(g)))``.

  With positional stages the state is the tuple of the stages' states (as in
  optax). With named stages, ``chain(clip=gx.clip(1.0), adam=gx.adam(1e-3))``,
  the state is a dict ``{name: state}`` in the given order, so its parts can be
  read by path: ``gx.tree_get(state, "adam/0/nu")``. Extra keyword arguments of
  ``update`` (e.g. ``value=loss``) reach every stage. optax transforms are
  accepted as stages, and a gradxform chain is accepted by ``optax.chain``.

  Example::

      opt = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(3e-4, weight_decay=0.1))

  Reference:
    optax's ``chain`` (same positional state), https://optax.readthedocs.io/en/latest/api/combining_optimizers.html
  """
  if transforms and named:
    raise TypeError("chain: give the stages either all positionally or all by name "
                    f"(got {len(transforms)} positional and names {list(named)}).")
  if named:
    return _Chain(tuple(as_transform(t, f"chain (stage {n!r})") for n, t in named.items()),
                  names=tuple(named))
  return _Chain(tuple(as_transform(t, f"chain (stage {i})") for i, t in enumerate(transforms)))
