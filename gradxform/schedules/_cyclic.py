"""Schedules that cycle: cosine with warm restarts (torch and optax's SGDR), cyclic (torch's CyclicLR)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

import jax.numpy as jnp

from gradxform._core.module import static_field
from gradxform.schedules._base import Schedule, check_option, check_steps, check_value, prepare
from gradxform.schedules._cosine import warmup_cosine_decay
from gradxform.schedules._join import join

__all__ = ["cosine_warm_restarts", "cyclic", "sgdr"]

_INT32_MAX = 2**31 - 1


class _CosineWarmRestarts(Schedule):
  init_value: Any
  eta_min: Any
  T_0: int = static_field()
  T_mult: int = static_field(default=1)

  def __call__(self, count):
    step = jnp.asarray(count).astype(jnp.int32)
    if self.T_mult == 1:
      elapsed, length = step % self.T_0, jnp.asarray(self.T_0, jnp.int32)
    else:  # restarts at b_k = T_0 (T_mult^k - 1) / (T_mult - 1): exact integers, no logarithm
      elapsed, length = step, jnp.asarray(self.T_0, jnp.int32)
      start, period = 0, self.T_0
      while start + period <= _INT32_MAX:
        start += period
        period *= self.T_mult
        later = step >= start
        elapsed = jnp.where(later, step - start, elapsed)
        length = jnp.where(later, jnp.asarray(min(period, _INT32_MAX), jnp.int32), length)
    _, init_value, eta_min = prepare(0, self.init_value, self.eta_min)
    fraction = elapsed.astype(init_value.dtype) / length.astype(init_value.dtype)
    return eta_min + (init_value - eta_min) * (1 + jnp.cos(jnp.pi * fraction)) / 2


def cosine_warm_restarts(init_value: Any, T_0: int, T_mult: int = 1, eta_min: Any = 0.0) -> Schedule:
  """Cosine annealing with warm restarts, as ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``.

  .. math::

     s(t) = \\eta_{min} + \\tfrac{1}{2}(I - \\eta_{min})\\left(1 + \\cos\\frac{\\pi T_{cur}}{T_i}\\right)

  where the ``i``-th period lasts ``T_i = T_0 T_{mult}^i`` steps and ``T_cur`` counts the steps since the
  last restart (the value jumps back to ``I`` at each restart). ``s(t)`` is torch's learning rate after
  ``t`` calls of ``scheduler.step()``. The restart steps are computed exactly in integers.

  Args:
    init_value: ``I``, torch's initial learning rate.
    T_0: the length of the first period, a positive integer.
    T_mult: the factor by which each period grows, a positive integer.
    eta_min: ``η_min``, the value at the end of each period.

  Returns:
    A :class:`Schedule`.

  References:
    Loshchilov & Hutter, 2017, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    https://arxiv.org/abs/1608.03983
  """
  fn = "cosine_warm_restarts"
  check_value(fn, "init_value", init_value)
  check_value(fn, "eta_min", eta_min)
  t0 = check_steps(fn, "T_0", T_0, "the length of the first period")
  mult = check_steps(fn, "T_mult", T_mult, "the factor by which each period grows")
  return _CosineWarmRestarts(init_value, eta_min, T_0=t0, T_mult=mult)


def sgdr(cosine_kwargs: Iterable[dict]) -> Schedule:
  """SGDR in optax's form (``optax.sgdr_schedule``): warmup-cosine periods joined end to end.

  .. math::

     s(t) = w_i(t - B_i) \\quad\\text{for}\\quad B_i \\le t < B_{i+1}, \\qquad B_{i+1} = B_i + D_i

  where ``w_i`` is :func:`warmup_cosine_decay` with the ``i``-th dict of keyword arguments and ``D_i`` its
  ``decay_steps``.

  Args:
    cosine_kwargs: one dict of :func:`warmup_cosine_decay` arguments per period (``init_value``,
      ``peak_value``, ``warmup_steps``, ``decay_steps``, optionally ``end_value``, ``exponent``).

  Returns:
    A :class:`Schedule`.

  References:
    Loshchilov & Hutter, 2017, https://arxiv.org/abs/1608.03983; optax's ``sgdr_schedule``,
    https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html
  """
  periods = list(cosine_kwargs)
  if not periods or not all(isinstance(p, dict) for p in periods):
    raise TypeError("gx.schedules.sgdr: cosine_kwargs must be a non-empty list of dicts of "
                    "warmup_cosine_decay arguments, e.g. [dict(init_value=0.0, peak_value=0.1, "
                    "warmup_steps=10, decay_steps=100)] * 3.")
  schedules, boundaries, step = [], [], 0
  for i, kwargs in enumerate(periods):
    if "decay_steps" not in kwargs:
      raise ValueError(f"gx.schedules.sgdr: cosine_kwargs[{i}] has no decay_steps (the period's length).")
    schedules.append(warmup_cosine_decay(**kwargs))
    step += kwargs["decay_steps"]
    boundaries.append(step)
  return join(schedules, boundaries[:-1])


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


class _Cyclic(Schedule):
  base_value: Any
  max_value: Any
  gamma: Any
  step_size_up: int = static_field()
  step_size_down: int = static_field()
  mode: str = static_field(default="triangular")
  scale_fn: Optional[Callable] = static_field(default=None)
  scale_mode: str = static_field(default="cycle")

  def __call__(self, count):
    count, base, peak, gamma = prepare(count, self.base_value, self.max_value, self.gamma)
    total = self.step_size_up + self.step_size_down
    ratio = self.step_size_up / total
    cycle = jnp.floor(1 + count / total)
    x = 1 + count / total - cycle
    factor = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
    if self.scale_fn is not None:
      scale = self.scale_fn(cycle if self.scale_mode == "cycle" else count)
    elif self.mode == "triangular":
      scale = jnp.ones_like(count)
    elif self.mode == "triangular2":
      scale = 1 / 2.0 ** (cycle - 1)
    else:  # exp_range
      scale = gamma ** count
    return base + (peak - base) * factor * jnp.asarray(scale, count.dtype)


def cyclic(base_value: Any, max_value: Any, step_size_up: int = 2000, step_size_down: Optional[int] = None,
           mode: str = "triangular", gamma: Any = 1.0, scale_fn: Optional[Callable] = None,
           scale_mode: str = "cycle") -> Schedule:
  """Cyclical values between two bounds, as ``torch.optim.lr_scheduler.CyclicLR``.

  .. math::

     c = \\lfloor 1 + t / N \\rfloor, \\quad x = 1 + t/N - c, \\quad
     f = \\begin{cases} x / r & x \\le r \\\\ (x - 1)/(r - 1) & x > r \\end{cases}, \\qquad
     s(t) = b + (m - b)\\, f\\, \\sigma

  with ``N = up + down``, ``r = up / N`` and ``σ = 1`` ("triangular"), ``2^{-(c-1)}`` ("triangular2") or
  ``γ^t`` ("exp_range"). torch's ``cycle_momentum`` companion (momentum from ``max_momentum`` down to
  ``base_momentum`` while the learning rate rises) is this schedule with the bounds swapped:
  ``cyclic(max_momentum, base_momentum, ...)``, usable on ``momentum`` or ``b1``.

  Args:
    base_value: ``b``, torch's ``base_lr``.
    max_value: ``m``, torch's ``max_lr``.
    step_size_up: steps in the increasing half of a cycle (a positive integer).
    step_size_down: steps in the decreasing half (default: ``step_size_up``).
    mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
    gamma: ``γ`` of "exp_range".
    scale_fn: a custom ``σ`` (replaces ``mode``), a function of the cycle or of the step.
    scale_mode: ``"cycle"`` or ``"iterations"``: what ``scale_fn`` is given.

  Returns:
    A :class:`Schedule`.

  References:
    Smith, 2017, "Cyclical Learning Rates for Training Neural Networks", https://arxiv.org/abs/1506.01186
  """
  fn = "cyclic"
  check_value(fn, "base_value", base_value)
  check_value(fn, "max_value", max_value)
  check_value(fn, "gamma", gamma, low=0.0, hint="gamma is exp_range's decay per step; torch uses 1.0.")
  up = check_steps(fn, "step_size_up", step_size_up, "the steps of the increasing half of a cycle")
  down = up if step_size_down is None else check_steps(
      fn, "step_size_down", step_size_down, "the steps of the decreasing half of a cycle")
  mode = check_option(fn, "mode", mode, _CYCLIC_MODES)
  scale_mode = check_option(fn, "scale_mode", scale_mode, ("cycle", "iterations"))
  if scale_fn is not None and not callable(scale_fn):
    raise TypeError(f"gx.schedules.cyclic: scale_fn must be a function, got {type(scale_fn).__name__}.")
  return _Cyclic(base_value, max_value, gamma, step_size_up=up, step_size_down=down, mode=mode,
                 scale_fn=scale_fn, scale_mode=scale_mode)
