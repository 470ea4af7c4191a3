"""Hyperparameters: checked at construction, resolved (and scheduled) at update.

A :class:`Transform` is a :class:`~gradxform.GradientTransformation` whose
numeric fields are hyperparameters. Each one may be a Python number, an array
(a traced value under ``jit``/``vmap``/``grad`` included) or a schedule
``count -> value``. The transform's state always starts with two fields:

* ``count``: int32 scalar, the number of updates applied so far; ``None``
  when the rule does not read it (``Transform.counts``) and no hyperparameter
  follows a schedule, and in a nested transform updated with its parent's
  count (:func:`nested_state`);
* ``hyperparams``: a :class:`~gradxform.Hyperparams` mapping ``{name: value}``
  (:class:`~gradxform.NoHyperparams` when it holds nothing). For a
  hyperparameter moved into the state by :func:`gradxform.inject` it is the
  *input* the next update reads (float32 or wider), written with
  :func:`gradxform.set_hyperparams` or ``state.hyperparams[name] = value``. For
  one that follows a schedule it is the value used at the last update (at
  ``count=0`` after init), for logging; it cannot be written. A constant the
  transform holds (a number or an array) is not in the state: it is the
  optimizer's (``opt.learning_rate``), and recording it would add a buffer to
  every jitted step's inputs and outputs (a third of a one-scalar Adam step's
  time on CPU) for a value the caller already has.

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

from gradxform._core.base import GradientTransformation
from gradxform._core.module import InState
from gradxform._core.ranges import check_hyperparameter
from gradxform._core.records import Hyperparams, NoHyperparams, _is_variable
from gradxform._core.tree import check_floating, increment, scalar

__all__ = ["Transform", "check_hyperparameter"]


def _hyper_dtype(value: Any) -> jnp.dtype:
  dtype = getattr(value, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jnp.floating):
    return jnp.dtype(dtype)
  return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


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
  # Whether ``apply`` reads ``state.count``. A transform whose rule does not (a constant scaling, weight
  # decay, a clip) keeps ``count = None`` unless one of its hyperparameters follows a schedule: an unused
  # count is one more buffer in and out of every jitted step (as ``optax.scale`` keeps no count).
  counts = True
  # Fields holding transforms updated exactly once per update of this one (Adam's first-moment ``ema`` in
  # ``scale_by_rms``): they use this state's count instead of keeping their own (see ``nested_state``).
  nested = ()
  # Hyperparameters the state records even when constant: a function reading only the state needs them
  # (``schedule_free_eval_params`` reads ``b1``).
  recorded = ()

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

  def _record(self, hp: Mapping[str, jax.Array]) -> "Hyperparams | NoHyperparams":
    """The state's ``hyperparams``: the inputs (``InState``) and the values of schedules used by this update.

    Constants are left out (named in ``held``): the optimizer has them, and each
    entry is a buffer in and out of every jitted step.
    """
    inputs, scheduled, held = [], [], []
    for name in hp:
      value = getattr(self, name)
      if isinstance(value, InState):
        inputs.append(name)
      elif callable(value):
        scheduled.append(name)
      elif name not in self.recorded:
        held.append(name)
    kept = [name for name in hp if name not in held]
    if not kept:
      return NoHyperparams()
    return Hyperparams({name: hp[name] for name in kept}, inputs, scheduled, held)

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

  def keeps_count(self) -> bool:
    """Whether the state has a ``count``: the rule reads it (``counts``), a hyperparameter is scheduled,
    or a nested transform needs one. Decided by the structure (static fields, which values are
    schedules), never by a value, so the state's structure is the same under ``jit`` and outside it."""
    return self.counts or any(
        callable(value) and not isinstance(value, InState)
        for value in (getattr(self, name) for name in self.hyperparameter_names())) or any(
        isinstance(getattr(self, name), Transform) and getattr(self, name).keeps_count() for name in self.nested)

  def init(self, params):
    check_floating(self.transform_name(), params, "parameter", allow_complex=self.complex_ok)
    count = jnp.zeros([], jnp.int32) if self.keeps_count() else None
    fields = dict(self._with_initial_values().init_fields(params))
    if count is not None:
      fields.update({name: nested_state(fields[name]) for name in self.nested})
    return self.State(count=count, hyperparams=self._record(self.resolve(count)), **fields)

  def update(self, updates, state, params=None, **extra):
    if state is None and self._keeps_nothing():  # optax code passes None to a stateless transform
      state = self.init(updates)
    if not isinstance(state, self.State):
      raise TypeError(
          f"{self.transform_name()}: expected a {self.State.__name__} as state, got "
          f"{type(state).__name__}. Pass the state returned by this transform's "
          "init() or update() (inside a chain, states are positional: one per stage).")
    if state.count is None and self.keeps_count():
      raise ValueError(
          f"{self.transform_name()}: the state has no count (it was made by a transform that needs "
          "none), but this one needs it (a hyperparameter follows a schedule, evaluated at the count, "
          "or the rule reads the step). Pass the state made by this optimizer's init().")
    hp = self.resolve(state.count, state.hyperparams)
    if state.count is not None and self.nested:  # each nested transform updates with this count
      state = state._replace(**{name: with_parent_count(getattr(state, name), state.count) for name in self.nested})
    updates, fields = self.apply(updates, state, params, hp, **extra)
    if state.count is None:
      count = None
    else:
      count = increment(state.count)
      fields = {**fields, **{name: nested_state(fields[name]) for name in self.nested if name in fields}}
    return updates, state._replace(count=count, hyperparams=self._record(hp), **fields)


def _is_counted(state: Any) -> bool:
  fields = getattr(state, "_fields", ())
  return isinstance(state, tuple) and "count" in fields and "hyperparams" in fields


def nested_state(state: Any) -> Any:
  """A nested transform's state as its parent keeps it: without its own ``count`` (``None``).

  A transform updated once per update of the transform holding it (Adam's first-moment ``ema``
  inside ``scale_by_rms``) has the parent's count; keeping both would add a buffer to every step.
  """
  return state._replace(count=None) if _is_counted(state) else state


def with_parent_count(state: Any, count: jax.Array) -> Any:
  """A nested transform's state (see :func:`nested_state`) with the parent's ``count``, to update it."""
  return state._replace(count=count) if _is_counted(state) else state


def step_number(state: Any, hp: Mapping[str, jax.Array], like: str) -> jax.Array:
  """``t = count + 1`` (the 1-based step of this update) in the dtype of ``hp[like]``.

  Formed as the new count (:func:`~gradxform._core.tree.increment`, saturating at 2³¹ − 1), the same
  expression as the state's next ``count``: XLA computes it once, and the old count's buffer (donated
  to the next count) needs no copy to stay readable.
  """
  return increment(state.count).astype(hp[like].dtype)


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
