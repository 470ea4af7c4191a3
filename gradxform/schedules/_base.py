"""The schedule base class and the checks and helpers the schedules share."""

from __future__ import annotations

import operator
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core.hyperparams import check_hyperparameter
from gradxform._core.module import Module
from gradxform._core.tree import wider

__all__ = ["Schedule"]

DECAY_SHAPES = ("linear", "cosine", "sqrt")
# The optimizers' step count is an int32 that saturates here: a later step is never reached.
MAX_STEP = int(np.iinfo(np.int32).max)
ANNEAL_STRATEGIES = ("cos", "linear")


class Schedule(Module):
  """Base class of schedules: ``schedule(count) -> value``, a scalar floating array.

  Subclasses are frozen dataclasses registered as pytrees (see
  :class:`gradxform._module.Module`): numeric fields are leaves, fields
  declared with ``static_field()`` are options. They define ``__call__``.
  A schedule given as a hyperparameter is checked over its whole range at
  construction (``range_checked``; see :func:`gradxform._core.ranges.sample_counts`).
  """

  range_checked = True

  def __call__(self, count: Any) -> jax.Array:
    """The value at ``count`` (an integer scalar, 0 at the first update)."""
    raise NotImplementedError(f"{type(self).__name__} must define __call__(count).")


def float_dtype(*values: Any) -> jnp.dtype:
  """The widest floating dtype among ``values``; jax's default float if none has one."""
  dtypes = [jnp.dtype(v.dtype) for v in values
            if hasattr(v, "dtype") and jnp.issubdtype(v.dtype, jnp.floating)]
  if not dtypes:
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))
  return jnp.dtype(jax.dtypes.canonicalize_dtype(wider(*dtypes)))


def prepare(count: Any, *values: Any) -> tuple[jax.Array, ...]:
  """Casts ``count`` and ``values`` to the values' common floating dtype."""
  dtype = float_dtype(*values)
  count = jnp.asarray(count).astype(dtype)
  return (count,) + tuple(jnp.asarray(v, dtype) for v in values)


def since(count: Any, begin: int, dtype: Any) -> jax.Array:
  """``max(count − begin, 0)`` in ``dtype``, subtracting integer counts exactly before rounding.

  A float32 count cannot tell 2³¹ − 2 from 2³¹ − 1; the difference of two
  int32 step numbers is exact.
  """
  count = jnp.asarray(count)
  if jnp.issubdtype(count.dtype, jnp.integer):
    return jnp.maximum(count - begin, 0).astype(dtype) if begin else count.astype(dtype)
  return jnp.maximum(count.astype(dtype) - begin, 0)


def lerp(start: jax.Array, end: jax.Array, weight: jax.Array) -> jax.Array:
  """``start·(1 − w) + end·w``: exactly ``start`` at ``w = 0`` and ``end`` at ``w = 1``."""
  return start * (1 - weight) + end * weight


def check_steps(fn: str, name: str, value: Any, meaning: str, *, positive: bool = True) -> int:
  """Returns ``value`` as an ``int`` if it is a positive (or non-negative) integer."""
  where = f"gx.schedules.{fn}"
  kind = "positive" if positive else "non-negative"
  try:
    if isinstance(value, (bool, np.bool_)):
      raise TypeError
    steps = operator.index(value)
  except TypeError:
    raise TypeError(
        f"{where}: {name} must be a {kind} Python integer ({meaning}), got "
        f"{type(value).__name__} {value!r}. Step counts are static options, not "
        f"traced values; pass e.g. {name}=int(...)."
    ) from None
  if steps < (1 if positive else 0):
    raise ValueError(
        f"{where}: {name}={steps} must be a {kind} integer ({meaning}). "
        f"Pass {name}{'>=1' if positive else '>=0'}."
    )
  check_reachable(fn, name, steps)
  return steps


def check_reachable(fn: str, name: str, steps: int) -> None:
  """Refuses a step number the int32 step count cannot reach (it saturates at 2³¹ − 1)."""
  if steps > MAX_STEP:
    raise ValueError(
        f"gx.schedules.{fn}: {name}={steps} is beyond the last step an optimizer can count: "
        f"step counts are int32 and stop at 2**31 - 1 = {MAX_STEP}, so the schedule would "
        f"never get there. Pass {name} <= {MAX_STEP}."
    )


def check_value(fn: str, name: str, value: Any, hint: str = "", **bounds: Any) -> None:
  """Checks a numeric argument (a number or an array; traced values are not checked)."""
  if value is None or isinstance(value, (str, bytes)) or callable(value):
    raise TypeError(
        f"gx.schedules.{fn}: {name} must be a number or an array, got "
        f"{type(value).__name__}. To run one schedule after another, use "
        "gx.schedules.join."
    )
  check_hyperparameter(f"gx.schedules.{fn}", name, value, hint=hint, **bounds)


def check_option(fn: str, name: str, value: Any, allowed: Sequence[str]) -> str:
  if value not in allowed:
    raise ValueError(
        f"gx.schedules.{fn}: {name}={value!r} is not supported; use one of "
        f"{', '.join(repr(a) for a in allowed)}."
    )
  return value
