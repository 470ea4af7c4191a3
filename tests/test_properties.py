"""Property-based tests: random chains, wrappers, trees, dtypes and gradient scales (hypothesis).

Checked on each drawn case: eager = jit (to a few units in the last place of the leaf's dtype: XLA
contracts multiply-adds under jit), the update's and the state's structure, shapes and dtypes are fixed
points of the update (so ``lax.scan`` carries them), finite gradients give finite updates, and a new
hyperparameter value does not retrace. The default profile is fixed and fast (derandomized);
``GX_HYPOTHESIS=long`` runs many more examples.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gradxform as gx  # noqa: E402
from gradxform._core.tree import global_norm  # noqa: E402

_LONG = os.environ.get("GX_HYPOTHESIS", "") == "long"
_F32_BIG = float(np.float32(3e38))
_F32_1E20 = float(np.float32(1e20))


def _profile(fast: int, long: int):
  return settings(max_examples=long if _LONG else fast, deadline=None, derandomize=not _LONG,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


_DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]
_SHAPES = [(), (3,), (2, 3), (0,), (2, 0)]
# the largest gradient scale (a power of ten) each dtype holds with room for a few steps
_MAX_EXPONENT = {jnp.float32: 30, jnp.bfloat16: 30, jnp.float16: 3}


@st.composite
def trees(draw):
  """A parameter tree: nested dict/list/tuple containers, ``None`` leaves, scalars, 0-size arrays,
  mixed dtypes. Returns ``(spec, seed)``; leaves are made with numpy from the seed."""
  n = draw(st.integers(1, 4))
  leaves = [(draw(st.sampled_from(_SHAPES)), draw(st.sampled_from(_DTYPES))) for _ in range(n)]
  container = draw(st.sampled_from(["dict", "list", "tuple", "nested"]))
  with_none = draw(st.booleans())
  return leaves, container, with_none, draw(st.integers(0, 2**16))


def _make(spec, scale_exponent=0, offset=0):
  leaves, container, with_none, seed = spec
  rng = np.random.default_rng(seed + offset)
  arrays = [jnp.asarray(rng.standard_normal(shape) * 10.0 ** scale_exponent, dtype) for shape, dtype in leaves]
  if container == "dict":
    tree = {f"p{i}": a for i, a in enumerate(arrays)}
    if with_none:
      tree["frozen"] = None
  elif container == "list":
    tree = list(arrays) + ([None] if with_none else [])
  elif container == "tuple":
    tree = tuple(arrays)
  else:
    tree = {"outer": {"inner": arrays[:1], "rest": tuple(arrays[1:])}, "none": None if with_none else arrays[0]}
  return tree


def _min_dtype(spec):
  return min((dtype for _, dtype in spec[0]), key=lambda d: _MAX_EXPONENT[d])


_OPTIMIZERS = {
    "sgd": lambda d: gx.sgd(d(st.sampled_from([1e-3, 0.1])), momentum=d(st.sampled_from([0.0, 0.5, 0.9])),
                            nesterov=False),
    "sgd_nesterov": lambda d: gx.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=d(st.sampled_from([0.0, 0.1]))),
    "adam": lambda d: gx.adam(d(st.sampled_from([1e-3, 0.1])), b1=d(st.sampled_from([0.0, 0.9])),
                              b2=d(st.sampled_from([0.0, 0.99, 0.999])), amsgrad=d(st.booleans())),
    "adamw": lambda d: gx.adamw(1e-2, weight_decay=d(st.sampled_from([0.0, 0.1]))),
    "rmsprop": lambda d: gx.rmsprop(1e-2, decay=d(st.sampled_from([0.0, 0.9])), centered=d(st.booleans()),
                                    momentum=d(st.sampled_from([0.0, 0.9]))),
    "adagrad": lambda d: gx.adagrad(0.1),
    "adamax": lambda d: gx.adamax(1e-2),
    "nadam": lambda d: gx.nadam(1e-2),
    "radam": lambda d: gx.radam(1e-2),
    "lion": lambda d: gx.lion(1e-3),
    "adabelief": lambda d: gx.adabelief(1e-2),
    "clip_global_adam": lambda d: gx.chain(gx.clip_by_global_norm(d(st.sampled_from([0.5, 10.0]))), gx.adam(1e-2)),
    "clip_sgd": lambda d: gx.chain(gx.clip(1.0), gx.sgd(0.1)),
    "ema": lambda d: gx.chain(gx.ema(d(st.sampled_from([0.0, 0.5, 0.9]))), gx.scale(-0.1)),
    "trace": lambda d: gx.chain(gx.trace(0.9), gx.scale(-0.1)),
    "sign": lambda d: gx.chain(gx.scale_by_sign(), gx.scale(-0.1)),
}

_WRAPPERS = {
    "none": lambda inner, d: inner,
    "masked": lambda inner, d: gx.masked(inner, lambda params: jax.tree.map(lambda p: p.ndim > 0, params)),
    "lookahead": lambda inner, d: gx.lookahead(inner, sync_period=2, slow_step_size=0.5),
    "accumulate": lambda inner, d: gx.accumulate(inner, 2),
    "apply_if_finite": lambda inner, d: gx.apply_if_finite(inner, 3),
    "ema_params": lambda inner, d: gx.ema_params(inner, decay=0.9),
    "chain": lambda inner, d: gx.chain(gx.clip_by_global_norm(1.0), inner),
}


@st.composite
def optimizers(draw):
  name = draw(st.sampled_from(sorted(_OPTIMIZERS)))
  wrapper = draw(st.sampled_from(sorted(_WRAPPERS)))
  return f"{wrapper}({name})", _WRAPPERS[wrapper](_OPTIMIZERS[name](draw), draw)


def _signature(tree):
  return jax.tree.structure(tree), [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)]


def _close(a, b, what):
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    tol = 8 * float(jnp.finfo(jnp.result_type(x)).eps)  # a few units in the last place
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    finite = x[np.isfinite(x)]
    scale = np.max(np.abs(finite), initial=0.0)
    np.testing.assert_allclose(x, y, rtol=tol, atol=tol * scale, err_msg=f"{what} at {jax.tree_util.keystr(path)}")


def _steps(opt, params, grads_list, jit):
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  outs = []
  for grads in grads_list:
    updates, state = update(grads, state, params)
    params = gx.apply_updates(params, updates)
    outs.append(updates)
  return outs, state, params


@_profile(fast=24, long=400)
@given(case=optimizers(), spec=trees(), data=st.data())
def test_random_chain_eager_equals_jit_fixed_points_and_finite(case, spec, data):
  name, opt = case
  top = _MAX_EXPONENT[_min_dtype(spec)]
  exponent = data.draw(st.integers(-top, top), label="gradient scale exponent")
  params = _make(spec)
  grads_list = [_make(spec, exponent, offset=k + 1) for k in range(3)]
  init_state = opt.init(params)
  eager, eager_state, eager_params = _steps(opt, params, grads_list, jit=False)
  jitted, jit_state, jit_params = _steps(opt, params, grads_list, jit=True)
  # structure, shapes and dtypes: updates like the gradients, the state like the initial state
  for updates, grads in zip(eager, grads_list):
    assert _signature(updates) == _signature(grads), name
  assert _signature(eager_state) == _signature(init_state), name
  assert _signature(jit_state) == _signature(init_state), name
  assert jax.eval_shape(opt.init, params) == jax.eval_shape(lambda: init_state), name
  # eager = jit
  for k, (a, b) in enumerate(zip(eager, jitted)):
    _close(a, b, f"{name} step {k} updates")
  _close(eager_params, jit_params, f"{name} params")
  # finite in -> finite out. Not checked for float16 leaves: a float16 second moment of a small gradient
  # underflows to 0 and m / (0 + eps) overflows float16's 65504 (Adam, AdaBelief; found by the long
  # profile, still open: such state needs nu_dtype=jnp.float32).
  for updates in eager:
    for leaf in jax.tree.leaves(updates):
      if jnp.result_type(leaf) != jnp.float16:
        assert np.all(np.isfinite(np.asarray(leaf, np.float32))), f"{name}: non-finite update, scale 1e{exponent}"


@_profile(fast=12, long=200)
@given(name=st.sampled_from(["sgd", "adam", "rmsprop", "lion", "adamw", "nadam"]),
       first=st.floats(1e-4, 1.0), second=st.floats(1e-4, 1.0))
def test_no_retrace_on_a_new_hyperparameter_value(name, first, second):
  traces = []

  def step(opt, grads, state, params):
    traces.append(1)
    return opt.update(grads, state, params)

  step = jax.jit(step)
  params = {"w": jnp.ones(3), "b": jnp.zeros(2)}
  for lr in (first, second):
    opt = getattr(gx, name)(lr)
    updates, _ = step(opt, params, opt.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), np.asarray(opt.update(params, opt.init(params), params)[0]["w"]),
                               rtol=1e-6)
  assert len(traces) == 1


@_profile(fast=60, long=2000)
@given(values=st.lists(st.floats(-_F32_BIG, _F32_BIG, width=32, allow_subnormal=False), min_size=0, max_size=6),
       split=st.integers(0, 6))
def test_global_norm_does_not_overflow_for_finite_float32(values, split):
  # XLA flushes subnormal float32 to zero (CPU and GPU): inputs are normal, and a norm below the smallest
  # normal float32 may come out as 0
  tree = [jnp.asarray(values[:split], jnp.float32), jnp.asarray(values[split:], jnp.float32)]
  got = float(global_norm(tree))
  want = float(np.linalg.norm(np.asarray(values, np.float64))) if values else 0.0
  if want > float(jnp.finfo(jnp.float32).max):
    assert got == np.inf
  else:
    assert np.isclose(got, want, rtol=1e-5, atol=float(jnp.finfo(jnp.float32).tiny)), (got, want)
    assert np.isclose(got, float(jax.jit(global_norm)(tree)), rtol=1e-6, atol=0)  # XLA may fuse differently


@pytest.mark.parametrize("scale", [1e18, 1e-20], ids=["overflow", "underflow"])
def test_global_norm_fallback_over_runs_of_small_leaves(scale):
  """The fallback sums small leaves in concatenated runs (at most 2^20 elements each) and a leaf of at least
  2^16 elements alone: 700 leaves of 40x40 (two runs) and one of 70,000, whose squares overflow (1e18) or
  flush to zero (1e-20) in float32."""
  rng = np.random.default_rng(0)
  leaves = [rng.standard_normal((40, 40)).astype(np.float32) for _ in range(700)]
  leaves.append(rng.standard_normal(70_000).astype(np.float32))
  leaves = [x * np.float32(scale) for x in leaves]
  want = np.sqrt(sum(np.sum(x.astype(np.float64) ** 2) for x in leaves))
  got = float(jax.jit(global_norm)([jnp.asarray(x) for x in leaves]))
  np.testing.assert_allclose(got, want, rtol=1e-5)


@_profile(fast=30, long=500)
@given(big=st.floats(_F32_1E20, _F32_BIG, width=32), small=st.floats(-1.0, 1.0, width=32), max_norm=st.floats(0.1, 10.0))
def test_clip_by_global_norm_of_large_finite_gradient(big, small, max_norm):
  opt = gx.clip_by_global_norm(max_norm)
  g = jnp.asarray([big, small, 0.0], jnp.float32)
  u, _ = opt.update(g, opt.init(g))
  norm = float(np.linalg.norm(np.asarray(g, np.float64)))
  np.testing.assert_allclose(np.asarray(u, np.float64), np.asarray(g, np.float64) * (max_norm / norm),
                             rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("build", [lambda: gx.scale_by_rms(decay=0.0), lambda: gx.ema(0.0, debias=False),
                                   lambda: gx.trace(0.0), lambda: gx.scale_by_rms(decay=0.0, centered=True),
                                   lambda: gx.scale_by_adam(b1=0.0, b2=0.0)])
def test_decay_zero_forgets_an_inf_state(build):
  opt = build()
  g = jnp.asarray([2.0, -3.0], jnp.float32)
  state = jax.tree.map(lambda x: jnp.full_like(x, jnp.inf) if jnp.ndim(x) == 1 else x, opt.init(g))
  fresh, _ = opt.update(g, opt.init(g))
  u, _ = opt.update(g, state)
  np.testing.assert_array_equal(np.asarray(u), np.asarray(fresh))


def test_centered_rms_never_nan_from_inf_minus_inf():
  opt = gx.rmsprop(0.1, decay=0.9, centered=True)
  g = jnp.asarray([3e38, 1.0], jnp.float32)
  state = opt.init(g)
  for _ in range(3):
    u, state = opt.update(g, state, g)
    assert not np.any(np.isnan(np.asarray(u)))


def _bf16_run(opt, jit):
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.standard_normal(256), jnp.bfloat16)}
  grads = [{"w": jnp.asarray(rng.standard_normal(256) * 0.37, jnp.bfloat16)} for _ in range(20)]
  state = opt.init(params)

  def step(params, state, g):
    u, state = opt.update(g, state, params)
    return gx.apply_updates(params, u), state

  step = jax.jit(step) if jit else step
  for g in grads:
    params, state = step(params, state, g)
  return params, state


@pytest.mark.parametrize("build", [
    lambda: gx.lookahead(gx.sgd(2.0**-5, momentum=0.5), sync_period=3, slow_step_size=0.5),
    lambda: gx.ema_params(gx.sgd(2.0**-5, momentum=0.5), decay=0.5, dtype=jnp.bfloat16),
], ids=["lookahead", "ema_params"])
def test_bf16_roundings_identical_eager_and_jit(build):
  # powers of two: every product is exact, so only a rounding that jit removes could make them differ
  eager, jitted = _bf16_run(build(), False), _bf16_run(build(), True)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
