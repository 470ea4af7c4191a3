"""Hyperparameters: checked at construction, resolved (and scheduled) at update.

A :class:`Transform` is a :class:`~gradxform.GradientTransformation` whose
numeric fields are hyperparameters. Each one may be a Python number, an array
(a traced value under ``jit``/``vmap``/``grad`` included) or a schedule
``count -> value``. The transform's state always starts with two fields:

* ``count``: int32 scalar, the number of updates applied so far;
* ``hyperparams``: a :class:`Hyperparams` mapping ``{name: value}``. For a
  hyperparameter the transform holds (a number, an array, a schedule) it is the
  value used at the last update (at ``count=0`` after init), for logging; it
  cannot be written. For one moved into the state by :func:`gradxform.inject`
  it is the *input* the next update reads (float32 or wider), written with
  :func:`gradxform.set_hyperparams` or ``state.hyperparams[name] = value``.

Schedules are evaluated at the count *before* the update (0 at the first
update), as optax does and as torch's ``LambdaLR`` stepped after
``optimizer.step()``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import numbers
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core.base import GradientTransformation
from gradxform._core.module import InState
from gradxform._core.ranges import check_hyperparameter
from gradxform._core.tree import check_floating, increment, scalar

__all__ = ["Hyperparams", "Transform", "check_hyperparameter"]


def _hyper_dtype(value: Any) -> jnp.dtype:
  dtype = getattr(value, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jnp.floating):
    return jnp.dtype(dtype)
  return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


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
  does not recompile. Every other entry is a record of the value used at the
  last update (a constant or a schedule held by the transform): writing it
  raises, since the next update would ignore it. ``scheduled`` names those that
  follow a schedule. A pytree (the names and ``inputs`` are static).
  """

  # ``_aux`` is the pytree's static part, (sorted names, inputs, scheduled), formed once: the entries are
  # fixed after construction and kept in sorted order, so flattening (at every jitted call) is one list.
  __slots__ = ("inputs", "scheduled", "_aux")

  def __init__(self, values: Any = (), inputs: Any = (), scheduled: Any = ()) -> None:
    super().__init__(sorted(dict(values).items()))
    self.inputs = frozenset(inputs)
    self.scheduled = frozenset(scheduled)
    self._aux = (tuple(self), self.inputs, self.scheduled)

  def _refuse(self, name: Any) -> Exception:
    if name not in self:
      return KeyError(f"hyperparams: no hyperparameter {name!r} in this state; it has {sorted(self)}.")
    if name in self.scheduled:
      return TypeError(
          f"hyperparams[{name!r}] follows a schedule held by the optimizer; the state only records "
          "its last value, so writing it would be ignored. To set it by hand at each step, build the "
          f"optimizer with a constant {name} under gx.inject(...) and write the schedule's value "
          f"with gx.set_hyperparams(state, {name}=...).")
    return TypeError(
        f"hyperparams[{name!r}] records the value used at the last update; the optimizer holds "
        "the value, so writing it here would be ignored. To change it between steps without "
        f"recompiling, build the optimizer with gx.inject(...) (the state then holds {name} as an "
        f"input) and write gx.set_hyperparams(state, {name}=...); or pass a new optimizer to the "
        "jitted step as an argument.")

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
    return Hyperparams(new, self.inputs, self.scheduled)

  def copy(self) -> "Hyperparams":
    return Hyperparams(self, self.inputs, self.scheduled)

  def __reduce__(self):
    return (Hyperparams, (dict(self), self.inputs, self.scheduled))


def _flatten_hyperparams(h: Hyperparams):
  return [(jax.tree_util.DictKey(k), v) for k, v in dict.items(h)], h._aux


def _unflatten_hyperparams(aux, children) -> Hyperparams:
  h = Hyperparams.__new__(Hyperparams)
  dict.update(h, zip(aux[0], children))
  h.inputs, h.scheduled, h._aux = aux[1], aux[2], aux
  return h


jax.tree_util.register_pytree_with_keys(
    Hyperparams, _flatten_hyperparams, _unflatten_hyperparams,
    lambda h: (dict.values(h), h._aux))


class Transform(GradientTransformation):
  """Base class of gradxform's transforms with hyperparameters.

  Subclasses define ``State`` (a NamedTuple whose first fields are ``count``
  and ``hyperparams``), ``init_fields(params) -> dict`` for the other fields,
  and ``apply(updates, state, params, hp, **extra) -> (updates, dict)`` which
  returns the new updates and the fields that changed. ``hp`` maps each
  hyperparameter's name to its current value, a scalar array.
  """

  # Whether the transform accepts complex parameters: true for elementwise rules, which leafwise runs on
  # a complex leaf's real view (torch.optim's view_as_real convention); others refuse them at init.
  complex_ok = False

  def transform_name(self) -> str:
    """The public name, for messages: ``_ScaleByAdam`` -> ``scale_by_adam`` (or the ``name`` field)."""
    name = getattr(self, "name", None)
    if isinstance(name, str):
      return name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__.lstrip("_")).lower()

  def hyperparameter_names(self) -> tuple[str, ...]:
    """The names of the numeric (non-static, non-transform) fields."""
    names = []
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.metadata.get("static") or value is None or isinstance(
          value, (bool, str, GradientTransformation)):
        continue
      names.append(field.name)
    return tuple(names)

  def resolve(self, count: jax.Array, stored: Optional[Mapping[str, Any]] = None) -> dict[str, jax.Array]:
    """Each hyperparameter's value at ``count``, as a scalar array of its own dtype.

    A hyperparameter held in the state (``InState``, see :func:`gradxform.inject`)
    is read from ``stored`` (the state's ``hyperparams``), or is its initial
    value when ``stored`` is None (at init).
    """
    values = {}
    public = dict(getattr(self, "public_names", None) or ())  # internal name -> the user's (decay -> b1)
    for name in self.hyperparameter_names():
      value = getattr(self, name)
      if isinstance(value, InState):
        if stored is None:
          values[name] = jnp.asarray(value.initial, value.dtype)
          continue
        if name not in stored:
          raise ValueError(
              f"{self.transform_name()}: the state has no hyperparameter {name!r} (it has "
              f"{sorted(stored)}). Pass the state made by this optimizer's init().")
        entry = stored[name]
        entry = entry.get_value() if _is_variable(entry) else entry
        values[name] = jnp.asarray(entry).astype(value.dtype)
        continue
      if callable(value):
        try:
          value = value(count)
        except Exception as error:  # a schedule's own failure, named after the transform and hyperparameter
          where = f"{self.transform_name()}: the schedule given as {public.get(name, name)} failed"
          if isinstance(error, (TypeError, ValueError)):
            kind = ValueError if isinstance(error, ValueError) else TypeError
            raise kind(f"{where}: {type(error).__name__}: {error}") from error
          error.add_note(where)
          raise
        if value is None or not (isinstance(value, numbers.Number) or hasattr(value, "dtype")):
          raise TypeError(
              f"{self.transform_name()}: the schedule given as {public.get(name, name)} returned "
              f"{type(value).__name__} {value!r}; a schedule must return a number or a scalar array.")
      array = scalar(value, _hyper_dtype(value))
      if array.ndim != 0:
        raise ValueError(
            f"{self.transform_name()}: hyperparameter {public.get(name, name)} has shape "
            f"{array.shape}, but must be a scalar. To run several settings at "
            "once, jax.vmap over the optimizer (stacked hyperparameters become "
            "one scalar per member)."
        )
      values[name] = array
    return values

  def init_fields(self, params: Any) -> Mapping[str, Any]:
    del params
    return {}

  def apply(self, updates, state, params, hp, **extra) -> tuple[Any, Mapping[str, Any]]:
    raise NotImplementedError

  def _record(self, hp: Mapping[str, jax.Array]) -> Hyperparams:
    inputs, scheduled = [], []
    for name in hp:
      value = getattr(self, name)
      if isinstance(value, InState):
        inputs.append(name)
      elif callable(value):
        scheduled.append(name)
    return Hyperparams(hp, inputs, scheduled)

  def _with_initial_values(self) -> "Transform":
    """This transform with each ``InState`` field replaced by its initial value (for ``init_fields``)."""
    fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    if not any(isinstance(value, InState) for value in fields.values()):
      return self
    concrete = object.__new__(type(self))
    for name, value in fields.items():
      object.__setattr__(concrete, name, value.initial if isinstance(value, InState) else value)
    return concrete

  def _keeps_nothing(self) -> bool:
    """Whether the state only records (a count and hyperparameters held by the transform): then ``None`` will do."""
    return set(self.State._fields) <= {"count", "hyperparams"} and not any(
        isinstance(getattr(self, name), InState) for name in self.hyperparameter_names())

  def init(self, params):
    check_floating(self.transform_name(), params, "parameter", allow_complex=self.complex_ok)
    count = jnp.zeros([], jnp.int32)
    return self.State(count=count, hyperparams=self._record(self.resolve(count)),
                      **self._with_initial_values().init_fields(params))

  def update(self, updates, state, params=None, **extra):
    if state is None and self._keeps_nothing():  # optax code passes None to a stateless transform
      state = self.init(updates)
    if not isinstance(state, self.State):
      raise TypeError(
          f"{self.transform_name()}: expected a {self.State.__name__} as state, got "
          f"{type(state).__name__}. Pass the state returned by this transform's "
          "init() or update() (inside a chain, states are positional: one per stage).")
    hp = self.resolve(state.count, state.hyperparams)
    updates, fields = self.apply(updates, state, params, hp, **extra)
    return updates, state._replace(count=increment(state.count), hyperparams=self._record(hp), **fields)


def step_number(state: Any, hp: Mapping[str, jax.Array], like: str) -> jax.Array:
  """``t = count + 1`` (the 1-based step of this update) in the dtype of ``hp[like]``."""
  return (state.count + 1).astype(hp[like].dtype)


def named(optimizer: Callable[..., GradientTransformation]) -> Callable[..., GradientTransformation]:
  """Prefixes construction errors with the optimizer's name: ``adam: scale_by_adam: b1=1.5 ...``."""

  @functools.wraps(optimizer)
  def build(*args, **kwargs):
    try:
      return optimizer(*args, **kwargs)
    except (TypeError, ValueError) as error:
      message = str(error)
      if message.startswith(f"{optimizer.__name__}:"):
        raise
      raise type(error)(f"{optimizer.__name__}: {message}") from None

  return build


def is_literal_zero(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


def check_betas(name: str, b1: Any, b2: Any, eps: Any = 0.0) -> None:
  for beta_name, beta in (("b1", b1), ("b2", b2)):
    check_hyperparameter(name, beta_name, beta, low=0.0, high=1.0, high_open=True,
                         hint=f"{beta_name} is a moment's decay rate; use a value in [0, 1).")
  check_hyperparameter(name, "eps", eps, low=0.0,
                       hint="eps must be a non-negative number (it keeps the denominator away from zero).")
