"""Ports that just work: mixed gradient/parameter dtypes, Equinox masks, optax's boundary values,
data arguments for line searches, ``lookahead(reset_state=)``, ``accumulate(every_k=<schedule>)``.

References: optax (float64, step by step) where it has the feature, NumPy otherwise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.catalogue import CASES, gradient_stream, initial_params


@pytest.fixture
def optax():
  return pytest.importorskip("optax")


def f64(tree):
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


# ------------------------------------------------------- gradients of another dtype than the params

WRAPPED = {
    "accumulate": lambda: gx.accumulate(gx.adam(1e-2), every_k=2),
    "lookahead": lambda: gx.lookahead(gx.adam(1e-2), sync_period=2),
    "ema_params": lambda: gx.ema_params(gx.sgd(0.1, momentum=0.9), decay=0.9),
    "apply_if_finite": lambda: gx.apply_if_finite(gx.rmsprop(1e-2), 3),
    "masked": lambda: gx.masked(gx.adam(1e-2), {"b": False, "w": True}),
    "packed": lambda: gx.packed(gx.adamw(1e-2)),
    "adam_8bit": lambda: gx.adam_8bit(1e-2),
    "clip+adamw": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-2)),
}
MIXED = [(case.id, case.make) for case in CASES] + list(WRAPPED.items())


DTYPES = {"bf16-f32": (jnp.bfloat16, jnp.float32), "f16-f32": (jnp.float16, jnp.float32),
          "f32-bf16": (jnp.float32, jnp.bfloat16), "f32-f64": (jnp.float32, jnp.float64)}
# every transform with float32 gradients for bfloat16 params; the other pairs on a few
GRID = [(name, make, "bf16-f32") for name, make in MIXED] + [
    (name, make, pair) for name, make in MIXED if name in ("adam", "sgd_momentum", "accumulate", "packed")
    for pair in ("f16-f32", "f32-bf16", "f32-f64")]


@pytest.mark.parametrize("name, make, pair", GRID, ids=[f"{name}-{pair}" for name, _, pair in GRID])
def test_gradients_of_any_floating_dtype_are_accepted(name, make, pair):
  """Accepted; state dtypes and parameter dtypes kept; the numbers track the run with matching dtypes."""
  param_dtype, grad_dtype = DTYPES[pair]
  with jax.enable_x64(grad_dtype == jnp.float64):
    params = jax.tree.map(lambda x: jnp.asarray(x, param_dtype), initial_params())
    stream = gradient_stream(3)
    opt = make()

    def run(grad_dtype):
      p, state = params, opt.init(params)
      init_dtypes = [x.dtype for x in jax.tree.leaves(state)]
      for g in stream:  # eager: two short runs cost less than two compilations
        updates, state = opt.update(jax.tree.map(lambda x: jnp.asarray(x, grad_dtype), g), state, p)
        p = gx.apply_updates(p, updates)
      assert [x.dtype for x in jax.tree.leaves(state)] == init_dtypes, f"{name}: the state's dtypes changed"
      return p

    mixed, matched = run(grad_dtype), run(param_dtype)
  for key in params:
    assert mixed[key].dtype == jnp.dtype(param_dtype)
    step = float(np.max(np.abs(np.asarray(matched[key], np.float32) - np.asarray(params[key], np.float32))))
    np.testing.assert_allclose(np.asarray(mixed[key], np.float32), np.asarray(matched[key], np.float32),
                               atol=0.05 * max(step, 1e-3) + 0.02 * float(np.max(np.abs(np.asarray(params[key], np.float32)))),
                               err_msg=f"{name} {key}")


def test_float32_gradients_for_bfloat16_params_compute_in_float32_and_return_the_params_dtype():
  """Adam's moments are stored in bfloat16 (the state's dtype) from float32 gradients; u in bfloat16."""
  params = {"w": jnp.ones(3, jnp.bfloat16)}
  grads = {"w": jnp.asarray([1e-3, 1.0 + 2**-10, -3.0], jnp.float32)}  # 1 + 2^-10 is not a bfloat16
  opt = gx.scale_by_adam(b1=0.5, b2=0.75, eps=0.0)
  updates, state = opt.update(grads, opt.init(params), params)
  g = np.asarray(grads["w"], np.float64)
  mu = np.asarray(jnp.asarray(0.5 * g, jnp.bfloat16), np.float64)      # stored as bfloat16
  nu = np.asarray(jnp.asarray(0.25 * g * g, jnp.bfloat16), np.float64)
  assert state.numerator.ema["w"].dtype == jnp.bfloat16 and updates["w"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(state.numerator.ema["w"], np.float64), mu)
  np.testing.assert_array_equal(np.asarray(state.nu["w"], np.float64), nu)
  np.testing.assert_array_equal(np.asarray(updates["w"], np.float32),
                                np.asarray(jnp.asarray((mu / 0.5) / np.sqrt(nu / 0.25), jnp.bfloat16), np.float32))


# ------------------------------------------------------- callable pytrees as masks and labels


def test_equinox_module_masks_and_labels_are_trees():
  eqx = pytest.importorskip("equinox")
  model = eqx.nn.MLP(3, 2, 4, 1, key=jax.random.key(0))
  params = eqx.filter(model, eqx.is_inexact_array)
  mask = jax.tree.map(lambda x: x.ndim > 1, params)  # decay the weight matrices only
  assert callable(mask)  # an MLP of booleans keeps MLP.__call__
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)
  decayed = jax.tree.map(lambda g, p, m: g + 0.1 * p if m else g, grads, params, mask)

  for opt in (gx.add_decayed_weights(0.1, mask=mask), gx.masked(gx.add_decayed_weights(0.1), mask)):
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), updates, decayed)

  labels = jax.tree.map(lambda x: "matrix" if x.ndim > 1 else "vector", params)
  opt = gx.partition({"matrix": gx.sgd(1.0), "vector": gx.set_to_zero()}, labels)
  updates, _ = opt.update(grads, opt.init(params), params)
  jax.tree.map(lambda u, g, m: np.testing.assert_allclose(u, -g if m else 0.0), updates, grads, mask)
  frozen, _ = gx.freeze(mask).update(grads, gx.freeze(mask).init(params), params)
  jax.tree.map(lambda u, g, m: np.testing.assert_allclose(u, 0.0 if m else g), frozen, grads, mask)


def test_functions_stay_functions():
  params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
  grads = jax.tree.map(jnp.zeros_like, params)
  for mask in (lambda p: jax.tree.map(lambda x: x.ndim > 1, p), lambda path, x: path.endswith("w"),
               jax.tree_util.Partial(lambda p: jax.tree.map(lambda x: x.ndim > 1, p))):
    opt = gx.add_decayed_weights(1.0, mask=mask)
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_array_equal(updates["w"], 1.0)
    np.testing.assert_array_equal(updates["b"], 0.0)


# ------------------------------------------------------- optax's boundary values


def rosenbrock(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_armijo_c1_zero_accepts_the_first_step_that_does_not_increase_the_loss():
  with jax.enable_x64(True):
    opt = gx.scale_by_backtracking_linesearch(c1=0.0, decrease_factor=0.5)
    x = jnp.asarray([-1.2, 1.0])
    state = opt.init(x)
    for _ in range(5):
      f, g = jax.value_and_grad(rosenbrock)(x)
      x_new, state, _ = gx.step(opt, rosenbrock, x, state)
      alpha = float(state.step_size)
      trials = 0.5 ** np.arange(30)
      first = next(a for a in trials if float(rosenbrock(x - a * g)) <= float(f))  # NumPy-side search
      assert alpha == first
      np.testing.assert_allclose(x_new, x - alpha * g, rtol=1e-12)
      x = x_new
  result = gx.minimize(gx.lbfgs(linesearch=gx.scale_by_zoom_linesearch(c1=0.0)), rosenbrock,
                       jnp.asarray([-1.2, 1.0]), max_steps=200, tol=1e-4)
  np.testing.assert_allclose(result.params, [1.0, 1.0], atol=1e-3)


def test_zero_max_norm_and_zero_max_learning_rate_give_zero_updates_without_nan():
  params = {"w": jnp.ones(3)}
  for grads in ({"w": jnp.asarray([3.0, -4.0, 0.0])}, {"w": jnp.zeros(3)}):
    clip = gx.clip_by_global_norm(0.0)
    updates, _ = clip.update(grads, clip.init(params))
    np.testing.assert_array_equal(updates["w"], 0.0)
    polyak = gx.polyak_sgd(max_learning_rate=0.0)
    updates, _ = polyak.update(grads, polyak.init(params), params, value=jnp.asarray(2.0))
    np.testing.assert_array_equal(updates["w"], 0.0)


# ------------------------------------------------------- data arguments reach value_fn


def data_loss(params, batch, scale=1.0):
  x, y = batch
  return scale * jnp.mean((x @ params["w"] + params["b"] - y) ** 2) + 0.01 * jnp.sum(params["w"] ** 2)


SEARCHERS = {
    "backtracking": lambda: gx.chain(gx.scale_by_adam(), gx.scale_by_backtracking_linesearch()),
    "zoom": lambda: gx.lbfgs(),
    "lbfgs-backtracking": lambda: gx.lbfgs(linesearch=gx.scale_by_backtracking_linesearch()),
    "polyak": lambda: gx.polyak_sgd(f_min=0.0),
    "sophia": lambda: gx.sophia(0.05),
    "newton": lambda: gx.newton(damping=0.1),
    "curvature": lambda: gx.curvature_descent(),
}


@pytest.mark.parametrize("name", [name if name in ("backtracking", "polyak") else
                                  pytest.param(name, marks=pytest.mark.slow) for name in SEARCHERS])
def test_line_searches_pass_data_arguments_to_value_fn(name):
  rng = np.random.default_rng(0)
  batch = (jnp.asarray(rng.normal(size=(16, 3))), jnp.asarray(rng.normal(size=(16, 2))))
  params = {"w": jnp.asarray(rng.normal(size=(3, 2))), "b": jnp.zeros(2)}
  opt = SEARCHERS[name]()
  closed = lambda p: data_loss(p, batch, scale=2.0)
  with jax.enable_x64(True):
    params = f64(params)
    batch = f64(batch)
    p1, s1, p2, s2 = params, opt.init(params), params, opt.init(params)
    for _ in range(4):
      p1, s1, v1 = gx.step(opt, closed, p1, s1)
      # the data as keywords: gx.step passes them to loss_fn and to every stage
      p2, s2, v2 = jax.jit(gx.step, static_argnums=1)(opt, data_loss, p2, s2, batch=batch, scale=2.0)
      np.testing.assert_allclose(v2, v1, rtol=1e-10)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12), p2, p1)
    # and by hand, as with optax: update(..., value_fn=f, batch=...)
    value, grad = jax.value_and_grad(closed)(params)
    u1, _ = opt.update(grad, opt.init(params), params, value=value, grad=grad, value_fn=closed)
    u2, _ = opt.update(grad, opt.init(params), params, value=value, grad=grad, value_fn=data_loss,
                       batch=batch, scale=2.0, unrelated="not an argument of data_loss")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10), u2, u1)


# ------------------------------------------------------- lookahead(reset_state=...) against optax


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_reset_state_matches_optax(optax, reset_state):
  """gx's parameters are optax's fast weights (optax keeps (fast, slow) as the params), 30 steps."""
  stream = gradient_stream(30, seed=3)
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):  # optax's schedules mix int and float
    params = f64(initial_params())
    opt = gx.lookahead(gx.adam(0.1, b1=0.8, b2=0.9), sync_period=4, slow_step_size=0.3, reset_state=reset_state)
    ref = optax.lookahead(optax.adam(0.1, b1=0.8, b2=0.9), sync_period=4, slow_step_size=0.3,
                          reset_state=reset_state)
    p, s = params, opt.init(params)
    rp = optax.LookaheadParams(fast=params, slow=params)
    rs = ref.init(rp)
    for t, g in enumerate(stream):
      updates, s = opt.update(f64(g), s, p)
      p = gx.apply_updates(p, updates)
      r_updates, rs = ref.update(f64(g), rs, rp)
      rp = optax.apply_updates(rp, r_updates)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"step {t}"),
                   p, rp.fast)
      if (t + 1) % 4 == 0:
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), s.slow, rp.slow)
    # the inner Adam restarted at step 28 (the last synchronization), or never
    assert int(s.inner_state[0].count) == (30 % 4 if reset_state else 30)


# ------------------------------------------------------- accumulate(every_k=<schedule>) against optax


@pytest.mark.parametrize("kind", ["function", "gx_schedule"])
def test_accumulate_with_a_schedule_matches_optax_multisteps(optax, kind):
  k_of = lambda step: jnp.where(step < 2, 1, jnp.where(step < 4, 3, 2))
  every_k = k_of if kind == "function" else gx.schedules.piecewise_constant(1.0, {2: 3.0, 4: 2.0 / 3.0})
  stream = gradient_stream(30, seed=5)
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):  # optax's schedules mix int and float
    params = f64(initial_params())
    # optax averages as a running mean (its weights are rounded to ~1e-9 relative), gx as sum / k
    opt = gx.accumulate(gx.sgd(0.1, momentum=0.8, nesterov=True), every_k=every_k)
    ref = optax.MultiSteps(optax.sgd(0.1, momentum=0.8, nesterov=True), every_k_schedule=k_of)
    p, s, rp, rs = params, opt.init(params), params, ref.init(params)
    update, ref_update, has_updated = jax.jit(opt.update), jax.jit(ref.update), jax.jit(ref.has_updated)
    emitted = []
    for t, g in enumerate(stream):
      updates, s = update(f64(g), s, p)
      p = gx.apply_updates(p, updates)
      r_updates, rs = ref_update(f64(g), rs, rp)
      rp = optax.apply_updates(rp, r_updates)
      assert bool(s.emitted) == bool(has_updated(rs)), f"step {t}"
      assert int(s.gradient_step) == int(rs.gradient_step)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-6, err_msg=f"step {t}"),
                   p, rp)
      emitted.append(bool(s.emitted))
  # k = 1, 1, then 3, 3, then 2 per inner step: emissions at micro-steps 1, 2, 5, 8, 10, 12, ...
  assert [t + 1 for t, e in enumerate(emitted) if e][:6] == [1, 2, 5, 8, 10, 12]


def test_accumulate_emitted_with_a_fixed_period():
  opt = gx.accumulate(gx.sgd(0.1), every_k=3)
  params = {"w": jnp.ones(2)}
  state = opt.init(params)
  assert not bool(state.emitted)
  for j in range(1, 8):
    _, state = opt.update({"w": jnp.ones(2)}, state, params)
    assert bool(state.emitted) == (j % 3 == 0) and int(state.gradient_step) == j // 3
