"""optax's line searches, shared machinery and the backtracking (Armijo) search.

Unlike ``gx``'s line searches (which end a chain in place of the learning rate
and output ``−α d``), optax's scale the incoming update ``u`` *as is*: the
earlier stages already point downhill (``optax.sgd(1.)``, L-BFGS followed by
``scale(-1)``), and the search looks along ``w + η u`` for an ``η`` and
outputs ``η u``. The state keeps optax's field names: ``learning_rate`` (the
accepted ``η``), ``value`` and ``grad`` (the loss and gradient at the new
point, for :func:`optax.value_and_grad_from_state`) and ``info``.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field
from gradxform._core.objective import axpy, require_value_fn, scalar_dtype, value_and_grad
from gradxform._transforms.options import check_flag

__all__ = ["BacktrackingLinesearchInfo", "ScaleByBacktrackingLinesearchState",
           "scale_by_backtracking_linesearch"]


# ---------------------------------------------------------------- shared machinery


def tree_vdot(a: Any, b: Any) -> jax.Array:
  """``Σ_leaves ⟨a, b⟩``, each leaf contracted in full precision and summed in leaf order (optax's rounding)."""
  total = 0
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = jnp.asarray(x), jnp.asarray(y)
    total = total + jnp.tensordot(x, y, x.ndim, precision=jax.lax.Precision.HIGHEST)
  return jnp.asarray(total)


def scale_tree(alpha: jax.Array, tree: Any) -> Any:
  """``α u`` leaf by leaf, in each leaf's dtype."""
  return jax.tree.map(lambda u: jnp.asarray(alpha).astype(jnp.result_type(u)) * u, tree)


def select(condition: jax.Array, on_true: Any, on_false: Any) -> Any:
  """``on_true`` where ``condition`` holds, else ``on_false``: two trees of the same structure."""
  return jax.tree.map(lambda x, y: jnp.where(condition, x, y), on_true, on_false)


def as_error(excess: jax.Array) -> jax.Array:
  """How far a condition ``excess ≤ 0`` is violated: ``max(excess, 0)``, and ``∞`` for NaN."""
  return jnp.where(jnp.isnan(excess), jnp.inf, jnp.maximum(excess, 0.0))


class Objective(NamedTuple):
  """The loss as the search sees it: ``f`` with the data arguments bound, and ``f(w)``, ``∇f(w)``."""

  value_fn: Callable[[Any], jax.Array]
  value: jax.Array
  grad: Any
  dtype: Any


def objective(name: str, params: Any, updates: Any, extra: dict) -> Objective:
  """Checks the inputs of an update and collects ``value_fn``, ``value`` and ``grad`` from ``extra``.

  ``value`` and ``grad`` are computed from ``value_fn`` when missing (optax
  requires them); other keyword arguments that ``value_fn`` accepts by name
  (``x=``, ``y=``) are passed on to it, as optax does.
  """
  why = "evaluate the loss along the update direction"
  value_fn = require_value_fn(name, extra, why)
  _tree.require_params(name, params, "evaluate the loss at params + learning_rate * updates")
  _tree.check_floating(name, updates, "update")
  value, grad = value_and_grad(name, extra, params, why)
  dtype = scalar_dtype(params)
  grad = jax.tree.map(lambda g, p: jnp.asarray(g).astype(jnp.result_type(p)), grad, params)  # as ∇f's own
  return Objective(value_fn, jnp.asarray(value).astype(dtype), grad, dtype)


def check_steps(name: str, field: str, value: Any, hint: str) -> None:
  """A count of line-search iterations: a whole number ``≥ 0`` (or an array, checked where concrete)."""
  check_hyperparameter(name, field, value, low=0.0, hint=hint)
  if isinstance(value, numbers.Real) and not isinstance(value, bool) and value != int(value):
    raise ValueError(f"{name}: {field}={value!r} must be a whole number. {hint}")


def check_optional_rate(name: str, field: str, value: Any, hint: str) -> None:
  if value is not None:
    check_hyperparameter(name, field, value, low=0.0, low_open=True, hint=hint)


def check_factor_or_inf(name: str, field: str, value: Any, hint: str) -> None:
  """A positive factor where ``math.inf`` is meaningful (optax: "start from the largest step")."""
  if isinstance(value, numbers.Real) and value == float("inf"):
    return
  check_hyperparameter(name, field, value, low=0.0, low_open=True, hint=hint)


# ---------------------------------------------------------------- backtracking


class BacktrackingLinesearchInfo(NamedTuple):
  """``num_linesearch_steps`` (int32 scalar): losses evaluated; ``decrease_error``: how far the last one missed."""

  num_linesearch_steps: jax.Array
  decrease_error: jax.Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
  """State of :func:`scale_by_backtracking_linesearch` (optax's fields in optax's order, then gx's).

  ``learning_rate`` (scalar) is the accepted ``η``; ``value`` the loss at the
  last point tried; ``grad`` its gradient with ``store_grad=True``, else
  ``None``; ``info`` a :class:`BacktrackingLinesearchInfo`.
  """

  learning_rate: jax.Array
  value: jax.Array
  grad: Optional[Any]
  info: BacktrackingLinesearchInfo
  count: jax.Array  # int32 scalar (last, so that optax's positional state[0] is learning_rate)
  hyperparams: dict


class _Trial(NamedTuple):
  """The ``lax.while_loop`` carry of the backtracking search."""

  learning_rate: jax.Array
  value: jax.Array
  decrease_error: jax.Array
  iteration: jax.Array  # int32 scalar
  grad: Optional[Any]  # the gradient at the last trial (store_grad), else None


class _ScaleByBacktrackingLinesearch(Transform):
  max_backtracking_steps: Any
  slope_rtol: Any
  decrease_factor: Any
  increase_factor: Any
  max_learning_rate: Any
  atol: Any
  rtol: Any
  store_grad: bool = static_field(default=False)
  verbose: bool = static_field(default=False)
  State = ScaleByBacktrackingLinesearchState

  def init_fields(self, params):
    dtype = scalar_dtype(params)
    return {"learning_rate": jnp.ones((), dtype), "value": jnp.full((), jnp.inf, dtype),
            "grad": _tree.zeros_like("scale_by_backtracking_linesearch", params) if self.store_grad else None,
            "info": BacktrackingLinesearchInfo(jnp.zeros((), jnp.int32), jnp.full((), jnp.inf, dtype))}

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_backtracking_linesearch"
    f = objective(name, params, updates, extra)
    dt = f.dtype
    c, shrink = hp["slope_rtol"].astype(dt), hp["decrease_factor"].astype(dt)
    atol, rtol = hp["atol"].astype(dt), hp["rtol"].astype(dt)
    max_steps = hp["max_backtracking_steps"].astype(jnp.int32)
    slope = tree_vdot(updates, f.grad).astype(dt)  # ⟨u, ∇f(w)⟩, negative along a descent direction
    decrease_error = lambda eta, value: as_error(value - (1 + rtol) * f.value - eta * c * slope)

    def body(trial: _Trial) -> _Trial:
      eta = jnp.where(trial.iteration > 0, shrink * trial.learning_rate, trial.learning_rate)
      point = axpy(eta, updates, params)
      if not self.store_grad:
        value = jnp.asarray(f.value_fn(point)).astype(dt)
        return _Trial(eta, value, decrease_error(eta, value), trial.iteration + 1, None)
      # with store_grad: linearize while evaluating, transpose (the gradient) only at the last trial
      value, linear = jax.linearize(f.value_fn, point)
      value = jnp.asarray(value).astype(dt)
      error = decrease_error(eta, value)
      last = (error <= atol) | (trial.iteration == max_steps)
      grad = jax.lax.cond(last, lambda: jax.linear_transpose(linear, point)(jnp.ones((), dt))[0],
                          lambda: trial.grad)
      return _Trial(eta, value, error, trial.iteration + 1, grad)

    first = jnp.minimum(hp["increase_factor"].astype(dt) * state.learning_rate,
                        hp["max_learning_rate"].astype(dt))
    trial = jax.lax.while_loop(lambda t: ~(t.decrease_error <= atol) & (t.iteration <= max_steps), body,
                               _Trial(first, f.value, jnp.full((), jnp.inf, dt), jnp.zeros((), jnp.int32),
                                      _tree.zeros_like(name, params) if self.store_grad else None))
    if self.verbose:
      jax.lax.cond(trial.decrease_error > atol, lambda: jax.debug.print(
          "scale_by_backtracking_linesearch: no step with sufficient decrease found (decrease error "
          "{e}, learning rate {lr}).", e=trial.decrease_error, lr=trial.learning_rate), lambda: None)
    eta = jnp.where(jnp.isinf(trial.decrease_error), jnp.zeros_like(trial.learning_rate), trial.learning_rate)
    return scale_tree(eta, updates), {
        "learning_rate": eta, "value": trial.value, "grad": trial.grad,
        "info": BacktrackingLinesearchInfo(trial.iteration, trial.decrease_error)}


def scale_by_backtracking_linesearch(max_backtracking_steps: Any, slope_rtol: Any = 1e-4,
                                     decrease_factor: Any = 0.8, increase_factor: Any = 1.5,
                                     max_learning_rate: Any = 1.0, atol: Any = 0.0, rtol: Any = 0.0,
                                     store_grad: bool = False, verbose: bool = False) -> GradientTransformation:
  """``optax.scale_by_backtracking_linesearch``: shrink ``η`` until the update ``η u`` decreases the loss enough.

  Starting from ``η₀ = min(increase_factor · η_prev, max_learning_rate)`` and
  shrinking by ``β = decrease_factor``, it accepts the first ``η = η₀ βʲ`` with

  .. math::

     f(w + \\eta u) \\le (1 + \\delta) f(w) + c\\, \\eta\\, \\langle u, \\nabla f(w) \\rangle + \\epsilon_a,
     \\qquad \\text{update} = \\eta\\, u

  (``c = slope_rtol``, ``δ = rtol``, ``ε_a = atol``); the update ``u`` must be
  a descent direction (``⟨u, ∇f⟩ < 0``; it is not negated). After
  ``max_backtracking_steps`` shrinks it keeps the last ``η`` tried, or 0 if the
  loss there was NaN or infinite. The next update starts from the accepted ``η``
  grown by ``increase_factor`` (``math.inf``: from ``max_learning_rate`` each
  time). ``update`` takes the extra arguments ``value``, ``grad`` (computed
  from ``value_fn`` if missing) and ``value_fn``, and passes other keywords that
  ``value_fn`` accepts (``x=``, ``y=``) on to it. Reproduces
  ``optax.scale_by_backtracking_linesearch``'s numbers.

  Args:
    max_backtracking_steps: the most shrinks per update (a whole number ``≥ 0``).
    slope_rtol: ``c ≥ 0``, the fraction of the linear decrease required.
    decrease_factor: ``β`` in (0, 1).
    increase_factor: growth of the first trial over the last accepted ``η`` (``> 0``, may be ``math.inf``).
    max_learning_rate: the largest ``η`` tried.
    atol: ``ε_a ≥ 0``, absolute slack of the condition.
    rtol: ``δ ≥ 0``, slack relative to ``f(w)``.
    store_grad: also store ``∇f`` at the accepted point in the state (one more
      backward pass), for :func:`optax.value_and_grad_from_state`.
    verbose: print a line when no ``η`` met the condition.

  Returns:
    A transform with state :class:`ScaleByBacktrackingLinesearchState`.

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Algorithm 3.1,
    https://doi.org/10.1007/978-0-387-40065-5; Vaswani et al., 2019,
    https://arxiv.org/abs/1905.09997
  """
  name = "scale_by_backtracking_linesearch"
  check_steps(name, "max_backtracking_steps", max_backtracking_steps,
              "It is the most times the learning rate is shrunk per update, e.g. 15.")
  check_hyperparameter(name, "slope_rtol", slope_rtol, low=0.0,
                       hint="slope_rtol is the fraction of the linear decrease required; use e.g. 1e-4.")
  check_hyperparameter(name, "decrease_factor", decrease_factor, low=0.0, high=1.0, low_open=True,
                       high_open=True, hint="decrease_factor shrinks the learning rate per trial; e.g. 0.8.")
  check_factor_or_inf(name, "increase_factor", increase_factor,
                      "increase_factor grows the first trial over the last learning rate; e.g. 1.5 (1.0 keeps "
                      "it, math.inf starts from max_learning_rate).")
  check_hyperparameter(name, "max_learning_rate", max_learning_rate, low=0.0, low_open=True,
                       hint="max_learning_rate is the largest learning rate tried; e.g. 1.0.")
  for field, value in (("atol", atol), ("rtol", rtol)):
    check_hyperparameter(name, field, value, low=0.0, hint=f"{field} is a slack of the decrease condition; e.g. 0.0.")
  return _ScaleByBacktrackingLinesearch(max_backtracking_steps, slope_rtol, decrease_factor, increase_factor,
                                        max_learning_rate, atol, rtol,
                                        store_grad=check_flag(name, "store_grad", store_grad),
                                        verbose=check_flag(name, "verbose", verbose))
