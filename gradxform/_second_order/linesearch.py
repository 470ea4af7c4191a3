"""Line searches as the last stage of a chain: backtracking (Armijo); shared machinery.

A line search takes the place of :func:`scale_by_learning_rate` at the end of
a chain: it receives a direction ``d`` from the earlier stages (the gradient,
momentum, an L-BFGS or Newton direction...), searches along ``x − α d`` by
evaluating the loss (the extra argument ``value_fn``) inside a
``lax.while_loop``, and outputs the update ``u = −α d``. It also needs the
loss and gradient at ``params`` (extra arguments ``value`` and ``grad``,
computed from ``value_fn`` when missing); :func:`gradxform.step` passes all
three. If ``d`` is not a descent direction (``gᵀd ≤ 0``) the search runs
along the gradient instead. Complex parameters follow torch's convention, as
their real view: ``gᵀd = Σ Re g·Re d + Im g·Im d`` with torch's gradient
``∂f/∂Re z + i·∂f/∂Im z`` (the conjugate of ``jax.grad``'s; ``gx.step`` passes torch's).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field
from gradxform._core.objective import axpy, require_value_fn, scalar_dtype, value_and_grad, vdot

__all__ = ["LinesearchState", "scale_by_backtracking_linesearch"]


class LinesearchState(NamedTuple):
  """State of the line searches.

  ``step_size`` is the accepted ``α`` (0 if no decrease was found),
  ``value`` the loss at the new point ``x − α d``, ``num_evaluations`` the
  loss evaluations of the last search, ``total_evaluations`` those since
  init, and ``success`` whether the last accepted step met the search's
  conditions (Armijo, or strong Wolfe for the zoom search).
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  step_size: jax.Array
  value: jax.Array
  num_evaluations: jax.Array  # int32 scalar
  total_evaluations: jax.Array  # int32 scalar
  success: jax.Array  # bool scalar


class Line(NamedTuple):
  """The search line ``φ(α) = f(x − α d)``: ``f0 = φ(0)``, ``slope0 = φ'(0) = −gᵀd < 0``."""

  value_fn: Any
  params: Any
  direction: Any
  f0: jax.Array
  slope0: jax.Array
  dtype: Any

  def value(self, alpha):
    """``φ(α)``."""
    return jnp.asarray(self.value_fn(axpy(-alpha, self.direction, self.params))).astype(self.dtype)

  def value_and_slope(self, alpha):
    """``(φ(α), φ'(α))`` in one forward-mode pass (``jax.jvp`` in ``α``)."""
    f, s = jax.jvp(self.value, (alpha,), (jnp.ones((), self.dtype),))
    return f, s


def line_along(name: str, updates: Any, params: Any, extra: dict) -> Line:
  """Checks the inputs and builds the search line along ``updates`` (or ``grad`` if not descent)."""
  value_fn = require_value_fn(name, extra, "evaluate the loss along the search direction")
  _tree.require_params(name, params, "evaluate the loss at params - step * direction")
  _tree.check_floating(name, updates, "update", allow_complex=True)
  value, grad = value_and_grad(name, extra, params, "evaluate the loss along the search direction")
  dtype = scalar_dtype(params)
  slope = -vdot(grad, updates, dtype)
  descent = slope < 0
  direction = jax.tree.map(lambda d, g: jnp.where(descent, d, jnp.asarray(g).astype(jnp.result_type(d))),
                           updates, grad)
  slope = jnp.where(descent, slope, -vdot(grad, grad, dtype))
  return Line(value_fn, params, direction, jnp.asarray(value).astype(dtype), slope, dtype)


def init_linesearch_fields(params: Any) -> dict:
  dtype = scalar_dtype(params)
  zero = jnp.zeros((), jnp.int32)
  return {"step_size": jnp.zeros((), dtype), "value": jnp.zeros((), dtype), "num_evaluations": zero,
          "total_evaluations": zero, "success": jnp.zeros((), bool)}


def finish(name: str, line: Line, state: Any, alpha, value, evaluations, success):
  """The update ``−α d`` and the changed state fields."""
  updates, = _tree.leafwise(name, lambda d, alpha: (-alpha * d,), line.direction, scalars={"alpha": alpha})
  return updates, {"step_size": alpha, "value": value, "num_evaluations": evaluations,
                   "total_evaluations": state.total_evaluations + evaluations, "success": success}


class _ScaleByBacktrackingLinesearch(Transform):
  c1: Any
  decrease_factor: Any
  initial_step: Any
  max_evaluations: int = static_field(default=30)
  State = LinesearchState
  complex_ok = True  # inner products and steps on a complex leaf's real view, as torch.optim

  def init_fields(self, params):
    return init_linesearch_fields(params)

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_backtracking_linesearch"
    line = line_along(name, updates, params, extra)
    c1, factor = hp["c1"].astype(line.dtype), hp["decrease_factor"].astype(line.dtype)
    armijo = lambda alpha, f: f <= line.f0 + c1 * alpha * line.slope0

    def cond(carry):
      alpha, f, i = carry
      return (i < self.max_evaluations) & ~armijo(alpha, f)

    def body(carry):
      alpha, _, i = carry
      alpha = factor * alpha
      return alpha, line.value(alpha), i + 1

    alpha0 = hp["initial_step"].astype(line.dtype)
    alpha, f, i = jax.lax.while_loop(cond, body, (alpha0, line.value(alpha0), jnp.ones((), jnp.int32)))
    success = armijo(alpha, f)
    take = success | (f < line.f0)  # out of evaluations: keep the last step only if it decreased f
    return finish(name, line, state, jnp.where(take, alpha, jnp.zeros_like(alpha)),
                  jnp.where(take, f, line.f0), i, success)


def scale_by_backtracking_linesearch(c1: Any = 1e-4, decrease_factor: Any = 0.5, initial_step: Any = 1.0,
                                     max_evaluations: int = 30) -> GradientTransformation:
  """Backtracking line search: the first ``α = α₀ βʲ`` meeting the Armijo condition; ``u = −α d``.

  .. math::

     f(x - \\alpha d) \\le f(x) - c_1\\, \\alpha\\, g^\\top d, \\qquad
     \\alpha \\in \\{\\alpha_0, \\beta\\alpha_0, \\beta^2\\alpha_0, \\dots\\}, \\qquad u = -\\alpha\\, d

  The last stage of a chain, in place of ``scale_by_learning_rate`` (it
  negates): ``gx.chain(gx.scale_by_lbfgs(), gx.scale_by_backtracking_linesearch())``,
  or alone for gradient descent with backtracking. Each trial costs one
  evaluation of ``value_fn``; after ``max_evaluations`` without sufficient
  decrease the last trial is kept if it lowered the loss, else ``α = 0``. See
  the module docstring for the extra arguments it needs. Complex parameters
  follow torch's convention, as their real view.

  Args:
    c1: the sufficient-decrease constant, in (0, 1) (1e-4 is usual).
    decrease_factor: ``β`` in (0, 1), the shrink factor per trial.
    initial_step: ``α₀ > 0``, the first trial (1.0 suits Newton and quasi-Newton directions).
    max_evaluations: the most loss evaluations per update (static).

  Returns:
    A transform with state :class:`LinesearchState`.

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Algorithm 3.1,
    https://doi.org/10.1007/978-0-387-40065-5; Armijo, 1966,
    https://doi.org/10.2140/pjm.1966.16.1
  """
  name = "scale_by_backtracking_linesearch"
  # c1 = 0 (accept any decrease) is well defined, as in optax
  check_hyperparameter(name, "c1", c1, low=0.0, high=1.0, high_open=True,
                       hint="c1 is the sufficient-decrease constant of the Armijo condition; use e.g. 1e-4.")
  check_hyperparameter(name, "decrease_factor", decrease_factor, low=0.0, high=1.0, low_open=True,
                       high_open=True, hint="decrease_factor shrinks the step after each failed trial; e.g. 0.5.")
  check_hyperparameter(name, "initial_step", initial_step, low=0.0, low_open=True,
                       hint="initial_step is the first step tried; use 1.0 for (quasi-)Newton directions.")
  check_max_evaluations(name, max_evaluations)
  return _ScaleByBacktrackingLinesearch(c1, decrease_factor, initial_step, max_evaluations=max_evaluations)


def check_max_evaluations(name: str, max_evaluations: Any) -> None:
  if not isinstance(max_evaluations, int) or isinstance(max_evaluations, bool) or max_evaluations < 1:
    raise ValueError(f"{name}: max_evaluations={max_evaluations!r} must be an integer >= 1 (the most "
                     "loss evaluations per line search, e.g. 30).")
