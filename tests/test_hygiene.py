"""Clipping and gradient hygiene: gx.clip_by_block_rms, gx.adaptive_grad_clip, gx.zero_nans, gx.add_noise, gx.centralize.

The deterministic transforms are checked step by step against independent
NumPy references written from the papers' equations (below, float64); gx.add_noise
against the closed-form mean and variance of its noise. Every gradient tree
has a ``None`` leaf (a parameter excluded by a mask), which must pass through.
"""

import dataclasses
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

from tests import helpers
from tests.helpers import assert_trees_close, cast

# ---------------------------------------------------------------------------
# Independent NumPy references (float64, one leaf at a time; no gradxform code)


def _unit_axes(ndim):
  """Brock et al. / Yong et al.: one unit per output; JAX kernels are (..., in, out)."""
  return tuple(range(ndim - 1)) if ndim >= 2 else None


def ref_block_rms(c):
  def rule(g, p):
    rms = math.sqrt(float(np.mean(g * g))) if g.size else 0.0
    return g * min(1.0, c / max(rms, np.finfo(np.float32).tiny))
  return rule


def ref_agc(clipping, eps):
  """Brock et al. 2021, Eq. (3): G ← λ max(‖W‖, ε) / ‖G‖ · G where ‖G‖ / max(‖W‖, ε) > λ."""
  def rule(g, p):
    axes = _unit_axes(g.ndim)
    g_norm = np.sqrt(np.sum(g * g, axis=axes, keepdims=True))
    w_norm = np.maximum(np.sqrt(np.sum(p * p, axis=axes, keepdims=True)), eps)
    clipped = clipping * w_norm / np.maximum(g_norm, 1e-6) * g
    return np.where(g_norm / w_norm > clipping, clipped, g)
  return rule


def ref_zero_nans(g, p):
  return np.where(np.isnan(g), 0.0, g)


def ref_centralize(g, p):
  """Yong et al. 2020, Eq. (2): Φ(∇w_j) = ∇w_j − mean(∇w_j) for every weight vector w_j (column)."""
  if g.ndim < 2 or g.size == g.shape[-1]:  # biases, and units of one weight, are not centralized
    return g
  out = np.empty_like(g)
  for j in range(g.shape[-1]):
    column = g[..., j]
    out[..., j] = column - column.sum() / column.size
  return out


def ref_noise_variance(eta, gamma, t):
  """Neelakantan et al. 2015: σ_t² = η / (1 + t)^γ, t = 0 at the first update."""
  return eta / (1 + t) ** gamma


def apply_ref(rule, grads, params):
  return {k: None if g is None else rule(np.asarray(g, np.float64), np.asarray(params[k], np.float64))
          for k, g in grads.items()}


# ---------------------------------------------------------------------------
# Test data: leaves of every rank a network has, one masked (None) leaf

SHAPES = {"b": (5,), "s": (), "w": (3, 4), "k3": (2, 3, 4), "conv": (2, 2, 3, 4)}


def stream(steps=4, seed=0, nans=False):
  """Gradients whose magnitudes vary over steps (step 2 is all zeros); ``frozen`` is masked out."""
  rng = np.random.default_rng(seed)
  out = []
  for t in range(steps):
    scale = 0.0 if t == 2 else float(10.0 ** rng.uniform(-2, 1))
    grads = {k: scale * rng.normal(size=shape) for k, shape in SHAPES.items()}
    grads["k3"][..., 1] *= 0.01  # some units of a leaf clipped, others not
    if nans and t in (1, 3):
      grads["w"][0, 1] = np.nan
      grads["conv"][1, 0, 2, 3] = np.nan
      grads["b"][2] = np.inf
      grads["s"] = np.array(np.nan)
    grads["frozen"] = None
    out.append(grads)
  return out


def params_tree(seed=1):
  rng = np.random.default_rng(seed)
  params = {k: rng.normal(size=shape) for k, shape in SHAPES.items()}
  params["b"] = np.zeros(5)  # zero-initialized bias: AGC falls back to eps
  params["frozen"] = rng.normal(size=(3,))
  return params


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  make: Callable[[], Any]
  remake: Optional[Callable[[], Any]]  # same transform, other hyperparameter values
  reference: Optional[Callable]        # (g, p) -> u per leaf, float64; None for gx.add_noise
  nans: bool = False
  keys: Optional[tuple] = None         # a subset of the leaves, where rank does not matter

  def __str__(self):
    return self.id

  def stream(self, **kwargs):
    return [self._subset(g) for g in stream(nans=self.nans, **kwargs)]

  def params(self):
    return self._subset(params_tree())

  def _subset(self, tree):
    return tree if self.keys is None else {k: v for k, v in tree.items() if k in self.keys}


DETERMINISTIC = [
    Case("clip_by_block_rms", lambda: gx.clip_by_block_rms(0.7), lambda: gx.clip_by_block_rms(2.0), ref_block_rms(0.7)),
    Case("adaptive_grad_clip", lambda: gx.adaptive_grad_clip(0.3, eps=0.05),
         lambda: gx.adaptive_grad_clip(0.1, eps=0.2), ref_agc(0.3, 0.05)),
    Case("zero_nans", gx.zero_nans, None, ref_zero_nans, nans=True),
    Case("centralize", gx.centralize, None, ref_centralize),
]
# elementwise, so two leaves and the masked one suffice (each leaf compiles its own sampler)
NOISE = Case("add_noise", lambda: gx.add_noise(0.5, 0.55, seed=3), lambda: gx.add_noise(0.1, 1.0, seed=3), None,
             keys=("b", "w", "frozen"))
ALL = DETERMINISTIC + [NOISE]


def run(opt, grads_stream, params, dtype, jit=False):
  """``(updates per step, state)`` of ``opt`` on a gradient stream at fixed parameters."""
  seen, _, state = helpers.run(opt, params, grads_stream, dtype, jit=jit, apply=False)
  return seen, state


# ---------------------------------------------------------------------------
# Against the references


@pytest.mark.parametrize("case", DETERMINISTIC, ids=str)
def test_float64_matches_reference(case):
  grads_stream, params = case.stream(), case.params()
  with jax.enable_x64(True):
    got, _ = run(case.make(), grads_stream, params, jnp.float64, jit=True)
  for step, (g, grads) in enumerate(zip(got, grads_stream)):
    assert g["frozen"] is None
    assert_trees_close(g, apply_ref(case.reference, grads, params), rtol=1e-12, atol=1e-14,
                       what=f"{case.id} step {step}")


@pytest.mark.parametrize("case", ALL, ids=str)
def test_float32_matches_reference_eager_and_jit(case):
  grads_stream, params = case.stream(), case.params()
  eager, _ = run(case.make(), grads_stream, params, jnp.float32)
  jitted, _ = run(case.make(), grads_stream, params, jnp.float32, jit=True)
  for step, (e32, j32, grads) in enumerate(zip(eager, jitted, grads_stream)):
    assert_trees_close(j32, e32, rtol=1e-6, atol=1e-6, what=f"{case.id} jit vs eager step {step}")
    if case.reference is not None:
      expected = apply_ref(case.reference, jax.tree.map(lambda g: np.asarray(g, np.float32), grads),
                           jax.tree.map(lambda p: np.asarray(p, np.float32), params))
      assert_trees_close(e32, expected, rtol=2e-6, atol=1e-6, what=f"{case.id} step {step}")


@pytest.mark.parametrize("case", ALL, ids=str)
def test_dtypes_are_kept_and_bfloat16_tracks_float32(case):
  """bf16 updates stay bf16 and are the float32 result (same bf16-rounded inputs) rounded once."""
  grads_stream = [cast(cast(g, jnp.bfloat16), jnp.float32) for g in case.stream()]
  params = cast(cast(case.params(), jnp.bfloat16), jnp.float32)
  u16, state16 = run(case.make(), grads_stream, params, jnp.bfloat16, jit=True)
  u32, state32 = run(case.make(), grads_stream, params, jnp.float32, jit=True)
  for dtype, updates, state in ((jnp.bfloat16, u16, state16), (jnp.float32, u32, state32)):
    assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(dtype)}
    for leaf in jax.tree.leaves(state):  # counts, float32 hyperparameters, flags, the key
      assert leaf.dtype in (jnp.float32, jnp.int32, jnp.uint32, jnp.bool_), leaf.dtype
  for a, b in zip(jax.tree.leaves(u16), jax.tree.leaves(u32)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    finite = np.isfinite(b)
    np.testing.assert_array_equal(np.isfinite(a), finite)
    assert np.linalg.norm(a[finite] - b[finite]) <= 1e-2 * np.linalg.norm(b[finite]) + 1e-6, (case.id, a, b)


@pytest.mark.parametrize("case", ALL, ids=str)
def test_jit_compiles_once(case):
  traces = []

  @jax.jit
  def step(opt, grads, state, params):
    traces.append(1)
    return opt.update(grads, state, params)

  params = cast(case.params(), jnp.float32)
  state = case.make().init(params)
  opts = [case.make(), case.make(), case.remake() if case.remake else case.make()]
  for opt, grads in zip(opts, case.stream(steps=3)):
    _, state = step(opt, cast(grads, jnp.float32), state, params)
  assert len(traces) == 1


@pytest.mark.parametrize("case", ALL, ids=str)
def test_none_leaves_pass_through(case):
  grads = cast(case.stream()[0], jnp.float32)
  grads["nested"] = {"masked": None, "kept": jnp.ones((2, 3))}
  params = cast(case.params(), jnp.float32)
  params["nested"] = {"masked": None, "kept": jnp.full((2, 3), 2.0)}
  opt = case.make()
  state = opt.init(params)
  updates, new_state = opt.update(grads, state, params)  # jit: test_jit_compiles_once (same stream)
  assert updates["frozen"] is None and updates["nested"]["masked"] is None
  assert jax.tree.structure(updates, is_leaf=lambda x: x is None) == jax.tree.structure(
      grads, is_leaf=lambda x: x is None)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)  # stable: scan/jit carry


def test_zero_nans_first_in_a_chain_keeps_the_next_stage_finite():
  params = cast(params_tree(), jnp.float32)
  opt = gx.chain(gx.zero_nans(), gx.clip_by_block_rms(1.0))
  state = opt.init(params)
  step = jax.jit(opt.update)
  for grads in stream(nans=True):
    updates, state = step(cast(grads, jnp.float32), state, params)
    assert updates["frozen"] is None
    assert all(bool(jnp.all(jnp.isfinite(u))) for k, u in updates.items() if k not in ("b", "frozen"))


# ---------------------------------------------------------------------------
# Construction and misuse


@pytest.mark.parametrize("build,match", [
    (lambda: gx.clip_by_block_rms(-1.0), r"clip_by_block_rms: threshold=-1.0 is out of range \[0, inf\)"),
    (lambda: gx.clip_by_block_rms(float("inf")), r"clip_by_block_rms: threshold=inf is not finite"),
    (lambda: gx.adaptive_grad_clip(0.0), r"adaptive_grad_clip: clipping=0.0 is out of range \(0, inf\)"),
    (lambda: gx.adaptive_grad_clip(-0.01), r"adaptive_grad_clip: clipping=-0.01 is out of range"),
    (lambda: gx.adaptive_grad_clip(0.01, eps=0.0), r"adaptive_grad_clip: eps=0.0 is out of range \(0, inf\)"),
    (lambda: gx.add_noise(-0.1, 0.55, seed=0), r"add_noise: eta=-0.1 is out of range \[0, inf\)"),
    (lambda: gx.add_noise(0.1, -1.0, seed=0), r"add_noise: gamma=-1.0 is out of range \[0, inf\)"),
    (lambda: gx.add_noise(float("nan"), 0.55, seed=0), r"add_noise: eta=nan is not finite"),
    (lambda: gx.add_noise(0.1, 0.55, seed=-1), r"add_noise: seed=-1 is out of range \[0, 2\*\*32\)"),
    (lambda: gx.add_noise(0.1, 0.55, seed=2**32), r"add_noise: seed=4294967296 is out of range"),
])
def test_out_of_range_arguments_raise_value_error(build, match):
  with pytest.raises(ValueError, match=match):
    build()


@pytest.mark.parametrize("build,match", [
    (lambda: gx.clip_by_block_rms("1.0"), r"clip_by_block_rms: threshold must be a number"),
    (lambda: gx.adaptive_grad_clip(True), r"adaptive_grad_clip: clipping must be .* not a boolean"),
    (lambda: gx.add_noise(0.1, 0.55, seed=1.5), r"add_noise: seed must be a Python integer, got float"),
    (lambda: gx.add_noise(0.1, 0.55, seed=True), r"add_noise: seed must be a Python integer"),
])
def test_wrong_types_raise_type_error(build, match):
  with pytest.raises(TypeError, match=match):
    build()


def test_adaptive_grad_clip_needs_params():
  params = cast(params_tree(), jnp.float32)
  opt = gx.adaptive_grad_clip(0.01)
  state = opt.init(params)
  grads = cast(stream()[0], jnp.float32)
  with pytest.raises(ValueError, match=r"adaptive_grad_clip: params are required"):
    opt.update(grads, state)
  params["w"] = None
  with pytest.raises(ValueError, match=r"adaptive_grad_clip: the update at \['w'\] has no parameter"):
    opt.update(grads, state, params)
  with pytest.raises(ValueError, match=r"adaptive_grad_clip: .*shape \(3, 4\).*\(4, 3\)"):
    opt.update(grads, state, {**cast(params_tree(), jnp.float32), "w": jnp.ones((4, 3))})


def test_integer_updates_raise_type_error():
  for opt in (gx.clip_by_block_rms(1.0), gx.zero_nans(), gx.add_noise(0.1, 0.55, seed=0), gx.centralize()):
    params = {"n": jnp.zeros(3)}
    with pytest.raises(TypeError, match=r"the update at \['n'\] has integer/boolean dtype"):
      opt.update({"n": jnp.arange(3)}, opt.init(params), params)


def test_wrong_state_raises_type_error():
  params = {"w": jnp.ones(3)}
  with pytest.raises(TypeError, match=r"zero_nans: expected a ZeroNansState as state, got EmptyState"):
    gx.zero_nans().update(params, gx.EmptyState())
  with pytest.raises(TypeError, match=r"add_noise: expected a AddNoiseState as state, got ZeroNansState"):
    gx.add_noise(0.1, 0.55, seed=0).update(params, gx.zero_nans().init(params))


def test_zero_nans_update_tree_must_match_init():
  opt = gx.zero_nans()
  state = opt.init({"a": jnp.ones(2), "b": jnp.ones(3)})
  with pytest.raises(ValueError, match=r"zero_nans: the update tree does not match the state"):
    opt.update({"a": jnp.ones(2)}, state)


def test_numbers_are_leaves_and_options_static():
  assert jax.tree.leaves(gx.clip_by_block_rms(0.5)) == [0.5]
  assert jax.tree.leaves(gx.adaptive_grad_clip(0.01, eps=2e-3)) == [0.01, 2e-3]
  assert jax.tree.leaves(gx.add_noise(0.3, 0.55, seed=7)) == [0.3, 0.55]  # the seed is static
  assert jax.tree.leaves(gx.zero_nans()) == [] and jax.tree.leaves(gx.centralize()) == []
  assert gx.add_noise(0.3, 0.55, seed=7) == gx.add_noise(0.3, 0.55, seed=7)
  assert gx.add_noise(0.3, 0.55, seed=7) != gx.add_noise(0.3, 0.55, seed=8)


def test_states():
  params = cast(params_tree(), jnp.float32)
  assert isinstance(gx.clip_by_block_rms(1.0).init(params), gx.ClipState)
  state = gx.adaptive_grad_clip(0.02).init(params)
  assert isinstance(state, gx.ClipState) and len(state.hyperparams) == 0 and state.count is None
  state = gx.inject(gx.adaptive_grad_clip(0.02)).init(params)
  assert set(state.hyperparams) == {"clipping", "eps"}
  assert gx.centralize().init(params) == gx.EmptyState()


# ---------------------------------------------------------------------------
# gx.clip_by_block_rms


def test_block_rms_clips_each_leaf_separately():
  grads = {"big": jnp.full((4, 4), 3.0), "small": jnp.full((3,), 0.1), "zero": jnp.zeros((2, 2))}
  opt = gx.clip_by_block_rms(1.0)
  updates, _ = opt.update(grads, opt.init(grads))
  np.testing.assert_allclose(updates["big"], 1.0, rtol=1e-6)  # rms 3 -> 1
  np.testing.assert_array_equal(updates["small"], grads["small"])  # rms 0.1 <= 1: untouched
  np.testing.assert_array_equal(updates["zero"], 0.0)  # no 0/0


def test_block_rms_threshold_zero_and_huge_gradients():
  grads = {"w": jnp.array([3e30, -4e30], jnp.float32), "z": jnp.zeros(2)}
  updates, _ = gx.clip_by_block_rms(0.0).update(grads, gx.clip_by_block_rms(0.0).init(grads))
  np.testing.assert_array_equal(updates["w"], 0.0)
  np.testing.assert_array_equal(updates["z"], 0.0)
  # squares overflow float32, but the rms is still measured (scaled by max |g|)
  updates, _ = gx.clip_by_block_rms(1.0).update(grads, gx.clip_by_block_rms(1.0).init(grads))
  rms = math.sqrt((9 + 16) / 2)
  np.testing.assert_allclose(updates["w"], np.array([3.0, -4.0]) / rms, rtol=1e-6)


def test_block_rms_schedule():
  opt = gx.clip_by_block_rms(lambda count: 1.0 / (1.0 + count.astype(jnp.float32)))
  grads = {"w": jnp.full((3,), 10.0)}
  state = opt.init(grads)
  for expected in (1.0, 0.5, 1 / 3):
    updates, state = opt.update(grads, state)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)


# ---------------------------------------------------------------------------
# gx.adaptive_grad_clip


def test_agc_units_are_output_columns():
  """A Dense kernel (in=3, out=2): column 0 is clipped, column 1 is not."""
  params = {"kernel": jnp.ones((3, 2))}  # each column has norm sqrt(3)
  grads = {"kernel": jnp.array([[1.0, 0.01], [1.0, 0.01], [1.0, 0.01]])}
  opt = gx.adaptive_grad_clip(0.1)
  updates, _ = opt.update(grads, opt.init(params), params)
  # column 0: ‖g‖ = sqrt(3) > 0.1 · sqrt(3) -> rescaled to norm 0.1 sqrt(3); column 1 kept
  np.testing.assert_allclose(updates["kernel"][:, 0], 0.1, rtol=1e-6)
  np.testing.assert_array_equal(updates["kernel"][:, 1], grads["kernel"][:, 1])


def test_agc_zero_params_use_eps_and_mixed_dtypes():
  params = {"bias": jnp.zeros(4, jnp.float32), "w": jnp.ones((2, 2), jnp.float32)}
  grads = {"bias": jnp.ones(4, jnp.bfloat16), "w": jnp.ones((2, 2), jnp.bfloat16)}
  opt = gx.adaptive_grad_clip(0.5, eps=1e-2)
  updates, _ = opt.update(grads, opt.init(params), params)
  assert updates["bias"].dtype == jnp.bfloat16
  # ‖g‖ = 2, max norm = 0.5 · 1e-2 -> each entry 0.5 · 1e-2 / 2
  np.testing.assert_allclose(np.asarray(updates["bias"], np.float32), 2.5e-3, rtol=1e-2)


def test_agc_params_masked_like_updates():
  """Under a mask both the updates and the params have None for excluded leaves."""
  params = cast(params_tree(), jnp.float32)
  grads = cast(stream()[0], jnp.float32)
  masked_params = {**params, "frozen": None}
  opt = gx.adaptive_grad_clip(0.3, eps=0.05)
  a, _ = opt.update(grads, opt.init(params), params)
  b, _ = opt.update(grads, opt.init(masked_params), masked_params)
  assert_trees_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# gx.zero_nans


def test_zero_nans_flags_per_leaf():
  params = cast(params_tree(), jnp.float32)
  opt = gx.zero_nans()
  state = opt.init(params)
  assert state.found_nan["frozen"] is not None and not bool(state.found_nan["w"])
  grads_stream = stream(steps=4, nans=True)
  for t, grads in enumerate(grads_stream):
    updates, state = opt.update(cast(grads, jnp.float32), state, params)
    assert isinstance(state, gx.ZeroNansState)
    assert not bool(state.found_nan["frozen"])  # masked update: the slot stays, False
    bad = t in (1, 3)
    assert {k: bool(v) for k, v in state.found_nan.items() if v is not None} == {
        "b": False, "s": bad, "w": bad, "k3": False, "conv": bad, "frozen": False}  # inf is not NaN
    assert not any(bool(jnp.any(jnp.isnan(u))) for u in jax.tree.leaves(updates))
    if bad:
      assert float(updates["b"][2]) == np.inf  # ±inf pass through (as optax)


# ---------------------------------------------------------------------------
# gx.centralize


def test_centralize_leaves_vectors_and_scalars_unchanged():
  grads = cast(stream()[0], jnp.float32)
  updates, state = gx.centralize().update(grads, gx.EmptyState())
  assert state == gx.EmptyState()
  np.testing.assert_array_equal(updates["b"], grads["b"])
  np.testing.assert_array_equal(updates["s"], grads["s"])
  for k in ("w", "k3", "conv"):
    means = np.mean(np.asarray(updates[k], np.float64), axis=_unit_axes(updates[k].ndim))
    np.testing.assert_allclose(means, 0.0, atol=1e-6)
  # a (1, 1, d) class token has one weight per unit: centering would zero it, so it is kept
  token = {"cls": jnp.arange(4.0).reshape(1, 1, 4)}
  np.testing.assert_array_equal(gx.centralize().update(token, gx.EmptyState())[0]["cls"], token["cls"])


# ---------------------------------------------------------------------------
# gx.add_noise


@jax.jit
def _noise_step(opt, grads, state):
  return opt.update(grads, state)


def _noise_run(opt, steps, shape=(400, 500), dtype=jnp.float32):
  grads = {"x": jnp.zeros(shape, dtype), "y": jnp.zeros(shape, dtype), "masked": None}
  state = opt.init(grads)
  noises = []
  for _ in range(steps):
    updates, state = _noise_step(opt, grads, state)
    noises.append(updates)
  return noises, state


def test_noise_mean_and_annealed_variance():
  eta, gamma = 0.5, 0.55
  noises, state = _noise_run(gx.add_noise(eta, gamma, seed=0), steps=4)
  n = 400 * 500
  for t, noise in enumerate(noises):
    var = ref_noise_variance(eta, gamma, t)
    for name in ("x", "y"):
      x = np.asarray(noise[name], np.float64)
      assert abs(x.mean()) < 5 * math.sqrt(var / n), (t, name)
      assert abs(x.var() / var - 1) < 5 * math.sqrt(2 / n), (t, name, x.var(), var)
    assert noise["masked"] is None
  assert int(state.count) == 4 and len(state.hyperparams) == 0  # eta is the optimizer's


def test_noise_keys_differ_per_leaf_and_step_and_are_deterministic():
  noises, state = _noise_run(gx.add_noise(1.0, 0.0, seed=5), steps=2)
  again, _ = _noise_run(gx.add_noise(1.0, 0.0, seed=5), steps=2)
  other, _ = _noise_run(gx.add_noise(1.0, 0.0, seed=6), steps=1)
  assert_trees_close(noises, again, rtol=0, atol=0)  # same seed, same noise
  corr = lambda a, b: float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])
  assert abs(corr(noises[0]["x"], noises[0]["y"])) < 0.01  # leaves get different keys
  assert abs(corr(noises[0]["x"], noises[1]["x"])) < 0.01  # each step gets a new key
  assert abs(corr(noises[0]["x"], other[0]["x"])) < 0.01  # seeds differ
  # the key is a plain uint32 array (checkpointable), advanced at every update
  assert state.rng_key.dtype == jnp.uint32
  assert not np.array_equal(state.rng_key, np.asarray(jax.random.PRNGKey(5)))


def test_noise_eta_is_a_leaf_no_recompile_and_zero_eta_is_identity():
  traces = []

  @jax.jit
  def step(opt, grads, state):
    traces.append(1)
    return opt.update(grads, state)

  grads = {"x": jnp.linspace(-1.0, 1.0, 50000).reshape(100, 500)}
  stds = []
  for eta in (1.0, 0.04, 0.0):
    opt = gx.add_noise(eta, 0.55, seed=1)
    updates, state = step(opt, grads, opt.init(grads))
    stds.append(float(np.std(np.asarray(updates["x"] - grads["x"]))))
    assert float(opt.eta) == eta and len(state.hyperparams) == 0
  assert len(traces) == 1
  np.testing.assert_allclose(stds[:2], [1.0, 0.2], rtol=0.02)
  assert stds[2] == 0.0  # eta = 0 adds exactly nothing


def test_noise_bfloat16_statistics():
  noises, _ = _noise_run(gx.add_noise(0.25, 0.55, seed=0), steps=2, dtype=jnp.bfloat16)
  for t, noise in enumerate(noises):
    x = np.asarray(noise["x"], np.float64)
    assert noise["x"].dtype == jnp.bfloat16
    np.testing.assert_allclose(x.var(), ref_noise_variance(0.25, 0.55, t), rtol=0.03)


# ---------------------------------------------------------------------------
# Against optax: same rule where the conventions agree, documented differences otherwise

@pytest.fixture
def optax():
  """Only these tests are skipped when optax is not installed."""
  return pytest.importorskip("optax")


def _optax_run(ours, theirs, grads_stream, params):
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    params = cast(params, jnp.float64)
    state_a, state_b = ours.init(params), theirs.init(params)
    update_a, update_b = jax.jit(ours.update), jax.jit(theirs.update)
    for step, grads in enumerate(grads_stream):
      grads = cast(grads, jnp.float64)
      a, state_a = update_a(grads, state_a, params)
      b, state_b = update_b(grads, state_b, params)
      yield step, a, b, state_a, state_b


def _without(tree, *keys):
  return {k: v for k, v in tree.items() if k not in keys}


def test_block_rms_matches_optax(optax):
  grads_stream = [_without(g, "frozen") for g in stream()]
  for step, a, b, _, _ in _optax_run(gx.clip_by_block_rms(0.7), optax.clip_by_block_rms(0.7),
                                     grads_stream, params_tree()):
    assert_trees_close(a, b, rtol=1e-12, atol=1e-14, what=f"step {step}")


def test_agc_matches_optax_except_3d_leaves(optax):
  grads_stream = [_without(g, "frozen", "k3") for g in stream()]
  params = _without(params_tree(), "frozen", "k3")
  for step, a, b, _, _ in _optax_run(gx.adaptive_grad_clip(0.3, eps=0.05), optax.adaptive_grad_clip(0.3, eps=0.05),
                                     grads_stream, params):
    assert_trees_close(a, b, rtol=1e-12, atol=1e-14, what=f"step {step}")
  # 3-D leaves: optax's default reduces axis 0 only; ours is its axis=(0, 1)
  only_3d = [{"k3": g["k3"]} for g in stream()]
  p3 = {"k3": params_tree()["k3"]}
  differs = False
  for step, a, b, _, _ in _optax_run(gx.adaptive_grad_clip(0.3, eps=0.05),
                                     optax.adaptive_grad_clip(0.3, eps=0.05, axis=(0, 1)), only_3d, p3):
    assert_trees_close(a, b, rtol=1e-12, atol=1e-14, what=f"3-D step {step}")
  for step, a, b, _, _ in _optax_run(gx.adaptive_grad_clip(0.3, eps=0.05), optax.adaptive_grad_clip(0.3, eps=0.05),
                                     only_3d, p3):
    differs |= not np.allclose(a["k3"], b["k3"])
  assert differs


def test_zero_nans_matches_optax(optax):
  grads_stream = [_without(g, "frozen") for g in stream(nans=True)]
  params = _without(params_tree(), "frozen")
  for step, a, b, sa, sb in _optax_run(gx.zero_nans(), optax.zero_nans(), grads_stream, params):
    assert_trees_close(a, b, rtol=0, atol=0, what=f"step {step}")
    assert jax.tree.map(bool, sa.found_nan) == jax.tree.map(bool, sb.found_nan)


def test_centralize_is_optax_on_the_transposed_layout(optax):
  grads_stream = [_without(g, "frozen") for g in stream()]
  to_torch = lambda t: {k: jnp.moveaxis(v, -1, 0) if v.ndim >= 2 else v for k, v in t.items()}
  with jax.enable_x64(True):
    for grads in grads_stream:
      grads = cast(grads, jnp.float64)
      ours, _ = gx.centralize().update(grads, gx.EmptyState())
      theirs, _ = optax.centralize().update(to_torch(grads), optax.EmptyState())
      back = {k: jnp.moveaxis(v, 0, -1) if v.ndim >= 2 else v for k, v in theirs.items()}
      assert_trees_close(ours, back, rtol=1e-12, atol=1e-14)


def test_add_noise_reproduces_optax_float32(optax):
  grads_stream, params = NOISE.stream(), cast(NOISE.params(), jnp.float32)
  ours, theirs = gx.add_noise(0.3, 0.55, seed=11), optax.add_noise(0.3, 0.55, key=11)
  state_a, state_b = ours.init(params), theirs.init(params)
  with jax.numpy_dtype_promotion("standard"):
    update_a, update_b = jax.jit(ours.update), jax.jit(theirs.update)
    for step, grads in enumerate(grads_stream):
      grads = cast(grads, jnp.float32)
      a, state_a = update_a(grads, state_a)
      b, state_b = update_b(grads, state_b)
      assert a["frozen"] is None and b["frozen"] is None
      assert_trees_close(a, b, rtol=1e-6, atol=1e-6, what=f"step {step}")
  np.testing.assert_array_equal(state_a.rng_key, jax.random.key_data(state_b.rng_key))
  assert isinstance(state_a, gx.AddNoiseState)
