"""Interoperability with the JAX ecosystem: Flax (linen and NNX), Equinox and optax.

Every test trains a tiny model for a few steps through the third-party API and
compares the resulting parameters (and, where cheap, the optimizer state)
against an independent run: a plain ``jax.jit`` loop with the same gradxform
optimizer, and/or optax's equivalent optimizer. ``optax.adam(lr)`` and
``gx.adam(lr)`` compute the same update up to float32 rounding, so the
comparisons use ``rtol=1e-5, atol=1e-6``.

The test suite runs with ``jax_numpy_dtype_promotion="strict"`` (see
``conftest.py``). optax's own Adam does not run under strict promotion
(``1 - b1 ** count`` mixes a Python float with an int32 count), so every
computation that *executes optax code* runs inside
``jax.numpy_dtype_promotion("standard")``; code paths that only run
gradxform (and Flax/Equinox) stay strict.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

RTOL = 1e-5
ATOL = 1e-6
STEPS = 5


# --------------------------------------------------------------------------- helpers


def standard_promotion():
  """optax's Adam needs standard dtype promotion (see the module docstring)."""
  return jax.numpy_dtype_promotion("standard")


def assert_trees_close(actual, expected, rtol=RTOL, atol=ATOL):
  """Same structure, and every leaf close (the failing leaf is named)."""
  a_leaves, a_def = jax.tree_util.tree_flatten_with_path(actual)
  e_leaves, e_def = jax.tree_util.tree_flatten_with_path(expected)
  assert a_def == e_def, f"tree structures differ:\n{a_def}\n{e_def}"
  assert a_leaves, "empty trees"
  for (path, a), (_, e) in zip(a_leaves, e_leaves):
    a, e = np.asarray(a), np.asarray(e)
    assert a.dtype == e.dtype, f"{jax.tree_util.keystr(path)}: dtype {a.dtype} != {e.dtype}"
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def assert_trees_differ(a, b, min_diff=1e-4):
  """At least one leaf moved by more than ``min_diff`` (guards against vacuous comparisons)."""
  diffs = [float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
  assert max(diffs) > min_diff, f"trees are (almost) equal: max |diff| = {max(diffs)}"


def data(n=16, d_in=4, d_out=3):
  x = jax.random.normal(jax.random.PRNGKey(1), (n, d_in), jnp.float32)
  y = jax.random.normal(jax.random.PRNGKey(2), (n, d_out), jnp.float32)
  return x, y


def mse(pred, y):
  return jnp.mean(jnp.square(pred - y))


def train_plain(tx, params, loss_fn, steps=STEPS, promotion=None):
  """The reference: a plain ``jax.jit`` loop ``grads -> tx.update -> gx.apply_updates``.

  ``loss_fn(params) -> scalar``. Returns ``(params, opt_state, losses)``.
  """

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params)
    return gx.apply_updates(params, updates), state, loss

  losses = []
  with promotion or contextlib.nullcontext():
    state = tx.init(params)
    for _ in range(steps):
      params, state, loss = step(params, state)
      losses.append(float(loss))
  return params, state, losses


def linear_params(d_in=4, d_out=3, seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return {"w": jax.random.normal(k1, (d_in, d_out), jnp.float32),
          "b": 0.1 * jax.random.normal(k2, (d_out,), jnp.float32)}


def linear_loss(x, y):
  return lambda p: mse(x @ p["w"] + p["b"], y)


# --------------------------------------------------------------------------- Flax linen


def test_flax_linen_train_state_matches_plain_loop_and_does_not_recompile():
  nn = pytest.importorskip("flax.linen")
  train_state = pytest.importorskip("flax.training.train_state")
  optax = pytest.importorskip("optax")

  x, y = data()
  model = nn.Dense(3)
  params0 = model.init(jax.random.PRNGKey(0), x)["params"]
  traces = []

  @jax.jit
  def train_step(state, x, y):
    traces.append(1)  # runs once per trace, not per call

    def loss_fn(params):
      return mse(state.apply_fn({"params": params}, x), y)

    grads = jax.grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads)

  state = train_state.TrainState.create(
      apply_fn=model.apply, params=params0, tx=gx.adamw(1e-2, weight_decay=0.1))
  for _ in range(STEPS):
    state = train_step(state, x, y)
  assert len(traces) == 1
  assert int(state.step) == STEPS

  loss_fn = lambda p: mse(model.apply({"params": p}, x), y)
  expected, expected_state, _ = train_plain(gx.adamw(1e-2, weight_decay=0.1), params0, loss_fn)
  assert_trees_differ(state.params, params0)
  assert_trees_close(state.params, expected)
  assert_trees_close(state.opt_state, expected_state)

  # optax's AdamW with the same hyperparameters (optax's default weight decay
  # differs, so it is given explicitly).
  with_optax, _, _ = train_plain(optax.adamw(1e-2, weight_decay=0.1), params0, loss_fn,
                                 promotion=standard_promotion())
  assert_trees_close(state.params, with_optax)

  # TrainState keeps tx as a static (non-pytree) field: an equal, freshly
  # built optimizer must hit the jit cache.
  state2 = train_state.TrainState.create(
      apply_fn=model.apply, params=params0, tx=gx.adamw(1e-2, weight_decay=0.1))
  assert state2.tx is not state.tx and state2.tx == state.tx
  assert hash(state2.tx) == hash(state.tx)
  state2 = train_step(state2, x, y)
  assert len(traces) == 1, "an equal gx.adamw(...) in a new TrainState caused a retrace"
  # ... whereas a different learning rate is a different static field.
  state3 = train_state.TrainState.create(
      apply_fn=model.apply, params=params0, tx=gx.adamw(2e-2, weight_decay=0.1))
  assert state3.tx != state.tx
  train_step(state3, x, y)
  assert len(traces) == 2


# --------------------------------------------------------------------------- Flax NNX


def test_flax_nnx_optimizer_matches_plain_loop():
  nnx = pytest.importorskip("flax.nnx")
  optax = pytest.importorskip("optax")

  class MLP(nnx.Module):

    def __init__(self, rngs):
      self.hidden = nnx.Linear(4, 8, rngs=rngs)
      self.out = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
      return self.out(jnp.tanh(self.hidden(x)))

  x, y = data()
  model = MLP(nnx.Rngs(0))
  graphdef, params0 = nnx.split(model, nnx.Param)
  params0 = jax.tree.map(jnp.copy, params0)  # a snapshot, independent of the model
  pure0 = nnx.to_pure_dict(params0)

  optimizer = nnx.Optimizer(model, gx.adam(1e-2), wrt=nnx.Param)
  traces = []

  @nnx.jit
  def train_step(model, optimizer, x, y):
    traces.append(1)
    grads = nnx.grad(lambda m: mse(m(x), y))(model)
    optimizer.update(model, grads)  # flax >= 0.11: update(model, grads)

  for _ in range(STEPS):
    train_step(model, optimizer, x, y)
  assert len(traces) == 1
  assert int(optimizer.step[...]) == STEPS

  def loss_fn(pure):
    params = jax.tree.map(lambda x: x, params0)
    nnx.replace_by_pure_dict(params, pure)
    return mse(nnx.merge(graphdef, params)(x), y)

  expected, _, losses = train_plain(gx.adam(1e-2), pure0, loss_fn)
  with_optax, _, _ = train_plain(optax.adam(1e-2), pure0, loss_fn, promotion=standard_promotion())
  assert losses[-1] < losses[0]

  trained = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert_trees_differ(trained, pure0)
  assert_trees_close(trained, expected)
  assert_trees_close(trained, with_optax)

  # nnx.Optimizer keeps tx as a static attribute (in the graphdef): an equal,
  # freshly built optimizer must hit nnx.jit's cache, a different one must not.
  train_step(model, nnx.Optimizer(model, gx.adam(1e-2), wrt=nnx.Param), x, y)
  assert len(traces) == 1, "an equal gx.adam(...) in a new nnx.Optimizer caused a retrace"
  train_step(model, nnx.Optimizer(model, gx.adam(2e-2), wrt=nnx.Param), x, y)
  assert len(traces) == 2


# --------------------------------------------------------------------------- Equinox


def test_equinox_filter_jit_matches_plain_loop_and_optax():
  eqx = pytest.importorskip("equinox")
  optax = pytest.importorskip("optax")

  x, y = data()
  model0 = eqx.nn.MLP(4, 3, 8, 2, activation=jnp.tanh, key=jax.random.PRNGKey(0))
  tx = gx.adam(1e-2)

  def make_step(apply_updates, traces):

    @eqx.filter_jit
    def step(model, opt_state, x, y):
      traces.append(1)
      grads = eqx.filter_grad(lambda m: mse(jax.vmap(m)(x), y))(model)
      updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
      return apply_updates(model, updates), opt_state

    return step

  results = {}
  for name, apply_updates in [("eqx.apply_updates", eqx.apply_updates),
                              ("gx.apply_updates", gx.apply_updates)]:
    traces = []
    step = make_step(apply_updates, traces)
    model, opt_state = model0, tx.init(eqx.filter(model0, eqx.is_array))
    for _ in range(STEPS):
      model, opt_state = step(model, opt_state, x, y)
    assert len(traces) == 1, name
    assert int(opt_state[0].count) == STEPS
    results[name] = eqx.filter(model, eqx.is_array)

  # Reference: partition once, then a plain jax.jit loop over the array leaves.
  params0, static = eqx.partition(model0, eqx.is_array)
  loss_fn = lambda p: mse(jax.vmap(eqx.combine(p, static))(x), y)
  expected, _, _ = train_plain(tx, params0, loss_fn)
  with_optax, _, _ = train_plain(optax.adam(1e-2), params0, loss_fn, promotion=standard_promotion())

  assert_trees_differ(results["eqx.apply_updates"], params0)
  for name, params in results.items():
    assert_trees_close(params, expected)
    assert_trees_close(params, with_optax)


# --------------------------------------------------------------------------- optax


def _optax_state_moments(state):
  """(mu, nu) of the ScaleByAdamState inside an optax adam (or chain ending in one)."""
  optax = pytest.importorskip("optax")
  for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState)):
    if isinstance(s, optax.ScaleByAdamState):
      return s.mu, s.nu
  raise AssertionError("no ScaleByAdamState in the optax state")


def _gx_state_moments(state):
  """(mu, nu) of the ScaleByRmsState of gx.scale_by_adam inside a (nested) state."""
  for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, gx.ScaleByRmsState)):
    if isinstance(s, gx.ScaleByRmsState):
      return s.numerator.ema, s.nu
  raise AssertionError("no ScaleByRmsState in the gx state")


def _grad_norm(loss_fn, params):
  return float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(jax.grad(loss_fn)(params)))))


# The gradient norm of the linear problem below is about 3.8 at the start.
CLIP_CASES = pytest.mark.parametrize("max_norm", [100.0, 1.0],
                                     ids=["norm-below-threshold", "clipping-active"])


@CLIP_CASES
def test_optax_stage_inside_gx_chain(max_norm):
  optax = pytest.importorskip("optax")
  x, y = data()
  params0 = linear_params()
  loss_fn = linear_loss(x, y)
  assert (_grad_norm(loss_fn, params0) > max_norm) == (max_norm == 1.0)  # the case is what its id says

  mixed = gx.chain(optax.clip_by_global_norm(max_norm), gx.adam(1e-2))
  reference = optax.chain(optax.clip_by_global_norm(max_norm), optax.adam(1e-2))
  # optax's clip runs fine under strict promotion, so the mixed chain stays strict.
  got, got_state, _ = train_plain(mixed, params0, loss_fn)
  expected, expected_state, _ = train_plain(reference, params0, loss_fn,
                                            promotion=standard_promotion())
  assert_trees_differ(got, params0)
  assert_trees_close(got, expected)
  assert_trees_close(_gx_state_moments(got_state), _optax_state_moments(expected_state))
  # The optax stage's state is optax's own, untouched.
  assert isinstance(got_state, tuple) and len(got_state) == 2
  assert jax.tree.structure(got_state[0]) == jax.tree.structure(expected_state[0])


@CLIP_CASES
def test_gx_clip_inside_optax_chain(max_norm):
  optax = pytest.importorskip("optax")
  x, y = data()
  params0 = linear_params()
  loss_fn = linear_loss(x, y)
  assert (_grad_norm(loss_fn, params0) > max_norm) == (max_norm == 1.0)

  # gx.clip_by_global_norm divides by (norm + 1e-6) as torch: a relative
  # difference of at most 1e-6 from optax's, well inside RTOL.
  for opt_tail in [lambda: optax.adam(1e-2), lambda: optax.sgd(0.05)]:
    mixed = optax.chain(gx.clip_by_global_norm(max_norm), opt_tail())
    reference = optax.chain(optax.clip_by_global_norm(max_norm), opt_tail())
    got, _, _ = train_plain(mixed, params0, loss_fn, promotion=standard_promotion())
    expected, _, _ = train_plain(reference, params0, loss_fn, promotion=standard_promotion())
    assert_trees_differ(got, params0)
    assert_trees_close(got, expected)


def test_gx_scale_by_adam_inside_optax_chain():
  optax = pytest.importorskip("optax")
  x, y = data()
  params0 = linear_params()
  loss_fn = linear_loss(x, y)

  mixed = optax.chain(gx.scale_by_adam(), optax.scale(-1e-2))
  got, got_state, _ = train_plain(mixed, params0, loss_fn, promotion=standard_promotion())
  expected, expected_state, _ = train_plain(optax.adam(1e-2), params0, loss_fn,
                                            promotion=standard_promotion())
  assert_trees_differ(got, params0)
  assert_trees_close(got, expected)
  assert_trees_close(_gx_state_moments(got_state), _optax_state_moments(expected_state))


def test_gx_adam_equals_optax_adam():
  optax = pytest.importorskip("optax")
  x, y = data()
  params0 = linear_params()
  loss_fn = linear_loss(x, y)
  got, got_state, _ = train_plain(gx.adam(1e-2), params0, loss_fn)
  expected, expected_state, _ = train_plain(optax.adam(1e-2), params0, loss_fn,
                                            promotion=standard_promotion())
  assert_trees_close(got, expected)
  assert_trees_close(_gx_state_moments(got_state), _optax_state_moments(expected_state))


def _optax_wrappers():
  optax = pytest.importorskip("optax")
  mask = {"w": True, "b": False}
  labels = {"w": "adam", "b": "sgd"}
  return {
      "MultiSteps": lambda adam, sgd: optax.MultiSteps(adam(1e-2), every_k_schedule=2),
      "masked": lambda adam, sgd: optax.masked(adam(1e-2), mask),
      "multi_transform": lambda adam, sgd: optax.multi_transform(
          {"adam": adam(1e-2), "sgd": sgd(0.1, momentum=0.9)}, labels),
      "apply_if_finite": lambda adam, sgd: optax.apply_if_finite(adam(1e-2), 3),
  }


@pytest.mark.parametrize("wrapper", ["MultiSteps", "masked", "multi_transform", "apply_if_finite"])
def test_gx_optimizer_inside_optax_wrappers(wrapper):
  """optax's wrappers take a GradientTransformation; a gx optimizer must do."""
  optax = pytest.importorskip("optax")
  x, y = data()
  params0 = linear_params()
  loss_fn = linear_loss(x, y)
  make = _optax_wrappers()[wrapper]
  got, _, _ = train_plain(make(gx.adam, gx.sgd), params0, loss_fn, promotion=standard_promotion())
  expected, _, _ = train_plain(make(optax.adam, optax.sgd), params0, loss_fn,
                               promotion=standard_promotion())
  assert_trees_differ(got, params0)
  assert_trees_close(got, expected)


# --------------------------------------------------------------------------- hyperparameters as jit arguments


def test_learning_rate_change_does_not_recompile():
  optax = pytest.importorskip("optax")
  x, y = data()
  params0 = linear_params()
  loss_fn = linear_loss(x, y)
  traces = []

  @jax.jit
  def step(opt, params, state):
    traces.append(1)
    grads = jax.grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params)
    return gx.apply_updates(params, updates), state

  results = {}
  for lr in (1e-2, 3e-2):
    opt = gx.adam(lr)
    params, state = params0, opt.init(params0)
    for _ in range(STEPS):
      params, state = step(opt, params, state)
    results[lr] = params
    # The optimizer (an argument) holds the learning rate; the state carries no buffer for it.
    assert len(state[1].hyperparams) == 0 and jax.tree.structure(state) == jax.tree.structure(opt.init(params0))
  assert len(traces) == 1, "changing a Python-float learning rate recompiled the step"

  assert_trees_differ(results[1e-2], results[3e-2])
  for lr, params in results.items():
    expected, _, _ = train_plain(optax.adam(lr), params0, loss_fn, promotion=standard_promotion())
    assert_trees_close(params, expected)


# --------------------------------------------------------------------------- packed execution


def test_flax_linen_train_state_on_packed_params():
  """TrainState with packed params: apply_fn unpacks; same numbers as the per-leaf TrainState."""
  nn = pytest.importorskip("flax.linen")
  train_state = pytest.importorskip("flax.training.train_state")

  class MLP(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(jnp.tanh(nn.Dense(8)(x)))

  x, y = data()
  model = MLP()
  params0 = model.init(jax.random.PRNGKey(0), x)["params"]
  packer = gx.Packer(params0)
  make_tx = lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-2, weight_decay=0.1))

  @jax.jit
  def train_step(state, x, y):
    grads = jax.grad(lambda p: mse(state.apply_fn(p, x), y))(state.params)
    return state.apply_gradients(grads=grads)

  tree_state = train_state.TrainState.create(
      apply_fn=lambda p, x: model.apply({"params": p}, x), params=params0, tx=make_tx())
  packed_state = train_state.TrainState.create(
      apply_fn=lambda flat, x: model.apply({"params": packer.unpack(flat)}, x),
      params=packer.pack(params0), tx=gx.packed(make_tx(), packer))
  assert set(packed_state.params) == {"float32"}
  for _ in range(STEPS):
    tree_state = train_step(tree_state, x, y)
    packed_state = train_step(packed_state, x, y)
  assert_trees_differ(tree_state.params, params0)
  assert_trees_close(packer.unpack(packed_state.params), tree_state.params)


def test_flax_nnx_optimizer_with_packed_state():
  """nnx.Optimizer passes trees of nnx state: gx.packed(opt) keeps the moments in one buffer."""
  nnx = pytest.importorskip("flax.nnx")

  def make():
    model = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), jnp.tanh, nnx.Linear(8, 3, rngs=nnx.Rngs(1)))
    return model

  x, y = data()

  @nnx.jit
  def train_step(model, optimizer, x, y):
    grads = nnx.grad(lambda m: mse(m(x), y))(model)
    optimizer.update(model, grads)

  models = make(), make()
  optimizers = (nnx.Optimizer(models[0], gx.adam(1e-2), wrt=nnx.Param),
                nnx.Optimizer(models[1], gx.packed(gx.adam(1e-2)), wrt=nnx.Param))
  for _ in range(STEPS):
    for model, optimizer in zip(models, optimizers):
      train_step(model, optimizer, x, y)
  nu = [leaf for leaf in jax.tree.leaves(nnx.state(optimizers[1], nnx.OptState)) if jnp.ndim(leaf) == 1]
  assert any(leaf.shape == (4 * 8 + 8 + 8 * 3 + 3,) for leaf in nu)  # one packed buffer per moment
  trained = [nnx.to_pure_dict(nnx.state(m, nnx.Param)) for m in models]
  assert_trees_differ(trained[0], nnx.to_pure_dict(nnx.state(make(), nnx.Param)))
  assert_trees_close(trained[1], trained[0])
