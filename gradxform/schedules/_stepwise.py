"""Step-wise schedules as torch's lr_scheduler writes them: StepLR, MultiStepLR, LambdaLR, MultiplicativeLR."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from gradxform._core.module import static_field
from gradxform.schedules._base import Schedule, check_steps, check_value, float_dtype, prepare

__all__ = ["lambda_schedule", "multiplicative", "multistep_decay", "step_decay"]


class _StepDecay(Schedule):
  init_value: Any
  gamma: Any
  milestones: tuple = static_field()
  step_size: int = static_field(default=0)

  def __call__(self, count):
    count, init_value, gamma = prepare(count, self.init_value, self.gamma)
    if self.step_size:
      exponent = jnp.floor(count / self.step_size)
    else:
      exponent = sum(jnp.where(count >= m, 1.0, 0.0) for m in self.milestones) * jnp.ones_like(count)
    return init_value * gamma ** exponent


def step_decay(init_value: Any, step_size: int, gamma: Any = 0.1) -> Schedule:
  """Multiplied by ``gamma`` every ``step_size`` steps, as ``torch.optim.lr_scheduler.StepLR``.

  .. math::

     s(t) = I\\, \\gamma^{\\lfloor t / S \\rfloor}

  Args:
    init_value: ``I``, torch's initial learning rate.
    step_size: ``S``, a positive integer.
    gamma: ``γ ≥ 0``.

  Returns:
    A :class:`Schedule`.

  References:
    torch's ``StepLR``, https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.StepLR.html
  """
  check_value("step_decay", "init_value", init_value)
  check_value("step_decay", "gamma", gamma, low=0.0, hint="gamma multiplies the value; torch uses 0.1.")
  size = check_steps("step_decay", "step_size", step_size, "the steps between two decays")
  return _StepDecay(init_value, gamma, milestones=(), step_size=size)


def multistep_decay(init_value: Any, milestones: Sequence[int], gamma: Any = 0.1) -> Schedule:
  """Multiplied by ``gamma`` at each milestone, as ``torch.optim.lr_scheduler.MultiStepLR``.

  .. math::

     s(t) = I\\, \\gamma^{|\\{i : m_i \\le t\\}|}

  (a milestone listed twice counts twice, as in torch).

  Args:
    init_value: ``I``, torch's initial learning rate.
    milestones: non-negative integers ``m_i``.
    gamma: ``γ ≥ 0``.

  Returns:
    A :class:`Schedule`.

  References:
    torch's ``MultiStepLR``, https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.MultiStepLR.html
  """
  check_value("multistep_decay", "init_value", init_value)
  check_value("multistep_decay", "gamma", gamma, low=0.0, hint="gamma multiplies the value; torch uses 0.1.")
  if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
    raise TypeError(f"gx.schedules.multistep_decay: milestones must be a list of integers, got "
                    f"{type(milestones).__name__}.")
  steps = tuple(sorted(check_steps("multistep_decay", f"milestones[{i}]", m, "a step at which to decay",
                                   positive=False) for i, m in enumerate(milestones)))
  return _StepDecay(init_value, gamma, milestones=steps)


class _Lambda(Schedule):
  init_value: Any
  fn: Callable = static_field()
  cumulative: bool = static_field(default=False)

  def __call__(self, count):
    count, init_value = prepare(count, self.init_value)  # fn sees the count as a float, as torch's epoch
    if not self.cumulative:
      factor = jnp.asarray(self.fn(count))
    else:  # prod_{k=1..count} fn(k)
      factor = jax.lax.fori_loop(1, jnp.maximum(count, 0).astype(jnp.int32) + 1,
                                 lambda k, acc: acc * jnp.asarray(self.fn(k.astype(count.dtype)), acc.dtype),
                                 jnp.ones_like(init_value))
    dtype = float_dtype(init_value, factor)
    return init_value.astype(dtype) * factor.astype(dtype)


def _check_fn(fn, name, value):
  if not callable(value):
    raise TypeError(f"gx.schedules.{fn}: {name} must be a function of the step count, got "
                    f"{type(value).__name__}.")


def lambda_schedule(init_value: Any, fn: Callable) -> Schedule:
  """``init_value`` times a function of the step, as ``torch.optim.lr_scheduler.LambdaLR``.

  .. math::

     s(t) = I\\, f(t)

  Args:
    init_value: ``I``, torch's initial learning rate.
    fn: ``f``, a jax-traceable function of the step count (torch's ``lr_lambda``), given the count
      as a floating scalar.

  Returns:
    A :class:`Schedule`.

  References:
    torch's ``LambdaLR``, https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.LambdaLR.html
  """
  check_value("lambda_schedule", "init_value", init_value)
  _check_fn("lambda_schedule", "fn", fn)
  return _Lambda(init_value, fn=fn)


def multiplicative(init_value: Any, fn: Callable) -> Schedule:
  """Multiplied by ``fn(t)`` at every step, as ``torch.optim.lr_scheduler.MultiplicativeLR``.

  .. math::

     s(t) = I \\prod_{k=1}^{t} f(k)

  computed as a pure function of ``t`` (a loop of ``t`` products), so it resumes from any step.

  Args:
    init_value: ``I``, torch's initial learning rate.
    fn: ``f``, a jax-traceable function of the step count (torch's ``lr_lambda``), given the count
      as a floating scalar.

  Returns:
    A :class:`Schedule`.

  References:
    torch's ``MultiplicativeLR``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.MultiplicativeLR.html
  """
  check_value("multiplicative", "init_value", init_value)
  _check_fn("multiplicative", "fn", fn)
  return _Lambda(init_value, fn=fn, cumulative=True)
