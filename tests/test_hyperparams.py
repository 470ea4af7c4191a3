"""Optimizers are pytrees whose numeric hyperparameters are leaves.

Consequences proven here: no recompilation when a learning rate changes, a
vmapped population equals its members' separate runs, hypergradients match
finite differences, and hyperparameters keep their own dtype.
"""

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.catalogue import gradient_stream, initial_params
from tests.helpers import assert_trees_close, cast


def _loss(params):
  return jnp.sum((params["w"] - 1.0) ** 2) + jnp.sum(jnp.sin(params["b"]))


def _train(opt, params, steps=5):
  state = opt.init(params)
  for _ in range(steps):
    updates, state = opt.update(jax.grad(_loss)(params), state, params)
    params = gx.apply_updates(params, updates)
  return params, state


def test_changing_learning_rate_does_not_recompile():
  traces = []

  @jax.jit
  def train(opt, params):
    traces.append(1)
    return _train(opt, params)[0]

  params = cast(initial_params(), jnp.float32)
  small = train(gx.adamw(1e-3, weight_decay=0.1), params)
  large = train(gx.adamw(1e-1, weight_decay=0.2), params)
  assert len(traces) == 1
  assert_trees_close(small, _train(gx.adamw(1e-3, weight_decay=0.1), params)[0], 1e-5, 1e-6)
  assert_trees_close(large, _train(gx.adamw(1e-1, weight_decay=0.2), params)[0], 1e-5, 1e-6)


def test_learning_rate_changed_inside_a_state_loop_does_not_recompile():
  """The optimizer object can also be rebuilt each step (e.g. manual decay) and passed in."""
  traces = []

  @jax.jit
  def step(opt, params, state):
    traces.append(1)
    updates, state = opt.update(jax.grad(_loss)(params), state, params)
    return gx.apply_updates(params, updates), state

  params = cast(initial_params(), jnp.float32)
  state = gx.sgd(0.1, momentum=0.9).init(params)
  for k in range(4):
    params, state = step(gx.sgd(0.1 * 0.5 ** k, momentum=0.9), params, state)
  assert len(traces) == 1


def test_options_are_static_and_numbers_are_leaves():
  opt = gx.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
  assert sorted(jax.tree.leaves(opt)) == [1e-4, 0.1, 0.9]
  assert gx.adam(1e-3) == gx.adam(1e-3) and hash(gx.adam(1e-3)) == hash(gx.adam(1e-3))
  assert gx.adam(1e-3) != gx.adam(2e-3)
  assert gx.adam(1e-3) != gx.adam(1e-3, amsgrad=True)


def _members(lrs, b1s):
  return [gx.adam(float(lr), b1=float(b1)) for lr, b1 in zip(lrs, b1s)]


def test_vmap_population_equals_separate_runs():
  lrs = np.array([1e-3, 1e-2, 1e-1, 3e-1], np.float32)
  b1s = np.array([0.5, 0.9, 0.8, 0.0], np.float32)
  params = cast(initial_params(), jnp.float32)
  expected = [_train(member, params)[0] for member in _members(lrs, b1s)]

  # 1. built inside the vmapped function from stacked arrays
  built = jax.jit(jax.vmap(lambda lr, b1: _train(gx.adam(lr, b1=b1), params)[0]))(lrs, b1s)
  # 2. an optimizer whose hyperparameters are stacked arrays, mapped leaf by leaf
  population = gx.adam(jnp.asarray(lrs), b1=jnp.asarray(b1s))
  axes = jax.tree.map(lambda leaf: 0 if jnp.ndim(leaf) else None, population)
  mapped = jax.jit(jax.vmap(_train, in_axes=(axes, None)))(population, params)[0]
  for i, member in enumerate(expected):
    assert_trees_close(jax.tree.map(lambda x: x[i], built), member, 1e-5, 1e-6, f"built member {i}")
    assert_trees_close(jax.tree.map(lambda x: x[i], mapped), member, 1e-5, 1e-6, f"mapped member {i}")


def test_population_state_records_each_members_hyperparameters():
  lrs = jnp.array([0.1, 0.2, 0.3])
  params = cast(initial_params(), jnp.float32)
  _, state = jax.vmap(lambda lr: _train(gx.sgd(lr, momentum=0.9), params, steps=2))(lrs)
  assert len(state[-1].hyperparams) == 0  # constants (each member's optimizer holds its own)
  assert state[0].count is None  # momentum without dampening does not read the step
  # a schedule per member: each member's state records its own value at the last update
  make = lambda lr: gx.sgd(gx.schedules.linear(lr, 0.0, 4), momentum=0.9)
  _, state = jax.vmap(lambda lr: _train(make(lr), params, steps=2))(lrs)
  np.testing.assert_allclose(state[-1].hyperparams["learning_rate"], lrs * 0.75, rtol=1e-6)  # s(1)
  np.testing.assert_array_equal(state[-1].count, [2, 2, 2])


@pytest.mark.parametrize("name", ["learning_rate", "b1"])
def test_hypergradient_matches_finite_difference(name):
  """d(loss after K Adam steps)/d(hyperparameter), by autodiff and by central differences (float64)."""
  with jax.enable_x64(True):
    params = cast(initial_params(), jnp.float64)

    def final_loss(value):
      hp = {"learning_rate": 0.05, "b1": 0.9, name: value}
      return _loss(_train(gx.adam(hp["learning_rate"], b1=hp["b1"]), params, steps=8)[0])

    at = {"learning_rate": 0.05, "b1": 0.9}[name]
    grad = jax.grad(final_loss)(jnp.float64(at))
    h = 1e-6
    fd = (final_loss(at + h) - final_loss(at - h)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    assert abs(float(grad)) > 1e-3  # the hyperparameter matters


def test_momentum_hypergradient_matches_finite_difference():
  with jax.enable_x64(True):
    params = cast(initial_params(), jnp.float64)
    final_loss = lambda mu: _loss(_train(gx.sgd(0.05, momentum=mu, nesterov=True), params, steps=8)[0])
    grad = jax.grad(final_loss)(jnp.float64(0.7))
    fd = (final_loss(0.7 + 1e-6) - final_loss(0.7 - 1e-6)) / 2e-6
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_hyperparameters_keep_their_dtype_with_bfloat16_params():
  params = cast(initial_params(), jnp.bfloat16)
  opt = gx.adam(1e-3, b2=0.999)
  state = opt.init(params)
  injected = gx.inject(opt).init(params)
  assert injected[0].hyperparams["decay"].dtype == jnp.float32
  assert float(injected[0].hyperparams["decay"]) == np.float32(0.999)  # not rounded to 1.0
  for grads in gradient_stream(steps=5):
    updates, state = opt.update(cast(grads, jnp.bfloat16), state, params)
    params = gx.apply_updates(params, updates)
  assert all(x.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
  # v is a real average of g², not a sum (which b2 = 1.0 would give)
  assert float(jnp.max(state[0].nu["w"].astype(jnp.float32))) < 100 * 0.01


def test_state_records_scheduled_hyperparameters_and_no_constants():
  params = cast(initial_params(), jnp.float32)
  decay = gx.schedules.exponential_decay(0.1, 1, 0.5)
  opt = gx.chain(gx.clip_by_global_norm(2.0), gx.adamw(3e-4, weight_decay=decay))
  state = opt.init(params)
  for _ in range(3):
    _, state = opt.update(cast(gradient_stream()[0], jnp.float32), state, params)
  assert len(state[0].hyperparams) == 0 and int(state[0].count) == 3  # the clip counts for its diagnostics
  inner = state[1]
  assert len(inner[2].hyperparams) == 0 and inner[2].count is None  # a constant learning rate: nothing
  np.testing.assert_allclose(inner[1].hyperparams["weight_decay"], 0.025)  # decay(2): the last update's
  assert int(inner[1].count) == 3 and int(inner[0].count) == 3 and inner[0].numerator.count is None
  assert len(jax.tree.leaves(gx.adamw(3e-4, weight_decay=0.1).init(params))) == 1 + 2 * len(
      jax.tree.leaves(params))  # one count, m and v: as optax.adamw


def test_abstract_init_with_eval_shape():
  params = cast(initial_params(), jnp.float32)
  for opt in [gx.adam(1e-3), gx.nadam(1e-3), gx.sgd(0.1, momentum=0.9), gx.rmsprop(1e-3, centered=True)]:
    abstract = jax.eval_shape(opt.init, params)
    concrete = opt.init(params)
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    for a, c in zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete)):
      assert (a.shape, a.dtype) == (c.shape, c.dtype)


def test_apply_updates_keeps_dtype_and_skips_none():
  params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
  updates = {"a": jnp.full(3, 0.5, jnp.float32), "b": None}
  new = gx.apply_updates(params, updates)
  assert new["a"].dtype == jnp.bfloat16 and float(new["a"][0]) == 1.5
  assert new["b"] is params["b"]


def test_hyperparams_flatten_in_name_order_and_round_trip():
  """The record is a pytree flattened in sorted name order (its static part formed once, at construction)."""
  h = gx.Hyperparams({"b": 1.0, "a": 2.0}, inputs=["a"])
  leaves, treedef = jax.tree.flatten(h)
  assert leaves == [2.0, 1.0]
  assert [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(h)[0]] == ["['a']", "['b']"]
  back = jax.tree.unflatten(treedef, [3.0, 4.0])
  assert dict(back) == {"a": 3.0, "b": 4.0} and back.inputs == {"a"}
  back["a"] = 5.0  # an input: written (as an array)
  assert float(back["a"]) == 5.0 and jax.tree.structure(back) == treedef
  with pytest.raises(TypeError, match="is a record, not an input"):
    back["b"] = 1.0
  assert pickle.loads(pickle.dumps(back)).inputs == {"a"}


def test_optimizer_comparison_key_is_kept_and_not_copied():
  """An optimizer's hash and equality (jit hashes one held as a static field at every call) are formed
  once; a copy or unpickled optimizer forms its own, so arrays keep comparing by identity."""
  a = gx.adam(1e-3)
  assert a == gx.adam(1e-3) and hash(a) == hash(gx.adam(1e-3)) and a != gx.adam(2e-3)
  assert copy.deepcopy(a) == a and pickle.loads(pickle.dumps(a)) == a
  x = jnp.ones(())
  b = gx.adam(x)
  assert b == gx.adam(x) and b != gx.adam(jnp.ones(()))
  assert copy.deepcopy(b) != b  # a new array
  assert copy.copy(b) == b  # the same array
