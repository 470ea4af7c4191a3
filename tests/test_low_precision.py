"""Pure low-precision training: stochastic rounding in apply_updates, Kahan-compensated updates."""

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
