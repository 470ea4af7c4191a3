"""The strong-Wolfe line search of Nocedal & Wright (Algorithms 3.5 and 3.6), jittable."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._second_order.linesearch import LinesearchState, check_max_evaluations, finish, init_linesearch_fields, line_along
from gradxform._core.module import static_field

__all__ = ["scale_by_zoom_linesearch"]


class _Search(NamedTuple):
  """The ``lax.while_loop`` carry: Algorithm 3.5's bracketing and Algorithm 3.6's zoom in one loop."""

  evaluations: jax.Array
  done: jax.Array
  zooming: jax.Array
  trial: jax.Array
  prev: jax.Array       # α_{i-1}, φ(α_{i-1}), φ'(α_{i-1}) while bracketing
  f_prev: jax.Array
  s_prev: jax.Array
  lo: jax.Array         # α_lo, α_hi and their values and slopes while zooming
  f_lo: jax.Array
  s_lo: jax.Array
  hi: jax.Array
  f_hi: jax.Array
  s_hi: jax.Array
  star: jax.Array       # the accepted step, its value, and whether it meets strong Wolfe
  f_star: jax.Array
  wolfe: jax.Array


def cubic_minimizer(a, fa, sa, b, fb, sb):
  """The minimizer of the cubic through ``(a, fa, sa)`` and ``(b, fb, sb)`` (N&W Eq. 3.59), safeguarded.

  Falls back to bisection when the cubic's minimizer is not finite or lies
  within 10% of an end of the interval.
  """
  d1 = sa + sb - 3 * (fa - fb) / (a - b)
  d2 = jnp.sign(b - a) * jnp.sqrt(d1 * d1 - sa * sb)
  cubic = b - (b - a) * (sb + d2 - d1) / (sb - sa + 2 * d2)
  low, high = jnp.minimum(a, b), jnp.maximum(a, b)
  margin = 0.1 * (high - low)
  safe = jnp.isfinite(cubic) & (cubic >= low + margin) & (cubic <= high - margin)
  return jnp.where(safe, cubic, 0.5 * (a + b))


class _ScaleByZoomLinesearch(Transform):
  c1: Any
  c2: Any
  initial_step: Any
  increase_factor: Any
  max_step: Any
  max_evaluations: int = static_field(default=30)
  State = LinesearchState
  complex_ok = True  # inner products and steps on a complex leaf's real view, as torch.optim

  def init_fields(self, params):
    return init_linesearch_fields(params)

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_zoom_linesearch"
    line = line_along(name, updates, params, extra)
    dt = line.dtype
    c1, c2 = hp["c1"].astype(dt), hp["c2"].astype(dt)
    increase, max_step = hp["increase_factor"].astype(dt), hp["max_step"].astype(dt)
    f0, slope0 = line.f0, line.slope0
    eps = jnp.finfo(dt).eps

    def body(c: _Search) -> _Search:
      a = c.trial
      f, s = line.value_and_slope(a)
      i = c.evaluations + 1
      armijo = f <= f0 + c1 * a * slope0
      curvature = jnp.abs(s) <= -c2 * slope0
      # Algorithm 3.5 (bracketing): an interval that contains strong-Wolfe points.
      to_zoom_up = ~armijo | ((c.evaluations > 0) & (f >= c.f_prev))   # zoom(α_{i-1}, α_i)
      to_zoom_down = ~to_zoom_up & ~curvature & (s >= 0)                # zoom(α_i, α_{i-1})
      extend = ~to_zoom_up & ~curvature & (s < 0)
      at_max = extend & (a >= max_step)
      # Algorithm 3.6 (zoom): shrink [α_lo, α_hi] keeping φ(α_lo) lowest with sufficient decrease.
      new_hi = ~armijo | (f >= c.f_lo)
      swap = ~new_hi & ~curvature & (s * (c.hi - c.lo) >= 0)
      new_lo = ~new_hi & ~curvature
      z = c.zooming
      pick = lambda cond, x, y: jnp.where(cond, x, y)
      # bracketing -> zooming transitions
      b_lo = pick(to_zoom_up, c.prev, a)
      b_f_lo, b_s_lo = pick(to_zoom_up, c.f_prev, f), pick(to_zoom_up, c.s_prev, s)
      b_hi = pick(to_zoom_up, a, c.prev)
      b_f_hi, b_s_hi = pick(to_zoom_up, f, c.f_prev), pick(to_zoom_up, s, c.s_prev)
      # zooming updates
      z_hi, z_f_hi, z_s_hi = (pick(new_hi, a, pick(swap, c.lo, c.hi)), pick(new_hi, f, pick(swap, c.f_lo, c.f_hi)),
                              pick(new_hi, s, pick(swap, c.s_lo, c.s_hi)))
      z_lo, z_f_lo, z_s_lo = pick(new_lo, a, c.lo), pick(new_lo, f, c.f_lo), pick(new_lo, s, c.s_lo)
      zooming = z | to_zoom_up | to_zoom_down
      lo, f_lo, s_lo = pick(z, z_lo, b_lo), pick(z, z_f_lo, b_f_lo), pick(z, z_s_lo, b_s_lo)
      hi, f_hi, s_hi = pick(z, z_hi, b_hi), pick(z, z_f_hi, b_f_hi), pick(z, z_s_hi, b_s_hi)
      keep_prev = ~z & extend
      prev, f_prev, s_prev = pick(keep_prev, a, c.prev), pick(keep_prev, f, c.f_prev), pick(keep_prev, s, c.s_prev)
      found = armijo & curvature & pick(z, ~new_hi, ~to_zoom_up)
      trial = pick(zooming, cubic_minimizer(lo, f_lo, s_lo, hi, f_hi, s_hi), jnp.minimum(increase * a, max_step))
      collapsed = zooming & (jnp.abs(hi - lo) <= eps * jnp.maximum(jnp.abs(hi), jnp.abs(lo)))
      stop = found | (~zooming & at_max) | collapsed | (i >= self.max_evaluations)
      # Without a strong-Wolfe point: the lowest point with sufficient decrease (α_lo, or the
      # last extension while bracketing), which may be α = 0.
      fallback, f_fallback = pick(zooming, lo, prev), pick(zooming, f_lo, f_prev)
      fallback = pick(~zooming & at_max, a, fallback)
      f_fallback = pick(~zooming & at_max, f, f_fallback)
      star, f_star = pick(found, a, fallback), pick(found, f, f_fallback)
      return _Search(i, stop, zooming, trial, prev, f_prev, s_prev, lo, f_lo, s_lo, hi, f_hi, s_hi,
                     star, f_star, found)

    zero = jnp.zeros((), dt)
    start = _Search(jnp.zeros((), jnp.int32), jnp.zeros((), bool), jnp.zeros((), bool),
                    jnp.minimum(hp["initial_step"].astype(dt), max_step), zero, f0, slope0,
                    zero, f0, slope0, zero, f0, slope0, zero, f0, jnp.zeros((), bool))
    result = jax.lax.while_loop(lambda c: ~c.done, body, start)
    return finish(name, line, state, result.star, result.f_star, result.evaluations, result.wolfe)


def scale_by_zoom_linesearch(c1: Any = 1e-4, c2: Any = 0.9, initial_step: Any = 1.0, increase_factor: Any = 2.0,
                             max_step: Any = 1e10, max_evaluations: int = 30) -> GradientTransformation:
  """Line search for the strong Wolfe conditions (bracketing, then zoom); ``u = −α d``.

  With ``φ(α) = f(x − α d)`` and ``φ'(0) = −gᵀd < 0``, it returns a step with

  .. math::

     \\phi(\\alpha) \\le \\phi(0) + c_1 \\alpha \\phi'(0), \\qquad
     |\\phi'(\\alpha)| \\le c_2 |\\phi'(0)|, \\qquad u = -\\alpha\\, d

  Nocedal & Wright's Algorithm 3.5 tries ``α₀ = initial_step`` and grows it
  by ``increase_factor`` (up to ``max_step``) until an interval containing
  such steps is bracketed; Algorithm 3.6 then shrinks it with safeguarded
  cubic interpolation. Both run in one ``lax.while_loop``; each trial costs
  one forward-mode pass giving ``φ(α)`` and ``φ'(α)`` together. After
  ``max_evaluations`` without a strong-Wolfe step it keeps the best step with
  sufficient decrease found so far (possibly ``α = 0``). The Wolfe conditions
  keep ``sᵀy > 0``, as BFGS needs: this is :func:`lbfgs`'s default. It is the
  last stage of a chain, in place of ``scale_by_learning_rate`` (it negates):
  ``gx.chain(gx.scale_by_lbfgs(memory_size=10), gx.scale_by_zoom_linesearch())``.
  See :mod:`gradxform._linesearch` for the extra arguments it needs. Complex
  parameters follow torch's convention, as their real view.

  Args:
    c1: sufficient-decrease constant, ``0 < c1 < c2``.
    c2: curvature constant, ``c1 < c2 < 1`` (0.9 for quasi-Newton, 0.1 for conjugate gradients).
    initial_step: ``α₀ > 0``, the first trial.
    increase_factor: ``> 1``, growth of the trial while bracketing.
    max_step: ``α_max``, the largest step tried.
    max_evaluations: the most trials per update (static).

  Returns:
    A transform with state :class:`LinesearchState`.

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Algorithms 3.5
    and 3.6, https://doi.org/10.1007/978-0-387-40065-5
  """
  name = "scale_by_zoom_linesearch"
  # c1 = 0 (accept any decrease) is well defined, as in optax
  check_hyperparameter(name, "c1", c1, low=0.0, high=1.0, high_open=True,
                       hint="c1 is the sufficient-decrease constant; use e.g. 1e-4.")
  check_hyperparameter(name, "c2", c2, low=0.0, high=1.0, low_open=True, high_open=True,
                       hint="c2 is the curvature constant; use 0.9 for (quasi-)Newton directions.")
  if isinstance(c1, (int, float)) and isinstance(c2, (int, float)) and not c1 < c2:
    raise ValueError(f"{name}: c1={c1} must be smaller than c2={c2} (0 <= c1 < c2 < 1), e.g. c1=1e-4, c2=0.9.")
  check_hyperparameter(name, "initial_step", initial_step, low=0.0, low_open=True,
                       hint="initial_step is the first step tried; use 1.0 for (quasi-)Newton directions.")
  check_hyperparameter(name, "increase_factor", increase_factor, low=1.0, low_open=True,
                       hint="increase_factor grows the trial step while bracketing; e.g. 2.0.")
  check_hyperparameter(name, "max_step", max_step, low=0.0, low_open=True,
                       hint="max_step is the largest step tried; e.g. 1e10.")
  check_max_evaluations(name, max_evaluations)
  return _ScaleByZoomLinesearch(c1, c2, initial_step, increase_factor, max_step, max_evaluations=max_evaluations)
