"""A schedule given as a hyperparameter is checked over its whole range at construction (issue 18, item 2).

The reference for each case is a brute-force scan: the schedule evaluated one count at a time (jitted, so in
the dtype of use) from 0 to past its last transition, and the first count whose value is outside the
hyperparameter's interval. The error must name the optimizer, the hyperparameter and that count.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

S = gx.schedules


def _first_bad(schedule, horizon, ok):
  evaluate = jax.jit(schedule)
  for count in range(horizon):
    value = float(evaluate(jnp.int32(count)))
    if not (np.isfinite(value) and ok(value)):
      return count
  return None


LR_OK = lambda v: v >= 0.0  # noqa: E731
BETA_OK = lambda v: 0.0 <= v < 1.0  # noqa: E731
MOMENTUM_OK = lambda v: 0.0 <= v <= 1.0  # noqa: E731

# (optimizer, hyperparameter, schedule, horizon of the brute-force scan, allowed values)
BAD = [
    ("sgd", "learning_rate", S.linear(0.1, -0.1, 100), 200, LR_OK),
    ("adam", "b1", S.linear(0.9, 1.0, 100), 200, BETA_OK),
    ("adam", "b2", S.warmup_constant(0.9, 1.2, 37), 100, BETA_OK),
    ("adamw", "learning_rate", S.cosine_decay(1e-3, 300, alpha=-0.5), 400, LR_OK),
    ("adam", "learning_rate", S.warmup_cosine_decay(0.0, 1e-3, 50, 500, end_value=-1e-4), 600, LR_OK),
    ("sgd", "learning_rate", S.join([S.constant(0.1), S.linear(0.1, -0.01, 40)], [250]), 400, LR_OK),
    ("sgd", "momentum", S.cyclic(0.8, 1.3, step_size_up=70), 200, MOMENTUM_OK),
    ("sgd", "momentum", S.piecewise_constant(0.9, {120: 1.05, 300: 1.2}), 400, MOMENTUM_OK),
    ("adam", "b1", S.one_cycle_momentum(1000, base_momentum=0.85, max_momentum=1.0), 1100, BETA_OK),
    ("rmsprop", "learning_rate", S.polynomial(0.01, -0.01, 2.0, 500, transition_begin=20), 600, LR_OK),
    ("adam", "b2", S.exponential_decay(0.99, 100, 1.005), 1000, BETA_OK),
    ("sgd", "learning_rate", S.warmup_stable_decay(0.1, 10, 30, 50, end_value=-0.1), 120, LR_OK),
    ("sgd", "momentum", S.multistep_decay(0.5, [30, 80], gamma=1.5), 120, MOMENTUM_OK),
    ("sgd", "momentum", S.join([S.constant(0.9), S.cosine_warm_restarts(0.9, 25, T_mult=2, eta_min=1.2)],
                                [60]), 200, MOMENTUM_OK),
]


@pytest.mark.parametrize("name,hyper,schedule,horizon,ok", BAD, ids=[f"{n}-{h}-{i}" for i, (n, h, *_)
                                                                        in enumerate(BAD)])
def test_schedule_leaving_the_interval_is_refused_at_its_first_bad_step(name, hyper, schedule, horizon, ok):
  expected = _first_bad(schedule, horizon, ok)
  assert expected is not None, "the case must leave the interval within its horizon"
  kwargs = {hyper: schedule} if hyper == "learning_rate" else {"learning_rate": 0.1, hyper: schedule}
  with pytest.raises(ValueError) as caught:
    getattr(gx, name)(**kwargs)
  message = str(caught.value)
  assert message.startswith(f"{name}:"), message
  assert f"{hyper} (a schedule; its value at step {expected})" in message, (expected, message)


GOOD = [
    ("adam", "learning_rate", S.warmup_cosine_decay(0.0, 1e-3, 100, 10_000)),
    ("sgd", "momentum", S.one_cycle_momentum(10_000)),
    ("sgd", "learning_rate", S.one_cycle(0.1, 100_000)),
    ("adam", "b2", S.linear(0.9, 0.999, 1000)),
    ("sgd", "learning_rate", S.sgdr([dict(init_value=0.0, peak_value=0.1, warmup_steps=10, decay_steps=100)] * 3)),
    ("adamw", "learning_rate", S.inverse_sqrt(1e-3, 4000)),
    ("sgd", "learning_rate", S.join([S.linear(0.0, 0.1, 10), lambda count: 0.1 * 0.99 ** jnp.asarray(count, jnp.float32)], [10])),
]


@pytest.mark.parametrize("name,hyper,schedule", GOOD, ids=[f"{n}-{h}-{i}" for i, (n, h, _) in enumerate(GOOD)])
def test_schedules_inside_the_interval_are_accepted_and_used(name, hyper, schedule):
  kwargs = {hyper: schedule} if hyper == "learning_rate" else {"learning_rate": 0.1, hyper: schedule}
  opt = getattr(gx, name)(**kwargs)
  params = {"w": jnp.array([1.0, -2.0])}
  state = opt.init(params)
  updates, state = jax.jit(opt.update)(params, state, params)
  assert np.all(np.isfinite(np.asarray(updates["w"])))


def test_plain_function_is_checked_at_count_zero():
  with pytest.raises(ValueError, match=re.escape("max_norm (a schedule; its value at step 0)=-1.0")) as caught:
    gx.clip_by_global_norm(lambda count: -1.0)
  assert "clip_by_global_norm" in str(caught.value)
  with pytest.raises(ValueError, match=re.escape("decay (a schedule; its value at step 0)=1.5")):
    gx.trace(decay=lambda count: 1.5)
  # a plain function is opaque past count 0 (it may not be pure): later values are the user's
  gx.sgd(lambda count: 0.1 - 0.01 * count)


def test_value_that_rounds_out_of_range_in_float32_is_refused():
  # 0.99999999 is below 1 in float64 but is 1.0 in float32, the dtype the schedule computes in
  with pytest.raises(ValueError, match=r"b2 \(a schedule; its value at step 100\)=1\.0 is out of range"):
    gx.adam(1e-3, b2=S.linear(0.9, 0.99999999, 100))


def test_traced_schedule_is_left_to_the_update():
  params = {"w": jnp.ones(2)}

  @jax.jit
  def build_and_init(lr):
    return gx.sgd(S.linear(lr, 0.0, 10)).init(params)

  build_and_init(-1.0)  # traced: not known at construction (no error, no concretization error)


def test_sampled_counts_cover_the_turning_points():
  from gradxform._core.ranges import sample_counts
  counts = set(sample_counts(S.join([S.constant(1.0), S.warmup_cosine_decay(0.0, 1.0, 7_000, 90_000)],
                                    [50_000])).tolist())
  for turn in (50_000, 57_000, 140_000):  # join offset, offset + warm-up, offset + decay end
    assert {turn - 1, turn, turn + 1} <= counts
  assert 2**31 - 1 in counts  # the count saturates there
  assert set(range(4096)) <= counts


@pytest.mark.parametrize("make", [
    lambda: S.linear(jnp.asarray(0.5, jnp.bfloat16), 0.9, 2),
    lambda: S.warmup_cosine_decay(0.0, np.float32(0.1), 2, 5),
], ids=["bf16_start", "np_float32_peak"])
@pytest.mark.parametrize("x64", [False, True])
def test_eager_state_is_a_fixed_point_of_the_jitted_scanned_update(make, x64):
  """Issue 18's example: a schedule mixing an explicit dtype with Python floats keeps one dtype eagerly,
  under jit and in a scan carry (accumulate and apply_if_finite scan/cond over the state)."""
  with jax.enable_x64(x64):
    params = {"w": jnp.ones(3, jnp.float32)}
    for opt in (gx.sgd(make(), momentum=0.9), gx.accumulate(gx.adam(make()), every_k=2),
                gx.apply_if_finite(gx.adam(make()), 2)):
      state = opt.init(params)
      eager = jax.tree.map(lambda x: (jnp.result_type(x), jnp.shape(x)), state)
      _, jitted = jax.jit(opt.update)(params, state, params)
      assert jax.tree.map(lambda x: (jnp.result_type(x), jnp.shape(x)), jitted) == eager

      def body(state, _):
        return opt.update(params, state, params)[1], None

      scanned, _ = jax.lax.scan(body, state, None, length=3)
      assert jax.tree.map(lambda x: (jnp.result_type(x), jnp.shape(x)), scanned) == eager
