"""Monotone schedules: constant, linear, polynomial, exponential and piecewise-constant decay."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax.numpy as jnp

from gradxform._core.module import static_field
from gradxform.schedules._base import float_dtype, prepare, lerp, since, check_reachable, check_steps, check_value, Schedule

__all__ = ["constant", "exponential_decay", "linear", "piecewise_constant", "polynomial"]


class _Constant(Schedule):
  value: Any

  def __call__(self, count):
    del count
    return jnp.asarray(self.value, float_dtype(self.value))

def constant(value: Any) -> Schedule:
  """A schedule that always returns ``value``, as ``optax.constant_schedule``.

  .. math::

     s(t) = v

  Args:
    value: ``v`` (a number or an array).

  Returns:
    A :class:`Schedule`.

  References:
    optax's schedules, https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html
  """
  check_value("constant", "value", value)
  return _Constant(value)

class _Linear(Schedule):
  init_value: Any
  end_value: Any
  transition_steps: int = static_field()
  transition_begin: int = static_field(default=0)

  def __call__(self, count):
    _, init_value, end_value = prepare(count, self.init_value, self.end_value)
    if self.transition_steps == 0:  # optax's meaning: a constant init_value
      return init_value
    elapsed = since(count, self.transition_begin, init_value.dtype)
    weight = jnp.minimum(elapsed, self.transition_steps) / self.transition_steps
    return lerp(init_value, end_value, weight)

def linear(init_value: Any, end_value: Any, transition_steps: int,
           transition_begin: int = 0) -> Schedule:
  """Linear interpolation from ``init_value`` to ``end_value``, as ``optax.linear_schedule``.

  .. math::

     s(t) = I + (E - I)\\, \\frac{\\min(\\max(t - B, 0), T)}{T}

  so ``s = I`` for ``t <= B`` and ``s = E`` for ``t >= B + T``.

  Args:
    init_value: ``I``, the value up to ``transition_begin``.
    end_value: ``E``, the value from ``transition_begin + transition_steps`` on.
    transition_steps: ``T``, a non-negative integer, the length of the transition
      (0: the value stays ``init_value``, as in optax).
    transition_begin: ``B``, a non-negative integer, the step at which it starts.

  Returns:
    A :class:`Schedule`.

  References:
    Goyal et al., 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1
    Hour" (linear warmup), https://arxiv.org/abs/1706.02677
  """
  check_value("linear", "init_value", init_value)
  check_value("linear", "end_value", end_value)
  steps = check_steps("linear", "transition_steps", transition_steps,
                       "the number of steps from init_value to end_value", positive=False)
  begin = check_steps("linear", "transition_begin", transition_begin,
                       "the step at which the transition starts", positive=False)
  check_reachable("linear", "transition_begin + transition_steps", begin + steps)
  return _Linear(init_value, end_value, transition_steps=steps, transition_begin=begin)

class _Polynomial(Schedule):
  init_value: Any
  end_value: Any
  power: Any
  transition_steps: int = static_field()
  transition_begin: int = static_field(default=0)

  def __call__(self, count):
    _, init_value, end_value, power = prepare(count, self.init_value, self.end_value, self.power)
    if self.transition_steps == 0:  # optax's meaning: a constant init_value
      return init_value
    elapsed = since(count, self.transition_begin, init_value.dtype)
    done = jnp.minimum(elapsed, self.transition_steps) / self.transition_steps
    remaining = (1 - done) ** power
    return init_value * remaining + end_value * (1 - remaining)

def polynomial(init_value: Any, end_value: Any, power: Any, transition_steps: int,
               transition_begin: int = 0) -> Schedule:
  """Polynomial decay from ``init_value`` to ``end_value``, as ``optax.polynomial_schedule``.

  .. math::

     s(t) = (I - E) \\left(1 - \\frac{\\min(\\max(t - B, 0), T)}{T}\\right)^{p} + E

  Args:
    init_value: ``I``, the value up to ``transition_begin``.
    end_value: ``E``, the value from ``transition_begin + transition_steps`` on.
    power: ``p > 0``, the exponent (1 is linear).
    transition_steps: ``T``, a non-negative integer, the length of the transition
      (0: the value stays ``init_value``, as in optax).
    transition_begin: ``B``, a non-negative integer, the step at which it starts.

  Returns:
    A :class:`Schedule`.

  References:
    Chen et al., 2016, "DeepLab" ("poly" learning rate policy),
    https://arxiv.org/abs/1606.00915
  """
  check_value("polynomial", "init_value", init_value)
  check_value("polynomial", "end_value", end_value)
  check_value("polynomial", "power", power, low=0.0, low_open=True,
               hint="power is the exponent of the decay polynomial; use a positive "
               "number (1 is linear).")
  steps = check_steps("polynomial", "transition_steps", transition_steps,
                       "the number of steps from init_value to end_value", positive=False)
  begin = check_steps("polynomial", "transition_begin", transition_begin,
                       "the step at which the transition starts", positive=False)
  check_reachable("polynomial", "transition_begin + transition_steps", begin + steps)
  return _Polynomial(init_value, end_value, power, transition_steps=steps, transition_begin=begin)

class _ExponentialDecay(Schedule):
  init_value: Any
  decay_rate: Any
  transition_steps: int = static_field()
  transition_begin: int = static_field(default=0)
  staircase: bool = static_field(default=False)
  end_value: Any = None

  def __call__(self, count):
    bound = () if self.end_value is None else (self.end_value,)
    _, init_value, decay_rate, *bound = prepare(count, self.init_value, self.decay_rate, *bound)
    if self.transition_steps == 0:  # optax's meaning: a constant init_value
      return init_value
    exponent = since(count, self.transition_begin, init_value.dtype) / self.transition_steps
    if self.staircase:
      exponent = jnp.floor(exponent)
    value = init_value * decay_rate ** exponent
    if not bound:
      return value
    end_value, = bound
    return jnp.where(decay_rate < 1, jnp.maximum(value, end_value), jnp.minimum(value, end_value))

def exponential_decay(init_value: Any, transition_steps: int, decay_rate: Any,
                      transition_begin: int = 0, staircase: bool = False,
                      end_value: Optional[Any] = None) -> Schedule:
  """Exponential decay by ``decay_rate`` every ``transition_steps``, as ``optax.exponential_decay``.

  .. math::

     s(t) = I\\, r^{\\,\\max(t - B, 0) / T}
     \\quad\\text{(with } \\lfloor\\cdot\\rfloor \\text{ on the exponent if staircase)}

  then bounded by ``end_value``: from below if ``r < 1``, from above otherwise.

  Args:
    init_value: ``I``, the value up to ``transition_begin``.
    transition_steps: ``T``, a non-negative integer: the value is multiplied by
      ``r`` every ``T`` steps (0: the value stays ``init_value``, as in optax).
    decay_rate: ``r > 0``.
    transition_begin: ``B``, a non-negative integer, the step at which decay starts.
    staircase: decay in discrete jumps (integer exponent) instead of continuously.
    end_value: optional bound on the value (a floor if ``r < 1``, a ceiling if ``r > 1``).

  Returns:
    A :class:`Schedule`.

  References:
    Bengio, 2012, "Practical Recommendations for Gradient-Based Training of
    Deep Architectures", https://arxiv.org/abs/1206.5533
  """
  check_value("exponential_decay", "init_value", init_value)
  check_value("exponential_decay", "decay_rate", decay_rate, low=0.0, low_open=True,
               hint="decay_rate is the factor applied every transition_steps; use a "
               "positive number such as 0.5 (below 1 decays, above 1 grows).")
  if end_value is not None:
    check_value("exponential_decay", "end_value", end_value)
  steps = check_steps("exponential_decay", "transition_steps", transition_steps,
                       "the number of steps over which the value is multiplied by decay_rate", positive=False)
  begin = check_steps("exponential_decay", "transition_begin", transition_begin,
                       "the step at which decay starts", positive=False)
  return _ExponentialDecay(init_value, decay_rate, transition_steps=steps, transition_begin=begin,
                           staircase=bool(staircase), end_value=end_value)

class _PiecewiseConstant(Schedule):
  init_value: Any
  scales: tuple
  boundaries: tuple = static_field()

  def __call__(self, count):
    steps = jnp.asarray(count)  # compared as an integer: float32 cannot tell 2³¹ − 2 from 2³¹ − 1
    _, value, *scales = prepare(count, self.init_value, *self.scales)
    for boundary, scale in zip(self.boundaries, scales):
      value = jnp.where(steps >= boundary, value * scale, value)
    return value

def piecewise_constant(init_value: Any,
                       boundaries_and_scales: Optional[Mapping[int, Any]] = None) -> Schedule:
  """Piecewise constant: scaled at each boundary, as ``optax.piecewise_constant_schedule``.

  .. math::

     s(t) = I \\prod_{i:\\, t \\ge b_i} c_i

  Args:
    init_value: ``I``, the value before the first boundary.
    boundaries_and_scales: ``{b_i: c_i}``: from step ``b_i`` (a non-negative
      integer) on, the value is multiplied by ``c_i >= 0`` (cumulatively).

  Returns:
    A :class:`Schedule`.

  References:
    He et al., 2016, "Deep Residual Learning for Image Recognition" (learning
    rate divided by 10 at fixed steps), https://arxiv.org/abs/1512.03385
  """
  check_value("piecewise_constant", "init_value", init_value)
  if boundaries_and_scales is None:
    boundaries_and_scales = {}
  if not isinstance(boundaries_and_scales, Mapping):
    raise TypeError(
        "gx.schedules.piecewise_constant: boundaries_and_scales must be a dict "
        f"{{step: scale}}, got {type(boundaries_and_scales).__name__}. Example: "
        "{1000: 0.1, 2000: 0.1} divides the value by 10 at steps 1000 and 2000."
    )
  items = []
  for boundary, scale in boundaries_and_scales.items():
    boundary = check_steps("piecewise_constant", f"boundary {boundary!r}", boundary,
                            "a step at which the value is scaled", positive=False)
    check_value("piecewise_constant", f"scale at boundary {boundary}", scale, low=0.0,
                 hint="Scales multiply the value; use non-negative numbers (0.1 divides by 10).")
    items.append((boundary, scale))
  items.sort(key=lambda item: item[0])
  return _PiecewiseConstant(init_value, tuple(s for _, s in items),
                            boundaries=tuple(b for b, _ in items))
