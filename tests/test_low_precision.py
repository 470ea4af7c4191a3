"""Pure low-precision training: stochastic rounding in apply_updates and of state stores, Kahan-compensated updates."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_stochastic_rounding_is_unbiased(dtype):
  """The mean over many roundings equals the float32 value (within 4 standard errors)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(0.5, 4.0, size=64), jnp.float32)
  n = 4000
  rounded = jax.vmap(lambda k: gx.stochastic_round(x, dtype, k))(jax.random.split(jax.random.PRNGKey(0), n))
  assert rounded.dtype == dtype
  below = x.astype(dtype).astype(jnp.float32)
  gap = np.abs(np.asarray(jnp.nextafter(x.astype(dtype), jnp.asarray(np.inf, dtype)).astype(jnp.float32) - below))
  mean = np.asarray(rounded.astype(jnp.float32)).mean(axis=0)
  error = np.abs(mean - np.asarray(x))
  assert np.all(error <= 4 * 0.5 * gap / np.sqrt(n) + 1e-7), (error / gap).max()
  # every rounding is one of the two neighbours
  values = np.asarray(rounded.astype(jnp.float32))
  assert np.all((np.abs(values - np.asarray(x)) <= gap + 1e-12))


def test_exact_and_nonfinite_values_are_kept():
  x = jnp.asarray([1.0, 0.0, -2.5, jnp.inf, -jnp.inf, jnp.nan], jnp.float32)
  out = gx.stochastic_round(x, jnp.bfloat16, jax.random.PRNGKey(3))
  np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(x))


def quadratic_run(apply, opt, steps=400, dtype=jnp.bfloat16):
  """SGD on f(p) = ½‖p − 3‖² from p = 1 with a small learning rate: updates far below bf16's ulp at 3."""
  target = jnp.full(256, 3.0, jnp.float32)
  params = {"p": jnp.full(256, 1.0, dtype)}
  state = opt.init(params)

  @jax.jit
  def step(params, state, t):
    grads = {"p": (params["p"].astype(jnp.float32) - target).astype(params["p"].dtype)}
    updates, state = opt.update(grads, state, params)
    return apply(params, updates, t), state

  for t in range(steps):
    params, state = step(params, state, t)
  return np.asarray(params["p"], np.float32)


def test_pure_bfloat16_sgd_tracks_the_float32_run():
  lr = 2e-3
  exact = 3.0 - 2.0 * (1 - lr) ** 400  # the float32 master's value (closed form of SGD on the quadratic)
  nearest = quadratic_run(lambda p, u, t: gx.apply_updates(p, u), gx.sgd(lr))
  stochastic = quadratic_run(lambda p, u, t: gx.apply_updates(p, u, key=jax.random.fold_in(jax.random.PRNGKey(0), t)),
                             gx.sgd(lr))
  kahan = quadratic_run(lambda p, u, t: gx.apply_updates(p, u), gx.kahan_summation(gx.sgd(lr)))
  master = quadratic_run(lambda p, u, t: gx.apply_updates(p, u), gx.sgd(lr), dtype=jnp.float32)
  np.testing.assert_allclose(master, exact, rtol=1e-4)
  gap_nearest = abs(nearest.mean() - exact)
  assert gap_nearest > 0.4, gap_nearest  # round-to-nearest stalls once lr·|p − 3| < ulp/2
  assert abs(stochastic.mean() - exact) < 0.05 * gap_nearest
  assert abs(kahan.mean() - exact) < 0.02, abs(kahan.mean() - exact)
  assert np.all(np.abs(kahan - exact) <= 0.016)  # within one bf16 ulp at 3 (2^-6)


def test_key_leaves_float32_parameters_unchanged():
  params = {"a": jnp.ones(3, jnp.float32), "b": jnp.ones(3, jnp.bfloat16)}
  updates = {"a": jnp.full(3, 1e-9, jnp.float32), "b": jnp.full(3, 1e-3, jnp.float32)}
  out = gx.apply_updates(params, updates, key=jax.random.PRNGKey(0))
  np.testing.assert_array_equal(out["a"], gx.apply_updates(params, updates)["a"])
  assert out["b"].dtype == jnp.bfloat16


def test_kahan_state_and_errors():
  opt = gx.kahan_summation(gx.adam(1e-3), dtype=jnp.float32)
  params = {"w": jnp.ones(4, jnp.bfloat16)}
  state = opt.init(params)
  assert state.compensation["w"].dtype == jnp.float32
  with pytest.raises(TypeError, match="kahan_summation: dtype"):
    gx.kahan_summation(gx.adam(1e-3), dtype=jnp.int8)
  with pytest.raises(ValueError, match="kahan_summation"):
    opt.update(params, state)


# --- stochastic_state_rounding ------------------------------------------------------------------------


def adam_second_moment_runs(wrap, steps=300, b2=0.999, n=512):
  """Adam on a constant gradient g = 1 from v₀ = 0.25 (bf16 parameters, hence bf16 moments): the float32
  second moment after ``steps`` steps is ``1 + (0.25 − 1)β₂^t``; its increments ``(1−β₂)(1 − v)`` are below
  half a bf16 ulp of ``v``."""
  params = {"p": jnp.zeros(n, jnp.bfloat16)}
  opt = wrap(gx.adam(1e-3, b2=b2))
  state = opt.init(params)
  inner = state.inner_state if isinstance(state, gx.StochasticStateRoundingState) else state
  nu0 = {"p": jnp.full(n, 0.25, jnp.bfloat16)}
  adam_state = inner[0]._replace(nu=nu0)
  inner = (adam_state,) + tuple(inner[1:])
  state = state._replace(inner_state=inner) if isinstance(state, gx.StochasticStateRoundingState) else inner
  grads = {"p": jnp.ones(n, jnp.bfloat16)}

  @jax.jit
  def run(state):
    def step(state, _):
      return opt.update(grads, state, params)[1], None
    return jax.lax.scan(step, state, None, length=steps)[0]

  state = run(state)
  inner = state.inner_state if isinstance(state, gx.StochasticStateRoundingState) else state
  return np.asarray(inner[0].nu["p"], np.float32), 1 + (0.25 - 1) * b2**steps


def test_stochastic_state_rounding_keeps_the_second_moment_unbiased():
  nearest, exact = adam_second_moment_runs(lambda opt: opt)
  stochastic, _ = adam_second_moment_runs(gx.stochastic_state_rounding)
  assert np.all(nearest == 0.25)  # every increment rounds away: v stays where it started
  assert exact > 0.43
  # each element's error is a sum of independent roundings decayed by β₂ (std ≲ ulp/2·√(1/(1−β₂²))·...);
  # the mean over 512 elements is within a few of its standard errors of the float32 value
  spread = stochastic.std()
  assert abs(stochastic.mean() - exact) < 4 * spread / np.sqrt(stochastic.size) + 1e-6, (stochastic.mean(), exact)
  assert spread < 0.02  # each element stays near the float32 value (a bf16 ulp at 0.44 is 2⁻⁹ ≈ 0.002)


def test_stochastic_state_rounding_leaves_float32_state_bit_identical():
  params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(4)}
  grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
  plain, wrapped = gx.adamw(1e-2, weight_decay=0.1), gx.stochastic_state_rounding(gx.adamw(1e-2, weight_decay=0.1))
  s1, s2 = plain.init(params), wrapped.init(params)
  for _ in range(3):
    u1, s1 = plain.update(grads, s1, params)
    with pytest.warns(UserWarning, match="no state narrower than float32"):
      u2, s2 = wrapped.update(grads, s2, params)
    for a, b in zip(jax.tree.leaves((u1, s1)), jax.tree.leaves((u2, s2.inner_state))):
      np.testing.assert_array_equal(a, b)


def test_stochastic_state_rounding_key_is_state():
  """The same key gives the same roundings; the key advances every update; a key written into the state is used."""
  params = {"w": jnp.zeros(64, jnp.bfloat16)}
  grads = {"w": jnp.asarray(np.random.default_rng(0).normal(size=64), jnp.bfloat16)}
  opt = gx.stochastic_state_rounding(gx.adam(1e-3, b2=0.9999), seed=7)
  state = opt.init(params)
  np.testing.assert_array_equal(state.rng_key, jax.random.PRNGKey(7))
  step = jax.jit(lambda state: opt.update(grads, state, params)[1])
  state = step(step(state))
  again = step(step(opt.init(params)))
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(state.rng_key, jax.random.PRNGKey(7))
  other = step(step(opt.init(params)._replace(rng_key=jax.random.PRNGKey(8))))
  assert not np.array_equal(other.inner_state[0].nu["w"], state.inner_state[0].nu["w"])


def test_stochastic_state_rounding_covers_chains_groups_and_packing():
  params = {"w": jnp.zeros((8, 8), jnp.bfloat16), "b": jnp.zeros(8, jnp.bfloat16)}
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, p.dtype), params)
  for inner in [gx.chain(gx.clip_by_global_norm(1.0), gx.lion(1e-3)), gx.sgd(1e-2, momentum=0.9),
                gx.packed(gx.adam(1e-3)), gx.muon(1e-3), gx.apply_if_finite(gx.adam(1e-3), 3),
                gx.accumulate(gx.adam(1e-3), 4)]:  # the last two pass the state through where/cond
    opt = gx.stochastic_state_rounding(inner)
    with warnings.catch_warnings():
      warnings.simplefilter("error")  # every low-precision state array is reached: no partial-coverage warning
      updates, state = jax.jit(opt.update)(grads, opt.init(params), params)
    assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda p: p.dtype, params)


def test_stochastic_state_rounding_refuses_state_it_cannot_round():
  params = {"w": jnp.zeros((8, 8), jnp.bfloat16)}
  grads = {"w": jnp.full((8, 8), 0.5, jnp.bfloat16)}
  opt = gx.stochastic_state_rounding(gx.adafactor(1e-2))
  with pytest.raises(ValueError, match=r"stochastic_state_rounding: .*v_row\['w'\].*float32"):
    opt.update(grads, opt.init(params), params)
  with pytest.raises(TypeError, match="stochastic_state_rounding: seed must be a Python integer"):
    gx.stochastic_state_rounding(gx.adam(1e-3), seed=1.5)
  with pytest.raises(ValueError, match=r"out of range"):
    gx.stochastic_state_rounding(gx.adam(1e-3), seed=-1)
  with pytest.raises(TypeError, match="StochasticStateRoundingState"):
    gx.stochastic_state_rounding(gx.adam(1e-3)).update(grads, gx.adam(1e-3).init(params), params)
