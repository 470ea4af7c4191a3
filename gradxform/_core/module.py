"""A tiny pytree dataclass base: numeric fields are leaves, options are static.

Every transform and schedule in gradxform is a frozen dataclass registered as a
pytree. Numeric hyperparameters (floats, arrays, schedules, nested transforms)
are *children*, so an optimizer can be passed through ``jax.jit`` without
recompiling when a learning rate changes, and ``jax.vmap``-ed over stacked
hyperparameters. Fields declared with :func:`static_field` (flags such as
``nesterov``) and values that cannot be traced (plain Python callables,
strings, booleans) live in the tree definition instead.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax

__all__ = ["InState", "Module", "static_field"]


def static_field(**kwargs: Any) -> Any:
  """Declares a dataclass field that is never a pytree leaf (a flag or option).

  References:
    Equinox static fields, https://docs.kidger.site/equinox/api/module/advanced_fields/
  """
  metadata = dict(kwargs.pop("metadata", {}), static=True)
  return dataclasses.field(metadata=metadata, **kwargs)


class InState:
  """A hyperparameter whose value lives in the optimizer state (see :func:`gradxform.inject`).

  It stands in a transform's field instead of the value. It is static (part of
  the tree definition, never a leaf) and compares by its initial value and
  dtype, so an injected optimizer holds no arrays and hashes like a constant.
  ``initial`` is a Python number, the value ``init`` writes into the state;
  ``dtype`` the name of the state entry's dtype (float32 or wider).
  """

  __slots__ = ("initial", "dtype")

  def __init__(self, initial: float, dtype: str) -> None:
    object.__setattr__(self, "initial", initial)
    object.__setattr__(self, "dtype", dtype)

  def __setattr__(self, name: str, value: Any) -> None:
    raise AttributeError("InState is immutable.")

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, InState) and (self.initial, self.dtype) == (other.initial, other.dtype)

  def __hash__(self) -> int:
    return hash((InState, self.initial, self.dtype))

  def __repr__(self) -> str:
    return f"InState({self.initial!r}, {self.dtype})"


_TRACEABLE = (float, int, type(None))  # the common children, decided without the checks below


def _is_static_value(value: Any) -> bool:
  """Values that cannot be traced stay in the tree definition.

  ``None`` is *not* static: it is an empty subtree, so that prefix trees built
  with ``jax.tree.map`` (``vmap``'s ``in_axes``, sharding specs) keep the
  optimizer's structure.
  """
  if type(value) in _TRACEABLE or isinstance(value, Module):
    return False
  return isinstance(value, (str, bool, InState)) or callable(value)


# Flattening runs at every jitted call that takes an optimizer as an argument (and at every hash of one
# held as a static field), so it reads each class's field names and static flags from ``_gx_fields``,
# formed once per class, and the instance's ``__dict__`` directly.


def _split(obj):
  names, children, static = [], [], []
  values = obj.__dict__
  for name, fixed in obj._gx_fields:
    value = values[name]
    if fixed or _is_static_value(value):
      static.append((name, value))
    else:
      names.append(name)
      children.append(value)
  return names, children, (tuple(names), tuple(static))


def _flatten_with_keys(obj):
  names, children, aux = _split(obj)
  return [(jax.tree_util.GetAttrKey(name), value) for name, value in zip(names, children)], aux


def _flatten(obj):
  _, children, aux = _split(obj)
  return children, aux


def _unflatten(cls, aux, children):
  names, static = aux
  obj = object.__new__(cls)
  values = obj.__dict__
  values.update(zip(names, children))
  values.update(static)
  return obj


def _leaf_key(leaf: Any) -> Any:
  """Python numbers compare by value, anything else (arrays, tracers) by identity."""
  if isinstance(leaf, numbers.Number):
    return (type(leaf), leaf)
  return ("id", id(leaf))


class Module:
  """Base class: subclasses become frozen dataclasses registered as pytrees.

  Two modules are equal (and hash equally) when they have the same tree
  structure, the same static options and the same Python-number leaves; array
  leaves compare by identity. So ``gx.adam(1e-3) == gx.adam(1e-3)`` holds, and
  an optimizer used as a static field (Flax's ``TrainState.tx``) is hashable.
  """

  def __init_subclass__(cls, **kwargs: Any) -> None:
    super().__init_subclass__(**kwargs)
    dataclasses.dataclass(frozen=True, eq=False)(cls)
    cls._gx_fields = tuple((f.name, bool(f.metadata.get("static"))) for f in dataclasses.fields(cls))
    jax.tree_util.register_pytree_with_keys(
        cls,
        _flatten_with_keys,
        lambda aux, children: _unflatten(cls, aux, children),
        _flatten,
    )

  def _key(self) -> Any:
    """``(key, hash)``, formed at the first comparison and kept: a module is frozen and holds its leaves.

    (Flax's ``TrainState`` holds the optimizer as a static field, so ``jit`` hashes and compares it at
    every call.)
    """
    cached = self.__dict__.get("_gx_key")
    if cached is None:
      leaves, treedef = jax.tree_util.tree_flatten(self)
      key = (treedef, tuple(_leaf_key(leaf) for leaf in leaves))
      cached = self.__dict__["_gx_key"] = (key, hash(key))
    return cached

  def __eq__(self, other: Any) -> bool:
    if type(self) is not type(other):
      return NotImplemented
    return self is other or self._key() == other._key()

  def __hash__(self) -> int:
    return self._key()[1]

  def __getstate__(self) -> dict:
    """For pickle and copy: the fields, without the cached comparison key (a copy forms its own)."""
    state = dict(self.__dict__)
    state.pop("_gx_key", None)
    return state
