"""The ``hyperparams`` field of a transform's state: the inputs of ``gx.inject`` and the values of schedules.

:class:`Hyperparams` is a dict that guards writes (an input is cast to its
dtype; a record refuses); :class:`NoHyperparams` is the field of a state that
records nothing (every hyperparameter a constant the optimizer holds), a
NamedTuple with no leaves so that a jitted step flattens it without a Python call.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Hyperparams", "NoHyperparams", "as_input"]


def _is_variable(value: Any) -> bool:
  """A mutable box around an array (Flax NNX's ``Variable``, as ``nnx.Optimizer`` stores state)."""
  return callable(getattr(value, "get_value", None)) and callable(getattr(value, "set_value", None))


def as_input(where: str, value: Any, old: Any) -> jax.Array:
  """``value`` as a new state input replacing ``old``: same shape, ``old``'s dtype (float32 or wider)."""
  old = old.get_value() if _is_variable(old) else old
  if isinstance(value, (bool, np.bool_)) or (
      hasattr(value, "dtype") and not jnp.issubdtype(value.dtype, jnp.floating)
      and not jnp.issubdtype(value.dtype, jnp.integer)):
    raise TypeError(f"{where}: a hyperparameter must be a real number, got {value!r}.")
  if callable(value):
    raise TypeError(
        f"{where}: a schedule cannot be written into a state (the state holds numbers). Build the "
        "optimizer with the schedule instead, or write the schedule's value at each step.")
  new = jnp.asarray(value)
  if new.shape != jnp.shape(old):
    raise ValueError(f"{where}: the new value has shape {new.shape}, but the state holds shape "
                     f"{jnp.shape(old)} (a scalar, or one value per member of a population).")
  return new.astype(jnp.result_type(old))


class Hyperparams(dict):
  """The ``hyperparams`` field of a transform's state: ``{name: value}``, a dict that guards writes.

  ``inputs`` are the names whose value the next update *reads* from here (the
  hyperparameters moved into the state by :func:`gradxform.inject`); writing one
  (``h[name] = v``) stores ``v`` cast to the entry's dtype, so a jitted step
  does not recompile. The other entries, named in ``scheduled``, record the
  value a schedule held by the transform gave at the last update: writing one
  raises, since the next update would ignore it. ``held`` names the constants
  the transform holds, which the state does not record (reading one raises a
  ``KeyError`` that says where the value is). A state whose transform has
  neither inputs nor schedules holds :class:`NoHyperparams` instead. A pytree
  (the names are static).
  """

  # ``_aux`` is the pytree's static part, (sorted names, inputs, scheduled, held), formed once: the entries
  # are fixed after construction and kept in sorted order, so flattening (at every jitted call) is one list.
  __slots__ = ("inputs", "scheduled", "held", "_aux")

  def __init__(self, values: Any = (), inputs: Any = (), scheduled: Any = (), held: Any = ()) -> None:
    super().__init__(sorted(dict(values).items()))
    self.inputs = frozenset(inputs)
    self.scheduled = frozenset(scheduled)
    self.held = frozenset(held)
    self._aux = (tuple(self), self.inputs, self.scheduled, self.held)

  def __missing__(self, name: Any) -> Any:
    raise self._refuse(name)

  def _refuse(self, name: Any) -> Exception:
    if name in self.held:
      return KeyError(
          f"hyperparams: {name!r} is a constant held by the optimizer (the value it was built "
          "with), so the state does not record it; the state records the inputs of "
          f"gx.inject(...) and the values of schedules ({sorted(self) or 'none here'}). To read and "
          f"write {name} in the state, build the optimizer with gx.inject(...).")
    if name not in self:
      return KeyError(f"hyperparams: no hyperparameter {name!r} in this state; it has {sorted(self)}.")
    if name in self.scheduled:
      return TypeError(
          f"hyperparams[{name!r}] follows a schedule held by the optimizer; the state only records "
          "its last value, so writing it would be ignored. To set it by hand at each step, build the "
          f"optimizer with a constant {name} under gx.inject(...) and write the schedule's value "
          f"with gx.set_hyperparams(state, {name}=...).")
    return TypeError(f"hyperparams[{name!r}] is a record, not an input of the next update, so writing it "
                     "would be ignored. Build the optimizer with gx.inject(...) to hold it in the state.")

  def __setitem__(self, name: Any, value: Any) -> None:
    if name not in self.inputs:
      raise self._refuse(name)
    old = dict.__getitem__(self, name)
    new = as_input(f"hyperparams[{name!r}]", value, old)
    if _is_variable(old):
      old.set_value(new)
    else:
      dict.__setitem__(self, name, new)

  def update(self, *args: Any, **kwargs: Any) -> None:
    for name, value in dict(*args, **kwargs).items():
      self[name] = value

  def _immutable(self, *args: Any, **kwargs: Any) -> None:
    raise TypeError("hyperparams: entries cannot be added or removed (write an input with "
                    "h[name] = value or gx.set_hyperparams).")

  __delitem__ = pop = popitem = clear = setdefault = __ior__ = _immutable

  def replaced(self, changes: Mapping[str, Any], where: str = "hyperparams") -> "Hyperparams":
    """A copy with the inputs in ``changes`` replaced (cast to their dtype); raises for any other name."""
    new = dict(self)
    for name, value in changes.items():
      if name not in self.inputs:
        raise self._refuse(name)
      new[name] = as_input(f"{where}[{name!r}]", value, self[name])
    return Hyperparams(new, self.inputs, self.scheduled, self.held)

  def copy(self) -> "Hyperparams":
    return Hyperparams(self, self.inputs, self.scheduled, self.held)

  def __reduce__(self):
    return (Hyperparams, (dict(self), self.inputs, self.scheduled, self.held))


def _flatten_hyperparams(h: Hyperparams):
  return [(jax.tree_util.DictKey(k), v) for k, v in dict.items(h)], h._aux


def _unflatten_hyperparams(aux, children) -> Hyperparams:
  h = Hyperparams.__new__(Hyperparams)
  dict.update(h, zip(aux[0], children))
  h.inputs, h.scheduled, h.held, h._aux = aux[1], aux[2], aux[3], aux
  return h


jax.tree_util.register_pytree_with_keys(
    Hyperparams, _flatten_hyperparams, _unflatten_hyperparams,
    lambda h: (dict.values(h), h._aux))


class NoHyperparams(NamedTuple):
  """The ``hyperparams`` of a state that records none: all of its transform's hyperparameters are constants.

  Reads as an empty mapping (``len``, ``in``, ``keys``, ``items``, ``get``);
  indexing raises a ``KeyError`` that says where the values are (the optimizer
  holds them; :func:`gradxform.inject` moves them into the state). A pytree with
  no leaves, and a NamedTuple so that JAX flattens it without a Python call:
  every jitted step flattens and rebuilds each stage's ``hyperparams``.
  """

  inputs = frozenset()
  scheduled = frozenset()
  held = frozenset()

  def _refuse(self, name: Any) -> KeyError:
    return KeyError(
        f"hyperparams: no {name!r} in this state: this transform's hyperparameters are constants "
        "held by the optimizer (the values it was built with), which the state does not record. "
        "Build the optimizer with gx.inject(...) to hold them in the state, where they can be read "
        "and written between steps.")

  def __getitem__(self, name: Any) -> Any:
    raise self._refuse(name)

  def __setitem__(self, name: Any, value: Any) -> None:
    raise self._refuse(name)

  def __iter__(self):
    return iter(())

  def keys(self):
    return {}.keys()

  def values(self):
    return {}.values()

  def items(self):
    return {}.items()

  def get(self, name: Any, default: Any = None) -> Any:
    return default

  def replaced(self, changes: Mapping[str, Any], where: str = "hyperparams") -> "NoHyperparams":
    for name in changes:
      raise self._refuse(name)
    return self

  def copy(self) -> "NoHyperparams":
    return self
