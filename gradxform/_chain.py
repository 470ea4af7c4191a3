"""Composition: ``chain`` applies transforms one after another."""

from __future__ import annotations

from typing import Any

from gradxform._base import GradientTransformation, accepts_extra
from gradxform._module import static_field

__all__ = ["chain"]


class _Foreign(GradientTransformation):
  """An optax (or any duck-typed) transform inside a gradxform chain.

  It is kept static: its hyperparameters are closed over, as optax's are.
  """

  transform: Any = static_field()
  takes_extra: bool = static_field(default=True)

  def init(self, params):
    return self.transform.init(params)

  def update(self, updates, state, params=None, **extra):
    if self.takes_extra:
      return self.transform.update(updates, state, params, **extra)
    return self.transform.update(updates, state, params)


def as_transform(transform: Any, where: str) -> GradientTransformation:
  """Accepts a gradxform transform, or wraps anything with ``init``/``update`` (optax's)."""
  if isinstance(transform, GradientTransformation):
    return transform
  if callable(getattr(transform, "init", None)) and callable(getattr(transform, "update", None)):
    return _Foreign(transform, takes_extra=accepts_extra(transform.update))
  raise TypeError(
      f"{where}: expected a gradient transformation (an object with init and "
      f"update, such as gx.adam(...) or optax.adam(...)), got {type(transform).__name__}."
  )


class _Chain(GradientTransformation):
  transforms: tuple

  def init(self, params):
    return tuple(t.init(params) for t in self.transforms)

  def update(self, updates, state, params=None, **extra):
    if not isinstance(state, tuple) or len(state) != len(self.transforms):
      raise ValueError(
          f"chain: expected a state tuple of {len(self.transforms)} entries (one "
          f"per transform), got {type(state).__name__}"
          f"{f' of {len(state)}' if isinstance(state, tuple) else ''}. Pass the "
          "state returned by this chain's init() or update().")
    new_state = []
    for transform, inner in zip(self.transforms, state):
      updates, inner = transform.update(updates, inner, params, **extra)
      new_state.append(inner)
    return updates, tuple(new_state)


def chain(*transforms: Any) -> GradientTransformation:
  """Applies transforms in order: ``u ← T_n(… T_2(T_1(g)))``.

  The state is the tuple of the stages' states (as in optax). Extra keyword
  arguments of ``update`` (e.g. ``value=loss``) reach every stage. optax
  transforms are accepted as stages, and a gradxform chain is accepted by
  ``optax.chain``.

  Example::

      opt = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(3e-4, weight_decay=0.1))
  """
  return _Chain(tuple(as_transform(t, f"chain (stage {i})") for i, t in enumerate(transforms)))
