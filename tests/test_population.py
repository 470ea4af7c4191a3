"""Populations: one vmapped, jitted step for many hyperparameter settings.

Proven here: each member equals its own separate run (params and state), with
shared or per-member batches and starts; changing hyperparameters, and the
exploit/perturb steps of population-based training, never recompile the step;
and the single-device parts of the sharding helpers (which state leaves are
per-parameter, which dimension ZeRO splits). The multi-device checks are in
``tests/test_sharding.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import gradxform as gx
from tests.helpers import compile_counter
from tests.helpers import assert_trees_close

RTOL, ATOL = 2e-6, 1e-7  # float32: vmap may reorder a sum, nothing more


def _params():
  rng = np.random.default_rng(0)
  return {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
          "b": jnp.asarray(rng.normal(size=3), jnp.float32)}


def _batches(steps, rng=1):
  rng = np.random.default_rng(rng)
  x = jnp.asarray(rng.normal(size=(steps, 8, 5)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(steps, 8, 3)), jnp.float32)
  return x, y


def _loss(params, batch):
  x, y = batch
  return jnp.mean((jnp.tanh(x @ params["w"] + params["b"]) - y) ** 2)


def _separate(opt, params, batches):
  """The reference: one optimizer alone, step by step, no vmap, no jit."""
  state = opt.init(params)
  losses = []
  for t in range(batches[0].shape[0]):
    loss, grads = jax.value_and_grad(_loss)(params, (batches[0][t], batches[1][t]))
    updates, state = opt.update(grads, state, params)
    params = gx.apply_updates(params, updates)
    losses.append(loss)
  return params, state, jnp.stack(losses)


def _member(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


LRS = [1e-3, 1e-2, 1e-1, 3e-1]
B1S = [0.5, 0.9, 0.8, 0.0]


def test_each_member_equals_its_separate_run():
  pop = gx.Population(lambda lr, b1: gx.adam(lr, b1=b1), {"lr": LRS, "b1": B1S})
  params, state = pop.init(_params())
  batches = _batches(6)
  step = pop.step(_loss)
  losses = []
  for t in range(6):
    params, state, loss = step(pop.hyperparams, params, state, (batches[0][t], batches[1][t]))
    losses.append(loss)
  for i, (lr, b1) in enumerate(zip(LRS, B1S)):
    want_params, want_state, want_losses = _separate(gx.adam(lr, b1=b1), _params(), batches)
    assert_trees_close(_member(params, i), want_params, RTOL, ATOL, f"params of member {i}")
    assert_trees_close(_member(state, i), want_state, RTOL, ATOL, f"state of member {i}")
    np.testing.assert_allclose(np.stack(losses)[:, i], want_losses, RTOL, ATOL)
  assert not np.allclose(params["w"][0], params["w"][2])  # the settings made a difference


def test_train_is_the_steps_in_one_program():
  pop = gx.Population(lambda lr: gx.sgd(lr, momentum=0.9, nesterov=True), {"lr": [0.01, 0.1, 0.3]})
  params0, state0 = pop.init(_params())
  batches = _batches(5)
  params, state, losses = pop.train(_loss)(pop.hyperparams, params0, state0, batches)
  assert losses.shape == (5, 3)
  step = pop.step(_loss)
  p, s = params0, state0
  for t in range(5):
    p, s, loss = step(pop.hyperparams, p, s, (batches[0][t], batches[1][t]))
    np.testing.assert_allclose(losses[t], loss, RTOL, ATOL)
  assert_trees_close((params, state), (p, s), RTOL, ATOL, "train vs step")


def test_aux_outputs_donation_and_member():
  pop = gx.Population(lambda lr: gx.rmsprop(lr, momentum=0.5), {"lr": [1e-3, 1e-2]})
  params, state = pop.init(_params())
  batch = (_batches(1)[0][0], _batches(1)[1][0])
  aux_loss = lambda p, b: (_loss(p, b), jnp.sum(p["w"]))
  step = pop.step(aux_loss, has_aux=True, donate=True)
  new_params, new_state, (losses, sums) = step(pop.hyperparams, params, state, batch)
  assert params["w"].is_deleted() and not new_params["w"].is_deleted()  # the buffers were reused
  np.testing.assert_allclose(sums, jnp.sum(jnp.broadcast_to(_params()["w"], (2, 5, 3)), axis=(1, 2)), 1e-6)
  for i in range(2):  # member(i) is the optimizer alone, with the same state structure
    opt = pop.member(i)
    updates, want_state = opt.update(jax.grad(_loss)(_params(), batch), opt.init(_params()), _params())
    assert_trees_close(_member(new_params, i), gx.apply_updates(_params(), updates), RTOL, ATOL, str(i))
    assert_trees_close(_member(new_state, i), want_state, RTOL, ATOL, str(i))
    np.testing.assert_allclose(losses[i], _loss(_params(), batch), RTOL)


def test_literal_zero_momentum_member_equals_plain_sgd():
  """In the population momentum is traced, so a 0 keeps the trace stage; sgd(lr) alone drops it."""
  pop = gx.Population(lambda lr, mu: gx.sgd(lr, momentum=mu), {"lr": [0.1, 0.1], "mu": [0.0, 0.9]})
  params, _, _ = pop.train(_loss)(pop.hyperparams, *pop.init(_params()), _batches(4))
  for i, opt in enumerate([gx.sgd(0.1), gx.sgd(0.1, momentum=0.9)]):
    assert_trees_close(_member(params, i), _separate(opt, _params(), _batches(4))[0], RTOL, ATOL, str(i))


def test_scheduled_hyperparameters_and_per_member_starts_and_batches():
  """Sweep a schedule's peak; each member has its own initial params and its own batches."""
  peaks = [0.05, 0.2, 0.5]
  factory = lambda peak: gx.adamw(gx.schedules.warmup_cosine_decay(0.0, peak, 2, 8), weight_decay=0.1)
  pop = gx.Population(factory, {"peak": peaks})
  starts = jax.vmap(lambda k: jax.tree.map(lambda p: p + jax.random.normal(k, p.shape), _params()))(
      jax.random.split(jax.random.key(0), 3))
  batches = [_batches(5, rng=10 + i) for i in range(3)]
  stacked = tuple(jnp.stack([b[j] for b in batches], axis=1) for j in range(2))  # (steps, members, ...)
  params, state = pop.init(starts, stacked=True)
  params, state, losses = pop.train(_loss, shared_batch=False)(pop.hyperparams, params, state, stacked)
  for i, peak in enumerate(peaks):
    want_params, want_state, want_losses = _separate(factory(peak), _member(starts, i), batches[i])
    assert_trees_close(_member(params, i), want_params, RTOL, ATOL, f"member {i}")
    assert_trees_close(_member(state, i), want_state, RTOL, ATOL, f"member {i}")
    np.testing.assert_allclose(losses[:, i], want_losses, RTOL, ATOL)
  lrs = state[-1].hyperparams["learning_rate"]  # each member's scheduled value at its last step
  np.testing.assert_allclose(lrs, [float(gx.schedules.warmup_cosine_decay(0.0, p, 2, 8)(4)) for p in peaks], 1e-6)


def test_population_based_training_never_recompiles():
  """Rounds of train → select → exploit → perturb: one trace, and no compilation after round 1."""
  traces = []

  def loss(params, batch):
    traces.append(1)
    return _loss(params, batch)

  size = 8
  pop = gx.Population(lambda lr, b1: gx.adam(lr, b1=b1),
                   {"lr": np.logspace(-3, 0, size), "b1": np.full(size, 0.9)})
  hyperparams = pop.hyperparams
  params, state = pop.init(_params())
  step = pop.step(loss)
  batches = _batches(12)
  key = jax.random.key(0)
  events, stop = compile_counter()
  try:
    for round_ in range(4):
      if round_ == 1:
        events.clear()  # round 0 compiled the step, exploit and perturb once
      for t in range(3 * round_, 3 * round_ + 3):
        params, state, losses = step(hyperparams, params, state, (batches[0][t], batches[1][t]))
      winners, losers = gx.truncation_selection(losses, fraction=0.25)
      before = (hyperparams, params, state)
      hyperparams, params, state = gx.exploit((hyperparams, params, state), winners, losers)
      key, sub = jax.random.split(key)
      hyperparams = gx.perturb(sub, hyperparams, losers, names=["lr"])
    assert len(traces) == 1, f"the step was traced {len(traces)} times"
    assert events == [], f"{len(events)} compilations after the first round"
  finally:
    stop()
  # The overwritten members continue exactly from their source, with the perturbed rate.
  for w, l in zip(winners, losers):
    assert_trees_close(_member(before[1:], w), _member((params, state), l), 0, 0, "exploit")
    ratio = float(hyperparams["lr"][l] / before[0]["lr"][w])
    assert ratio == pytest.approx(0.8) or ratio == pytest.approx(1.25)
    assert float(hyperparams["b1"][l]) == pytest.approx(0.9)
  t = 12 - 1
  new_params, new_state, _ = step(hyperparams, params, state, (batches[0][t], batches[1][t]))
  for i in range(size):  # every member, copied or not, steps as its own optimizer would
    opt = gx.adam(float(hyperparams["lr"][i]), b1=0.9)
    grads = jax.grad(_loss)(_member(params, i), (batches[0][t], batches[1][t]))
    updates, want_state = opt.update(grads, _member(state, i), _member(params, i))
    assert_trees_close(_member(new_params, i), gx.apply_updates(_member(params, i), updates),
                       RTOL, ATOL, f"member {i}")
    assert_trees_close(_member(new_state, i), want_state, RTOL, ATOL, f"member {i}")


def test_selection_exploit_and_perturb():
  winners, losers = gx.truncation_selection(np.array([3.0, np.nan, 1.0, 2.0, 0.5, 4.0, 5.0, 9.0]), 0.25)
  np.testing.assert_array_equal(winners, [4, 2])
  np.testing.assert_array_equal(losers, [1, 7])  # NaN ranks last
  tree = {"a": jnp.arange(8.0), "b": jnp.arange(16.0).reshape(8, 2)}
  copied = gx.exploit(tree, winners, losers)
  np.testing.assert_array_equal(copied["a"], [0, 4, 2, 3, 4, 5, 6, 2])
  np.testing.assert_array_equal(copied["b"][7], tree["b"][2])
  hp = {"lr": jnp.full(8, 0.1), "b1": jnp.full(8, 0.9)}
  new = gx.perturb(jax.random.key(1), hp, losers, factors=(0.5, 2.0), names=["lr"])
  changed = np.flatnonzero(np.asarray(new["lr"]) != 0.1)
  np.testing.assert_array_equal(changed, losers)
  for value in np.asarray(new["lr"])[losers]:
    assert value == pytest.approx(0.05) or value == pytest.approx(0.2)
  np.testing.assert_array_equal(new["b1"], hp["b1"])


def test_population_errors_say_what_and_how():
  adam = lambda lr: gx.adam(lr)
  with pytest.raises(ValueError, match=r"one value per member.*lengths \{'lr': 2, 'b1': 3\}"):
    gx.Population(lambda lr, b1: gx.adam(lr, b1=b1), {"lr": [0.1, 0.2], "b1": [0.9, 0.9, 0.9]})
  with pytest.raises(ValueError, match=r"member 1 \(b1=1.5\): adam: scale_by_adam: b1=1.5"):
    gx.Population(lambda b1: gx.adam(0.1, b1=b1), {"b1": [0.9, 1.5]})
  with pytest.raises(ValueError, match="must be 1-D"):
    gx.Population(adam, {"lr": [[0.1, 0.2]]})
  with pytest.raises(TypeError, match="factory must return an optimizer"):
    gx.Population(lambda lr: lr, {"lr": [0.1]})
  pop = gx.Population(adam, {"lr": [0.1, 0.2]})
  params, state = pop.init(_params())
  batch = (_batches(1)[0][0], _batches(1)[1][0])
  with pytest.raises(ValueError, match=r"keys \['lr'\].*got \['learning_rate'\]"):
    pop.step(_loss)({"learning_rate": jnp.ones(2)}, params, state, batch)
  with pytest.raises(ValueError, match=r"leading member axis of size 2.*pop.init"):
    pop.step(_loss)(pop.hyperparams, _params(), state, batch)
  with pytest.raises(ValueError, match=r"shape \(3,\), expected \(2,\)"):
    pop.init(_params(), {"lr": jnp.ones(3)})
  with pytest.raises(ValueError, match=r"fraction=0.9 must be in \(0, 0.5\]"):
    gx.truncation_selection(np.ones(4), 0.9)
  with pytest.raises(ValueError, match="names \\['b2'\\] are not in hyperparams"):
    gx.perturb(jax.random.key(0), pop.hyperparams, [0], names=["b2"])
  with pytest.raises(IndexError, match="out of range for 2 members"):
    gx.exploit(params, [0], [5])


def test_state_shardings_finds_per_parameter_leaves():
  """On a one-device mesh: which state leaves follow a parameter, and where ZeRO splits them."""
  mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
  params = {"w": jnp.ones((3, 5)), "b": jnp.ones(5), "learning_rate": jnp.ones(())}
  opt = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-3))
  abstract = jax.eval_shape(opt.init, params)
  for zero, w_spec, b_spec in ((None, PartitionSpec(), PartitionSpec()),
                               ("data", PartitionSpec(None, "data"), PartitionSpec("data"))):
    shardings = gx.state_shardings(opt, params, mesh, zero_axis=zero)
    assert jax.tree.structure(shardings) == jax.tree.structure(abstract)
    adam = shardings[1][0]
    for moment in (adam.nu, adam.numerator.ema):
      assert moment["w"] == NamedSharding(mesh, w_spec) and moment["b"] == NamedSharding(mesh, b_spec)
    assert adam.count.spec == PartitionSpec() and shardings[0].count.spec == PartitionSpec()
    assert shardings[1][2].count is None and adam.numerator.count is None  # no counts kept for these
  abstract_params = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=NamedSharding(mesh, PartitionSpec()))
                     for k, v in params.items()}  # no arrays needed: shapes and shardings suffice
  from_abstract = gx.state_shardings(opt, abstract_params, zero_axis="data")
  assert from_abstract == gx.state_shardings(opt, params, mesh, zero_axis="data")
  with pytest.raises(ValueError, match="zero_axis='model' is not an axis of the mesh"):
    gx.state_shardings(opt, params, mesh, zero_axis="model")
  with pytest.raises(ValueError, match="none of the parameters has a NamedSharding"):
    gx.state_shardings(opt, params)
  with pytest.raises(ValueError, match="axis='members' is not an axis"):
    gx.member_shardings(params, mesh, "members")
