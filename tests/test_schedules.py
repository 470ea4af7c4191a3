"""gx.schedules: closed forms, optax and torch cross-checks, jit/vmap/grad, errors."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

S = gx.schedules


@pytest.fixture
def optax():
  return pytest.importorskip("optax")


@pytest.fixture
def torch():
  return pytest.importorskip("torch")


def values(schedule, counts):
  """The schedule at each count, called eagerly with int32 counts (as transforms do)."""
  return np.array([float(schedule(jnp.asarray(c, jnp.int32))) for c in counts])


# ------------------------------------------------------- NumPy closed forms


def np_linear(t, init, end, steps, begin=0):
  return init + (end - init) * min(max(t - begin, 0), steps) / steps


def np_polynomial(t, init, end, power, steps, begin=0):
  return (init - end) * (1 - min(max(t - begin, 0), steps) / steps) ** power + end


def np_exponential(t, init, steps, rate, begin=0, staircase=False, end=None):
  p = max(t - begin, 0) / steps
  if staircase:
    p = math.floor(p)
  value = init * rate ** p
  if end is not None:
    value = max(value, end) if rate < 1 else min(value, end)
  return value


def np_piecewise(t, init, boundaries_and_scales):
  return init * np.prod([s for b, s in boundaries_and_scales.items() if t >= b])


def np_cosine(t, init, steps, alpha=0.0, exponent=1.0):
  factor = 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps))
  return init * ((1 - alpha) * factor ** exponent + alpha)


def np_warmup_cosine(t, init, peak, warmup, total, end=0.0, exponent=1.0):
  if t < warmup:
    return init + (peak - init) * t / warmup
  length = total - warmup
  factor = 0.5 * (1 + math.cos(math.pi * min(t - warmup, length) / length))
  return end + (peak - end) * factor ** exponent


def np_wsd(t, peak, warmup, stable, decay, init=0.0, end=0.0, shape="linear"):
  if t < warmup:
    return init + (peak - init) * t / warmup
  if t < warmup + stable:
    return peak
  x = min((t - warmup - stable) / decay, 1.0)
  remaining = {"linear": 1 - x, "cosine": 0.5 * (1 + math.cos(math.pi * x)),
               "sqrt": 1 - math.sqrt(x)}[shape]
  return end + (peak - end) * remaining


def np_one_cycle(t, peak, total, pct=0.3, div=25.0, final_div=1e4, anneal="cos"):
  """torch's OneCycleLR rule (two phases), written out from its documentation."""
  initial, last = peak / div, total - 1
  minimum = initial / final_div
  warm_end = pct * total - 1
  t = min(t, last)
  if anneal == "cos":
    interpolate = lambda a, b, x: b + (a - b) / 2 * (math.cos(math.pi * x) + 1)
  else:
    interpolate = lambda a, b, x: a + (b - a) * x
  if t <= warm_end:
    return interpolate(initial, peak, t / warm_end)
  return interpolate(peak, minimum, (t - warm_end) / (last - warm_end))


# (id, schedule, closed form t -> value, number of counts to check)
CLOSED_FORMS = [
    ("constant", S.constant(0.25), lambda t: 0.25, 5),
    ("constant_int", S.constant(3), lambda t: 3.0, 3),
    ("linear", S.linear(1.0, 0.1, 8), lambda t: np_linear(t, 1.0, 0.1, 8), 12),
    ("linear_begin", S.linear(0.2, 0.9, 5, 3), lambda t: np_linear(t, 0.2, 0.9, 5, 3), 12),
    ("polynomial", S.polynomial(1.0, 0.01, 2.0, 10), lambda t: np_polynomial(t, 1.0, 0.01, 2.0, 10), 14),
    ("polynomial_begin", S.polynomial(0.5, 0.0, 0.5, 6, 4),
     lambda t: np_polynomial(t, 0.5, 0.0, 0.5, 6, 4), 14),
    ("exponential", S.exponential_decay(1.0, 4, 0.5), lambda t: np_exponential(t, 1.0, 4, 0.5), 16),
    ("exponential_staircase", S.exponential_decay(2.0, 3, 0.1, 2, staircase=True),
     lambda t: np_exponential(t, 2.0, 3, 0.1, 2, True), 14),
    ("exponential_floor", S.exponential_decay(1.0, 2, 0.5, end_value=0.2),
     lambda t: np_exponential(t, 1.0, 2, 0.5, end=0.2), 10),
    ("exponential_ceiling", S.exponential_decay(0.1, 2, 2.0, 1, end_value=0.5),
     lambda t: np_exponential(t, 0.1, 2, 2.0, 1, end=0.5), 10),
    ("piecewise", S.piecewise_constant(1.0, {6: 0.5, 3: 0.1}),
     lambda t: np_piecewise(t, 1.0, {3: 0.1, 6: 0.5}), 9),
    ("piecewise_empty", S.piecewise_constant(0.3, {}), lambda t: 0.3, 3),
    ("cosine", S.cosine_decay(1.0, 10), lambda t: np_cosine(t, 1.0, 10), 13),
    ("cosine_alpha_exponent", S.cosine_decay(0.5, 7, alpha=0.1, exponent=2.0),
     lambda t: np_cosine(t, 0.5, 7, 0.1, 2.0), 10),
    ("warmup_cosine", S.warmup_cosine_decay(0.0, 1.0, 3, 10, end_value=0.1),
     lambda t: np_warmup_cosine(t, 0.0, 1.0, 3, 10, 0.1), 13),
    ("warmup_cosine_no_warmup", S.warmup_cosine_decay(0.0, 1.0, 0, 6, exponent=1.5),
     lambda t: np_warmup_cosine(t, 0.0, 1.0, 0, 6, 0.0, 1.5), 8),
    ("wsd_linear", S.warmup_stable_decay(1.0, 3, 4, 5),
     lambda t: np_wsd(t, 1.0, 3, 4, 5), 15),
    ("wsd_cosine",
     S.warmup_stable_decay(2.0, 2, 0, 4, init_value=0.5, end_value=0.2, decay_shape="cosine"),
     lambda t: np_wsd(t, 2.0, 2, 0, 4, 0.5, 0.2, "cosine"), 9),
    ("wsd_sqrt", S.warmup_stable_decay(1.0, 0, 2, 4, end_value=0.1, decay_shape="sqrt"),
     lambda t: np_wsd(t, 1.0, 0, 2, 4, 0.0, 0.1, "sqrt"), 9),
    ("one_cycle", S.one_cycle(1.0, 10), lambda t: np_one_cycle(t, 1.0, 10), 13),
    ("one_cycle_linear", S.one_cycle(0.5, 12, 0.25, 10.0, 100.0, "linear"),
     lambda t: np_one_cycle(t, 0.5, 12, 0.25, 10.0, 100.0, "linear"), 14),
    ("join", S.join([S.linear(0.0, 1.0, 4), S.constant(0.5), S.cosine_decay(0.5, 4)], [4, 6]),
     lambda t: (np_linear(t, 0.0, 1.0, 4) if t < 4 else 0.5 if t < 6 else np_cosine(t - 6, 0.5, 4)), 12),
    ("join_function", S.join([S.constant(1.0), lambda count: 0.1 * count.astype(jnp.float32)], [3]),
     lambda t: 1.0 if t < 3 else 0.1 * (t - 3), 7),
]


@pytest.mark.parametrize("schedule, closed_form, n", [c[1:] for c in CLOSED_FORMS],
                         ids=[c[0] for c in CLOSED_FORMS])
def test_matches_closed_form(schedule, closed_form, n):
  counts = range(n)
  expected = np.array([closed_form(t) for t in counts])
  np.testing.assert_allclose(values(schedule, counts), expected, rtol=2e-6, atol=1e-7)
  value = schedule(jnp.int32(0))
  assert value.shape == () and value.dtype == jnp.float32


# ---------------------------------------------------------------- optax


OPTAX_CASES = [
    ("constant", lambda o: o.constant_schedule(0.3), lambda: S.constant(0.3), 4),
    ("linear", lambda o: o.linear_schedule(1.0, 0.1, 8, 2), lambda: S.linear(1.0, 0.1, 8, 2), 13),
    ("polynomial", lambda o: o.polynomial_schedule(1.0, 0.01, 3.0, 10, 1),
     lambda: S.polynomial(1.0, 0.01, 3.0, 10, 1), 14),
    ("exponential", lambda o: o.exponential_decay(1.0, 3, 0.7, 2),
     lambda: S.exponential_decay(1.0, 3, 0.7, 2), 14),
    ("exponential_staircase_end", lambda o: o.exponential_decay(1.0, 2, 0.5, 1, True, 0.1),
     lambda: S.exponential_decay(1.0, 2, 0.5, 1, True, 0.1), 14),
    ("exponential_growth_end", lambda o: o.exponential_decay(0.1, 2, 1.5, 0, False, 0.4),
     lambda: S.exponential_decay(0.1, 2, 1.5, 0, False, 0.4), 10),
    ("piecewise", lambda o: o.piecewise_constant_schedule(1.0, {2: 0.5, 5: 0.1, 7: 2.0}),
     lambda: S.piecewise_constant(1.0, {2: 0.5, 5: 0.1, 7: 2.0}), 10),
    ("cosine", lambda o: o.cosine_decay_schedule(1.0, 9, 0.05, 1.5),
     lambda: S.cosine_decay(1.0, 9, 0.05, 1.5), 12),
    ("warmup_cosine", lambda o: o.warmup_cosine_decay_schedule(0.01, 1.0, 4, 12, 0.05),
     lambda: S.warmup_cosine_decay(0.01, 1.0, 4, 12, 0.05), 15),
    ("warmup_cosine_exponent", lambda o: o.warmup_cosine_decay_schedule(0.0, 0.5, 2, 8, 0.0, 2.0),
     lambda: S.warmup_cosine_decay(0.0, 0.5, 2, 8, 0.0, 2.0), 10),
    ("join", lambda o: o.join_schedules([o.linear_schedule(0.0, 1.0, 3), o.cosine_decay_schedule(1.0, 5),
                                         o.constant_schedule(0.2)], [3, 8]),
     lambda: S.join([S.linear(0.0, 1.0, 3), S.cosine_decay(1.0, 5), S.constant(0.2)], [3, 8]), 12),
]


@pytest.mark.parametrize("make_optax, make, n", [c[1:] for c in OPTAX_CASES],
                         ids=[c[0] for c in OPTAX_CASES])
def test_matches_optax(optax, make_optax, make, n):
  reference = make_optax(optax)
  counts = range(n)
  with jax.numpy_dtype_promotion("standard"):  # optax mixes the int32 count with floats
    expected = np.array([float(reference(jnp.asarray(c, jnp.int32))) for c in counts])
  np.testing.assert_allclose(values(make(), counts), expected, rtol=2e-6, atol=1e-7)


def test_join_accepts_optax_schedules(optax):
  schedule = S.join([optax.linear_schedule(0.0, 1.0, 4), S.constant(0.5)], [4])
  assert jax.tree.leaves(schedule) == [0.5]  # the optax function is static, not a leaf
  np.testing.assert_allclose(values(schedule, range(6)), [0.0, 0.25, 0.5, 0.75, 0.5, 0.5])
  assert jax.jit(lambda s, c: s(c))(schedule, jnp.int32(2)) == 0.5


# ---------------------------------------------------------------- torch


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("total_steps, pct_start, div_factor, final_div_factor", [
    (20, 0.3, 25.0, 1e4),
    (37, 0.25, 10.0, 100.0),
    (9, 0.5, 5.0, 3.0),
])
def test_one_cycle_matches_torch(torch, anneal, total_steps, pct_start, div_factor, final_div_factor):
  param = torch.nn.Parameter(torch.zeros(1))
  optimizer = torch.optim.SGD([param], lr=0.123)
  scheduler = torch.optim.lr_scheduler.OneCycleLR(
      optimizer, max_lr=0.7, total_steps=total_steps, pct_start=pct_start,
      anneal_strategy=anneal, div_factor=div_factor, final_div_factor=final_div_factor,
      cycle_momentum=False)
  expected = [optimizer.param_groups[0]["lr"]]
  for _ in range(total_steps - 1):
    optimizer.step()
    scheduler.step()
    expected.append(optimizer.param_groups[0]["lr"])
  schedule = S.one_cycle(0.7, total_steps, pct_start, div_factor, final_div_factor, anneal)
  got = values(schedule, range(total_steps + 3))
  np.testing.assert_allclose(got[:total_steps], expected, rtol=1e-5, atol=1e-8)
  # Past the end: clamped to the final value (torch raises instead).
  np.testing.assert_allclose(got[total_steps:], expected[-1], rtol=1e-5)


# ---------------------------------------------------------- jit, vmap, grad

# Schedules built from one value ``v``, each linear in ``v`` (for the gradient test).
FAMILIES = {
    "constant": lambda v: S.constant(v),
    "linear": lambda v: S.linear(v, 0.0, 6, 1),
    "polynomial": lambda v: S.polynomial(v, 0.1, 2.0, 6),
    "exponential_decay": lambda v: S.exponential_decay(v, 2, 0.5, staircase=True),
    "piecewise_constant": lambda v: S.piecewise_constant(v, {2: 0.1, 4: 0.5}),
    "cosine_decay": lambda v: S.cosine_decay(v, 6, 0.1),
    "warmup_cosine_decay": lambda v: S.warmup_cosine_decay(0.0, v, 2, 7),
    "warmup_stable_decay": lambda v: S.warmup_stable_decay(v, 2, 1, 3, decay_shape="sqrt"),
    "one_cycle": lambda v: S.one_cycle(v, 7),
    "join": lambda v: S.join([S.linear(0.0, v, 2), S.cosine_decay(v, 4)], [2]),
}
COUNTS = range(9)


@pytest.mark.parametrize("make", FAMILIES.values(), ids=FAMILIES.keys())
def test_jit_compiles_once_for_new_values(make):
  traces = 0

  @jax.jit
  def evaluate(schedule, count):
    nonlocal traces
    traces += 1
    return schedule(count)

  for v in (1.0, 2.0):
    schedule = make(v)
    for c in (0, 3, 8):
      np.testing.assert_allclose(evaluate(schedule, jnp.int32(c)), schedule(jnp.int32(c)), rtol=1e-6)
  assert traces == 1


@pytest.mark.parametrize("make", FAMILIES.values(), ids=FAMILIES.keys())
def test_vmap_over_values_and_counts(make):
  stacked = jnp.array([0.5, 1.0, 3.0])
  counts = jnp.arange(len(COUNTS), dtype=jnp.int32)
  per_value = np.array([values(make(float(v)), COUNTS) for v in stacked])
  # Values built inside vmap, and a schedule whose leaves are stacked.
  inside = jax.vmap(lambda v: jax.vmap(make(v))(counts))(stacked)
  stacked_schedule = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[make(float(v)) for v in stacked])
  outside = jax.vmap(lambda s: jax.vmap(s)(counts))(stacked_schedule)
  np.testing.assert_allclose(inside, per_value, rtol=1e-6)
  np.testing.assert_allclose(outside, per_value, rtol=1e-6)


@pytest.mark.parametrize("make", FAMILIES.values(), ids=FAMILIES.keys())
def test_gradient_with_respect_to_values(make):
  # Each family is linear in v, so d s / d v = s(v=2) - s(v=1).
  for c in COUNTS:
    count = jnp.int32(c)
    grad = jax.grad(lambda v: make(v)(count))(1.0)
    assert np.isfinite(grad)
    np.testing.assert_allclose(grad, make(2.0)(count) - make(1.0)(count), rtol=1e-5, atol=1e-6)


def test_gradient_with_respect_to_rates_and_exponents():
  grad = jax.grad(lambda rate: S.exponential_decay(1.0, 1, rate)(jnp.int32(3)))(0.5)
  np.testing.assert_allclose(grad, 3 * 0.5 ** 2, rtol=1e-6)
  for c in range(7):  # the cosine factor reaches 0 at the end: no NaN from 0 ** p
    grad = jax.grad(lambda p: S.cosine_decay(1.0, 5, exponent=p)(jnp.int32(c)))(2.0)
    assert np.isfinite(grad)


@pytest.mark.parametrize("make", FAMILIES.values(), ids=FAMILIES.keys())
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_dtype_follows_values(make, dtype):
  value = make(jnp.asarray(1.0, dtype))(jnp.int32(3))
  assert value.dtype == dtype and value.shape == ()
  assert make(1.0)(3).dtype == jnp.float32  # Python count and values


def test_pytree_leaves_and_static_options():
  schedule = S.linear(1.0, 0.0, 10, 2)
  assert jax.tree.leaves(schedule) == [1.0, 0.0]
  assert schedule == S.linear(1.0, 0.0, 10, 2) and hash(schedule) == hash(S.linear(1.0, 0.0, 10, 2))
  assert jax.tree.structure(schedule) != jax.tree.structure(S.linear(1.0, 0.0, 20, 2))
  joined = S.join([schedule, S.piecewise_constant(2.0, {3: 0.1})], [5])
  assert jax.tree.leaves(joined) == [1.0, 0.0, 2.0, 0.1]
  assert isinstance(joined, S.Schedule) and isinstance(S.one_cycle(1.0, 10), S.Schedule)
  assert jax.tree.leaves(S.one_cycle(1.0, 10)) == [1.0, 25.0, 1e4]
  assert jax.tree.leaves(S.exponential_decay(1.0, 2, 0.5)) == [1.0, 0.5]


# ---------------------------------------------------------------- in transforms


def test_sgd_with_linear_schedule():
  opt = gx.sgd(S.linear(1.0, 0.0, 4))
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.ones(3)}
  state = opt.init(params)
  assert float(state[-1].hyperparams["learning_rate"]) == 1.0
  update = jax.jit(opt.update)
  for k in range(6):
    lr = max(1 - k / 4, 0.0)
    updates, state = update(grads, state, params)
    new_params = gx.apply_updates(params, updates)
    np.testing.assert_allclose(new_params["w"] - params["w"], np.full(3, -lr), atol=1e-7)
    np.testing.assert_allclose(state[-1].hyperparams["learning_rate"], lr, atol=1e-7)
    params = new_params
  np.testing.assert_allclose(params["w"], 1 - (1 + 0.75 + 0.5 + 0.25), atol=1e-6)


def test_optimizer_with_schedule_jits_once():
  traces = 0

  @jax.jit
  def step(opt, state, params):
    nonlocal traces
    traces += 1
    updates, state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
    return gx.apply_updates(params, updates), state

  params = {"w": jnp.zeros(2)}
  for peak in (0.1, 0.3):
    opt = gx.sgd(S.warmup_cosine_decay(0.0, peak, 2, 10))
    new_params, state = step(opt, opt.init(params), params)
    new_params, state = step(opt, state, new_params)
    np.testing.assert_allclose(new_params["w"], -peak / 2, rtol=1e-6)
  assert traces == 1


def test_trace_records_scheduled_momentum():
  tx = gx.trace(decay=S.linear(0.5, 0.9, 10))
  grads = {"w": jnp.array([1.0, -2.0])}
  state = tx.init(grads)
  np.testing.assert_allclose(state.hyperparams["decay"], 0.5)
  buffer = np.zeros(2)
  for k in range(12):
    momentum = 0.5 + 0.4 * min(k, 10) / 10
    buffer = momentum * buffer + np.array([1.0, -2.0])
    updates, state = tx.update(grads, state)
    np.testing.assert_allclose(state.hyperparams["decay"], momentum, rtol=1e-6)
    np.testing.assert_allclose(updates["w"], buffer, rtol=1e-5)


# ---------------------------------------------------------------- errors


ERRORS = [  # (error, message after "gx.schedules.", constructor call)
    (ValueError, "cosine_decay: decay_steps=0 must be a positive integer",
     lambda: S.cosine_decay(0.1, 0)),
    (TypeError, "linear: transition_steps must be a non-negative Python integer",
     lambda: S.linear(1.0, 0.0, 10.0)),
    (TypeError, "linear: transition_steps", lambda: S.linear(1.0, 0.0, True)),
    (ValueError, "linear: transition_begin=-1 must be a non-negative",
     lambda: S.linear(1.0, 0.0, 10, -1)),
    (ValueError, "linear: init_value=nan is not finite", lambda: S.linear(float("nan"), 0.0, 10)),
    (TypeError, "linear: init_value must be a number or an array",
     lambda: S.linear(S.constant(1.0), 0.0, 10)),
    (TypeError, "constant: value must be a number", lambda: S.constant("0.1")),
    (ValueError, "polynomial: power=0.0 is out of range", lambda: S.polynomial(1.0, 0.0, 0.0, 10)),
    (ValueError, "polynomial: transition_steps=-1 must be a non-negative", lambda: S.polynomial(1.0, 0.0, 1.0, -1)),
    (ValueError, "exponential_decay: decay_rate=0.0 is out of range",
     lambda: S.exponential_decay(1.0, 10, 0.0)),
    (ValueError, "exponential_decay: transition_steps=-1 must be a non-negative",
     lambda: S.exponential_decay(1.0, -1, 0.5)),
    # int32 step counts stop at 2**31 - 1: a later step is refused, not overflowed at evaluation
    (ValueError, "linear: transition_steps=2147483648 is beyond the last step",
     lambda: S.linear(1.0, 0.0, 2**31)),
    (ValueError, "linear: transition_begin + transition_steps=2147483648 is beyond",
     lambda: S.linear(1.0, 0.0, 2**30, 2**30)),
    (ValueError, "cosine_decay: decay_steps=2147483648 is beyond", lambda: S.cosine_decay(1.0, 2**31)),
    (ValueError, "piecewise_constant: boundary 4294967296=4294967296 is beyond",
     lambda: S.piecewise_constant(1.0, {2**32: 0.1})),
    (ValueError, "join: boundaries[0]=2147483648 is beyond",
     lambda: S.join([S.constant(1.0), S.constant(2.0)], [2**31])),
    (ValueError, "warmup_stable_decay: warmup_steps + stable_steps + decay_steps=2147483649 is beyond",
     lambda: S.warmup_stable_decay(1.0, 1, 2**31 - 2, 2)),
    (ValueError, "one_cycle: total_steps=2147483648 is beyond", lambda: S.one_cycle(1.0, 2**31)),
    (TypeError, "piecewise_constant: boundaries_and_scales must be a dict",
     lambda: S.piecewise_constant(1.0, [(10, 0.1)])),
    (ValueError, "piecewise_constant: scale at boundary 10=-0.1",
     lambda: S.piecewise_constant(1.0, {10: -0.1})),
    (ValueError, "piecewise_constant: boundary -5=-5 must be a non-negative",
     lambda: S.piecewise_constant(1.0, {-5: 0.1})),
    (ValueError, "warmup_cosine_decay: decay_steps=10 must be greater than warmup_steps=10",
     lambda: S.warmup_cosine_decay(0.0, 1.0, 10, 10)),
    (ValueError, "warmup_cosine_decay: warmup_steps=-1", lambda: S.warmup_cosine_decay(0.0, 1.0, -1, 10)),
    (ValueError, "warmup_stable_decay: decay_steps=0", lambda: S.warmup_stable_decay(1.0, 10, 10, 0)),
    (ValueError, "warmup_stable_decay: decay_shape='exp' is not supported",
     lambda: S.warmup_stable_decay(1.0, 10, 10, 10, decay_shape="exp")),
    (ValueError, "one_cycle: pct_start=1.0 is out of range", lambda: S.one_cycle(1.0, 100, pct_start=1.0)),
    (ValueError, "one_cycle: pct_start=0.0 is out of range", lambda: S.one_cycle(1.0, 100, pct_start=0.0)),
    (ValueError, "one_cycle: pct_start * total_steps", lambda: S.one_cycle(1.0, 3, pct_start=0.3)),
    (TypeError, "one_cycle: pct_start must be a Python float",
     lambda: S.one_cycle(1.0, 100, pct_start="0.3")),
    (ValueError, "one_cycle: total_steps=0", lambda: S.one_cycle(1.0, 0)),
    (ValueError, "one_cycle: div_factor=0.0 is out of range",
     lambda: S.one_cycle(1.0, 100, div_factor=0.0)),
    (ValueError, "one_cycle: final_div_factor=-1.0", lambda: S.one_cycle(1.0, 100, final_div_factor=-1.0)),
    (ValueError, "one_cycle: anneal='cosine' is not supported",
     lambda: S.one_cycle(1.0, 100, anneal="cosine")),
    (ValueError, "join: got 2 schedules and 2 boundaries",
     lambda: S.join([S.constant(1.0), S.constant(2.0)], [1, 2])),
    (ValueError, "join: boundaries must be strictly increasing",
     lambda: S.join([S.constant(1.0)] * 3, [5, 5])),
    (TypeError, "join: schedules[1] must be a schedule", lambda: S.join([S.constant(1.0), 0.5], [5])),
    (TypeError, "join: schedules must be a non-empty list", lambda: S.join([], [])),
    (ValueError, "join: boundaries[0]=-1", lambda: S.join([S.constant(1.0)] * 2, [-1])),
]


@pytest.mark.parametrize("error, message, build", ERRORS,
                         ids=[f"{m.split(':')[0]}-{i}" for i, (_, m, _) in enumerate(ERRORS)])
def test_errors_name_schedule_and_argument(error, message, build):
  with pytest.raises(error, match=re.escape("gx.schedules." + message)):
    build()


def test_traced_values_are_not_validated():
  # Values are only known at run time under jit: no construction-time check.
  value = jax.jit(lambda v: S.exponential_decay(1.0, 2, v)(jnp.int32(2)))(0.5)
  np.testing.assert_allclose(value, 0.5)


# ------------------------------------------- boundaries: zero-length transitions and int32 counts


@pytest.mark.parametrize("name, build, build_optax", [
    ("linear", lambda: S.linear(0.3, 0.1, 0, 5), lambda o: o.linear_schedule(0.3, 0.1, 0, 5)),
    ("polynomial", lambda: S.polynomial(0.3, 0.1, 2.0, 0), lambda o: o.polynomial_schedule(0.3, 0.1, 2.0, 0)),
    ("exponential_decay", lambda: S.exponential_decay(0.3, 0, 0.5),
     lambda o: o.exponential_decay(0.3, 0, 0.5)),
], ids=lambda x: x if isinstance(x, str) else "")
def test_zero_transition_steps_is_a_constant_as_in_optax(optax, name, build, build_optax):
  counts = [0, 1, 4, 5, 6, 1000]
  expected = np.array([float(jnp.float32(build_optax(optax)(c))) for c in counts])
  np.testing.assert_allclose(values(build(), counts), expected, rtol=0)
  np.testing.assert_allclose(expected, 0.3, rtol=1e-7)  # the meaning: init_value throughout


LAST = 2**31 - 1  # the last step an int32 count reaches (it saturates there)


@pytest.mark.parametrize("build, expected", [  # expected: {count: value}
    (lambda: S.linear(1.0, 0.0, LAST), {LAST: 0.0}),
    (lambda: S.linear(1.0, 0.0, 10, LAST - 10), {LAST - 10: 1.0, LAST - 5: 0.5, LAST: 0.0}),
    (lambda: S.polynomial(1.0, 0.0, 2.0, 10, LAST - 10), {LAST - 10: 1.0, LAST - 5: 0.25, LAST: 0.0}),
    (lambda: S.exponential_decay(1.0, 1, 0.5, LAST - 2), {LAST - 2: 1.0, LAST - 1: 0.5, LAST: 0.25}),
    (lambda: S.cosine_decay(1.0, LAST, alpha=0.25), {LAST: 0.25}),
    (lambda: S.piecewise_constant(1.0, {LAST: 0.1}), {LAST - 1: 1.0, LAST: 0.1}),
    (lambda: S.join([S.constant(1.0), S.constant(2.0)], [LAST]), {LAST - 1: 1.0, LAST: 2.0}),
    (lambda: S.warmup_cosine_decay(0.0, 1.0, LAST - 2, LAST, end_value=0.5),
     {LAST - 2: 1.0, LAST - 1: 0.75, LAST: 0.5}),
    (lambda: S.warmup_stable_decay(1.0, 10, LAST - 20, 10, end_value=0.5),
     {LAST - 10: 1.0, LAST - 5: 0.75, LAST: 0.5}),
    (lambda: S.one_cycle(1.0, LAST), {LAST: 1.0 / 25 / 1e4}),
])
def test_steps_up_to_the_last_int32_count_evaluate_exactly_there(build, expected):
  schedule = build()
  run = jax.jit(lambda s, c: s(c))
  for count, value in expected.items():  # integer step numbers are not rounded to float32 first
    np.testing.assert_allclose(float(run(schedule, jnp.int32(count))), value, rtol=1e-5, atol=1e-7,
                               err_msg=f"count {count}")
  # the optimizer's saturating count reaches LAST and stays there: the schedule stays finite
  tx = gx.scale_by_learning_rate(schedule)
  state = tx.init({"w": jnp.ones(2)})
  state = state._replace(count=jnp.int32(LAST - 1))
  for _ in range(3):
    updates, state = jax.jit(tx.update)({"w": jnp.ones(2)}, state)
    assert int(state.count) == LAST and np.all(np.isfinite(updates["w"]))
