"""optax's zoom line search: bracket, then zoom by cubic/quadratic interpolation (Wolfe conditions)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field
from gradxform._core.objective import axpy, scalar_dtype
from gradxform._transforms.options import check_flag
from gradxform.optax_like._linesearch import (as_error, check_optional_rate, check_steps, objective, scale_tree,
                                              select, tree_vdot)

__all__ = ["ScaleByZoomLinesearchState", "ZoomLinesearchInfo", "scale_by_zoom_linesearch"]


def cubic_minimizer(a, fa, sa, b, fb, c, fc):
  """The critical point of the cubic through ``(a, fa)`` with slope ``sa`` there, ``(b, fb)`` and ``(c, fc)``.

  With ``p(x) = A(x−a)³ + B(x−a)² + sa(x−a) + fa``, ``A`` and ``B`` solve the
  2×2 system given by ``p(b) = fb`` and ``p(c) = fc``; the point is
  ``a + (−B + √(B² − 3A·sa)) / (3A)`` (NaN when the root is imaginary, which
  the caller treats as "not usable"). As ``scipy.optimize``'s line search.
  """
  db, dc = b - a, c - a
  rb, rc = fb - fa - sa * db, fc - fa - sa * dc  # what the linear part leaves at b and at c
  denominator = (db * dc) ** 2 * (db - dc)
  system = jnp.array([[dc ** 2, -(db ** 2)], [-(dc ** 3), db ** 3]])
  big_a, big_b = jnp.dot(system, jnp.array([rb, rc]), precision=jax.lax.Precision.HIGHEST) / denominator
  return a + (-big_b + jnp.sqrt(big_b * big_b - 3.0 * big_a * sa)) / (3.0 * big_a)


def quadratic_minimizer(a, fa, sa, b, fb):
  """The critical point of the parabola through ``(a, fa)`` with slope ``sa`` there and through ``(b, fb)``."""
  db = b - a
  curvature = (fb - fa - sa * db) / (db ** 2)
  return a - sa / (2.0 * curvature)


class ZoomLinesearchInfo(NamedTuple):
  """``num_linesearch_steps`` (int32 scalar): losses evaluated; the errors of the last point tried (0: met)."""

  num_linesearch_steps: jax.Array
  decrease_error: jax.Array
  curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
  """State of :func:`scale_by_zoom_linesearch` (optax's fields in optax's order, then gx's).

  ``learning_rate`` (scalar) is the accepted ``η``, ``value`` and ``grad`` the
  loss and its gradient there (read by :func:`optax.value_and_grad_from_state`),
  ``info`` a :class:`ZoomLinesearchInfo`.
  """

  learning_rate: jax.Array
  value: jax.Array
  grad: Any
  info: ZoomLinesearchInfo
  count: jax.Array  # int32 scalar (last, so that optax's positional state[0] is learning_rate)
  hyperparams: dict


class _Point(NamedTuple):
  """A point ``η`` on the line, with ``φ(η) = f(w + η u)``, ``∇f`` there and ``φ'(η) = ⟨∇f, u⟩``."""

  step: jax.Array
  value: jax.Array
  grad: Any
  slope: jax.Array


class _Search(NamedTuple):
  """The ``lax.while_loop`` carry: the last point tried, the interval once bracketed, the best safe point."""

  count: jax.Array  # int32: points tried
  zooming: jax.Array  # bool: an interval has been bracketed
  done: jax.Array
  failed: jax.Array
  last: _Point
  decrease_error: jax.Array
  curvature_error: jax.Array
  low: jax.Array  # the end with the lower value, not the smaller step
  value_low: jax.Array
  slope_low: jax.Array
  high: jax.Array
  value_high: jax.Array
  slope_high: jax.Array
  ref: jax.Array  # the third point of the cubic: the end replaced last
  value_ref: jax.Array
  safe: _Point  # the best point with sufficient decrease so far (step 0 at first)


class _ScaleByZoomLinesearch(Transform):
  max_linesearch_steps: Any
  max_learning_rate: Any
  tol: Any
  increase_factor: Any
  slope_rtol: Any
  curv_rtol: Any
  approx_dec_rtol: Any
  stepsize_precision: Any
  initial_guess_strategy: str = static_field(default="keep")
  verbose: bool = static_field(default=False)
  State = ScaleByZoomLinesearchState

  def init_fields(self, params):
    dtype = scalar_dtype(params)
    inf = jnp.full((), jnp.inf, dtype)
    return {"learning_rate": jnp.ones((), dtype), "value": inf,
            "grad": _tree.zeros_like("scale_by_zoom_linesearch", params),
            "info": ZoomLinesearchInfo(jnp.zeros((), jnp.int32), inf, inf)}

  def apply(self, updates, state, params, hp, **extra):
    f = objective("scale_by_zoom_linesearch", params, updates, extra)
    dt = f.dtype
    get = lambda key: None if hp.get(key) is None else hp[key].astype(dt)
    tol, c1, c2, c3 = get("tol"), get("slope_rtol"), get("curv_rtol"), get("approx_dec_rtol")
    max_lr, increase, precision = get("max_learning_rate"), get("increase_factor"), get("stepsize_precision")
    max_steps = hp["max_linesearch_steps"].astype(jnp.int32)
    value_and_grad = jax.value_and_grad(f.value_fn)
    value0, slope0 = f.value, tree_vdot(updates, f.grad).astype(dt)

    def evaluate(step) -> _Point:
      value, grad = value_and_grad(axpy(step, updates, params))
      return _Point(step, jnp.asarray(value).astype(dt), grad, tree_vdot(grad, updates).astype(dt))

    def decrease_error(p: _Point):
      # Armijo (N&W 3.7a); or, near a minimizer (φ within c₃|φ(0)| of φ(0)), Hager & Zhang's
      # approximate condition φ'(η) ≤ (2c₁ − 1) φ'(0), which rounding cannot defeat
      armijo = p.value - value0 - c1 * p.step * slope0
      if c3 is None:
        return as_error(armijo)
      approximate = jnp.maximum(p.slope - (2 * c1 - 1.0) * slope0, p.value - value0 - c3 * jnp.abs(value0))
      return as_error(jnp.minimum(approximate, armijo))

    def curvature_error(p: _Point):
      return as_error(jnp.abs(p.slope) - c2 * jnp.abs(slope0))  # N&W 3.7b

    def bracket(s: _Search, p: _Point, dec, error, reached):
      """Algorithm 3.5: grow the step until ``[prev, new]`` contains an acceptable one."""
      prev = s.last
      new_is_high = (dec > 0.0) | ((p.value >= prev.value) & (s.count > 0))
      new_is_low = (p.slope >= 0.0) & ~new_is_high
      ends = ((p.step, p.value, p.slope), (prev.step, prev.value, prev.slope))
      (low, value_low, slope_low), (high, value_high, slope_high) = select(new_is_low, ends, ends[::-1])
      found = new_is_high | new_is_low | (error <= tol)
      done = (error <= tol) | (reached & ~found)  # at max_learning_rate with sufficient decrease: take it
      safe = select(dec <= tol, p, s.safe)
      gave_up = s.count + 1 >= max_steps
      return s._replace(zooming=found, done=done, failed=gave_up & ~done, low=low, value_low=value_low,
                        slope_low=slope_low, high=high, value_high=value_high, slope_high=slope_high,
                        ref=low, value_ref=value_low, safe=safe)

    def zoom(s: _Search, p: _Point, dec, error, too_small):
      """Algorithm 3.6: keep ``low`` the lowest point with sufficient decrease, replace an end by ``p``."""
      safe = select((dec <= tol) & (p.value < s.safe.value), p, s.safe)
      done = error <= tol
      middle_is_high = (dec > 0.0) | (p.value >= s.value_low)
      low_is_high = (p.slope * (s.high - s.low) >= 0.0) & ~middle_is_high
      old_low, old_high = (s.low, s.value_low, s.slope_low), (s.high, s.value_high, s.slope_high)
      high = select(middle_is_high, (p.step, p.value, p.slope), select(low_is_high, old_low, old_high))
      low = select(middle_is_high, old_low, (p.step, p.value, p.slope))
      ref = select(middle_is_high | low_is_high, old_high[:2], old_low[:2])
      gave_up = (s.count + 1 >= max_steps) | (too_small & (safe.step > 0.0))
      return s._replace(done=done, failed=gave_up & ~done, low=low[0], value_low=low[1], slope_low=low[2],
                        high=high[0], value_high=high[1], slope_high=high[2], ref=ref[0], value_ref=ref[1],
                        safe=safe)

    def interpolate(s: _Search):
      """The next trial inside the interval: cubic, else quadratic, else the midpoint (safeguarded)."""
      left, right = jnp.minimum(s.low, s.high), jnp.maximum(s.low, s.high)
      width = jnp.abs(s.high - s.low)
      inside = lambda x, margin: (x > left + margin) & (x < right - margin)
      cubic = cubic_minimizer(s.low, s.value_low, s.slope_low, s.high, s.value_high, s.ref, s.value_ref)
      quadratic = quadratic_minimizer(s.low, s.value_low, s.slope_low, s.high, s.value_high)
      step = jnp.where(inside(quadratic, 0.1 * width), quadratic, (s.low + s.high) / 2.0)
      return jnp.where(inside(cubic, 0.2 * width), cubic, step), width <= precision

    def body(s: _Search) -> _Search:
      grown = jnp.where(s.count == 0, guess, increase * s.last.step)
      reached = jnp.zeros((), bool) if max_lr is None else grown >= max_lr
      grown = grown if max_lr is None else jnp.minimum(grown, max_lr)
      inner, too_small = interpolate(s)
      p = evaluate(jnp.where(s.zooming, inner, grown))
      dec, curv = decrease_error(p), curvature_error(p)
      error = jnp.maximum(dec, curv)
      s = jax.tree.map(lambda z, b: jnp.where(s.zooming, z, b), zoom(s, p, dec, error, too_small),
                       bracket(s, p, dec, error, reached))
      s = s._replace(count=s.count + 1, last=p, decrease_error=dec, curvature_error=curv)
      # Out of trials (or the interval is too small): the safe point if there is one (or if the
      # last point is outside the domain, φ = NaN/∞), else the last point anyway.
      use_safe = s.failed & ((s.safe.step > 0.0) | jnp.isinf(dec))
      return s._replace(last=select(use_safe, s.safe, s.last))

    guess = jnp.ones((), dt) if self.initial_guess_strategy == "one" else state.learning_rate.astype(dt)
    zero, inf, false = jnp.zeros((), dt), jnp.full((), jnp.inf, dt), jnp.zeros((), bool)
    start = _Point(zero, value0, f.grad, slope0)
    search = jax.lax.while_loop(lambda s: ~(s.done | s.failed), body, _Search(
        jnp.zeros((), jnp.int32), false, false, false, start, inf, inf, zero, value0, slope0, zero, value0,
        slope0, zero, value0, start))
    if self.verbose:
      jax.lax.cond(search.failed, lambda: jax.debug.print(
          "scale_by_zoom_linesearch: no step met both conditions; learning rate {lr} (decrease error {d}, "
          "curvature error {c}).", lr=search.last.step, d=search.decrease_error, c=search.curvature_error),
          lambda: None)
    last = search.last
    return scale_tree(last.step, updates), {
        "learning_rate": last.step, "value": last.value, "grad": last.grad,
        "info": ZoomLinesearchInfo(search.count, search.decrease_error, search.curvature_error)}


def scale_by_zoom_linesearch(max_linesearch_steps: Any, max_learning_rate: Optional[Any] = None, tol: Any = 0.0,
                             increase_factor: Any = 2.0, slope_rtol: Any = 1e-4, curv_rtol: Any = 0.9,
                             approx_dec_rtol: Optional[Any] = 1e-6, stepsize_precision: Any = 1e-5,
                             initial_guess_strategy: str = "keep", verbose: bool = False) -> GradientTransformation:
  """``optax.scale_by_zoom_linesearch``: a learning rate meeting the (approximate) Wolfe conditions.

  Along ``φ(η) = f(w + η u)`` (``u`` a descent direction, not negated), it
  looks for ``η`` with sufficient decrease and small curvature,

  .. math::

     \\phi(\\eta) \\le \\phi(0) + c_1 \\eta \\phi'(0) + \\epsilon, \\qquad
     |\\phi'(\\eta)| \\le c_2 |\\phi'(0)| + \\epsilon, \\qquad \\text{update} = \\eta\\, u,

  where the first may be replaced, once ``φ(η) ≤ φ(0) + c_3 |φ(0)|``, by
  Hager & Zhang's approximate decrease ``φ'(η) ≤ (2c_1 − 1) φ'(0) + ε``
  (``c₁ = slope_rtol``, ``c₂ = curv_rtol``, ``c₃ = approx_dec_rtol``, ``ε = tol``).
  Nocedal & Wright's Algorithm 3.5 grows the trial from the initial guess by
  ``increase_factor`` (up to ``max_learning_rate``) until an interval is
  bracketed; Algorithm 3.6 shrinks it, trying the cubic minimizer through the
  ends and the end replaced last, else the quadratic, else the midpoint. Each
  trial costs one value and gradient. After ``max_linesearch_steps`` trials,
  or once the interval is narrower than ``stepsize_precision``, it takes the
  lowest point found with sufficient decrease (or the last point if none).
  ``update`` takes the extra arguments ``value``, ``grad`` (computed from
  ``value_fn`` if missing) and ``value_fn``, and passes other keywords that
  ``value_fn`` accepts (``x=``, ``y=``) on to it. Reproduces
  ``optax.scale_by_zoom_linesearch``'s numbers.

  Args:
    max_linesearch_steps: the most trials per update (a whole number ``≥ 0``).
    max_learning_rate: the largest ``η`` tried, or ``None`` for no bound.
    tol: ``ε ≥ 0``, slack of both conditions.
    increase_factor: growth of the trial while bracketing (``> 0``).
    slope_rtol: ``c₁`` in [0, 1).
    curv_rtol: ``c₂ > 0`` (``math.inf`` drops the curvature condition).
    approx_dec_rtol: ``c₃ ≥ 0``, or ``None`` for the plain Armijo condition.
    stepsize_precision: the interval width below which a safe point is taken.
    initial_guess_strategy: ``"keep"`` (start from the last accepted ``η``; for
      gradient descent) or ``"one"`` (start from 1; for Newton and L-BFGS).
    verbose: print a line when the search fails.

  Returns:
    A transform with state :class:`ScaleByZoomLinesearchState`.

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Algorithms 3.5
    and 3.6, https://doi.org/10.1007/978-0-387-40065-5; Hager & Zhang, 2006,
    "Algorithm 851: CG_DESCENT", https://doi.org/10.1145/1132973.1132979
  """
  name = "scale_by_zoom_linesearch"
  check_steps(name, "max_linesearch_steps", max_linesearch_steps,
              "It is the most points tried per update, e.g. 20 (15 to 30 is usual).")
  check_optional_rate(name, "max_learning_rate", max_learning_rate,
                      "max_learning_rate bounds the trial steps; use None for no bound.")
  check_hyperparameter(name, "tol", tol, low=0.0, hint="tol is a slack of both conditions; e.g. 0.0.")
  check_hyperparameter(name, "increase_factor", increase_factor, low=0.0, low_open=True,
                       hint="increase_factor grows the trial step while bracketing; e.g. 2.0.")
  check_hyperparameter(name, "slope_rtol", slope_rtol, low=0.0, high=1.0, high_open=True,
                       hint="slope_rtol is the sufficient-decrease constant c1; use e.g. 1e-4.")
  if not (isinstance(curv_rtol, (int, float)) and curv_rtol == float("inf")):
    check_hyperparameter(name, "curv_rtol", curv_rtol, low=0.0, low_open=True,
                         hint="curv_rtol is the curvature constant c2; use 0.9 for (quasi-)Newton directions "
                              "(math.inf drops the condition).")
  if approx_dec_rtol is not None:
    check_hyperparameter(name, "approx_dec_rtol", approx_dec_rtol, low=0.0,
                         hint="approx_dec_rtol is c3 of the approximate decrease; e.g. 1e-6, or None to drop it.")
  check_hyperparameter(name, "stepsize_precision", stepsize_precision, low=0.0,
                       hint="stepsize_precision is the narrowest interval searched; e.g. 1e-5.")
  if initial_guess_strategy not in ("one", "keep"):
    raise ValueError(f"{name}: initial_guess_strategy={initial_guess_strategy!r} must be 'one' (start each "
                     "search from 1, for L-BFGS and Newton) or 'keep' (from the last learning rate, for SGD).")
  return _ScaleByZoomLinesearch(max_linesearch_steps, max_learning_rate, tol, increase_factor, slope_rtol,
                                curv_rtol, approx_dec_rtol, stepsize_precision,
                                initial_guess_strategy=initial_guess_strategy,
                                verbose=check_flag(name, "verbose", verbose))
