"""``optax.inject_hyperparams``: a factory's numeric arguments held in the state, where a step reads them."""

from __future__ import annotations

import functools
import inspect
import numbers
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation, call_update, extra_names
from gradxform._core.records import Hyperparams
from gradxform._core.module import static_field

__all__ = ["InjectHyperparamsState", "inject_hyperparams"]

_NAME = "inject_hyperparams"


class InjectHyperparamsState(NamedTuple):
  """State of :func:`inject_hyperparams` (optax's field names).

  ``hyperparams[name]`` is read by the next update for a numeric argument
  (write it to change the value: it is cast to the entry's dtype, float32 or
  wider, so a jitted step does not recompile); for a schedule it records the
  value used at the last update, and writing it raises (the schedule decides).
  """

  count: jax.Array  # int32 scalar, updates applied
  hyperparams: Hyperparams
  inner_state: Any


def _floating_dtype(params: Any, hyperparam_dtype: Optional[Any]) -> Any:
  """The dtype of floating hyperparameters: ``hyperparam_dtype``, else the widest parameter float, never < float32."""
  if hyperparam_dtype is not None:
    return hyperparam_dtype
  widest = jnp.float32
  for leaf in jax.tree.leaves(params):
    dtype = jnp.result_type(leaf)
    if jnp.issubdtype(dtype, jnp.complexfloating):
      dtype = jnp.finfo(dtype).dtype
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits > jnp.finfo(widest).bits:
      widest = dtype
  return widest


def _as_entry(value: Any, dtype: Any) -> jax.Array:
  """A numeric argument as a state entry: floats in ``dtype``, integers as they are."""
  kind = jnp.result_type(value)
  if jnp.issubdtype(kind, jnp.integer) and not isinstance(value, float):
    return jnp.asarray(value)
  return jnp.asarray(value, dtype)


class _Arguments:
  """The arguments passed as they are (masks, flags, transforms): a static option, equal only to itself."""

  def __init__(self, values: dict) -> None:
    self.values = values


class _Injected(GradientTransformation):
  """The transform :func:`inject_hyperparams` returns: the factory and its arguments."""

  factory: Callable = static_field()
  numeric: dict  # name -> initial value (pytree leaves)
  schedules: dict  # name -> schedule (count -> value)
  others: _Arguments = static_field()  # passed as they are (flags, strings, masks, transforms, None)
  hyperparam_dtype: Any = static_field(default=None)

  def _inner(self, values: dict) -> GradientTransformation:
    return self.factory(**self.others.values, **values)

  def init(self, params):
    dtype = _floating_dtype(params, self.hyperparam_dtype)
    count = jnp.zeros([], jnp.int32)
    values = {name: _as_entry(value, dtype) for name, value in self.numeric.items()}
    values.update({name: _as_entry(schedule(count), dtype) for name, schedule in self.schedules.items()})
    hyperparams = Hyperparams(values, inputs=self.numeric, scheduled=self.schedules)
    return InjectHyperparamsState(count, hyperparams, self._inner(values).init(params))

  def update(self, updates, state, params=None, **extra):
    if not isinstance(state, InjectHyperparamsState):
      raise TypeError(f"{_NAME}({getattr(self.factory, '__name__', 'factory')}): expected an "
                      f"InjectHyperparamsState as state, got {type(state).__name__}. Pass the state made "
                      "by this transform's init().")
    values = {name: state.hyperparams[name] for name in self.numeric}
    for name, schedule in self.schedules.items():
      values[name] = _as_entry(schedule(state.count), jnp.result_type(state.hyperparams[name]))
    inner = self._inner(values)  # a gradxform or an optax transform
    updates, inner_state = call_update(inner.update, extra_names(inner.update), updates, state.inner_state,
                                       params, extra)
    count = _tree.increment(state.count)
    hyperparams = Hyperparams(values, inputs=self.numeric, scheduled=self.schedules)
    return updates, InjectHyperparamsState(count, hyperparams, inner_state)


def inject_hyperparams(inner_factory: Callable, static_args: Any = (),
                       hyperparam_dtype: Optional[Any] = None) -> Callable[..., GradientTransformation]:
  """``optax.inject_hyperparams``: the factory's numeric arguments live in the state, where a step reads them.

  ``inject_hyperparams(adam)(learning_rate=1e-3)`` is a transform whose state
  is ``InjectHyperparamsState(count, hyperparams, inner_state)``; each update
  builds ``inner = adam(**hyperparams)`` from the state's values and applies
  it. So ``state.hyperparams["learning_rate"] = 1e-4`` changes the next step
  without recompiling a jitted step, and logging ``state.hyperparams`` shows
  the values used. An argument given as a schedule (a callable) is evaluated
  at ``count`` (0 at the first update) and recorded; writing it raises. Flags,
  strings, ``None`` and the names in ``static_args`` are passed as they are.

  Unlike optax, floating entries are never narrower than float32 (optax stores
  them in the parameters' dtype by default, so a bfloat16 model's ``b2 =
  0.999`` becomes 1.0 and Adam divides by 0); ``hyperparam_dtype`` narrower
  than float32 is refused for the same reason.

  Args:
    inner_factory: a function returning a transform (``optax_like.adam``,
      ``gx.lion``, ...).
    static_args: names (or one name) of arguments never held in the state.
    hyperparam_dtype: the dtype of floating entries (default: the widest
      floating dtype of the parameters, at least float32).

  Returns:
    A function with ``inner_factory``'s signature that returns the injected
    transform.

  References:
    optax's ``inject_hyperparams``,
    https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.inject_hyperparams
  """
  if not callable(inner_factory):
    raise TypeError(f"{_NAME}: inner_factory must be a function that returns a transform (e.g. "
                    f"optax_like.adam), got {type(inner_factory).__name__}.")
  static = {static_args} if isinstance(static_args, str) else set(static_args)
  signature = inspect.signature(inner_factory)
  if not static <= set(signature.parameters):
    raise ValueError(f"{_NAME}({inner_factory.__name__}): static_args {sorted(static - set(signature.parameters))} "
                     f"are not parameters of the factory; it takes {list(signature.parameters)}.")
  if hyperparam_dtype is not None:
    dtype = jnp.dtype(hyperparam_dtype)
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
      raise ValueError(
          f"{_NAME}({inner_factory.__name__}): hyperparam_dtype={dtype.name} is refused: hyperparameters are "
          "kept in float32 or wider (in bfloat16, b2=0.999 rounds to 1.0 and Adam divides by zero). Leave it "
          "None (float32, or float64 for float64 parameters) or pass jnp.float32/jnp.float64.")

  @functools.wraps(inner_factory)
  def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    numeric, schedules, others = {}, {}, {}
    for name, value in bound.arguments.items():
      if name in static or isinstance(value, (bool, np.bool_, str)) or value is None:
        others[name] = value
      elif isinstance(value, GradientTransformation) or not (
          callable(value) or isinstance(value, (numbers.Number, jax.Array, np.ndarray, np.generic))):
        others[name] = value
      elif callable(value):
        schedules[name] = value
      else:
        if isinstance(value, jax.core.Tracer):
          raise TypeError(f"{_NAME}({inner_factory.__name__}): {name} is a traced value; call the injected "
                          "factory outside jit/vmap (its values then live in the state, which the step reads).")
        if np.ndim(value) != 0:
          raise ValueError(f"{_NAME}({inner_factory.__name__}): {name} has shape {np.shape(value)}; "
                           "hyperparameters held in the state are scalars.")
        numeric[name] = value
    inner = inner_factory(**bound.arguments)  # builds once: the factory checks its arguments here
    if not isinstance(inner, GradientTransformation) and not (hasattr(inner, "init") and hasattr(inner, "update")):
      raise TypeError(f"{_NAME}: {inner_factory.__name__}(...) returned {type(inner).__name__}, not a transform.")
    return _Injected(inner_factory, numeric, schedules, _Arguments(others), hyperparam_dtype)

  return wrapped
