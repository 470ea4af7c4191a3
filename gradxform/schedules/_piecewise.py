"""Piecewise schedules: optax's interpolated one-cycle and warmup forms, the inverse square root of
transformers, and torch's SWALR."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax.numpy as jnp

from gradxform._core.module import static_field
from gradxform.schedules._base import Schedule, check_option, check_steps, check_value, lerp, prepare
from gradxform.schedules._decay import exponential_decay, linear
from gradxform.schedules._join import join

__all__ = ["cosine_onecycle", "inverse_sqrt", "linear_onecycle", "piecewise_interpolate", "swa_lr",
           "warmup_constant", "warmup_exponential_decay"]


class _PiecewiseInterpolate(Schedule):
  init_value: Any
  scales: tuple
  boundaries: tuple = static_field()
  interpolate_type: str = static_field(default="linear")

  def __call__(self, count):
    count, value, *scales = prepare(count, self.init_value, *self.scales)
    values = [value]
    for scale in scales:
      values.append(values[-1] * scale)
    result = values[-1]  # from the last boundary on
    for i in reversed(range(len(self.boundaries))):
      start = 0 if i == 0 else self.boundaries[i - 1]
      size = max(self.boundaries[i] - start, 1)
      pct = (count - start) / size
      if self.interpolate_type == "linear":
        piece = lerp(values[i], values[i + 1], pct)
      else:
        piece = lerp(values[i], values[i + 1], (1 - jnp.cos(jnp.pi * pct)) / 2)
      result = jnp.where((count >= start) & (count < self.boundaries[i]), piece, result)
    return result


def piecewise_interpolate(interpolate_type: str, init_value: Any,
                          boundaries_and_scales: Optional[Mapping[int, Any]] = None) -> Schedule:
  """Interpolated between scaled values at boundaries, as ``optax.piecewise_interpolate_schedule``.

  .. math::

     v_0 = I, \\; v_i = v_{i-1} c_i, \\qquad
     s(t) = A\\left(v_{i-1}, v_i, \\frac{t - b_{i-1}}{\\max(b_i - b_{i-1}, 1)}\\right)
     \\;\\text{for}\\; b_{i-1} \\le t < b_i, \\qquad s(t) = v_n \\;\\text{for}\\; t \\ge b_n

  with ``b_0 = 0`` and ``A`` linear or cosine (``A(a, b, x) = b + (a - b)(1 + cos πx)/2``).

  Args:
    interpolate_type: ``"linear"`` or ``"cosine"``.
    init_value: ``I``.
    boundaries_and_scales: ``{b_i: c_i}``: the value reaches ``v_{i-1}·c_i`` at step ``b_i``.

  Returns:
    A :class:`Schedule`.

  References:
    optax's ``piecewise_interpolate_schedule``, https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html
  """
  fn = "piecewise_interpolate"
  kind = check_option(fn, "interpolate_type", interpolate_type, ("linear", "cosine"))
  check_value(fn, "init_value", init_value)
  items = []
  for boundary, scale in dict(boundaries_and_scales or {}).items():
    boundary = check_steps(fn, f"boundary {boundary!r}", boundary, "a step at which a value is reached",
                           positive=False)
    check_value(fn, f"scale at boundary {boundary}", scale, low=0.0,
                hint="Scales multiply the previous value; use non-negative numbers.")
    items.append((boundary, scale))
  items.sort(key=lambda item: item[0])
  return _PiecewiseInterpolate(init_value, tuple(s for _, s in items),
                               boundaries=tuple(b for b, _ in items), interpolate_type=kind)


def _check_onecycle(fn, transition_steps, peak_value, div_factor, final_div_factor, pcts):
  steps = check_steps(fn, "transition_steps", transition_steps, "the length of the cycle")
  check_value(fn, "peak_value", peak_value)
  for name, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
    check_value(fn, name, value, low=0.0, low_open=True, hint=f"{name} divides the value; use a positive number.")
  for name, value in pcts:
    check_value(fn, name, value, low=0.0, high=1.0, hint=f"{name} is a fraction of transition_steps.")
  return steps


def linear_onecycle(transition_steps: int, peak_value: Any, pct_start: float = 0.3, pct_final: float = 0.85,
                    div_factor: Any = 25.0, final_div_factor: Any = 1e4) -> Schedule:
  """Linear one-cycle, as ``optax.linear_onecycle_schedule``.

  .. math::

     P/d \\;\\nearrow\\; P \\text{ at } \\lfloor \\rho_s T \\rfloor \\;\\searrow\\; P/d
     \\text{ at } \\lfloor \\rho_f T \\rfloor \\;\\searrow\\; P/(d\\,d_f) \\text{ at } T

  (linear pieces, :func:`piecewise_interpolate`).

  Args:
    transition_steps: ``T``, the length of the cycle.
    peak_value: ``P``.
    pct_start: ``ρ_s``, where the peak is reached.
    pct_final: ``ρ_f``, where the value is back at ``P/d``.
    div_factor: ``d``.
    final_div_factor: ``d_f``.

  Returns:
    A :class:`Schedule`.

  References:
    Smith & Topin, 2019, https://arxiv.org/abs/1708.07120
  """
  steps = _check_onecycle("linear_onecycle", transition_steps, peak_value, div_factor, final_div_factor,
                          (("pct_start", pct_start), ("pct_final", pct_final)))
  return piecewise_interpolate("linear", peak_value / div_factor, {
      int(pct_start * steps): div_factor, int(pct_final * steps): 1.0 / div_factor,
      steps: 1.0 / final_div_factor})


def cosine_onecycle(transition_steps: int, peak_value: Any, pct_start: float = 0.3, div_factor: Any = 25.0,
                    final_div_factor: Any = 1e4) -> Schedule:
  """Cosine one-cycle, as ``optax.cosine_onecycle_schedule``.

  .. math::

     P/d \\;\\nearrow\\; P \\text{ at } \\lfloor \\rho T \\rfloor \\;\\searrow\\; P/(d\\,d_f) \\text{ at } T

  (cosine pieces, :func:`piecewise_interpolate`).

  Args:
    transition_steps: ``T``, the length of the cycle.
    peak_value: ``P``.
    pct_start: ``ρ``, where the peak is reached.
    div_factor: ``d``.
    final_div_factor: ``d_f``.

  Returns:
    A :class:`Schedule`.

  References:
    Smith & Topin, 2019, https://arxiv.org/abs/1708.07120
  """
  steps = _check_onecycle("cosine_onecycle", transition_steps, peak_value, div_factor, final_div_factor,
                          (("pct_start", pct_start),))
  return piecewise_interpolate("cosine", peak_value / div_factor, {
      int(pct_start * steps): div_factor, steps: 1.0 / (div_factor * final_div_factor)})


def warmup_constant(init_value: Any, peak_value: Any, warmup_steps: int) -> Schedule:
  """Linear warmup to a constant, as ``optax.warmup_constant_schedule``.

  .. math::

     s(t) = I + (P - I)\\, \\min(t, W) / W

  Args:
    init_value: ``I``, the value at step 0.
    peak_value: ``P``, the value from step ``W`` on.
    warmup_steps: ``W``, a positive integer.

  Returns:
    A :class:`Schedule`.

  References:
    Goyal et al., 2017, "Accurate, Large Minibatch SGD", https://arxiv.org/abs/1706.02677
  """
  return linear(init_value, peak_value, warmup_steps)


def warmup_exponential_decay(init_value: Any, peak_value: Any, warmup_steps: int, transition_steps: int,
                             decay_rate: Any, transition_begin: int = 0, staircase: bool = False,
                             end_value: Any = None) -> Schedule:
  """Linear warmup, then exponential decay, as ``optax.warmup_exponential_decay_schedule``.

  .. math::

     s(t) = \\begin{cases} I + (P - I)\\, t / W & t < W \\\\
       P\\, r^{\\max(t - W - B, 0) / T} & t \\ge W \\end{cases}

  (``⌊·⌋`` on the exponent with ``staircase``; bounded by ``end_value``), i.e. ``join([linear(I, P, W),
  exponential_decay(P, T, r, B, staircase, end_value)], [W])``.

  Args:
    init_value: ``I``.
    peak_value: ``P``.
    warmup_steps: ``W``, a positive integer.
    transition_steps: ``T``, the steps per factor ``r``.
    decay_rate: ``r``.
    transition_begin: ``B``, steps after the warmup before the decay starts.
    staircase: decay in discrete steps.
    end_value: a bound the value does not cross.

  Returns:
    A :class:`Schedule`.

  References:
    optax's ``warmup_exponential_decay_schedule``, https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html
  """
  warmup = check_steps("warmup_exponential_decay", "warmup_steps", warmup_steps, "the length of the warmup")
  return join([linear(init_value, peak_value, warmup),
               exponential_decay(peak_value, transition_steps, decay_rate, transition_begin=transition_begin,
                                 staircase=staircase, end_value=end_value)], [warmup])


class _InverseSqrt(Schedule):
  peak_value: Any
  warmup_steps: int = static_field()

  def __call__(self, count):
    count, peak = prepare(count, self.peak_value)
    t = count + 1
    return peak * jnp.minimum(t / self.warmup_steps, jnp.sqrt(self.warmup_steps / t))


def inverse_sqrt(peak_value: Any, warmup_steps: int) -> Schedule:
  """Linear warmup then inverse square-root decay (the "Noam" schedule of transformers).

  .. math::

     s(t) = P \\min\\left(\\frac{t + 1}{W}, \\sqrt{\\frac{W}{t + 1}}\\right)

  Vaswani et al.'s rate ``d^{-1/2} \\min(n^{-1/2}, n W^{-3/2})`` at step ``n = t + 1`` is this with
  ``P = (d W)^{-1/2}`` (times their ``factor``).

  Args:
    peak_value: ``P``, the value at step ``W - 1`` (the ``W``-th update).
    warmup_steps: ``W``, a positive integer.

  Returns:
    A :class:`Schedule`.

  References:
    Vaswani et al., 2017, "Attention Is All You Need", Eq. (3), https://arxiv.org/abs/1706.03762
  """
  check_value("inverse_sqrt", "peak_value", peak_value)
  warmup = check_steps("inverse_sqrt", "warmup_steps", warmup_steps, "the length of the warmup")
  return _InverseSqrt(peak_value, warmup_steps=warmup)


class _SwaLr(Schedule):
  init_value: Any
  swa_value: Any
  anneal_steps: int = static_field(default=10)
  anneal: str = static_field(default="cos")

  def __call__(self, count):
    count, init_value, swa_value = prepare(count, self.init_value, self.swa_value)
    if self.anneal_steps == 0:
      return jnp.broadcast_to(swa_value, count.shape)
    t = jnp.clip(count / self.anneal_steps, 0, 1)
    alpha = (1 - jnp.cos(jnp.pi * t)) / 2 if self.anneal == "cos" else t
    return swa_value * alpha + init_value * (1 - alpha)


def swa_lr(init_value: Any, swa_value: Any, anneal_steps: int = 10, anneal: str = "cos") -> Schedule:
  """Annealing to a constant SWA learning rate, as ``torch.optim.swa_utils.SWALR``.

  .. math::

     s(t) = \\alpha\\, \\eta_{swa} + (1 - \\alpha)\\, I, \\qquad
     \\alpha = A(\\min(t / T, 1)), \\quad A(x) = \\tfrac{1 - \\cos \\pi x}{2} \\;\\text{or}\\; x

  (``T = 0`` gives ``η_swa`` from the start, as torch). Join it after the pre-SWA schedule with
  :func:`join` at the step SWA starts.

  Args:
    init_value: ``I``, the learning rate when the annealing starts.
    swa_value: ``η_swa``, torch's ``swa_lr``.
    anneal_steps: ``T``, a non-negative integer (torch's ``anneal_epochs``, in scheduler steps).
    anneal: ``"cos"`` or ``"linear"`` (torch's ``anneal_strategy``).

  Returns:
    A :class:`Schedule`.

  References:
    Izmailov et al., 2018, https://arxiv.org/abs/1803.05407
  """
  check_value("swa_lr", "init_value", init_value)
  check_value("swa_lr", "swa_value", swa_value)
  steps = check_steps("swa_lr", "anneal_steps", anneal_steps, "the length of the annealing", positive=False)
  kind = check_option("swa_lr", "anneal", anneal, ("cos", "linear"))
  return _SwaLr(init_value, swa_value, anneal_steps=steps, anneal=kind)
