"""Cosine-shaped schedules with warmup: cosine decay, warmup-cosine, warmup-stable-decay, one-cycle."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from gradxform._core.module import static_field
from gradxform.schedules._base import prepare, lerp, since, check_reachable, check_steps, check_value, check_option, DECAY_SHAPES, ANNEAL_STRATEGIES, Schedule

__all__ = ["cosine_decay", "one_cycle", "one_cycle_momentum", "warmup_cosine_decay", "warmup_stable_decay"]


class _CosineDecay(Schedule):
  init_value: Any
  alpha: Any
  exponent: Any
  decay_steps: int = static_field()

  def __call__(self, count):
    count, init_value, alpha, exponent = prepare(count, self.init_value, self.alpha, self.exponent)
    count = jnp.minimum(count, self.decay_steps)
    cosine = 0.5 * (1 + jnp.cos(jnp.pi * count / self.decay_steps))
    return init_value * ((1 - alpha) * cosine ** exponent + alpha)

def cosine_decay(init_value: Any, decay_steps: int, alpha: Any = 0.0, exponent: Any = 1.0) -> Schedule:
  """Cosine decay from ``init_value`` to ``alpha·init_value``, as ``optax.cosine_decay_schedule``.

  .. math::

     c(t) = \\tfrac{1}{2}\\left(1 + \\cos\\frac{\\pi \\min(t, T)}{T}\\right),
     \\qquad s(t) = I \\left[(1 - \\alpha)\\, c(t)^{p} + \\alpha\\right]

  Args:
    init_value: ``I``, the value at step 0.
    decay_steps: ``T``, a positive integer, the number of steps over which to decay.
    alpha: ``α``, the final value as a fraction of ``init_value``.
    exponent: ``p``, applied to the cosine factor.

  Returns:
    A :class:`Schedule`.

  References:
    Loshchilov & Hutter, 2017, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", https://arxiv.org/abs/1608.03983
  """
  check_value("cosine_decay", "init_value", init_value)
  check_value("cosine_decay", "alpha", alpha)
  check_value("cosine_decay", "exponent", exponent)
  steps = check_steps("cosine_decay", "decay_steps", decay_steps,
                       "the number of steps over which to decay")
  return _CosineDecay(init_value, alpha, exponent, decay_steps=steps)

class _WarmupCosineDecay(Schedule):
  init_value: Any
  peak_value: Any
  end_value: Any
  exponent: Any
  warmup_steps: int = static_field()
  decay_steps: int = static_field()

  def __call__(self, count):
    raw = count
    count, init_value, peak_value, end_value, exponent = prepare(
        count, self.init_value, self.peak_value, self.end_value, self.exponent)
    warmup = max(self.warmup_steps, 1)
    warm = lerp(init_value, peak_value, jnp.clip(count / warmup, 0, 1))
    cosine_steps = self.decay_steps - self.warmup_steps
    elapsed = jnp.minimum(since(raw, self.warmup_steps, count.dtype), cosine_steps)
    cosine = 0.5 * (1 + jnp.cos(jnp.pi * elapsed / cosine_steps))
    decayed = lerp(end_value, peak_value, cosine ** exponent)
    return jnp.where(count < self.warmup_steps, warm, decayed)

def warmup_cosine_decay(init_value: Any, peak_value: Any, warmup_steps: int, decay_steps: int,
                        end_value: Any = 0.0, exponent: Any = 1.0) -> Schedule:
  """Linear warmup then cosine decay, as ``optax.warmup_cosine_decay_schedule``.

  .. math::

     s(t) = \\begin{cases}
       I + (P - I)\\, t / W & t < W \\\\
       E + (P - E)\\, c(t)^{p} & t \\ge W
     \\end{cases}
     \\qquad c(t) = \\tfrac{1}{2}\\left(1 + \\cos\\frac{\\pi \\min(t - W, D - W)}{D - W}\\right)

  ``decay_steps`` includes the warmup: the value reaches ``end_value`` at step
  ``D``. (With ``peak_value = 0``, optax returns 0 after warmup; this decays
  from 0 to ``end_value``.)

  Args:
    init_value: ``I``, the value at step 0.
    peak_value: ``P``, the value at the end of the warmup.
    warmup_steps: ``W``, a non-negative integer, the length of the warmup.
    decay_steps: ``D > W``, the total length of the schedule (warmup included).
    end_value: ``E``, the value from step ``D`` on.
    exponent: ``p``, applied to the cosine factor.

  Returns:
    A :class:`Schedule`.

  References:
    Loshchilov & Hutter, 2017, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", https://arxiv.org/abs/1608.03983
  """
  fn = "warmup_cosine_decay"
  for name, value in (("init_value", init_value), ("peak_value", peak_value),
                      ("end_value", end_value), ("exponent", exponent)):
    check_value(fn, name, value)
  warmup = check_steps(fn, "warmup_steps", warmup_steps, "the length of the linear warmup",
                        positive=False)
  total = check_steps(fn, "decay_steps", decay_steps,
                       "the total length of the schedule, warmup included")
  if total <= warmup:
    raise ValueError(
        f"gx.schedules.{fn}: decay_steps={total} must be greater than "
        f"warmup_steps={warmup}: decay_steps is the total length of the schedule, "
        f"warmup included. For {warmup} warmup steps and N decay steps, pass "
        f"decay_steps={warmup} + N."
    )
  return _WarmupCosineDecay(init_value, peak_value, end_value, exponent,
                            warmup_steps=warmup, decay_steps=total)

class _WarmupStableDecay(Schedule):
  peak_value: Any
  init_value: Any
  end_value: Any
  warmup_steps: int = static_field()
  stable_steps: int = static_field()
  decay_steps: int = static_field()
  decay_shape: str = static_field(default="linear")

  def __call__(self, count):
    raw = count
    count, peak_value, init_value, end_value = prepare(
        count, self.peak_value, self.init_value, self.end_value)
    warm = lerp(init_value, peak_value, jnp.clip(count / max(self.warmup_steps, 1), 0, 1))
    start = self.warmup_steps + self.stable_steps
    fraction = jnp.minimum(since(raw, start, count.dtype) / self.decay_steps, 1)
    if self.decay_shape == "linear":
      remaining = 1 - fraction
    elif self.decay_shape == "cosine":
      remaining = 0.5 * (1 + jnp.cos(jnp.pi * fraction))
    else:  # "sqrt"
      remaining = 1 - jnp.sqrt(fraction)
    return jnp.where(count < self.warmup_steps, warm, lerp(end_value, peak_value, remaining))

def warmup_stable_decay(peak_value: Any, warmup_steps: int, stable_steps: int, decay_steps: int,
                        init_value: Any = 0.0, end_value: Any = 0.0,
                        decay_shape: str = "linear") -> Schedule:
  """Warmup-stable-decay ("trapezoidal"): linear warmup, constant peak, then a short decay.

  .. math::

     s(t) = \\begin{cases}
       I + (P - I)\\, t / W & t < W \\\\
       P & W \\le t < W + S \\\\
       E + (P - E)\\, f(\\min((t - W - S) / D, 1)) & t \\ge W + S
     \\end{cases}

  with ``f(x) = 1 - x`` ("linear"), ``(1 + cos πx) / 2`` ("cosine") or
  ``1 - √x`` ("sqrt"). The value is ``E`` from step ``W + S + D`` on.

  Args:
    peak_value: ``P``, the value after warmup and during the stable phase.
    warmup_steps: ``W``, a non-negative integer, the length of the warmup.
    stable_steps: ``S``, a non-negative integer, the length of the stable phase.
    decay_steps: ``D``, a positive integer, the length of the decay.
    init_value: ``I``, the value at step 0.
    end_value: ``E``, the value at the end of the decay.
    decay_shape: ``"linear"``, ``"cosine"`` or ``"sqrt"``.

  Returns:
    A :class:`Schedule`.

  References:
    Hägele et al., 2024, "Scaling Laws and Compute-Optimal Training Beyond
    Fixed Training Durations", https://arxiv.org/abs/2405.18392 (after Hu et
    al., 2024, MiniCPM, https://arxiv.org/abs/2404.06395)
  """
  fn = "warmup_stable_decay"
  for name, value in (("peak_value", peak_value), ("init_value", init_value),
                      ("end_value", end_value)):
    check_value(fn, name, value)
  warmup = check_steps(fn, "warmup_steps", warmup_steps, "the length of the linear warmup",
                        positive=False)
  stable = check_steps(fn, "stable_steps", stable_steps,
                        "the number of steps at peak_value", positive=False)
  decay = check_steps(fn, "decay_steps", decay_steps,
                       "the number of steps from peak_value to end_value")
  check_reachable(fn, "warmup_steps + stable_steps + decay_steps", warmup + stable + decay)
  shape = check_option(fn, "decay_shape", decay_shape, DECAY_SHAPES)
  return _WarmupStableDecay(peak_value, init_value, end_value, warmup_steps=warmup,
                            stable_steps=stable, decay_steps=decay, decay_shape=shape)

def _anneal_phases(count, ends, values, anneal):
  """torch OneCycleLR's phases: phase ``i`` goes from ``values[i]`` to ``values[i+1]`` over steps
  ``(ends[i-1], ends[i]]`` (``ends[-1] = 0``), annealed by ``anneal``; clamped at the last step."""
  count = jnp.minimum(count, ends[-1])
  if anneal == "cos":
    shape = lambda pct: (1 - jnp.cos(jnp.pi * pct)) / 2
  else:
    shape = lambda pct: pct
  start, pieces = 0.0, []
  for i, end in enumerate(ends):
    pct = jnp.clip((count - start) / (end - start), 0, 1)
    pieces.append((end, lerp(values[i], values[i + 1], shape(pct))))
    start = end
  result = pieces[-1][1]
  for end, value in reversed(pieces[:-1]):
    result = jnp.where(count <= end, value, result)
  return result


def _one_cycle_ends(total_steps, pct_start, three_phase):
  """torch's phase ends, in (fractional) scheduler steps."""
  if three_phase:
    return (float(pct_start * total_steps) - 1, float(2 * pct_start * total_steps) - 2, total_steps - 1)
  return (float(pct_start * total_steps) - 1, total_steps - 1)


class _OneCycle(Schedule):
  peak_value: Any
  div_factor: Any
  final_div_factor: Any
  total_steps: int = static_field()
  pct_start: float = static_field(default=0.3)
  anneal: str = static_field(default="cos")
  three_phase: bool = static_field(default=False)

  def __call__(self, count):
    count, peak_value, div_factor, final_div_factor = prepare(
        count, self.peak_value, self.div_factor, self.final_div_factor)
    initial = peak_value / div_factor
    minimum = initial / final_div_factor
    values = (initial, peak_value, initial, minimum) if self.three_phase else (initial, peak_value, minimum)
    return _anneal_phases(count, _one_cycle_ends(self.total_steps, self.pct_start, self.three_phase),
                          values, self.anneal)


def one_cycle(peak_value: Any, total_steps: int, pct_start: float = 0.3, div_factor: Any = 25.0,
              final_div_factor: Any = 1e4, anneal: str = "cos", three_phase: bool = False) -> Schedule:
  """The 1cycle policy, as ``torch.optim.lr_scheduler.OneCycleLR`` (two phases).

  .. math::

     \\eta_0 = P / d, \\quad \\eta_{min} = \\eta_0 / d_f, \\quad
     e_1 = \\rho N - 1, \\quad e_2 = N - 1, \\quad t' = \\min(t, e_2)

     s(t) = \\begin{cases}
       A(\\eta_0, P, t' / e_1) & t' \\le e_1 \\\\
       A(P, \\eta_{min}, (t' - e_1) / (e_2 - e_1)) & t' > e_1
     \\end{cases}

  with ``A(a, b, x) = b + (a - b)(1 + cos πx)/2`` ("cos") or
  ``a + (b - a) x`` ("linear"). ``s(t)`` is torch's learning rate after ``t``
  calls of ``scheduler.step()``; past step ``N - 1`` it stays at ``η_min``
  (where torch raises). With ``three_phase`` (torch's option) the value rises
  to ``P`` until ``e_1``, falls back to ``η_0`` at ``e_2' = 2ρN - 2``, then
  anneals to ``η_min`` at ``N - 1``. :func:`one_cycle_momentum` is the
  momentum that cycles with it.

  Args:
    peak_value: ``P``, torch's ``max_lr``.
    total_steps: ``N``, a positive integer, the length of the cycle.
    pct_start: ``ρ`` in (0, 1), the fraction of the cycle spent increasing;
      ``ρN`` must exceed 1.
    div_factor: ``d > 0``: the initial value is ``P / d``.
    final_div_factor: ``d_f > 0``: the final value is ``P / (d·d_f)``.
    anneal: ``"cos"`` or ``"linear"`` (torch's ``anneal_strategy``).
    three_phase: torch's ``three_phase``: up, back down to the initial value,
      then down to the minimum (``ρ < 0.5``).

  Returns:
    A :class:`Schedule`.

  References:
    Smith & Topin, 2019, "Super-Convergence: Very Fast Training of Neural
    Networks Using Large Learning Rates", https://arxiv.org/abs/1708.07120
  """
  fn = "one_cycle"
  check_value(fn, "peak_value", peak_value)
  for name, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
    check_value(fn, name, value, low=0.0, low_open=True,
                 hint=f"{name} divides a learning rate; use a positive number.")
  total, pct_start, anneal, three_phase = _check_one_cycle(fn, total_steps, pct_start, anneal, three_phase)
  return _OneCycle(peak_value, div_factor, final_div_factor, total_steps=total,
                   pct_start=pct_start, anneal=anneal, three_phase=three_phase)


def _check_one_cycle(fn, total_steps, pct_start, anneal, three_phase):
  total = check_steps(fn, "total_steps", total_steps, "the length of the cycle")
  try:
    if isinstance(pct_start, (bool, np.bool_, str, bytes)):
      raise TypeError
    pct_start = float(pct_start)
  except (TypeError, ValueError):
    raise TypeError(
        f"gx.schedules.{fn}: pct_start must be a Python float in (0, 1), got "
        f"{type(pct_start).__name__}. It fixes where the warmup ends, so it is a "
        "static option and cannot be traced."
    ) from None
  check_value(fn, "pct_start", pct_start, low=0.0, high=1.0, low_open=True, high_open=True,
               hint="pct_start is the fraction of the cycle spent warming up, e.g. 0.3.")
  if pct_start * total <= 1:
    raise ValueError(
        f"gx.schedules.{fn}: pct_start * total_steps = {pct_start} * {total} = "
        f"{pct_start * total:g} must be greater than 1 (the warmup phase must last "
        "more than one step; torch divides by zero or skips it). Increase "
        "total_steps or pct_start."
    )
  if not isinstance(three_phase, (bool, np.bool_)):
    raise TypeError(f"gx.schedules.{fn}: three_phase must be True or False, got {three_phase!r}.")
  if three_phase and not 2 * pct_start * total - 2 < total - 1:
    raise ValueError(
        f"gx.schedules.{fn}: with three_phase=True the warmup and its mirror take 2 * pct_start = "
        f"{2 * pct_start:g} of the cycle and leave no final annealing phase; use pct_start < 0.5.")
  anneal = check_option(fn, "anneal", anneal, ANNEAL_STRATEGIES)
  return total, pct_start, anneal, bool(three_phase)


class _OneCycleMomentum(Schedule):
  base_momentum: Any
  max_momentum: Any
  total_steps: int = static_field()
  pct_start: float = static_field(default=0.3)
  anneal: str = static_field(default="cos")
  three_phase: bool = static_field(default=False)

  def __call__(self, count):
    count, base, peak = prepare(count, self.base_momentum, self.max_momentum)
    values = (peak, base, peak, peak) if self.three_phase else (peak, base, peak)
    return _anneal_phases(count, _one_cycle_ends(self.total_steps, self.pct_start, self.three_phase),
                          values, self.anneal)


def one_cycle_momentum(total_steps: int, base_momentum: Any = 0.85, max_momentum: Any = 0.95,
                       pct_start: float = 0.3, anneal: str = "cos", three_phase: bool = False) -> Schedule:
  """The momentum companion of :func:`one_cycle`, as ``OneCycleLR(cycle_momentum=True)``.

  .. math::

     m(t) = \\begin{cases}
       A(M, B, t' / e_1) & t' \\le e_1 \\\\
       A(B, M, (t' - e_1) / (e_2 - e_1)) & t' > e_1
     \\end{cases}

  with ``B``, ``M`` the base and maximum momentum and the phase ends ``e_i`` and anneal ``A`` of
  :func:`one_cycle` (momentum falls while the learning rate rises). With ``three_phase`` it goes
  ``M → B → M`` and stays at ``M`` in the final phase, as torch. Give it to ``momentum`` (SGD) or ``b1``
  (Adam), as torch does with ``betas[0]``.

  Args:
    total_steps: ``N``, the length of the cycle (as :func:`one_cycle`).
    base_momentum: ``B``, the lowest momentum (at the learning rate's peak).
    max_momentum: ``M``, the momentum at the start and end of the cycle.
    pct_start: the fraction of the cycle spent in the first phase.
    anneal: ``"cos"`` or ``"linear"``.
    three_phase: torch's ``three_phase``.

  Returns:
    A :class:`Schedule`.

  References:
    Smith & Topin, 2019, https://arxiv.org/abs/1708.07120; Smith, 2018, "A disciplined approach to
    neural network hyper-parameters", https://arxiv.org/abs/1803.09820
  """
  fn = "one_cycle_momentum"
  check_value(fn, "base_momentum", base_momentum, low=0.0, high=1.0)
  check_value(fn, "max_momentum", max_momentum, low=0.0, high=1.0)
  total, pct_start, anneal, three_phase = _check_one_cycle(fn, total_steps, pct_start, anneal, three_phase)
  return _OneCycleMomentum(base_momentum, max_momentum, total_steps=total, pct_start=pct_start,
                           anneal=anneal, three_phase=three_phase)
