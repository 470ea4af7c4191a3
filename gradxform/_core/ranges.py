"""Range checks of hyperparameters: constants, arrays and schedules, in the dtype they are used in.

A constant is checked at construction as it will be cast (float32 for Python numbers), so ``b2=0.99999999``
(1.0 in float32) is refused with the nearest safe value. A schedule is checked at construction over its
whole range: a gradxform schedule (:mod:`gradxform.schedules`) at every count where its value can turn
(each step up to 4096, the steps its integer fields name and their sums, and a geometric grid to 2³¹ − 1),
a plain function at count 0 (the value the first update uses; ``init`` evaluates it there too).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_hyperparameter", "sample_counts"]

# The step count is an int32 that saturates here.
_MAX_COUNT = int(np.iinfo(np.int32).max)
_DENSE = 4096  # every count below this is sampled


def _is_concrete(value: Any) -> bool:
  return not isinstance(value, jax.core.Tracer)


def check_hyperparameter(
    transform: str,
    name: str,
    value: Any,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> None:
  """Raises a ``ValueError`` if a hyperparameter is outside its range, in the dtype it is used in.

  A concrete value is checked in float64 and again as cast to its dtype of use
  (its own floating dtype, float32 for Python numbers), so a value that
  rounds out of the interval or overflows is refused with the nearest safe
  value. A schedule is checked over its range (see :func:`sample_counts`); a
  traced value, or a schedule of traced values, is not checked (it is only
  known when the update runs). ``hint`` says what the hyperparameter means
  and which value to use instead.
  """
  if callable(value):
    _check_schedule(transform, name, value, dict(low=low, high=high, low_open=low_open, high_open=high_open,
                                                 hint=hint))
    return
  if not _is_concrete(value):
    return
  if not (isinstance(value, numbers.Number) or hasattr(value, "__array__")):
    raise TypeError(
        f"{transform}: {name} must be a number, an array or a schedule "
        f"(a function of the step count); got {type(value).__name__} {value!r}."
    )
  if isinstance(value, (bool, np.bool_)) or (
      hasattr(value, "dtype") and jnp.issubdtype(value.dtype, jnp.bool_)
  ):
    raise TypeError(f"{transform}: {name} must be a number, an array or a schedule, not a boolean.")
  try:
    array = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError):
    raise TypeError(
        f"{transform}: {name} must be a number, an array or a schedule "
        f"(a function of the step count); got {type(value).__name__}."
    ) from None
  shown = (str(value) if isinstance(value, np.generic)  # np.float32(0.1) shown as 0.1, not its float64
           else value if isinstance(value, numbers.Number) else array)
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{transform}: {name}={shown} is not finite. {hint}".rstrip())
  left = "-inf" if low is None else f"{low:g}"
  right = "inf" if high is None else f"{high:g}"
  interval = ("(" if low_open or low is None else "[") + f"{left}, {right}" + (
      ")" if high_open or high is None else "]")

  out_of_range = lambda a: bool(_outside(a, low, high, low_open, high_open).any())  # noqa: E731

  if out_of_range(array):
    raise ValueError(f"{transform}: {name}={shown} is out of range {interval}. {hint}".rstrip())
  # The value is used in its dtype of use (float32 for Python numbers): check it as it will be cast, so
  # b2=0.99999999 (1.0 in float32) or lr=1e40 (inf in float32) are refused instead of training to NaN.
  dtype = _use_dtype(value)
  with np.errstate(over="ignore", under="ignore", invalid="ignore"):
    cast = np.asarray(array.astype(dtype), dtype=np.float64)
  if not np.all(np.isfinite(cast)) or out_of_range(cast):
    safe = _nearest_safe(array, dtype, low, high, low_open, high_open)
    became = cast if cast.ndim else cast.item()
    wide = (" (under jax_enable_x64, a float64 array such as np.float64(...) is used in float64)"
            if dtype == np.float32 and jax.config.jax_enable_x64 else "")
    raise ValueError(
        f"{transform}: {name}={shown} becomes {became} in {dtype.name}, the dtype it is computed in{wide}, "
        f"which is {'not finite' if not np.all(np.isfinite(cast)) else f'out of range {interval}'}; "
        f"the nearest safe value is {safe:.{jnp.finfo(dtype).precision + 3}g}. {hint}".rstrip())


def _outside(a: np.ndarray, low, high, low_open: bool, high_open: bool) -> np.ndarray:
  """Elementwise: whether each entry of ``a`` lies outside the interval (``None`` bounds are open-ended)."""
  bad = np.zeros(np.shape(a), bool)
  if low is not None:
    bad |= (a <= low) if low_open else (a < low)
  if high is not None:
    bad |= (a >= high) if high_open else (a > high)
  return bad


def _use_dtype(value: Any) -> np.dtype:
  """The dtype a hyperparameter is computed in: its own floating dtype (canonicalized, so float64 only
  under x64), else float32 (Python numbers and integer arrays)."""
  dtype = getattr(value, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jnp.floating):
    return np.dtype(jax.dtypes.canonicalize_dtype(dtype))
  return np.dtype(np.float32)


def _nearest_safe(array: np.ndarray, dtype: np.dtype, low, high, low_open: bool, high_open: bool) -> float:
  """The value of ``dtype`` closest to the (first offending) entry of ``array`` inside the interval."""
  info = jnp.finfo(dtype)
  top, bottom = float(info.max), -float(info.max)
  if high is not None:
    h = np.asarray(high, dtype)
    top = min(top, float(np.nextafter(h, np.asarray(-np.inf, dtype)) if high_open else h))
  if low is not None:
    lo = np.asarray(low, dtype)
    bottom = max(bottom, float(np.nextafter(lo, np.asarray(np.inf, dtype)) if low_open else lo))
  flat = array.reshape(-1)
  with np.errstate(over="ignore", under="ignore", invalid="ignore"):
    cast = flat.astype(dtype).astype(np.float64)
  bad = [x for x, c in zip(flat, cast) if not (bottom <= c <= top)]
  x = float(bad[0]) if bad else float(flat[0])
  return float(min(max(x, bottom), top))


def sample_counts(schedule: Any) -> np.ndarray:
  """The counts (int32) at which a gradxform schedule is checked: where its value can turn.

  Built-in schedules are piecewise monotone between step numbers that their integer fields name
  (warm-up lengths, boundaries, periods), sums of two of them (a joined schedule's offset plus a
  piece's own boundary) or a fraction of one (``pct_start · total_steps``). The samples are every count
  below 4096, each such step and its neighbours, and a geometric grid up to ``2³¹ − 1`` (the count
  saturates there).
  """
  found, fractions = set(), set()

  def collect(obj, depth=0):
    if depth > 8 or isinstance(obj, (bool, np.bool_, str)) or (callable(obj) and not dataclasses.is_dataclass(obj)):
      return
    if isinstance(obj, (int, np.integer)):
      found.add(int(obj))
    elif isinstance(obj, float) and 0.0 < obj < 1.0:
      fractions.update((obj, 2 * obj))  # one_cycle's pct_start: a phase ends at pct_start · total_steps
    elif isinstance(obj, (tuple, list)):
      for item in obj:
        collect(item, depth + 1)
      if obj and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in obj):
        found.update(int(x) for x in np.cumsum(np.asarray(obj, np.int64)))  # lengths given one after another
    elif isinstance(obj, dict):
      collect(tuple(obj.keys()), depth + 1)
      collect(tuple(obj.values()), depth + 1)
    elif dataclasses.is_dataclass(obj):
      for field in dataclasses.fields(obj):
        collect(getattr(obj, field.name), depth + 1)

  collect(schedule)
  steps = sorted(x for x in found if 0 < x <= _MAX_COUNT)[:64]
  steps = sorted(set(steps) | {int(f * n) for f in fractions for n in steps})[:96]
  turns = {a + b + d for a in steps for b in [0] + steps for d in (-1, 0, 1)}
  grid = np.geomspace(_DENSE, _MAX_COUNT, 512).astype(np.int64)
  counts = np.unique(np.concatenate([np.arange(_DENSE), grid, np.fromiter(turns, np.int64, len(turns)),
                                     [_MAX_COUNT]]))
  return counts[(counts >= 0) & (counts <= _MAX_COUNT)].astype(np.int32)


def _under_trace() -> bool:
  """Whether an operation now would be staged into a ``jit``/``vmap`` trace rather than run."""
  return isinstance(jnp.zeros((), jnp.int32) + 1, jax.core.Tracer)


def _check_schedule(transform: str, name: str, schedule: Any, bounds: dict) -> None:
  """Checks a schedule's values (see the module docstring); a schedule that cannot be evaluated here is
  left to ``init``, which evaluates it at count 0 and names the transform if it fails."""
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(schedule)) or _under_trace():
    return
  counts = None
  if getattr(schedule, "range_checked", False):  # a gradxform schedule: pure, vmappable
    counts = sample_counts(schedule)
    try:
      values = jax.vmap(schedule)(jnp.asarray(counts))
    except Exception:  # a user function inside join or lambda_schedule that does not vmap: count 0 only
      counts = None
  if counts is None:
    counts = np.zeros(1, np.int32)
    try:
      values = schedule(jnp.zeros((), jnp.int32))
    except Exception:
      return
  if not (isinstance(values, numbers.Number) or hasattr(values, "dtype")) or not _is_concrete(values):
    return
  dtype = _use_dtype(values)
  array = np.asarray(values, np.float64).reshape(-1)
  if array.size != counts.size:
    return  # not a scalar schedule: resolve refuses it with its shape
  interval = (bounds["low"], bounds["high"], bounds["low_open"], bounds["high_open"])
  with np.errstate(over="ignore", under="ignore", invalid="ignore"):
    cast = array.astype(dtype).astype(np.float64)
  bad = ~np.isfinite(cast) | _outside(array, *interval) | _outside(cast, *interval)
  if not bad.any():
    return
  first = int(np.argmax(bad))
  value = np.asarray(values).reshape(-1)[first] if hasattr(values, "dtype") else values  # keeps its dtype
  check_hyperparameter(transform, f"{name} (a schedule; its value at step {int(counts[first])})", value,
                       **bounds)
