"""``gx.optax_like``'s L-BFGS and line searches reproduce optax's, step by step in float64.

Each case runs the same loop as optax's docs (``optax.value_and_grad_from_state``
feeding ``value`` and ``grad`` to ``update``) with ``gx.optax_like`` and with
optax for 30 steps; params, losses, learning rates and the searches' ``info``
must agree to 1e-9 relative at every step (they agree to the last bit on these
problems). The cases cover the defaults and off-default hyperparameters,
searches that run out of trials, a pytree problem with data passed as extra
arguments, and steps at an exact minimum (all-zero gradient).
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform import optax_like

optax = pytest.importorskip("optax")

RTOL = 1e-9


def rosenbrock(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


SCALES = np.logspace(0, 3, 6)  # a quadratic with condition number 1e3


def badly_scaled(x):
  return 0.5 * jnp.sum(jnp.asarray(SCALES) * (x - 1.0) ** 2)


def logistic_data():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(60, 4))
  labels = np.sign(features @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 + rng.normal(size=60))
  return jnp.asarray(features), jnp.asarray(labels)


def logistic(params, features, labels):
  """Mean logistic loss with a little L2; params are a pytree, the data come as extra arguments."""
  margins = labels * (features @ params["w"] + params["b"])
  return jnp.mean(jnp.logaddexp(0.0, -margins)) + 1e-3 * jnp.sum(params["w"] ** 2)


FEATURES, LABELS = logistic_data()
START = {
    "rosenbrock": lambda: jnp.array([-1.2, 1.0, -0.5, 0.8, 1.5]),
    "badly_scaled": lambda: jnp.linspace(-2.0, 3.0, 6),
    "logistic": lambda: {"b": jnp.zeros(()), "w": jnp.zeros(4)},
    "at_minimum": lambda: jnp.ones(5),
}
LOSS = {"rosenbrock": rosenbrock, "badly_scaled": badly_scaled, "logistic": logistic, "at_minimum": rosenbrock}

CASES = {  # name: (problem, optimizer from a namespace, whether the search must fail, no decrease, on some step)
    "lbfgs": ("rosenbrock", lambda o: o.lbfgs(), False),
    "lbfgs_memory3_unscaled_pytree_data": ("logistic", lambda o: o.lbfgs(memory_size=3, scale_init_precond=False),
                                           False),
    "lbfgs_2_trials": ("rosenbrock", lambda o: o.lbfgs(linesearch=o.scale_by_zoom_linesearch(
        max_linesearch_steps=2, initial_guess_strategy="one")), True),
    "sgd_zoom_keep_off_defaults": ("badly_scaled", lambda o: o.chain(o.sgd(1.0), o.scale_by_zoom_linesearch(
        max_linesearch_steps=10, max_learning_rate=1.5e-3, tol=1e-12, increase_factor=3.0, slope_rtol=1e-3,
        curv_rtol=0.5, approx_dec_rtol=None, stepsize_precision=1e-3)), False),
    "sgd_backtracking_store_grad": ("rosenbrock", lambda o: o.chain(o.sgd(1.0), o.scale_by_backtracking_linesearch(
        max_backtracking_steps=3, slope_rtol=0.3, decrease_factor=0.5, increase_factor=2.0, store_grad=True)),
        True),
    "lbfgs_backtracking": ("badly_scaled", lambda o: o.lbfgs(linesearch=o.scale_by_backtracking_linesearch(
        max_backtracking_steps=15, store_grad=True)), False),
    # rosenbrock's gradient at its minimizer (1, ..., 1) is exactly 0: L-BFGS's first scale 1/‖g‖ is ∞
    "lbfgs_at_minimum": ("at_minimum", lambda o: o.lbfgs(), False),
    "backtracking_at_minimum": ("at_minimum", lambda o: o.chain(o.sgd(1.0), o.scale_by_backtracking_linesearch(
        max_backtracking_steps=3, slope_rtol=0.3, decrease_factor=0.5, increase_factor=float("inf"),
        store_grad=True)), False),
}


def linesearch_state(state):
  """The search's state: the last stage of the chain (``optax.tree.get(state, "learning_rate")`` would
  also find ``sgd``'s ``hyperparams['learning_rate']`` in a gradxform chain)."""
  return state[-1]


def step(opt, loss, params, state, data):
  """One step as optax's docs write it: the value and gradient come from the search's state."""
  value, grad = optax.value_and_grad_from_state(loss)(params, state=state, **data)
  updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss, **data)
  return optax.apply_updates(params, updates), state, value


# gradxform's optimizers are pytrees: cases of the same structure share one compilation
STEPS = {"ours": jax.jit(step, static_argnames="loss"), "optax": jax.jit(step, static_argnames=("opt", "loss"))}


def run(namespace, case, steps):
  problem, build, _ = CASES[case]
  opt, loss = build(namespace), LOSS[problem]
  data = {"features": FEATURES, "labels": LABELS} if problem == "logistic" else {}
  params = START[problem]()
  # optax's init leaves some scalars weakly typed, its update does not: one compilation, not two
  state = jax.tree.map(lambda x: jnp.asarray(x, jnp.result_type(x)), opt.init(params))
  run_step = STEPS["optax" if namespace is optax else "ours"]
  trace = []
  for _ in range(steps):
    params, state, value = run_step(opt, loss, params, state, data)
    search = linesearch_state(state)
    trace.append({"params": params, "value": value, "learning_rate": search.learning_rate,
                  "state_value": search.value, "info": tuple(search.info)})
  return trace


def flat(tree):
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("case", sorted(CASES))
def test_reproduces_optax_step_by_step(case):
  steps = 5 if "at_minimum" in case else 30
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):  # optax mixes weak Python floats
    ours, theirs = run(optax_like, case, steps), run(optax, case, steps)
  for k, (a, b) in enumerate(zip(ours, theirs)):
    for key in ("params", "value", "learning_rate", "state_value"):  # ∞ and NaN must match too
      np.testing.assert_allclose(flat(a[key]), flat(b[key]), rtol=RTOL, atol=0, err_msg=f"{case} step {k} {key}")
    assert int(a["info"][0]) == int(b["info"][0]), f"{case} step {k}: number of trials"
    np.testing.assert_allclose(np.array(a["info"][1:], np.float64), np.array(b["info"][1:], np.float64), rtol=RTOL,
                               atol=0, err_msg=f"{case} step {k}: decrease (and curvature) errors")
  if CASES[case][2]:  # the case is there to exercise a failing search: check that it does fail
    assert any(float(b["info"][1]) > 0 for b in theirs), f"{case}: optax's search never failed"
  if "at_minimum" in case:
    assert all(np.array_equal(flat(a["params"]), np.ones(5)) for a in ours)


def test_signatures_and_defaults_are_optax():
  for name in ("lbfgs", "scale_by_zoom_linesearch", "scale_by_backtracking_linesearch"):
    ours, theirs = inspect.signature(getattr(optax_like, name)), inspect.signature(getattr(optax, name))
    assert list(ours.parameters) == list(theirs.parameters), name
    for parameter in theirs.parameters.values():
      default = ours.parameters[parameter.name].default
      if isinstance(parameter.default, optax.GradientTransformation):  # lbfgs's default search
        assert isinstance(default, gx.GradientTransformation)
        assert default.max_linesearch_steps == 20 and default.initial_guess_strategy == "one"
      else:
        assert default == parameter.default, f"{name}({parameter.name}=...)"


def test_state_fields_are_optax_and_value_and_grad_from_state_reads_them():
  with jax.enable_x64(True):
    params = START["rosenbrock"]()
    state = optax_like.lbfgs().init(params)
    assert float(optax.tree.get(state, "learning_rate")) == 1.0 and np.isinf(optax.tree.get(state, "value"))
    zoom = optax_like.scale_by_zoom_linesearch(10).init(params)
    assert zoom.info._fields == optax.ZoomLinesearchInfo._fields
    backtracking = optax_like.scale_by_backtracking_linesearch(10).init(params)
    assert backtracking.grad is None and backtracking.info._fields == ("num_linesearch_steps", "decrease_error")
    value, grad = optax.value_and_grad_from_state(rosenbrock)(params, state=state)  # inf: computed
    np.testing.assert_allclose(grad, jax.grad(rosenbrock)(params))


@pytest.mark.parametrize("build", [
    lambda steps, c1, factor: optax_like.lbfgs(linesearch=optax_like.scale_by_zoom_linesearch(
        steps, max_learning_rate=10 * factor, slope_rtol=c1, curv_rtol=10 * c1, increase_factor=factor)),
    lambda steps, c1, factor: optax_like.chain(optax_like.sgd(1e-3), optax_like.scale_by_backtracking_linesearch(
        steps, slope_rtol=c1, decrease_factor=1 / factor, increase_factor=factor, max_learning_rate=factor / 2)),
], ids=["lbfgs_zoom", "sgd_backtracking"])
def test_jitted_step_compiles_once_when_hyperparameters_change(build):
  traces = []

  @jax.jit
  def minimize(opt, params):
    traces.append(1)
    value, grad = jax.value_and_grad(rosenbrock)(params)
    updates, _ = opt.update(grad, opt.init(params), params, value=value, grad=grad, value_fn=rosenbrock)
    return gx.apply_updates(params, updates)

  params = START["rosenbrock"]()
  first = minimize(build(20, 1e-4, 2.0), params)
  second = minimize(build(2, 0.05, 1.25), params)  # the number of trials is a leaf too, as in optax
  assert len(traces) == 1
  assert not np.allclose(first, second)


@pytest.mark.parametrize("build, error, match", [
    (lambda: optax_like.scale_by_zoom_linesearch(-1), ValueError,
     r"scale_by_zoom_linesearch: max_linesearch_steps=-1 is out of range \[0, inf\)"),
    (lambda: optax_like.scale_by_zoom_linesearch(2.5), ValueError, "max_linesearch_steps=2.5 must be a whole number"),
    (lambda: optax_like.scale_by_zoom_linesearch(10, slope_rtol=1.0), ValueError, r"slope_rtol=1.0 is out of range"),
    (lambda: optax_like.scale_by_zoom_linesearch(10, max_learning_rate=0.0), ValueError, "max_learning_rate=0.0"),
    (lambda: optax_like.scale_by_zoom_linesearch(10, initial_guess_strategy="two"), ValueError,
     "initial_guess_strategy='two' must be 'one'"),
    (lambda: optax_like.scale_by_zoom_linesearch(10, verbose="yes"), TypeError, "verbose is an option"),
    (lambda: optax_like.scale_by_backtracking_linesearch(10, decrease_factor=1.0), ValueError,
     r"scale_by_backtracking_linesearch: decrease_factor=1.0 is out of range \(0, 1\)"),
    (lambda: optax_like.scale_by_backtracking_linesearch(10, atol=-1.0), ValueError, "atol=-1.0 is out of range"),
    (lambda: optax_like.scale_by_backtracking_linesearch(10, store_grad=1), TypeError, "store_grad is an option"),
    (lambda: optax_like.lbfgs(memory_size=0), ValueError, "lbfgs: scale_by_lbfgs: memory_size=0 must be an integer"),
    (lambda: optax_like.lbfgs(scale_init_precond=None), TypeError, "scale_init_precond is an option"),
])
def test_bad_hyperparameters_raise_at_construction(build, error, match):
  with pytest.raises(error, match=match):
    build()


def test_update_without_the_loss_function_raises():
  params = START["rosenbrock"]()
  for opt in (optax_like.scale_by_zoom_linesearch(5), optax_like.scale_by_backtracking_linesearch(5)):
    state = opt.init(params)
    grad = jax.grad(rosenbrock)(params)
    with pytest.raises(TypeError, match="needs the loss function as the extra argument value_fn"):
      opt.update(grad, state, params, value=rosenbrock(params), grad=grad)


def test_missing_value_and_grad_are_computed_from_value_fn():
  """optax requires ``value`` and ``grad``; here they default to ``value_fn``'s (the same numbers)."""
  params = START["rosenbrock"]()
  opt = optax_like.scale_by_backtracking_linesearch(10, store_grad=True)
  grad = jax.grad(rosenbrock)(params)
  given, _ = opt.update(-grad, opt.init(params), params, value=rosenbrock(params), grad=grad, value_fn=rosenbrock)
  computed, _ = opt.update(-grad, opt.init(params), params, value_fn=rosenbrock)
  np.testing.assert_array_equal(given, computed)


def test_complex_params_are_refused_with_a_way_out():
  with pytest.raises(TypeError, match="has no complex form"):
    optax_like.lbfgs().init(jnp.ones(3, jnp.complex64))
