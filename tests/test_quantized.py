"""8-bit blockwise-quantized Adam state: the codec, the state's bytes, agreement with 32-bit Adam."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.problems import PROBLEMS


def _state_bytes(state):
  return sum(leaf.nbytes for leaf in jax.tree.leaves(state))


# --- the codec -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [True, False])
def test_map_is_sorted_256_values_with_zero_and_one(signed):
  values = gx.dynamic_map(signed)
  assert values.shape == (256,) and values.dtype == np.float32
  assert np.all(np.diff(values) > 0)
  assert 0.0 in values and values[-1] == 1.0
  assert values[0] == (-1.0 if signed else 0.0)
  # dynamic: values in every decade from 1e-6 to 1
  positive = values[values > 0]
  assert positive.min() < 1e-6
  for decade in range(-6, 0):
    assert np.any((positive >= 10.0**decade) & (positive < 10.0 ** (decade + 1)))


def _half_gaps(values, normalized):
  """Half the gap between the two map values around each normalized value: the rounding bound."""
  upper = np.clip(np.searchsorted(values, normalized, side="left"), 1, len(values) - 1)
  return (values[upper] - values[upper - 1]) / 2


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("block_size", [2048, 256, 100])
def test_round_trip_error_is_within_the_map_resolution(signed, block_size):
  rng = np.random.default_rng(0)
  x = rng.standard_cauchy(size=(37, 211)).astype(np.float32)  # heavy tails: many decades per block
  x = x if signed else np.abs(x)
  q = gx.quantize_blockwise(x, block_size, signed)
  n_blocks = -(-x.size // block_size)
  assert q.codes.shape == (n_blocks, block_size) and q.codes.dtype == jnp.uint8
  assert q.scales.shape == (n_blocks,) and q.scales.dtype == jnp.float32
  decoded = np.asarray(gx.dequantize_blockwise(q, x.shape, signed))
  assert decoded.shape == x.shape and decoded.dtype == np.float32

  flat = np.pad(x.ravel(), (0, n_blocks * block_size - x.size)).reshape(n_blocks, block_size)
  absmax = np.abs(flat).max(axis=1, keepdims=True)
  np.testing.assert_array_equal(np.asarray(q.scales), absmax[:, 0])
  normalized = flat / absmax
  error = np.abs(np.pad(decoded.ravel(), (0, flat.size - x.size)).reshape(flat.shape) - flat) / absmax
  bound = _half_gaps(gx.dynamic_map(signed), normalized) * (1 + 1e-5) + 1e-7
  assert np.all(error <= bound)
  # the coarsest step of the map (top decade): 0.9/64 signed, 0.9/128 unsigned
  assert error.max() <= (0.9 / 64 if signed else 0.9 / 128) / 2 + 1e-6
  # each block's absolute maximum is exact
  np.testing.assert_array_equal(np.abs(decoded.ravel()).max(), np.abs(x).max())


@pytest.mark.parametrize("signed", [True, False])
def test_codes_are_the_nearest_map_value(signed):
  """A value gets the code of its nearest map value; one at a float32 midpoint, the lower one's."""
  values = gx.dynamic_map(signed)
  midpoints = ((values[1:].astype(np.float64) + values[:-1]) / 2).astype(np.float32)
  near = [np.nextafter(midpoints, np.float32(d)) for d in (-np.inf, np.inf)]
  rng = np.random.default_rng(0)
  y = np.concatenate([values, -values, midpoints, *near, [0.0, -0.0, 1e-30, -1e-45],
                      rng.uniform(-1, 1, 5000), 10.0 ** rng.uniform(-9, 0, 5000)]).astype(np.float32)
  y = y[np.abs(y) <= 1] if signed else np.abs(y)
  x = np.concatenate([[1.0], y]).astype(np.float32)  # the scale is 1: the normalized values are y
  codes = np.asarray(gx.quantize_blockwise(x, x.size, signed).codes).ravel()[1:]
  np.testing.assert_array_equal(codes, np.searchsorted(midpoints, y, side="left"))
  np.testing.assert_array_equal(gx.quantize_blockwise(jnp.asarray([np.nan, 1.0]), 2, signed).codes, [[255, 255]])


def test_zeros_are_exact():
  x = np.zeros((3, 1000), np.float32)
  x[0, :10] = np.linspace(-1, 1, 10)  # a non-zero block and all-zero blocks
  decoded = np.asarray(gx.dequantize_blockwise(gx.quantize_blockwise(x, 512), x.shape))
  np.testing.assert_array_equal(decoded[x == 0], 0.0)
  np.testing.assert_array_equal(gx.dequantize_blockwise(gx.quantize_blockwise(jnp.zeros(5000), 2048), (5000,)), 0.0)


@pytest.mark.parametrize("bad", [0, -3, 2048.0, True, "2048", None])
def test_bad_block_size_raises(bad):
  with pytest.raises((TypeError, ValueError), match="block_size"):
    gx.quantize_blockwise(jnp.ones(10), bad)
  with pytest.raises((TypeError, ValueError), match="scale_by_adam_8bit: block_size"):
    gx.scale_by_adam_8bit(block_size=bad)
  with pytest.raises((TypeError, ValueError), match="adam_8bit: .*block_size"):
    gx.adam_8bit(1e-3, block_size=bad)


def test_bad_hyperparameters_raise():
  with pytest.raises(ValueError, match="min_size"):
    gx.scale_by_adam_8bit(min_size=-1)
  with pytest.raises(ValueError, match="b1"):
    gx.adam_8bit(1e-3, b1=1.5)
  with pytest.raises(ValueError, match="eps"):
    gx.adamw_8bit(1e-3, eps=-1.0)


# --- state memory --------------------------------------------------------------------------------------


def _big_params(dtype=jnp.float32):
  shapes = {"embed": (512, 64), "w0": (256, 256), "w1": (128, 512)}  # multiples of 2048 values
  return {k: jnp.ones(s, dtype) for k, s in shapes.items()}


def test_state_is_a_quarter_of_adam():
  params = _big_params()
  full = _state_bytes(gx.adam(1e-3).init(params))
  bf16 = _state_bytes(gx.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16).init(params))
  eight = _state_bytes(gx.adam_8bit(1e-3).init(params))
  assert eight / full <= 0.27, (eight, full)
  assert eight / full >= 0.25
  assert abs(bf16 / full - 0.5) < 0.01


def test_state_layout():
  params = {"big": jnp.ones((64, 128)), "small": jnp.ones((10,)), "none": None}
  state = gx.scale_by_adam_8bit().init(params)
  assert isinstance(state, gx.ScaleByAdam8bitState)
  for moment in (state.mu, state.nu):
    assert isinstance(moment["big"], gx.Quantized)
    assert moment["big"].codes.shape == (4, 2048) and moment["big"].scales.shape == (4,)
    assert moment["small"].dtype == jnp.float32 and moment["small"].shape == (10,)
    assert moment["none"] is None
  state = gx.scale_by_adam_8bit(min_size=0, block_size=3).init(params)
  assert state.mu["small"].codes.shape == (4, 3)


# --- agreement with 32-bit Adam ------------------------------------------------------------------------


def _run(opt, params, grads_fn, steps, jit=True):
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  for t in range(steps):
    updates, state = update(grads_fn(params, t), state, params)
    params = gx.apply_updates(params, updates)
  return params, state


def _quadratic_grads(params, t):
  key = jax.random.fold_in(jax.random.key(0), t)
  return jax.tree.map(lambda p: p - 0.3 + 0.1 * jax.random.normal(key, p.shape, p.dtype), params)


def test_tracks_float32_adam_on_a_quadratic():
  rng = np.random.default_rng(1)
  params = {"w": jnp.asarray(rng.normal(size=(96, 128)), jnp.float32), "b": jnp.asarray(rng.normal(size=(7,)), jnp.float32)}
  start = params
  reference, _ = _run(gx.adam(1e-2), params, _quadratic_grads, 20)
  quantized, _ = _run(gx.adam_8bit(1e-2), params, _quadratic_grads, 20)
  for k in params:
    moved = np.abs(np.asarray(reference[k]) - np.asarray(start[k])).mean()
    difference = np.abs(np.asarray(quantized[k]) - np.asarray(reference[k])).mean()
    assert difference <= 0.02 * moved, (k, difference, moved)
  # the small leaf is not quantized: the same as 32-bit Adam up to rounding
  np.testing.assert_allclose(quantized["b"], reference["b"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("problem", ["quadratic", "ravine"])
def test_converges(problem):
  loss, start, minimizer = PROBLEMS[problem]
  # min_size=0, small blocks: the 2-vector is quantized too
  params, _ = _run(gx.adam_8bit(0.1, min_size=0, block_size=2), jnp.asarray(start, jnp.float32),
                   lambda p, t: jax.grad(loss)(p), 1000)
  np.testing.assert_allclose(params, minimizer, atol=1e-2)


def test_eager_equals_jit_and_no_recompile():
  params = {"w": jnp.linspace(-1, 1, 5000, dtype=jnp.float32).reshape(50, 100), "b": jnp.ones(3)}
  opt = gx.adamw_8bit(1e-2)
  eager, eager_state = _run(opt, params, _quadratic_grads, 3, jit=False)
  jitted, jit_state = _run(opt, params, _quadratic_grads, 3, jit=True)
  for a, b in zip(jax.tree.leaves((eager, eager_state)), jax.tree.leaves((jitted, jit_state))):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6, atol=1e-7)

  traces = []

  @jax.jit
  def step(opt, params, state):
    traces.append(1)
    updates, state = opt.update(jax.tree.map(lambda p: p - 0.3, params), state, params)
    return gx.apply_updates(params, updates), state

  state = opt.init(params)
  for lr in (1e-2, 2e-2, 3e-2):  # a new learning rate is a new leaf value, not a new program
    params, state = step(gx.adamw_8bit(lr), params, state)
  assert len(traces) == 1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_preserves_param_dtype(dtype):
  params = _big_params(dtype)
  opt = gx.adam_8bit(1e-3)
  state = opt.init(params)
  grads = jax.tree.map(lambda p: p * jnp.asarray(0.5, dtype), params)
  updates, state = jax.jit(opt.update)(grads, state, params)
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
    assert u.dtype == dtype
  new = gx.apply_updates(params, updates)
  assert all(p.dtype == dtype for p in jax.tree.leaves(new))
  assert all(isinstance(m, gx.Quantized) for m in jax.tree.leaves(state[0].mu, is_leaf=lambda x: isinstance(x, gx.Quantized)))


def test_mismatched_updates_raise():
  opt = gx.adam_8bit(1e-3)
  state = opt.init({"w": jnp.ones((64, 64))})
  with pytest.raises(ValueError, match="scale_by_adam_8bit"):
    opt.update({"v": jnp.ones((64, 64))}, state)
  with pytest.raises(ValueError, match="shape"):
    opt.update({"w": jnp.ones((8, 8))}, state)
  with pytest.raises(TypeError, match="integer"):
    opt.update({"w": jnp.ones((64, 64), jnp.int32)}, state)
