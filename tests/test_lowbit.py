"""Low-bit state for any optimizer (gx.quantized_state, gx.adam_4bit): codecs, bytes, agreement, composition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.problems import PROBLEMS
from tests.test_donation import compile_step, donation_problems

# --- an independent NumPy codec (nearest map value by argmin; blockwise or rank-1 absmax scales) ---------------

# Li et al. 2023: the 4-bit dynamic-exponent map (3 exponent bits; -1 in place of the smallest negative value)
# and the linear map without zero.
_DE4 = np.array([-1, -.8875, -.6625, -.4375, -.2125, -.0775, -.0325, 0, .0055, .0325, .0775, .2125, .4375,
                 .6625, .8875, 1], np.float32)
_LINEAR4 = (np.arange(1, 17) / 16).astype(np.float32)


def _nearest(values, y):
  return values[np.argmin(np.abs(y[..., None] - values), axis=-1)]  # ties: the lower value, as gx


def np_roundtrip_blockwise(x, values, block_size):
  x = np.asarray(x, np.float32)
  flat = x.ravel()
  n = -(-flat.size // block_size)
  blocks = np.pad(flat, (0, n * block_size - flat.size)).reshape(n, block_size)
  scale = np.abs(blocks).max(axis=1, keepdims=True)
  y = blocks / np.where(scale > 0, scale, 1)
  return (_nearest(values, y) * scale).ravel()[:flat.size].reshape(x.shape)


def np_roundtrip_rank1(x, values):
  x = np.asarray(x, np.float32)
  a = np.abs(x)
  scale = np.minimum(a.max(axis=1, keepdims=True), a.max(axis=0, keepdims=True))  # matrices only
  return _nearest(values, x / np.where(scale > 0, scale, 1)) * scale


def _codec(bits, signed, x):
  if bits == 8:
    return np_roundtrip_blockwise(x, gx.dynamic_map(signed), 2048)
  if signed or np.ndim(x) < 2:
    return np_roundtrip_blockwise(x, _DE4 if signed else _LINEAR4, 128)
  return np_roundtrip_rank1(x, _LINEAR4)


def _params():
  rng = np.random.default_rng(1)
  return {"w": jnp.asarray(rng.normal(size=(64, 128)), jnp.float32),  # 8192 values: quantized
          "e": jnp.asarray(rng.normal(size=(100, 50)), jnp.float32),  # 5000: quantized, padded last block
          "b": jnp.asarray(rng.normal(size=(7,)), jnp.float32)}  # small: kept float32


def _grads(params, t):
  key = jax.random.fold_in(jax.random.key(0), t)
  return jax.tree.map(lambda p: p - 0.3 + 0.2 * jax.random.normal(key, p.shape, p.dtype), params)


def _run(opt, params, steps, jit=True, after=None):
  state = opt.init(params)
  state = after(state) if after else state
  update = jax.jit(opt.update) if jit else opt.update
  for t in range(steps):
    updates, state = update(_grads(params, t), state, params)
    state = after(state) if after else state
    params = gx.apply_updates(params, updates)
  return params, state


def _np_state_roundtrip(bits, signed_fields, unsigned_fields):
  """The float32 state with the chosen fields' big leaves passed through the NumPy codec."""
  def leaf(path, x):
    names = {getattr(k, "name", None) for k in path}
    if x is None or np.size(x) < 4096 or not (names & (signed_fields | unsigned_fields)):
      return x
    return jnp.asarray(_codec(bits, not (names & unsigned_fields), x))
  return lambda state: jax.tree_util.tree_map_with_path(leaf, state)


_OPTIMIZERS = {  # name: (make, signed fields, unsigned fields)
    "sgd": (lambda: gx.sgd(0.05, momentum=0.9), {"trace"}, set()),
    "lion": (lambda: gx.lion(3e-3), {"mu"}, set()),
    "ademamix": (lambda: gx.ademamix(1e-2), {"m1", "m2"}, {"nu"}),
    "muon": (lambda: gx.muon(2e-2), {"mu"}, {"nu"}),
    "adafactor": (lambda: gx.adafactor(1e-2, momentum=0.9), {"ema"}, {"v"}),
    "adam": (lambda: gx.adam(1e-2), {"ema"}, {"nu"}),
}


@pytest.mark.parametrize("name,bits", [(n, 8) for n in _OPTIMIZERS] + [("adam", 4), ("ademamix", 4)])
def test_equals_the_float32_optimizer_with_a_numpy_codec(name, bits):
  """Same steps as the float32 optimizer whose state is rounded by an independent NumPy codec after each step."""
  make, signed, unsigned = _OPTIMIZERS[name]
  params = _params()
  got, state = _run(gx.quantized_state(make(), bits=bits), params, 6)
  want, _ = _run(make(), params, 6, after=_np_state_roundtrip(bits, signed, unsigned))
  n_quantized = len([x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, gx.Quantized))
                     if isinstance(x, gx.Quantized)])
  assert n_quantized == 2 * (len(signed) + len(unsigned)) - (name == "muon") * 2 - (name == "adafactor") * 2
  for k in params:  # a value at a midpoint between two codes may round either way in one of the two
    close = np.isclose(got[k], want[k], rtol=2e-5, atol=2e-6)
    assert close.mean() >= 0.999, (k, close.mean())
    np.testing.assert_allclose(got[k], want[k], rtol=0, atol=2e-3, err_msg=k)


# measured relative gaps after 20 steps (mean |Δ| / mean movement of the float32 run): 8 bits 0.04-1.3 %,
# 4 bits (Adam) 21 %.
@pytest.mark.parametrize("bits,bound", [(8, 0.03), (4, 0.3)])
@pytest.mark.parametrize("name", list(_OPTIMIZERS))
def test_tracks_the_float32_state(name, bits, bound):
  if bits == 4 and name != "adam":
    pytest.skip("4 bits: measured for Adam, the paper's case")
  make = _OPTIMIZERS[name][0]
  params = _params()
  reference, _ = _run(make(), params, 20)
  quantized, _ = _run(gx.quantized_state(make(), bits=bits), params, 20)
  moved = np.mean([np.abs(reference[k] - params[k]).mean() for k in ("w", "e")])
  gap = np.mean([np.abs(quantized[k] - reference[k]).mean() for k in ("w", "e")])
  assert gap <= bound * moved, (gap / moved)
  np.testing.assert_allclose(quantized["b"], reference["b"], rtol=1e-5, atol=1e-6)  # not quantized


def test_8bit_adam_through_the_wrapper_is_adam_8bit():
  params = _params()
  a, _ = _run(gx.quantized_state(gx.adam(1e-2)), params, 10)
  b, _ = _run(gx.adam_8bit(1e-2), params, 10)
  for k in params:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("problem", ["quadratic", "ravine"])
def test_adam_4bit_converges(problem):
  loss, start, minimizer = PROBLEMS[problem]
  opt = gx.quantized_state(gx.adam(0.1), bits=4, min_size=0, block_size=2)
  params = jnp.asarray(start, jnp.float32)

  def step(carry, _):
    params, state = carry
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    return (gx.apply_updates(params, updates), state), None

  (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), length=1000))(params)
  np.testing.assert_allclose(params, minimizer, atol=3e-2)


# --- the 4-bit codec -----------------------------------------------------------------------------------------


def test_4bit_maps():
  np.testing.assert_array_equal(gx.map_4bit(True), _DE4)
  np.testing.assert_array_equal(gx.map_4bit(False), _LINEAR4)
  assert 0.0 not in gx.map_4bit(False)


@pytest.mark.parametrize("shape", [(37, 211), (5, 3, 40), (1000,)])
def test_4bit_signed_round_trip_bound(shape):
  x = np.random.default_rng(0).standard_cauchy(size=shape).astype(np.float32)
  q = gx.quantize_4bit(x, 128, signed=True)
  n_blocks = -(-x.size // 128)
  assert q.codes.shape == (n_blocks, 64) and q.codes.dtype == jnp.uint8 and q.scales.shape == (n_blocks,)
  decoded = np.asarray(gx.dequantize_4bit(q, shape, signed=True))
  np.testing.assert_allclose(decoded, np_roundtrip_blockwise(x, _DE4, 128), rtol=1e-6, atol=0)
  flat = np.pad(x.ravel(), (0, n_blocks * 128 - x.size)).reshape(n_blocks, 128)
  scale = np.abs(flat).max(axis=1)
  error = np.abs(np.pad(decoded.ravel(), (0, flat.size - x.size)).reshape(flat.shape) - flat) / scale[:, None]
  assert error.max() <= (0.6625 - 0.4375) / 2 + 1e-6  # the widest gap of the map: 0.225


@pytest.mark.parametrize("shape", [(37, 211), (64, 64)])
def test_4bit_unsigned_rank1_round_trip_bound(shape):
  rng = np.random.default_rng(1)
  x = (rng.standard_cauchy(size=shape) ** 2).astype(np.float32)
  x[3, :] = 0.0  # an all-zero row decodes to exactly 0
  q = gx.quantize_4bit(x, signed=False, rank1=True)
  assert q.codes.shape == (-(-x.size // 2),) and q.scales.shape == (sum(shape),)
  decoded = np.asarray(gx.dequantize_4bit(q, shape, signed=False))
  np.testing.assert_allclose(decoded, np_roundtrip_rank1(x, _LINEAR4), rtol=1e-6, atol=0)
  scale = np.minimum(x.max(axis=1, keepdims=True), x.max(axis=0, keepdims=True))
  y = x / np.where(scale > 0, scale, 1)
  error = np.abs(decoded - x) / np.where(scale > 0, scale, 1)
  assert np.all(error <= np.maximum(1 / 32, 1 / 16 - y) + 1e-6)
  assert np.all(decoded[scale[:, :] * np.ones_like(x) > 0] > 0)  # no zero point: a positive scale never gives 0
  np.testing.assert_array_equal(decoded[3], 0.0)
  assert np.all(x <= scale * (1 + 1e-6))  # rank-1 scales bound every value: y ≤ 1


def test_4bit_odd_sizes_and_bad_block_size():
  x = jnp.arange(7.0)
  np.testing.assert_allclose(gx.dequantize_4bit(gx.quantize_4bit(x, 4), (7,)), np_roundtrip_blockwise(x, _DE4, 4))
  with pytest.raises(ValueError, match="quantize_4bit: block_size=3 must be even"):
    gx.quantize_4bit(x, 3)


# --- state bytes -----------------------------------------------------------------------------------------


def _bytes(tree):
  return sum(leaf.nbytes for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", list(_OPTIMIZERS))
@pytest.mark.parametrize("bits", [8, 4])
def test_state_bytes_are_exactly_as_expected(name, bits):
  make, signed, unsigned = _OPTIMIZERS[name]
  params = _params()
  full = make().init(params)
  state = gx.quantized_state(make(), bits=bits).init(params)
  kinds = []  # (kind, shape) of every leaf that should be quantized
  for path, x in jax.tree_util.tree_flatten_with_path(full)[0]:
    names = {getattr(k, "name", None) for k in path}
    if np.size(x) >= 4096 and names & (signed | unsigned) and np.shape(x) in {(64, 128), (100, 50)}:
      kinds.append(("unsigned" if names & unsigned else "signed", np.shape(x)))
  expected = _bytes(full)
  for kind, shape in kinds:
    n = int(np.prod(shape))
    expected -= 4 * n
    if bits == 8:
      expected += 2048 * -(-n // 2048) + 4 * -(-n // 2048)
    elif kind == "signed":
      expected += 64 * -(-n // 128) + 4 * -(-n // 128)
    else:
      expected += -(-n // 2) + 4 * sum(shape)
  assert kinds and _bytes(state) == expected


def test_4bit_adam_is_about_an_eighth():
  params = {"w": jnp.ones((1024, 1024))}
  ratio = _bytes(gx.adam_4bit(1e-3).init(params)) / _bytes(gx.adam(1e-3).init(params))
  # mu: 0.5 + 4/128 bytes per value, nu: 0.5 + 4·2048/2^20: (1.039) / 8
  assert abs(ratio - (1.0 + 4 / 128 + 4 * 2048 / 2**20) / 8) < 1e-4, ratio


# --- jit, vmap, composition, checkpoints, donation ---------------------------------------------------------


def test_jit_equals_eager():
  params = _params()
  for opt in (gx.quantized_state(gx.lion(1e-3)), gx.adamw_4bit(1e-2)):
    eager = _run(opt, params, 2, jit=False)
    jitted = _run(opt, params, 2, jit=True)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
      np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6, atol=1e-7)


def test_no_recompile_and_vmap_over_learning_rate():
  params = _params()
  traces = []

  @jax.jit
  def step(opt, params, state):
    traces.append(1)
    updates, state = opt.update(_grads(params, 0), state, params)
    return gx.apply_updates(params, updates), state

  state = gx.quantized_state(gx.lion(1e-3)).init(params)
  for lr in (1e-3, 2e-3):
    step(gx.quantized_state(gx.lion(lr)), params, state)
  assert len(traces) == 1
  lrs = jnp.asarray([1e-3, 3e-3])
  batched = jax.vmap(lambda lr: step(gx.quantized_state(gx.lion(lr)), params, state)[0])(lrs)
  for i, lr in enumerate((1e-3, 3e-3)):
    single = step(gx.quantized_state(gx.lion(lr)), params, state)[0]
    for k in params:
      np.testing.assert_allclose(batched[k][i], single[k], rtol=1e-6, atol=1e-7)


def test_composes_with_chain_and_partition():
  params = _params()
  inside = gx.partition({"q": gx.quantized_state(gx.sgd(0.05, momentum=0.9), min_size=0),
                         "f": gx.sgd(0.05, momentum=0.9)}, [(r"w", "q"), (r".*", "f")])
  outside = gx.quantized_state(gx.partition({"q": gx.sgd(0.05, momentum=0.9), "f": gx.sgd(0.05, momentum=0.9)},
                                            [(r"w", "q"), (r".*", "f")]),
                               which=lambda path, leaf: "'q'" in path, min_size=0)
  a, state = _run(gx.chain(gx.clip_by_global_norm(10.0), inside), params, 5)
  b, _ = _run(gx.chain(gx.clip_by_global_norm(10.0), outside), params, 5)
  quantized = [x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, gx.Quantized))
               if isinstance(x, gx.Quantized)]
  assert len(quantized) == 1 and quantized[0].codes.shape == (4, 2048)  # only w's momentum
  for k in params:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_orbax_round_trip(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  params = _params()
  opt = gx.quantized_state(gx.muon(2e-2), bits=4)
  halfway, state = _run(opt, params, 3)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "c", {"params": halfway, "state": state})
  checkpointer.wait_until_finished()
  abstract = {"params": jax.eval_shape(lambda: params), "state": jax.eval_shape(opt.init, params)}
  restored = checkpointer.restore(tmp_path / "c", abstract)
  assert jax.tree.structure(restored["state"]) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves({"params": halfway, "state": state})):
    np.testing.assert_array_equal(a, b)
  update = jax.jit(opt.update)
  u1, _ = update(_grads(halfway, 3), state, halfway)
  u2, _ = update(_grads(halfway, 3), restored["state"], restored["params"])
  for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", [lambda: gx.quantized_state(gx.lion(1e-3)),
                                  lambda: gx.quantized_state(gx.sgd(0.1, momentum=0.9)),
                                  lambda: gx.adamw_4bit(1e-3)], ids=["lion_8bit", "sgd_8bit", "adamw_4bit"])
def test_donated_step_copies_nothing(make):
  hlo_text, donated = compile_step(make())
  problems = donation_problems(hlo_text, donated)
  assert not problems, "\n".join(problems)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_keeps_dtypes(dtype):
  params = jax.tree.map(lambda p: p.astype(dtype), _params())
  opt = gx.quantized_state(gx.sgd(0.1, momentum=0.9))
  new, state = _run(opt, params, 2)
  assert all(p.dtype == dtype for p in jax.tree.leaves(new))
  assert state[0].trace["b"].dtype == dtype  # an unquantized leaf keeps the parameters' dtype


# --- errors ------------------------------------------------------------------------------------------------


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="quantized_state: bits=3"):
    gx.quantized_state(gx.sgd(0.1), bits=3)
  with pytest.raises(ValueError, match="quantized_state: block_size=127 must be even"):
    gx.quantized_state(gx.sgd(0.1), bits=4, block_size=127)
  with pytest.raises((TypeError, ValueError), match="quantized_state: block_size"):
    gx.quantized_state(gx.sgd(0.1), block_size=0)
  with pytest.raises(ValueError, match="quantized_state: min_size"):
    gx.quantized_state(gx.sgd(0.1), min_size=-1)
  with pytest.raises(TypeError, match="quantized_state: which"):
    gx.quantized_state(gx.sgd(0.1), which="mu")
  with pytest.raises(TypeError, match="quantized_state: unsigned"):
    gx.quantized_state(gx.sgd(0.1), unsigned="nu")
  with pytest.raises(TypeError, match="quantized_state"):
    gx.quantized_state(object())
  with pytest.raises(ValueError, match="adam_4bit: .*b1"):
    gx.adam_4bit(1e-3, b1=1.5)


def test_mismatched_state_raises():
  params = _params()
  opt = gx.quantized_state(gx.lion(1e-3))
  with pytest.raises(ValueError, match="quantized_state: the state does not match"):
    opt.update(params, gx.lion(1e-3).init(params), params)  # a float32 state
  with pytest.raises(ValueError, match="quantized_state: the state does not match"):
    opt.update({"w": params["w"]}, opt.init(params))
