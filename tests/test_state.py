"""Named, inspectable state: stage names, reading and replacing by path, hyperparameters for logging."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import gradxform as gx
from tests import references as ref
from tests.catalogue import OPTIMIZERS, gradient_stream, initial_params
from tests.helpers import assert_trees_close, cast, run, run_reference


def _params():
  return {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}


def test_named_chain_state_is_a_dict_and_matches_the_positional_chain():
  named = gx.chain(clip=gx.clip_by_global_norm(1.0), adam=gx.adam(0.1))
  positional = gx.chain(gx.clip_by_global_norm(1.0), gx.adam(0.1))
  a, _, state_a = run(named, initial_params(), gradient_stream(), jnp.float32)
  b, _, state_b = run(positional, initial_params(), gradient_stream(), jnp.float32)
  assert list(state_a) == ["clip", "adam"]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal(gx.tree_get(state_a, "adam/0/nu/w"), state_b[1][0].nu["w"])


def test_tree_get_paths():
  opt = gx.chain(clip=gx.clip(1.0), adam=gx.adam(1e-3, b1=0.5))
  state = opt.init(_params())
  _, state = opt.update(jax.tree.map(jnp.ones_like, _params()), state, _params())
  np.testing.assert_allclose(gx.tree_get(state, "adam/0/numerator/ema/w"), 0.5)  # Adam's m = (1 - b1) g
  assert int(gx.tree_get(state, ("adam", 0, "count"))) == 1
  assert gx.tree_get(state, "adam/1/count") is None  # a constant learning rate: no count, no record
  with pytest.raises(KeyError, match=r"tree_get\('adam/1/hyperparams/learning_rate'\).*held by the optimizer"):
    gx.tree_get(state, "adam/1/hyperparams/learning_rate")
  with pytest.raises(KeyError, match=r"no 'nux' at adam/0 \(ScaleByRmsState\); available: \['count', 'hyperparams', 'nu'"):
    gx.tree_get(state, "adam/0/nux")


def test_tree_set_replaces_without_rebuilding_and_checks():
  opt = gx.adam(0.1)
  params = _params()
  state = opt.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  # pretend 100 steps happened: bias correction must follow the new count
  state = gx.tree_set(state, "0/count", jnp.asarray(100, jnp.int32))
  assert state[0].numerator.count is None  # the first moment's corrections follow the same count
  updates, new_state = jax.jit(opt.update)(grads, state, params)
  m = 0.1  # (1 - b1) * g from a zero start
  v = 0.001
  expected = -0.1 * (m / (1 - 0.9 ** 101)) / (np.sqrt(v / (1 - 0.999 ** 101)) + 1e-8)
  np.testing.assert_allclose(updates["w"], expected, rtol=1e-5)
  assert int(state[0].count) == 100 and state is not new_state
  with pytest.raises(ValueError, match=r"tree_set\('0/nu/w'\): leaf 0 has shape \(3,\)"):
    gx.tree_set(state, "0/nu/w", jnp.zeros(3))
  with pytest.raises(ValueError, match=r"dtype int32"):
    gx.tree_set(state, "0/count", jnp.asarray(1.0))  # float for an int32 counter


def test_hyperparams_lists_every_current_value():
  schedule = gx.schedules.linear(1.0, 0.0, 10)
  opt = gx.chain(gx.clip_by_global_norm(2.0), gx.trace(decay=gx.schedules.linear(0.5, 0.9, 4)),
                 gx.scale_by_learning_rate(schedule))
  params = _params()
  state = opt.init(params)
  for _ in range(3):
    _, state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
  values = {k: float(v) for k, v in gx.hyperparams(state).items()}
  assert values == pytest.approx({"1/decay": 0.5 + 0.4 * 2 / 4, "2/learning_rate": 0.8})  # not the constant


def test_hyperparams_of_adam_names_both_betas():
  assert gx.hyperparams(gx.adam(1e-3).init(_params())) == {}  # constants: the optimizer holds them
  names = set(gx.hyperparams(gx.inject(gx.adam(1e-3)).init(_params())))
  assert names == {"0/decay", "0/eps", "0/eps_root", "0/numerator/decay", "1/learning_rate"}


@pytest.mark.parametrize("case", [c for c in OPTIMIZERS], ids=str)
def test_eval_shape_of_init_for_every_optimizer(case):
  params = cast(initial_params(), jnp.bfloat16)
  abstract = jax.eval_shape(case.make().init, params)
  concrete = case.make().init(params)
  assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
  assert [(a.shape, a.dtype) for a in jax.tree.leaves(abstract)] == \
      [(c.shape, c.dtype) for c in jax.tree.leaves(concrete)]


@pytest.mark.parametrize("make", [
    lambda: gx.adam(1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32),
    lambda: gx.adamw(1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32),
    lambda: gx.nadam(1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32),
    lambda: gx.radam(1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32),
    lambda: gx.adamax(1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32),
    lambda: gx.lion(1e-3, mu_dtype=jnp.float32),
])
def test_bfloat16_params_with_float32_moments(make):
  """Moments stored in float32 track the all-float32 run more closely than bf16 moments."""
  stream = [cast(cast(g, jnp.bfloat16), jnp.float32) for g in gradient_stream(steps=6)]
  params = cast(cast(initial_params(), jnp.bfloat16), jnp.float32)
  mixed, _, state = run(make(), params, stream, jnp.bfloat16)
  full, _, _ = run(make(), params, stream, jnp.float32)
  moments = [x for x in jax.tree.leaves(state) if x.ndim > 0]
  assert moments and all(x.dtype == jnp.float32 for x in moments)
  for a, b in zip(jax.tree.leaves(mixed[-1]), jax.tree.leaves(full[-1])):
    assert a.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=2e-2, atol=1e-5)


def _bfloat16(x):
  """A moment as bfloat16 stores it (in float64 again)."""
  return np.asarray(x, ml_dtypes.bfloat16).astype(np.float64)


_BF16 = jnp.bfloat16


@pytest.mark.parametrize("make,reference", [
    pytest.param(lambda: gx.scale_by_adam(0.8, 0.9, eps=0.3, mu_dtype=_BF16, nu_dtype=_BF16),
                 lambda: ref.Adam(0.8, 0.9, 0.3, store=_bfloat16), id="adam"),
    pytest.param(lambda: gx.scale_by_adam(0.8, 0.9, eps=0.3, amsgrad=True, mu_dtype=_BF16, nu_dtype=_BF16),
                 lambda: ref.Adam(0.8, 0.9, 0.3, amsgrad=True, store=_bfloat16), id="adam_amsgrad"),
    pytest.param(lambda: gx.scale_by_nadam(0.8, 0.9, eps=0.3, momentum_decay=0.1, mu_dtype=_BF16, nu_dtype=_BF16),
                 lambda: ref.NAdam(0.8, 0.9, 0.3, 0.1, store=_bfloat16), id="nadam"),
    pytest.param(lambda: gx.scale_by_radam(0.8, 0.9, eps=0.3, mu_dtype=_BF16, nu_dtype=_BF16),
                 lambda: ref.RAdam(0.8, 0.9, 0.3, store=_bfloat16), id="radam"),
    pytest.param(lambda: gx.scale_by_adamax(0.8, 0.9, eps=0.3, mu_dtype=_BF16, nu_dtype=_BF16),
                 lambda: ref.Adamax(0.8, 0.9, 0.3, store=_bfloat16), id="adamax"),
    pytest.param(lambda: gx.scale_by_lion(0.8, 0.9, mu_dtype=_BF16),
                 lambda: ref.Lion(0.8, 0.9, store=_bfloat16), id="lion"),
    pytest.param(lambda: gx.ema(0.7, dtype=_BF16), lambda: ref.Ema(0.7, store=_bfloat16), id="ema"),
    pytest.param(lambda: gx.scale_by_rms(0.9, eps=0.3, eps_root=0.1, centered=True, dtype=_BF16),
                 lambda: ref.RMSProp(0.9, 0.3, centered=True, eps_root=0.1, store=_bfloat16), id="rms_centered"),
])
def test_bfloat16_moments_are_used_as_stored(make, reference):
  """float32 parameters, bfloat16 moments: the update is computed from the moments as stored (rounded).

  Using the unrounded float32 moments instead would differ by about 2^-9 relative.
  """
  stream, params = gradient_stream(steps=6), initial_params()
  expected, _ = run_reference(reference(), params, stream)
  for jit in (False, True):
    got, _, state = run(make(), params, stream, jnp.float32, jit=jit)
    assert {x.dtype for x in jax.tree.leaves(state) if x.ndim > 0} == {jnp.dtype(_BF16)}
    for step, (g, e) in enumerate(zip(got, expected)):
      assert_trees_close(g, e, rtol=1e-5, atol=1e-6, what=f"jit={jit} step {step}")


def test_float16_params_with_zero_gradients_never_nan():
  params = cast(initial_params(), jnp.float16)
  for case in OPTIMIZERS:
    opt = case.make()
    state = opt.init(params)
    for _ in range(3):
      updates, state = opt.update(jax.tree.map(jnp.zeros_like, params), state, params)
      assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), case.id
    # tiny gradients that underflow when squared in float16
    updates, state = opt.update(jax.tree.map(lambda p: jnp.full_like(p, 1e-4), params), state, params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), case.id


@pytest.mark.parametrize("name", ["sgd_momentum", "rmsprop", "rmsprop_momentum", "adagrad", "adadelta", "adam",
                                  "adamw", "adamax", "lamb", "lars", "lion", "amsgrad"])
def test_state_holds_the_buffers_optax_holds(name):
  """No bookkeeping buffer beyond optax's: each crosses every jitted step's boundary twice."""
  optax = pytest.importorskip("optax")
  make = {"sgd_momentum": lambda m: m.sgd(0.1, momentum=0.9), "rmsprop": lambda m: m.rmsprop(1e-3),
          "rmsprop_momentum": lambda m: m.rmsprop(1e-3, momentum=0.9), "adagrad": lambda m: m.adagrad(0.1),
          "adadelta": lambda m: m.adadelta(1.0), "adam": lambda m: m.adam(1e-3), "adamw": lambda m: m.adamw(1e-3),
          "adamax": lambda m: m.adamax(1e-3), "lamb": lambda m: m.lamb(1e-3), "lars": lambda m: m.lars(1e-3),
          "lion": lambda m: m.lion(1e-4), "amsgrad": lambda m: m.amsgrad(1e-3)}[name]
  params = _params()
  with jax.numpy_dtype_promotion("standard"):
    theirs = [(x.shape, x.dtype) for x in jax.tree.leaves(make(optax).init(params))]
  ours = [(x.shape, x.dtype) for x in jax.tree.leaves(make(gx).init(params))]
  assert sorted(ours, key=str) == sorted(theirs, key=str)


def test_a_nested_stage_counts_with_its_parent():
  """RMSprop without bias correction keeps no count; given a bias-corrected numerator it keeps one, which the
  numerator uses (its own is None), also with the optimizer passed into a jitted step as an argument."""
  params = {"w": jnp.asarray([1.0, -2.0])}
  grads = [{"w": jnp.asarray([0.5, 1.5])}, {"w": jnp.asarray([-1.0, 0.25])}, {"w": jnp.zeros(2)}]
  assert gx.scale_by_rms(0.9).init(params).count is None
  opt = gx.scale_by_rms(0.9, numerator=gx.ema(0.8, debias=True))
  state = opt.init(params)
  assert int(state.count) == 0 and state.numerator.count is None
  step = jax.jit(lambda opt, g, s: opt.update(g, s))
  m = v = np.zeros(2)
  for t, g in enumerate(grads, start=1):
    updates, state = step(opt, g, state)
    g = np.asarray(g["w"], np.float64)
    m, v = 0.8 * m + 0.2 * g, 0.9 * v + 0.1 * g * g
    expected = np.divide(m / (1 - 0.8 ** t), np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)
  assert int(state.count) == 3 and state.numerator.count is None


def test_a_count_less_state_given_to_a_scheduled_transform_is_refused():
  params = {"w": jnp.ones(3)}
  state = gx.scale_by_learning_rate(0.1).init(params)
  assert state.count is None
  scheduled = gx.scale_by_learning_rate(gx.schedules.linear(0.1, 0.0, 10))
  with pytest.raises(ValueError, match=r"scale_by_learning_rate: the state has no count.*schedule.*init\(\)"):
    scheduled.update(params, state)
