"""gx.inject / gx.set_hyperparams: hyperparameters as state inputs; writes take effect or raise.

An injected optimizer must give the numbers of the optimizer it was made from
(checked for every catalogue entry and the second-order methods), hold no
leaves (so it is static and hashable in every framework), and keep its
hyperparameters in float32 or wider whatever the parameters' dtype. Writing a
hyperparameter into a state takes effect (an input) or raises, never silently
does nothing.
"""

from __future__ import annotations

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests import catalogue


def _params32():
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), catalogue.initial_params())


def _run(opt, params, steps=4):
  """Eager updates over the catalogue's gradient stream (an all-zero step included)."""
  state = opt.init(params)
  out = []
  for grads in catalogue.gradient_stream(steps):
    grads = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), grads)
    updates, state = opt.update(grads, state, params)
    params = gx.apply_updates(params, updates)
    out.append(updates)
  return out, state


def _leaf_layout(tree):
  return [(jax.tree_util.keystr(p), jax.typeof(x)) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]]


@pytest.mark.parametrize("case", catalogue.CASES, ids=str)
def test_injected_catalogue_entry_is_static_and_gives_the_same_numbers(case):
  opt = case.make()
  injected = gx.inject(opt)
  # nothing traced, nothing stored as data: static everywhere (a schedule stays in the optimizer, with its
  # own leaves: ADOPT's default clip count**0.25, schedule-free's warmup)
  is_schedule = lambda x: isinstance(x, gx.schedules.Schedule)
  outside = [x for x in jax.tree.leaves(injected, is_leaf=is_schedule) if not is_schedule(x)]
  assert outside == []
  assert injected == gx.inject(opt) and hash(injected) == hash(gx.inject(opt))  # hashable: a static field
  params = _params32()
  expected, expected_state = _run(opt, params)
  got, got_state = _run(injected, params)
  # same state layout and dtypes, but for the inputs: the plain state records no constant
  records = lambda layout: [(p, t) for p, t in layout if ".hyperparams[" in p]
  others = lambda layout: [(p, t) for p, t in layout if ".hyperparams[" not in p]
  assert others(_leaf_layout(got_state)) == others(_leaf_layout(expected_state))
  assert len(records(_leaf_layout(got_state))) == len(gx.hyperparams(got_state))
  assert set(gx.hyperparams(expected_state)) <= set(gx.hyperparams(got_state))
  for g, e in zip(got, expected):
    jax.tree.map(np.testing.assert_array_equal, g, e)


SECOND_ORDER = {
    "lbfgs": lambda: gx.lbfgs(),
    "polyak_sgd": lambda: gx.polyak_sgd(max_learning_rate=0.5),
    "sophia": lambda: gx.sophia(0.1, update_every=2),
    "newton": lambda: gx.newton(0.8, damping=0.1),
}


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_injected_second_order_gives_the_same_numbers(name):
  a = jnp.asarray([[3.0, 0.5], [0.5, 1.0]], jnp.float32)
  loss = lambda p: 0.5 * p["x"] @ a @ p["x"] + jnp.sum(jnp.cos(p["x"]))
  params0 = {"x": jnp.asarray([1.5, -2.0], jnp.float32)}
  results = []
  for opt in (SECOND_ORDER[name](), gx.inject(SECOND_ORDER[name]())):
    params, state = params0, opt.init(params0)
    step = jax.jit(lambda p, s, opt=opt: gx.step(opt, loss, p, s)[:2])
    for _ in range(3):
      params, state = step(params, state)
    results.append(params["x"])
  assert float(jnp.max(jnp.abs(results[0] - params0["x"]))) > 1e-3
  np.testing.assert_allclose(results[1], results[0], rtol=1e-6, atol=1e-7)


def test_plain_jit_closure_new_learning_rate_does_not_retrace():
  loss = lambda p: jnp.sum(jnp.square(p["w"] - 1.0)) + jnp.sum(jnp.square(p["b"]))
  params0 = _params32()
  opt = gx.inject(gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-2, weight_decay=0.1)))
  traces = []

  @jax.jit
  def step(params, state):  # the optimizer is closed over: a constant of the trace
    traces.append(1)
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    return gx.apply_updates(params, updates), state

  lrs = [1e-2, 5e-3, 1e-3, 0.0]
  params, state = params0, opt.init(params0)
  for lr in lrs:
    state = gx.set_hyperparams(state, learning_rate=lr)
    params, state = step(params, state)
  assert len(traces) == 1
  # reference: the optimizer rebuilt with each learning rate, no jit
  ref, ref_state = params0, opt.init(params0)
  for lr in lrs:
    tx = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(lr, weight_decay=0.1))
    updates, ref_state = tx.update(jax.grad(loss)(ref), ref_state, ref)
    ref = gx.apply_updates(ref, updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), params, ref)
  # the last step had learning rate 0: the parameters did not move in it
  assert float(gx.hyperparams(state)["1/2/learning_rate"]) == 0.0


def test_hyperparameters_stay_float32_for_bfloat16_params():
  params = {"w": jnp.full((4,), 0.5, jnp.bfloat16)}
  grads = {"w": jnp.asarray([1.0, -2.0, 3e-3, 0.0], jnp.bfloat16)}
  opt = gx.inject(gx.adam(1e-3))  # b2 = 0.999 is 1.0 in bfloat16
  state = opt.init(params)
  for value in gx.hyperparams(state).values():
    assert value.dtype == jnp.float32
  assert float(gx.hyperparams(state)["0/decay"]) == np.float32(0.999)
  # Adam's b2 is scale_by_rms's "decay" and b1 its numerator's "decay": a path picks one
  state = gx.set_hyperparams(state, {"0/decay": 0.9995}, learning_rate=jnp.asarray(2e-3, jnp.bfloat16))
  assert float(gx.hyperparams(state)["0/numerator/decay"]) == np.float32(0.9)
  assert gx.hyperparams(state)["1/learning_rate"].dtype == jnp.float32
  assert float(gx.hyperparams(state)["0/decay"]) == np.float32(0.9995)
  plain_state = gx.adam(jnp.asarray(2e-3, jnp.bfloat16).astype(jnp.float32), b2=0.9995).init(params)
  for _ in range(5):
    updates, state = opt.update(grads, state, params)
    expected, plain_state = gx.adam(jnp.asarray(2e-3, jnp.bfloat16).astype(jnp.float32),
                                    b2=0.9995).update(grads, plain_state, params)
    assert updates["w"].dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(updates["w"])))
    np.testing.assert_array_equal(updates["w"], expected["w"])


def test_array_and_float64_values_keep_their_width():
  opt = gx.inject(gx.sgd(np.float64(0.1), momentum=jnp.asarray(0.9, jnp.bfloat16)))
  hp = gx.hyperparams(opt.init({"w": jnp.ones(2)}))
  expected_lr = jax.dtypes.canonicalize_dtype(jnp.float64)  # float64 under jax_enable_x64, else float32
  assert hp["1/learning_rate"].dtype == expected_lr
  assert hp["0/decay"].dtype == jnp.float32  # a bfloat16 value is widened, not kept
  assert float(hp["0/decay"]) == float(jnp.asarray(0.9, jnp.bfloat16))


def test_a_constant_is_not_in_the_state_and_writing_it_raises():
  params = {"w": jnp.ones(3)}
  state = gx.adam(1e-3).init(params)
  assert gx.hyperparams(state) == {} and len(state[1].hyperparams) == 0
  assert state[1].count is None and state[0].numerator.count is None  # shared with scale_by_rms's count
  assert len(jax.tree.leaves(state)) == 3  # count, mu, nu: as optax's ScaleByAdamState
  with pytest.raises(KeyError, match=r"learning_rate.*held by the optimizer.*gx\.inject"):
    state[1].hyperparams["learning_rate"]
  with pytest.raises(KeyError, match=r"learning_rate.*gx\.inject"):
    state[1].hyperparams["learning_rate"] = 0.0  # optax's inject_hyperparams idiom, on a plain state
  with pytest.raises(KeyError, match=r"learning_rate.*gx\.inject"):
    gx.set_hyperparams(state, learning_rate=0.0)
  with pytest.raises(KeyError, match=r"1/hyperparams.*learning_rate.*gx\.inject"):
    gx.tree_set(state, "1/hyperparams/learning_rate", jnp.zeros([], jnp.float32))
  assert state[1].hyperparams.get("learning_rate", "absent") == "absent"
  assert list(state[1].hyperparams.items()) == [] and "learning_rate" not in state[1].hyperparams


def test_writing_a_scheduled_hyperparameter_raises():
  params = {"w": jnp.ones(3)}
  opt = gx.chain(gx.clip_by_global_norm(2.0), gx.adam(gx.schedules.linear(1e-3, 0.0, 10), b1=0.8))
  state = opt.init(params)
  _, state = opt.update({"w": jnp.ones(3)}, state, params)
  assert gx.hyperparams(state) == {"1/1/learning_rate": pytest.approx(1e-3)}  # schedule(0)
  _, state = opt.update({"w": jnp.ones(3)}, state, params)
  assert float(gx.hyperparams(state)["1/1/learning_rate"]) == pytest.approx(0.9e-3)  # schedule(1)
  assert int(state[1][1].count) == 2 and int(state[0].count) == 2  # the clip counts for its diagnostics
  with pytest.raises(TypeError, match=r"learning_rate.*schedule.*gx\.inject"):
    state[1][1].hyperparams["learning_rate"] = 0.0
  with pytest.raises(TypeError, match=r"learning_rate.*schedule"):
    gx.set_hyperparams(state, learning_rate=0.0)
  with pytest.raises(TypeError, match="learning_rate"):
    gx.tree_set(state, "1/1/hyperparams/learning_rate", jnp.zeros([], jnp.float32))
  with pytest.raises(TypeError, match="added or removed"):
    del state[1][1].hyperparams["learning_rate"]
  with pytest.raises(KeyError, match=r"'max_norm'.*held by the optimizer"):  # a constant beside
    state[0].hyperparams["max_norm"]


def test_writing_an_injected_hyperparameter_takes_effect():
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.asarray([1.0, -1.0, 0.5])}
  opt = gx.inject(gx.adam(1e-3))
  state = opt.init(params)
  state[1].hyperparams["learning_rate"] = 0.0  # optax's idiom works here: it is an input
  assert state[1].hyperparams["learning_rate"].dtype == jnp.float32
  updates, state = opt.update(grads, state, params)
  np.testing.assert_array_equal(updates["w"], np.zeros(3, np.float32))
  state = gx.tree_set(state, "1/hyperparams/learning_rate", 0.5)
  assert isinstance(state[1].hyperparams, gx.Hyperparams)
  updates, state = opt.update(grads, state, params)
  assert float(jnp.max(jnp.abs(updates["w"]))) > 0.1
  state[1].hyperparams.update(learning_rate=0.25)
  assert float(gx.hyperparams(state)["1/learning_rate"]) == 0.25


def test_scheduled_hyperparameter_is_followed_and_refuses_writes():
  schedule = gx.schedules.linear(0.1, 0.0, transition_steps=4)
  params = {"w": jnp.ones(3)}
  opt = gx.inject(gx.sgd(schedule, momentum=0.5))
  got, state = _run(opt, _params32())
  expected, _ = _run(gx.sgd(schedule, momentum=0.5), _params32())
  for g, e in zip(got, expected):
    jax.tree.map(np.testing.assert_array_equal, g, e)
  with pytest.raises(TypeError, match="schedule"):
    gx.set_hyperparams(state, learning_rate=0.1)
  with pytest.raises(TypeError, match="schedule"):
    state[-1].hyperparams["learning_rate"] = 0.1
  state = gx.set_hyperparams(state, decay=0.0)  # the constant momentum is an input
  assert float(gx.hyperparams(state)["0/decay"]) == 0.0
  del params


def test_set_hyperparams_by_name_and_by_path_in_groups():
  params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
  opt = gx.inject(gx.partition({"decay": gx.adamw(1e-3, weight_decay=0.1), "plain": gx.sgd(0.1)},
                               {"w": "decay", "b": "plain"}))
  state = opt.init(params)
  lrs = {k: v for k, v in gx.hyperparams(state).items() if k.endswith("learning_rate")}
  assert len(lrs) == 2
  both = gx.set_hyperparams(state, learning_rate=0.5)
  assert all(float(v) == 0.5 for k, v in gx.hyperparams(both).items() if k.endswith("learning_rate"))
  one_path = sorted(lrs)[0]
  one = gx.set_hyperparams(state, {one_path: 0.25})
  new = {k: float(v) for k, v in gx.hyperparams(one).items() if k.endswith("learning_rate")}
  assert new[one_path] == 0.25
  assert [new[k] for k in lrs if k != one_path] == [pytest.approx(float(lrs[k])) for k in lrs if k != one_path]


def test_set_hyperparams_errors():
  params = {"w": jnp.ones(3)}
  state = gx.inject(gx.adam(1e-3)).init(params)
  with pytest.raises(KeyError, match="learning_rat.*1/learning_rate"):
    gx.set_hyperparams(state, learning_rat=1e-4)
  with pytest.raises(ValueError, match="shape"):
    gx.set_hyperparams(state, learning_rate=jnp.ones(2))
  with pytest.raises(TypeError, match="real number"):
    gx.set_hyperparams(state, learning_rate=True)
  with pytest.raises(TypeError, match="outside jit"):
    jax.jit(lambda lr: jax.tree.leaves(gx.inject(gx.adam(lr))))(1e-3)
  optax = pytest.importorskip("optax")
  with pytest.raises(TypeError, match="inject: expected a gradxform transform"):
    gx.inject(optax.adam(1e-3))


def test_injected_state_pickles_and_copies_with_its_inputs():
  state = gx.inject(gx.adam(1e-3)).init({"w": jnp.ones(3)})
  for clone in (pickle.loads(pickle.dumps(state)), copy.deepcopy(state), jax.tree.map(lambda x: x, state)):
    assert isinstance(clone[1].hyperparams, gx.Hyperparams)
    assert clone[1].hyperparams.inputs == frozenset({"learning_rate"})
    assert jax.tree.structure(clone) == jax.tree.structure(state)


def test_vmap_over_injected_learning_rates_equals_separate_runs():
  loss = lambda p: jnp.sum(jnp.square(p["w"] - jnp.arange(3.0)))
  params = {"w": jnp.zeros(3)}
  opt = gx.inject(gx.adam(1e-3))
  lrs = jnp.asarray([1e-2, 1e-1, 3e-1])
  stacked = jax.vmap(lambda _: opt.init(params))(lrs)
  stacked = gx.set_hyperparams(stacked, learning_rate=lrs)  # one value per member

  def run(state):
    p = params
    for _ in range(3):
      updates, state = opt.update(jax.grad(loss)(p), state, p)
      p = gx.apply_updates(p, updates)
    return p["w"]

  together = jax.vmap(run)(stacked)
  for i, lr in enumerate(lrs):
    np.testing.assert_allclose(together[i], run(gx.set_hyperparams(opt.init(params), learning_rate=lr)),
                               rtol=1e-6)


def test_wrapper_options_become_static_numbers():
  opt = gx.inject(gx.apply_if_finite(gx.lookahead(gx.adam(jnp.asarray(1e-3)), sync_period=2,
                                                  slow_step_size=0.5), jnp.asarray(3)))
  assert jax.tree.leaves(opt) == [3]  # a Python int: static under filter_jit, fine in nnx.Optimizer.tx
  assert type(jax.tree.leaves(opt)[0]) is int
  assert hash(opt) == hash(gx.inject(gx.apply_if_finite(
      gx.lookahead(gx.adam(1e-3), sync_period=2, slow_step_size=0.5), 3)))
  assert "slow_step_size" in {k.split("/")[-1] for k in gx.hyperparams(opt.init({"w": jnp.ones(2)}))}


def test_unpacks_as_init_update_pair():
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.asarray([0.5, -1.0, 2.0])}
  tx = gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2))
  init, update = tx  # optax's idiom
  updates, _ = update(grads, init(params), params)
  expected, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["w"], expected["w"])
