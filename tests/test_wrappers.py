"""Wrapper transforms: apply_if_finite, accumulate, lookahead, ema_params (+ averaged_params).

Each wrapper is checked against what it promises, computed independently:
skipping a non-finite step equals the run without it; ``k`` accumulated
micro-steps equal one step on the mean gradient; lookahead follows a NumPy
loop written from Algorithm 1 of Zhang et al. (2019) with explicit fast and
slow weights; the parameter average equals the closed-form EMA of the
parameter trajectory. Then the properties every transform must have: a stage
of ``chain``, ``**extra`` forwarded, dtypes kept, ``None`` leaves kept, one
compilation, ``eval_shape``-able init, ``vmap``.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests import references as ref
from tests.helpers import assert_trees_close, cast

# ---------------------------------------------------------------------------
# A small problem whose gradient depends on the parameters


def _params(seed=1):
  rng = np.random.default_rng(seed)
  return {"b": rng.normal(size=(5,)), "w": rng.normal(size=(3, 4))}


_TARGET = {"b": np.linspace(-1.0, 1.0, 5), "w": np.arange(12.0).reshape(3, 4) / 6.0}


def _grad_np(params):
  """∇ of Σ (p − target)² + Σ sin(p), in float64 NumPy."""
  return {k: 2 * (np.asarray(p, np.float64) - _TARGET[k]) + np.cos(np.asarray(p, np.float64))
          for k, p in params.items()}


def _grad(params):
  """The same gradient in JAX, in the parameters' dtype."""
  return {k: (2 * (p - jnp.asarray(_TARGET[k], p.dtype)) + jnp.cos(p)).astype(p.dtype)
          for k, p in params.items()}


def _stream(steps, seed=0):
  rng = np.random.default_rng(seed)
  return [{"b": rng.normal(size=(5,)), "w": rng.normal(size=(3, 4))} for _ in range(steps)]


def _train(opt, params, steps, grad=_grad, inject=None, jit=True):
  """Runs ``steps`` updates on the problem; ``inject`` maps a 1-based step to a gradient edit."""
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  for t in range(1, steps + 1):
    grads = grad(params)
    if inject and t in inject:
      grads = inject[t](grads)
    updates, state = update(grads, state, params)
    params = gx.apply_updates(params, updates)
  return params, state


def _nan(grads):
  return {**grads, "w": grads["w"].at[1, 2].set(jnp.nan)}


def _inf(grads):
  return {**grads, "b": grads["b"].at[0].set(-jnp.inf)}


# ---------------------------------------------------------------------------
# apply_if_finite


@pytest.mark.parametrize("make", [lambda: gx.adam(0.1), lambda: gx.sgd(0.05, momentum=0.9)],
                         ids=["adam", "sgd_momentum"])
def test_skipped_nan_and_inf_steps_equal_the_run_without_them(make):
  params = cast(_params(), jnp.float32)
  got, state = _train(gx.apply_if_finite(make(), 3), params, 10, inject={3: _nan, 6: _inf})
  expected, expected_state = _train(make(), params, 8)
  assert_trees_close(got, expected, rtol=1e-7, atol=0, what="params")
  assert_trees_close(state.inner_state, expected_state, rtol=1e-7, atol=0, what="inner state")
  assert isinstance(state, gx.ApplyIfFiniteState)
  assert (int(state.notfinite_count), bool(state.last_finite), int(state.total_notfinite)) == (0, True, 2)
  assert state.notfinite_count.dtype == jnp.int32 and state.last_finite.dtype == jnp.bool_


def test_a_skipped_step_leaves_params_and_inner_state_untouched_and_counts():
  params = cast(_params(), jnp.float32)
  opt = gx.apply_if_finite(gx.adam(0.1), 5)
  state = opt.init(params)
  update = jax.jit(opt.update)
  _, state = update(_grad(params), state, params)
  for expected_run, edit in enumerate([_nan, _inf, lambda g: jax.tree.map(lambda x: x * jnp.nan, g)], 1):
    updates, new_state = update(edit(_grad(params)), state, params)
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
    assert_trees_close(new_state.inner_state, state.inner_state, rtol=0, atol=0)
    assert int(new_state.notfinite_count) == expected_run and not bool(new_state.last_finite)
    assert int(new_state.total_notfinite) == expected_run
    state = new_state
  _, state = update(_grad(params), state, params)
  assert (int(state.notfinite_count), bool(state.last_finite), int(state.total_notfinite)) == (0, True, 3)
  assert int(state.inner_state[0].count) == 2


def test_inf_produced_inside_the_inner_transform_is_caught():
  """A finite but huge gradient that overflows inside Adam's g² is a bad step too."""
  params = {"w": jnp.ones(3, jnp.float32)}
  opt = gx.apply_if_finite(gx.adam(0.1), 2)
  state = opt.init(params)
  updates, state = opt.update({"w": jnp.array([1e30, 1.0, 1.0], jnp.float32)}, state, params)
  assert not bool(state.last_finite) and bool(jnp.all(updates["w"] == 0))


@pytest.mark.parametrize("jit", [False, True])
def test_gives_up_loudly_after_max_consecutive_errors(jit, caplog):
  params = cast(_params(), jnp.float32)
  opt = gx.apply_if_finite(gx.adam(0.1), 2)
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  caplog.set_level(logging.ERROR, logger="gradxform")
  for t in (1, 2):
    updates, state = update(_nan(_grad(params)), state, params)
    jax.effects_barrier()
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates)), t
    assert int(state.inner_state[0].count) == 0
  assert not caplog.records  # skipping is silent
  updates, state = update(_nan(_grad(params)), state, params)
  jax.effects_barrier()
  assert bool(jnp.isnan(updates["w"][1, 2]))  # the non-finite update is returned
  assert int(state.inner_state[0].count) == 1  # and the inner state advanced
  assert int(state.notfinite_count) == 3 and int(state.total_notfinite) == 3
  [record] = caplog.records
  assert record.levelno == logging.ERROR and record.name == "gradxform"
  assert "apply_if_finite: 3 non-finite steps in a row" in record.getMessage()
  assert "max_consecutive_errors=2" in record.getMessage() and "Giving up" in record.getMessage()


def test_zero_max_consecutive_errors_never_skips(caplog):
  params = {"w": jnp.ones(2, jnp.float32)}
  opt = gx.apply_if_finite(gx.sgd(0.1), 0)
  updates, state = jax.jit(opt.update)({"w": jnp.array([jnp.nan, 1.0])}, opt.init(params), params)
  jax.effects_barrier()
  assert bool(jnp.isnan(updates["w"][0])) and float(updates["w"][1]) == np.float32(-0.1)
  assert len(caplog.records) == 1


def test_apply_if_finite_in_a_chain_and_around_one_and_around_optax():
  optax = pytest.importorskip("optax")
  params = cast(_params(), jnp.float32)
  inject = {3: _nan, 6: _inf}
  # a stage after clipping (clip's NaN output is caught); a wrapper around a whole chain
  for wrapped, plain in [
      (gx.chain(gx.clip_by_global_norm(1.0), gx.apply_if_finite(gx.adam(0.1), 3)),
       gx.chain(gx.clip_by_global_norm(1.0), gx.adam(0.1))),
      (gx.apply_if_finite(gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(0.1, weight_decay=0.1)), 3),
       gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(0.1, weight_decay=0.1))),
  ]:
    got, _ = _train(wrapped, params, 10, inject=inject)
    assert_trees_close(got, _train(plain, params, 8)[0], rtol=1e-7, atol=0)
  with jax.numpy_dtype_promotion("standard"):
    got, _ = _train(gx.apply_if_finite(optax.adam(0.1), 3), params, 10, inject=inject)
    expected, _ = _train(optax.adam(0.1), params, 8)
  assert_trees_close(got, expected, rtol=1e-7, atol=0)


def test_apply_if_finite_vmapped_members_skip_independently():
  """Under vmap the skip is a per-member select: only the member with the NaN skips."""
  params = cast(_params(), jnp.float32)
  stacked = jax.tree.map(lambda p: jnp.stack([p, p + 0.5]), params)
  opt = gx.apply_if_finite(gx.adam(0.1), 3)

  def step(params, bad):
    state = opt.init(params)
    grads = _grad(params)
    grads = {**grads, "w": jnp.where(bad, jnp.nan, grads["w"])}
    updates, state = opt.update(grads, state, params)
    return updates, state

  updates, state = jax.jit(jax.vmap(step))(stacked, jnp.array([False, True]))
  np.testing.assert_array_equal(state.last_finite, [True, False])
  np.testing.assert_array_equal(state.total_notfinite, [0, 1])
  first, _ = opt.update(_grad(params), opt.init(params), params)
  assert_trees_close(jax.tree.map(lambda u: u[0], updates), first, rtol=1e-6, atol=0)
  assert all(bool(jnp.all(u[1] == 0)) for u in jax.tree.leaves(updates))


# ---------------------------------------------------------------------------
# accumulate


def _means(stream, k, acc_dtype, grad_dtype):
  """The mean of each group of k micro-gradients: summed in ``acc_dtype`` in order, then / k."""
  means = []
  for i in range(0, len(stream), k):
    acc = {key: jnp.zeros(np.shape(v), acc_dtype) for key, v in stream[i].items()}
    for grads in stream[i:i + k]:
      acc = {key: acc[key] + jnp.asarray(grads[key], grad_dtype).astype(acc_dtype) for key in acc}
    means.append({key: (a / k).astype(grad_dtype) for key, a in acc.items()})
  return means


@pytest.mark.parametrize("dtype,acc_dtype", [(jnp.float32, None), (jnp.bfloat16, jnp.float32)],
                         ids=["float32", "bfloat16_f32acc"])
@pytest.mark.parametrize("make", [lambda: gx.adam(0.1), lambda: gx.sgd(0.1, momentum=0.9)],
                         ids=["adam", "sgd_momentum"])
def test_k_micro_steps_equal_one_step_on_the_mean(make, dtype, acc_dtype):
  k, cycles = 4, 3
  stream = _stream(k * cycles)
  params = cast(_params(), dtype)
  opt = gx.accumulate(make(), k, acc_dtype=acc_dtype)
  state = opt.init(params)
  assert state.grad_acc["w"].dtype == (acc_dtype or dtype)
  update = jax.jit(opt.update)
  got = params
  for j, grads in enumerate(stream, 1):
    updates, state = update(cast(grads, dtype), state, got)
    if j % k:
      assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates)), j
      assert int(state.mini_step) == j % k
    else:
      assert int(state.mini_step) == 0
      assert all(bool(jnp.all(a == 0)) for a in jax.tree.leaves(state.grad_acc))
    got = gx.apply_updates(got, updates)
  inner = make()
  expected, inner_state = params, inner.init(params)
  for mean in _means(stream, k, acc_dtype or dtype, dtype):
    updates, inner_state = inner.update(mean, inner_state, expected)
    expected = gx.apply_updates(expected, updates)
  for leaf in jax.tree.leaves(got):
    assert leaf.dtype == dtype
  assert_trees_close(got, expected, rtol=1e-6, atol=0, what="params")
  assert_trees_close(state.inner_state, inner_state, rtol=1e-6, atol=0, what="inner state")
  assert isinstance(state, gx.AccumulateState) and state.mini_step.dtype == jnp.int32


def test_accumulate_eager_equals_jit_and_every_k_one_is_the_inner_optimizer():
  params = cast(_params(), jnp.float32)
  eager, _ = _train(gx.accumulate(gx.adam(0.1), 2), params, 4, jit=False)
  jitted, _ = _train(gx.accumulate(gx.adam(0.1), 2), params, 4)
  assert_trees_close(eager, jitted, rtol=1e-6, atol=0)
  assert_trees_close(_train(gx.accumulate(gx.adam(0.1), 1), params, 5)[0], _train(gx.adam(0.1), params, 5)[0],
                     rtol=1e-7, atol=0)


def test_accumulate_inner_runs_only_on_the_kth_step():
  calls = []

  def update(updates, state, params=None):
    jax.debug.callback(lambda: calls.append(1))
    return updates, state

  opt = gx.accumulate(gx.GradientTransformation(lambda p: gx.EmptyState(), update), 3)
  params = {"w": jnp.zeros(2, jnp.float32)}
  state = opt.init(params)
  step = jax.jit(opt.update)
  for _ in range(7):
    _, state = step({"w": jnp.ones(2, jnp.float32)}, state, params)
  jax.effects_barrier()
  assert len(calls) == 2


def test_a_non_finite_micro_gradient_is_dropped_alone_by_apply_if_finite_outside():
  stream = [cast(g, jnp.float32) for g in _stream(7)]
  bad = {**stream[2], "w": stream[2]["w"].at[0, 0].set(jnp.nan)}
  params = cast(_params(), jnp.float32)

  def run(opt, grads_stream):
    state, p, update = opt.init(params), params, jax.jit(opt.update)
    for grads in grads_stream:
      updates, state = update(grads, state, p)
      p = gx.apply_updates(p, updates)
    return p, state

  got, state = run(gx.apply_if_finite(gx.accumulate(gx.adam(0.1), 2), 3), stream[:2] + [bad] + stream[2:])
  expected, _ = run(gx.accumulate(gx.adam(0.1), 2), stream)
  assert_trees_close(got, expected, rtol=1e-7, atol=0)
  assert int(state.total_notfinite) == 1 and int(state.inner_state.mini_step) == 1


# ---------------------------------------------------------------------------
# lookahead


def _lookahead_reference(make_inner, params, steps, k, alpha):
  """Algorithm 1 of Zhang et al. (2019), fast weights θ and slow weights φ kept explicitly."""
  keys = sorted(params)
  phi = [np.asarray(params[key], np.float64) for key in keys]
  inner = make_inner()
  theta = [x.copy() for x in phi]
  trajectory = []
  for t in range(1, steps + 1):
    g = _grad_np(dict(zip(keys, theta)))
    d = inner([g[key] for key in keys], theta)  # θ ← θ + A(L, θ, d)
    theta = [x + u for x, u in zip(theta, d)]
    if t % k == 0:  # φ ← φ + α(θ − φ);  θ ← φ
      phi = [s + alpha * (f - s) for s, f in zip(phi, theta)]
      theta = [s.copy() for s in phi]
    trajectory.append(dict(zip(keys, theta)))
  return trajectory, dict(zip(keys, phi))


_INNERS = [
    ("sgd_momentum", lambda: gx.sgd(0.05, momentum=0.8),
     lambda: ref.Chain(ref.Momentum(0.8), ref.LearningRate(0.05))),
    ("adam", lambda: gx.adam(0.1, b1=0.8, b2=0.9),
     lambda: ref.Chain(ref.Adam(0.8, 0.9, 1e-8), ref.LearningRate(0.1))),
]


@pytest.mark.parametrize("name,make,make_ref,k,alpha", [
    (*_INNERS[0], 3, 0.5), (*_INNERS[0], 1, 0.3), (*_INNERS[1], 5, 0.8), (*_INNERS[1], 2, 0.5),
], ids=["sgd_momentum-k3", "sgd_momentum-k1", "adam-k5", "adam-k2"])
def test_lookahead_matches_algorithm_1(name, make, make_ref, k, alpha):
  steps = 11
  trajectory, slow = _lookahead_reference(make_ref, _params(), steps, k, alpha)
  with jax.enable_x64(True):
    params = cast(_params(), jnp.float64)
    opt = gx.lookahead(make(), sync_period=k, slow_step_size=alpha)
    state = opt.init(params)
    update = jax.jit(opt.update)
    for t in range(steps):
      updates, state = update(_grad(params), state, params)
      params = gx.apply_updates(params, updates)
      assert_trees_close(params, trajectory[t], rtol=1e-10, atol=1e-12, what=f"{name} step {t + 1}")
    assert_trees_close(state.slow, slow, rtol=1e-10, atol=1e-12, what="slow weights")
  assert isinstance(state, gx.LookaheadState) and int(state.count) == steps
  # float32: the same within float32 rounding
  got, state32 = _train(gx.lookahead(make(), k, alpha), cast(_params(), jnp.float32), steps)
  assert_trees_close(got, trajectory[-1], rtol=1e-4, atol=1e-5, what="float32")
  assert state32.slow["w"].dtype == jnp.float32


def test_lookahead_with_step_size_one_and_period_one_is_the_inner_optimizer():
  params = cast(_params(), jnp.float32)
  got, _ = _train(gx.lookahead(gx.adam(0.1), 1, 1.0), params, 6)
  assert_trees_close(got, _train(gx.adam(0.1), params, 6)[0], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# ema_params and averaged_params


def _closed_form_ema(trajectory, beta, debias):
  """a_t = Σ_s (1−β)β^{t−s} p_s (+ β^t p_0 without debias), / (1 − β^t) with debias."""
  out = []
  for t in range(1, len(trajectory)):
    avg = {}
    for key in trajectory[0]:
      total = sum((1 - beta) * beta ** (t - s) * trajectory[s][key] for s in range(1, t + 1))
      avg[key] = total / (1 - beta ** t) if debias else total + beta ** t * trajectory[0][key]
    out.append(avg)
  return out


@pytest.mark.parametrize("debias", [True, False])
def test_ema_params_is_the_closed_form_ema_of_the_parameter_trajectory(debias):
  beta, steps = 0.7, 8
  stream = _stream(steps)
  trajectory = [_params()]
  for grads in stream:  # identity inner: p_t = p_{t-1} + g_t
    trajectory.append({k: trajectory[-1][k] + grads[k] for k in grads})
  expected = _closed_form_ema(trajectory, beta, debias)
  with jax.enable_x64(True):
    params = cast(_params(), jnp.float64)
    opt = gx.ema_params(gx.identity(), beta, debias=debias)
    state, update = opt.init(params), jax.jit(opt.update)
    for t, grads in enumerate(stream):
      updates, state = update(cast(grads, jnp.float64), state, params)
      assert_trees_close(updates, grads, rtol=0, atol=0)  # the inner updates, unchanged
      params = gx.apply_updates(params, updates)
      assert_trees_close(gx.averaged_params(state), expected[t], rtol=1e-12, atol=1e-13, what=f"step {t + 1}")
  assert isinstance(state, gx.EmaParamsState) and int(state.count) == steps


def test_averaged_params_found_inside_chains_and_wrappers():
  beta = 0.9
  params = cast(_params(), jnp.float32)
  nestings = {
      "chain": lambda e: gx.chain(gx.clip_by_global_norm(5.0), e),
      "in_apply_if_finite": lambda e: gx.apply_if_finite(gx.chain(gx.clip_by_global_norm(5.0), e), 3),
      "around_lookahead": lambda e: e,
  }
  for name, nest in nestings.items():
    inner = gx.lookahead(gx.adam(0.1), 3, 0.5) if name == "around_lookahead" else gx.adam(0.1)
    opt = nest(gx.ema_params(inner, beta))
    state, p, update = opt.init(params), params, jax.jit(opt.update)
    trajectory = [jax.tree.map(lambda x: np.asarray(x, np.float64), params)]
    for _ in range(5):
      updates, state = update(_grad(p), state, p)
      p = gx.apply_updates(p, updates)
      trajectory.append(jax.tree.map(lambda x: np.asarray(x, np.float64), p))
    got = gx.averaged_params(state)
    assert jax.tree.structure(got) == jax.tree.structure(params)
    assert_trees_close(got, _closed_form_ema(trajectory, beta, True)[-1], rtol=1e-5, atol=1e-6, what=name)
    assert_trees_close(jax.jit(gx.averaged_params)(state), got, rtol=0, atol=0)


def test_averaged_params_with_a_scheduled_decay_is_normalized():
  """w_t = 1 − Π β_s keeps the average of a constant trajectory exactly at that constant."""
  params = {"w": jnp.full((3,), 2.5, jnp.float32)}
  opt = gx.ema_params(gx.identity(), lambda count: 0.5 + 0.4 * jnp.minimum(count, 5).astype(jnp.float32) / 5)
  state = opt.init(params)
  for _ in range(6):
    _, state = opt.update({"w": jnp.zeros(3, jnp.float32)}, state, params)
    np.testing.assert_allclose(gx.averaged_params(state)["w"], 2.5, rtol=1e-6)


def test_averaged_params_of_stacked_states_and_errors():
  params = {"w": jnp.ones((2, 3), jnp.float32)}
  opt = gx.ema_params(gx.sgd(0.5), 0.5)

  def two_steps(p):
    state = opt.init(p)
    for _ in range(2):
      updates, state = opt.update({"w": jnp.ones_like(p["w"])}, state, p)
      p = gx.apply_updates(p, updates)
    return state

  stacked = jax.vmap(two_steps)(jax.tree.map(lambda x: jnp.stack([x, 2 * x]), params))
  # p1 = p0 − 0.5, p2 = p0 − 1: (0.25 p1 + 0.5 p2) / 0.75
  expected = np.stack([np.full((2, 3), (0.25 * 0.5 + 0.5 * 0.0) / 0.75),
                       np.full((2, 3), (0.25 * 1.5 + 0.5 * 1.0) / 0.75)])
  np.testing.assert_allclose(gx.averaged_params(stacked)["w"], expected, rtol=1e-6)
  with pytest.raises(ValueError, match=r"averaged_params: found no EmaParamsState .* gx.ema_params"):
    gx.averaged_params(gx.adam(0.1).init(params))
  two = gx.chain(gx.ema_params(gx.sgd(0.1)), gx.ema_params(gx.sgd(0.1)))
  with pytest.raises(ValueError, match=r"averaged_params: found 2 EmaParamsStates"):
    gx.averaged_params(two.init(params))


def test_ema_params_float32_average_of_bfloat16_params():
  params = {"w": jnp.ones(4, jnp.bfloat16)}
  opt = gx.ema_params(gx.sgd(1e-3), 0.999, dtype=jnp.float32)
  state = opt.init(params)
  for _ in range(3):
    updates, state = opt.update({"w": jnp.ones(4, jnp.bfloat16)}, state, params)
    params = gx.apply_updates(params, updates)
  assert params["w"].dtype == jnp.bfloat16 and state.average["w"].dtype == jnp.float32
  assert gx.averaged_params(state)["w"].dtype == jnp.float32


# ---------------------------------------------------------------------------
# What every wrapper must do

WRAPPERS = {
    "apply_if_finite": lambda inner: gx.apply_if_finite(inner, 3),
    "accumulate": lambda inner: gx.accumulate(inner, 2),
    "lookahead": lambda inner: gx.lookahead(inner, 2, 0.5),
    "ema_params": lambda inner: gx.ema_params(inner, 0.9),
}


@pytest.mark.parametrize("name", WRAPPERS)
def test_a_stage_of_chain_and_forwards_extra(name):
  """``value=`` reaches a stage that needs it, through the wrapper, under jit."""

  def scale_by_value(updates, state, params=None, **extra):
    value = extra["value"]
    return jax.tree.map(lambda u: u * value.astype(u.dtype), updates), state

  needs_value = gx.GradientTransformation(lambda p: gx.EmptyState(), scale_by_value)
  wrap = WRAPPERS[name]
  params = cast(_params(), jnp.float32)
  opt = gx.chain(gx.clip_by_global_norm(10.0), wrap(gx.chain(needs_value, gx.adam(0.1))))
  plain = gx.chain(gx.clip_by_global_norm(10.0), wrap(gx.chain(gx.scale(2.0), gx.adam(0.1))))
  state, state2 = opt.init(params), plain.init(params)
  p, p2 = params, params
  update, update2 = jax.jit(opt.update), jax.jit(plain.update)
  for _ in range(4):
    updates, state = update(_grad(p), state, p, value=jnp.float32(2.0))
    updates2, state2 = update2(_grad(p2), state2, p2)
    p, p2 = gx.apply_updates(p, updates), gx.apply_updates(p2, updates2)
  assert_trees_close(p, p2, rtol=1e-6, atol=0)
  assert not np.allclose(p["w"], params["w"])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", WRAPPERS)
def test_dtypes_are_kept(name, dtype):
  params = cast(_params(), dtype)
  opt = WRAPPERS[name](gx.adam(0.1))
  state, update = opt.init(params), jax.jit(opt.update)
  for _ in range(3):
    updates, state = update(_grad(params), state, params)
    assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
    params = gx.apply_updates(params, updates)
  assert all(p.dtype == dtype for p in jax.tree.leaves(params))
  per_param = {"accumulate": "grad_acc", "lookahead": "slow", "ema_params": "average"}.get(name)
  if per_param:
    assert all(x.dtype == dtype for x in jax.tree.leaves(getattr(state, per_param)))


@pytest.mark.parametrize("name", WRAPPERS)
def test_none_leaves_pass_through(name):
  params = {**cast(_params(), jnp.float32), "frozen": jnp.ones(2, jnp.float32)}
  opt = WRAPPERS[name](gx.adam(0.1))
  state, update, p = opt.init(params), jax.jit(opt.update), params
  for _ in range(2):  # a lookahead sync and an accumulation cycle included
    updates, s = update({**_grad({k: v for k, v in p.items() if k != "frozen"}), "frozen": None}, state, p)
    assert updates["frozen"] is None
    assert jax.tree.structure(s) == jax.tree.structure(state)
    state, p = s, gx.apply_updates(p, updates)
  assert p["frozen"] is params["frozen"] and not np.allclose(p["w"], params["w"])


@pytest.mark.parametrize("name", WRAPPERS)
def test_compiles_once_across_steps_and_hyperparameter_values(name):
  traces = []

  @jax.jit
  def step(opt, grads, state, params):
    traces.append(1)
    return opt.update(grads, state, params)

  wrap = WRAPPERS[name]
  params = cast(_params(), jnp.float32)
  state = wrap(gx.adam(0.1)).init(params)
  for lr in (0.1, 0.1, 0.05, 0.2):
    updates, state = step(wrap(gx.adam(lr)), _grad(params), state, params)
    params = gx.apply_updates(params, updates)
  assert len(traces) == 1
  # the wrapper's own numbers are leaves too
  other = {"apply_if_finite": gx.apply_if_finite(gx.adam(0.1), 7),
           "lookahead": gx.lookahead(gx.adam(0.1), 2, 0.25),
           "ema_params": gx.ema_params(gx.adam(0.1), 0.5)}.get(name)
  if other is not None:
    step(other, _grad(params), state, params)
    assert len(traces) == 1


@pytest.mark.parametrize("name", WRAPPERS)
def test_abstract_init_with_eval_shape(name):
  params = cast(_params(), jnp.float32)
  opt = WRAPPERS[name](gx.chain(gx.clip_by_global_norm(1.0), gx.adam(0.1)))
  abstract = jax.eval_shape(opt.init, params)
  concrete = opt.init(params)
  assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
  for a, c in zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete)):
    assert (a.shape, a.dtype) == (c.shape, c.dtype)


@pytest.mark.parametrize("name", WRAPPERS)
def test_vmap_equals_separate_runs(name):
  wrap = WRAPPERS[name]
  members = [cast(_params(seed), jnp.float32) for seed in (1, 2)]
  separate = [_train(wrap(gx.adam(0.1)), p, 3)[0] for p in members]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *members)
  batched = jax.jit(jax.vmap(lambda p: _train(wrap(gx.adam(0.1)), p, 3, jit=False)[0]))(stacked)
  for i, expected in enumerate(separate):
    assert_trees_close(jax.tree.map(lambda x: x[i], batched), expected, rtol=1e-6, atol=1e-7, what=f"member {i}")


def test_numbers_are_leaves_and_options_static():
  assert jax.tree.leaves(gx.apply_if_finite(gx.sgd(0.1), 4)) == [0.1, 4]
  assert jax.tree.leaves(gx.accumulate(gx.sgd(0.1), 4)) == [0.1]  # every_k is static
  assert jax.tree.leaves(gx.lookahead(gx.sgd(0.1), 4, 0.5)) == [0.1, 0.5]  # sync_period is static
  assert sorted(jax.tree.leaves(gx.ema_params(gx.sgd(0.1), 0.99))) == [0.1, 0.99]
  assert gx.accumulate(gx.sgd(0.1), 4) == gx.accumulate(gx.sgd(0.1), 4) != gx.accumulate(gx.sgd(0.1), 5)
  params = {"w": jnp.ones(2)}
  state = gx.lookahead(gx.adam(0.1), 4, 0.5).init(params)
  assert len(state.hyperparams) == 0  # a constant: the optimizer holds it
  state = gx.inject(gx.lookahead(gx.adam(0.1), 4, 0.5)).init(params)
  assert set(state.hyperparams) == {"slow_step_size"}


# ---------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("build,match", [
    (lambda: gx.accumulate(gx.sgd(0.1), 0), r"accumulate: every_k=0 is out of range \[1, inf\)"),
    (lambda: gx.accumulate(gx.sgd(0.1), -3), r"accumulate: every_k=-3 is out of range"),
    (lambda: gx.accumulate(gx.sgd(0.1), 2.5), r"accumulate: every_k must be a Python integer >= 1 .*got float 2.5"),
    (lambda: gx.accumulate(gx.sgd(0.1), True), r"accumulate: every_k must be a Python integer"),
    (lambda: gx.accumulate(gx.sgd(0.1), jnp.array(2)), r"accumulate: every_k must be a Python integer"),
    (lambda: gx.lookahead(gx.sgd(0.1), 0, 0.5), r"lookahead: sync_period=0 is out of range \[1, inf\)"),
    (lambda: gx.lookahead(gx.sgd(0.1), 5, 1.5), r"lookahead: slow_step_size=1.5 is out of range \[0, 1\]"),
    (lambda: gx.ema_params(gx.sgd(0.1), 1.0), r"ema_params: decay=1.0 is out of range \[0, 1\)"),
    (lambda: gx.apply_if_finite(gx.sgd(0.1), -1), r"apply_if_finite: max_consecutive_errors=-1 is negative"),
])
def test_bad_arguments_raise_value_error(build, match):
  with pytest.raises(ValueError, match=match):
    build()


@pytest.mark.parametrize("build,match", [
    (lambda: gx.accumulate("adam", 2), r"accumulate: expected a gradient transformation"),
    (lambda: gx.lookahead(None), r"lookahead: expected a gradient transformation"),
    (lambda: gx.accumulate(gx.sgd(0.1), 2, acc_dtype=jnp.int32), r"accumulate: acc_dtype=int32 is not a floating"),
    (lambda: gx.ema_params(gx.sgd(0.1), dtype=jnp.int32), r"ema_params: dtype=int32 is not a floating"),
    (lambda: gx.ema_params(gx.sgd(0.1), dtype="no such dtype"), r"ema_params: dtype must be a floating dtype"),
    (lambda: gx.apply_if_finite(gx.sgd(0.1), 2.0), r"apply_if_finite: max_consecutive_errors must be an integer"),
    (lambda: gx.apply_if_finite(gx.sgd(0.1), True), r"apply_if_finite: max_consecutive_errors .* not a boolean"),
])
def test_wrong_types_raise_type_error(build, match):
  with pytest.raises(TypeError, match=match):
    build()


def test_lookahead_and_ema_params_need_params():
  params = {"w": jnp.ones(3, jnp.float32)}
  grads = {"w": jnp.ones(3, jnp.float32)}
  for name, make in [("lookahead", lambda: gx.lookahead(gx.sgd(0.1))),
                     ("ema_params", lambda: gx.ema_params(gx.sgd(0.1)))]:
    with pytest.raises(ValueError, match=rf"{name}: params are required in init\(\)"):
      make().init(None)
    state = make().init(params)
    with pytest.raises(ValueError,
                       match=rf"{name}: params are required in update\(\).*update\(grads, state, params\)"):
      make().update(grads, state)
    with pytest.raises(ValueError, match=rf"{name}: the params at \['w'\] has shape \(4,\)"):
      make().update(grads, state, {"w": jnp.ones(4, jnp.float32)})


def test_gradient_mismatch_names_the_wrapper_and_the_leaf():
  params = {"a": jnp.ones((2, 3), jnp.float32), "b": jnp.ones(2, jnp.float32)}
  opt = gx.accumulate(gx.adam(0.1), 2)
  state = opt.init(params)
  with pytest.raises(ValueError, match=r"accumulate: .*missing leaves \[\"\['b'\]\"\]"):
    opt.update({"a": params["a"]}, state, params)
  with pytest.raises(ValueError, match=r"accumulate: the update at \['a'\] has shape \(3, 2\)"):
    opt.update({"a": jnp.ones((3, 2), jnp.float32), "b": params["b"]}, state, params)
  with pytest.raises(TypeError, match=r"accumulate: expected an AccumulateState as state, got tuple"):
    opt.update(params, gx.adam(0.1).init(params), params)
  with pytest.raises(TypeError, match=r"apply_if_finite: expected an ApplyIfFiniteState"):
    gx.apply_if_finite(gx.adam(0.1), 1).update(params, state, params)
  with pytest.raises(TypeError, match=r"lookahead: expected a LookaheadState as state"):
    gx.lookahead(gx.adam(0.1)).update(params, state, params)
