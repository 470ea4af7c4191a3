"""optax's schedule names (``optax.linear_schedule``, ``optax.schedules.cosine_decay_schedule``, ...).

Each is gradxform's schedule of the same rule and signature
(:mod:`gradxform.schedules`, where the names drop optax's ``_schedule``
suffix): ``cosine_decay_schedule`` *is* ``gx.schedules.cosine_decay``. They
are reached both as ``optax_like.X`` and ``optax_like.schedules.X``, as in
optax. ``inject_hyperparams`` is optax's wrapper (state layout included):
:func:`gradxform.optax_like.inject_hyperparams`.
"""

import numbers
import warnings
from typing import Any, Optional

from gradxform import schedules as _gx
from gradxform.optax_like._inject import InjectHyperparamsState as InjectHyperparamsState
from gradxform.optax_like._inject import inject_hyperparams as inject_hyperparams

__all__ = ["InjectHyperparamsState", "Schedule", "constant_schedule", "cosine_decay_schedule",
           "cosine_onecycle_schedule", "exponential_decay", "inject_hyperparams", "join_schedules",
           "linear_onecycle_schedule", "linear_schedule", "piecewise_constant_schedule",
           "piecewise_interpolate_schedule", "polynomial_schedule", "sgdr_schedule", "warmup_constant_schedule",
           "warmup_cosine_decay_schedule", "warmup_exponential_decay_schedule"]

Schedule = _gx.Schedule
constant_schedule = _gx.constant
cosine_decay_schedule = _gx.cosine_decay
cosine_onecycle_schedule = _gx.cosine_onecycle
join_schedules = _gx.join
linear_onecycle_schedule = _gx.linear_onecycle
piecewise_constant_schedule = _gx.piecewise_constant
piecewise_interpolate_schedule = _gx.piecewise_interpolate
sgdr_schedule = _gx.sgdr
warmup_constant_schedule = _gx.warmup_constant
warmup_exponential_decay_schedule = _gx.warmup_exponential_decay


def _is(value: Any, test) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool) and test(value)


def _constant_instead(name: str, why: str, init_value: Any) -> Schedule:
  warnings.warn(f"optax_like.{name}: {why}; as optax, the schedule is the constant init_value.", stacklevel=3)
  return _gx.constant(init_value)


def _begin(name: str, transition_begin: int) -> int:
  if _is(transition_begin, lambda v: v < 0):
    warnings.warn(f"optax_like.{name}: transition_begin={transition_begin} < 0 is read as 0, as optax does.",
                  stacklevel=3)
    return 0
  return transition_begin


def polynomial_schedule(init_value: Any, end_value: Any, power: Any, transition_steps: int,
                        transition_begin: int = 0) -> Schedule:
  """``optax.polynomial_schedule`` (:func:`gradxform.schedules.polynomial`); ``transition_steps ≤ 0`` is constant."""
  if _is(transition_steps, lambda v: v <= 0):
    return _constant_instead("polynomial_schedule", f"transition_steps={transition_steps} <= 0", init_value)
  return _gx.polynomial(init_value, end_value, power, transition_steps,
                        _begin("polynomial_schedule", transition_begin))


def linear_schedule(init_value: Any, end_value: Any, transition_steps: int, transition_begin: int = 0) -> Schedule:
  """``optax.linear_schedule`` (:func:`gradxform.schedules.linear`); ``transition_steps ≤ 0`` is constant."""
  if _is(transition_steps, lambda v: v <= 0):
    return _constant_instead("linear_schedule", f"transition_steps={transition_steps} <= 0", init_value)
  return _gx.linear(init_value, end_value, transition_steps, _begin("linear_schedule", transition_begin))


def exponential_decay(init_value: Any, transition_steps: int, decay_rate: Any, transition_begin: int = 0,
                      staircase: bool = False, end_value: Optional[Any] = None) -> Schedule:
  """``optax.exponential_decay`` (:func:`gradxform.schedules.exponential_decay`).

  As optax: ``transition_steps ≤ 0`` or ``decay_rate = 0`` give the constant
  ``init_value``, a negative ``transition_begin`` is read as 0.
  """
  if _is(transition_steps, lambda v: v <= 0):
    return _constant_instead("exponential_decay", f"transition_steps={transition_steps} <= 0", init_value)
  if _is(decay_rate, lambda v: v == 0):
    return _constant_instead("exponential_decay", "decay_rate=0", init_value)
  return _gx.exponential_decay(init_value, transition_steps, decay_rate, _begin("exponential_decay", transition_begin),
                               staircase, end_value)


def warmup_cosine_decay_schedule(init_value: Any, peak_value: Any, warmup_steps: int, decay_steps: int,
                                 end_value: Any = 0.0, exponent: Any = 1.0) -> Schedule:
  """``optax.warmup_cosine_decay_schedule`` (:func:`gradxform.schedules.warmup_cosine_decay`).

  As optax, ``peak_value = 0`` gives 0 after the warmup (``gx`` decays from 0
  to ``end_value``).
  """
  if _is(peak_value, lambda v: v == 0):
    return _gx.join([_gx.linear(init_value, 0.0, warmup_steps), _gx.constant(0.0)], [warmup_steps])
  return _gx.warmup_cosine_decay(init_value, peak_value, warmup_steps, decay_steps, end_value, exponent)
