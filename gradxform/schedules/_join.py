"""Schedules run one after another: ``join``."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax.numpy as jnp

from gradxform._core.module import static_field
from gradxform.schedules._base import float_dtype, check_steps, Schedule

__all__ = ["join"]


class _Function(Schedule):
  """A plain function ``count -> value`` (an optax schedule, a lambda) inside :func:`join`."""

  fn: Callable = static_field()

  def __call__(self, count):
    value = self.fn(count)
    return jnp.asarray(value, float_dtype(value))

class _Join(Schedule):
  schedules: tuple
  boundaries: tuple = static_field()

  def __call__(self, count):
    count = jnp.asarray(count)
    values = [self.schedules[0](count)]
    for boundary, schedule in zip(self.boundaries, self.schedules[1:]):
      # Clamped at 0: the value is discarded before the boundary, and this keeps
      # functions such as sqrt away from negative counts (and NaN gradients).
      values.append(schedule(jnp.maximum(count - boundary, 0)))
    dtype = float_dtype(*values)
    value = jnp.asarray(values[0], dtype)
    for boundary, other in zip(self.boundaries, values[1:]):
      value = jnp.where(count < boundary, value, jnp.asarray(other, dtype))
    return value

def join(schedules: Sequence[Any], boundaries: Sequence[int]) -> Schedule:
  """Runs schedules one after another, as ``optax.join_schedules``.

  .. math::

     s(t) = s_i(t - b_{i-1}) \\quad\\text{for}\\quad b_{i-1} \\le t < b_i,
     \\qquad b_{-1} = 0,\\; b_{n} = \\infty

  Args:
    schedules: ``n + 1`` schedules (``Schedule`` instances, or any function
      ``count -> value`` such as an optax schedule, kept as a static option).
    boundaries: ``n`` strictly increasing non-negative integers ``b_i``.

  Returns:
    A :class:`Schedule`.

  References:
    optax's ``join_schedules``, https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html
  """
  if isinstance(schedules, (str, bytes)) or not isinstance(schedules, Sequence) or not schedules:
    raise TypeError(
        "gx.schedules.join: schedules must be a non-empty list of schedules, got "
        f"{type(schedules).__name__}. Example: join([linear(0.0, 0.1, 100), "
        "cosine_decay(0.1, 900)], [100])."
    )
  parts = []
  for i, schedule in enumerate(schedules):
    if isinstance(schedule, Schedule):
      parts.append(schedule)
    elif callable(schedule):
      parts.append(_Function(schedule))
    else:
      raise TypeError(
          f"gx.schedules.join: schedules[{i}] must be a schedule (a function of the "
          f"step count), got {type(schedule).__name__}. For a constant value use "
          "gx.schedules.constant(value)."
      )
  if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
    raise TypeError(f"gx.schedules.join: boundaries must be a list of integers, got "
                    f"{type(boundaries).__name__}.")
  if len(boundaries) != len(parts) - 1:
    raise ValueError(
        f"gx.schedules.join: got {len(parts)} schedules and {len(boundaries)} "
        f"boundaries; pass exactly {len(parts) - 1} boundaries (one fewer than "
        "schedules: the steps at which each next schedule takes over)."
    )
  steps = tuple(check_steps("join", f"boundaries[{i}]", b, "a step at which the next schedule starts",
                             positive=False) for i, b in enumerate(boundaries))
  for i in range(1, len(steps)):
    if steps[i] <= steps[i - 1]:
      raise ValueError(
          f"gx.schedules.join: boundaries must be strictly increasing, but "
          f"boundaries[{i}]={steps[i]} <= boundaries[{i - 1}]={steps[i - 1]}. Boundaries "
          "are absolute steps, not lengths: for lengths L1, L2 pass [L1, L1 + L2]."
      )
  return _Join(tuple(parts), boundaries=steps)
