"""The schedules users port from torch.optim.lr_scheduler and optax, value for value.

Each schedule is compared with its torch or optax counterpart at every step, for three off-default
configurations, in float64. torch's value at step t is the learning rate after t calls of
``scheduler.step()`` (gradxform's count t is the number of updates already applied).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

S = gx.schedules


def torch_values(make_scheduler, steps, lr=0.1, momentum=False):
  torch = pytest.importorskip("torch")
  param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
  opt = torch.optim.SGD([param], lr=lr, momentum=0.9 if momentum else 0.0)
  scheduler = make_scheduler(torch.optim.lr_scheduler, opt)
  values = []
  for _ in range(steps):
    group = opt.param_groups[0]
    values.append(group["momentum"] if momentum else group["lr"])
    opt.step()
    scheduler.step()
  return np.asarray(values)


def ours(schedule, steps):
  with jax.enable_x64(True):
    return np.asarray([float(schedule(jnp.asarray(t, jnp.int32))) for t in range(steps)])


def jitted(schedule, steps):
  with jax.enable_x64(True):
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(steps, dtype=jnp.int32)))


TORCH = [
    # (id, torch scheduler, gx schedule, steps, initial lr, momentum?)
    ("warm_restarts_T0_7", lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=7), S.cosine_warm_restarts(0.1, 7), 40, 0.1, False),
    ("warm_restarts_mult2", lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.01),
     S.cosine_warm_restarts(0.3, 3, T_mult=2, eta_min=0.01), 60, 0.3, False),
    ("warm_restarts_mult3", lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=3, eta_min=-0.05),
     S.cosine_warm_restarts(0.2, 2, T_mult=3, eta_min=-0.05), 90, 0.2, False),
    ("cyclic_triangular", lambda s, o: s.CyclicLR(o, 0.01, 0.2, step_size_up=5, cycle_momentum=False),
     S.cyclic(0.01, 0.2, 5), 40, 0.1, False),
    ("cyclic_triangular2_asym", lambda s, o: s.CyclicLR(o, 0.02, 0.5, step_size_up=3, step_size_down=7,
                                                        mode="triangular2", cycle_momentum=False),
     S.cyclic(0.02, 0.5, 3, 7, mode="triangular2"), 50, 0.1, False),
    ("cyclic_exp_range", lambda s, o: s.CyclicLR(o, 0.01, 0.3, step_size_up=4, mode="exp_range", gamma=0.97,
                                                 cycle_momentum=False),
     S.cyclic(0.01, 0.3, 4, mode="exp_range", gamma=0.97), 50, 0.1, False),
    ("cyclic_custom_scale", lambda s, o: s.CyclicLR(o, 0.01, 0.3, step_size_up=4, scale_fn=lambda x: 1 / x,
                                                    scale_mode="cycle", cycle_momentum=False),
     S.cyclic(0.01, 0.3, 4, scale_fn=lambda x: 1 / x), 50, 0.1, False),
    ("cyclic_momentum", lambda s, o: s.CyclicLR(o, 0.01, 0.3, step_size_up=4, step_size_down=6,
                                                base_momentum=0.7, max_momentum=0.95),
     S.cyclic(0.95, 0.7, 4, 6), 40, 0.1, True),
    ("one_cycle_linear", lambda s, o: s.OneCycleLR(o, max_lr=0.4, total_steps=30, pct_start=0.25,
                                                   anneal_strategy="linear", div_factor=10, final_div_factor=100),
     S.one_cycle(0.4, 30, pct_start=0.25, div_factor=10.0, final_div_factor=100.0, anneal="linear"), 30, 0.1, False),
    ("one_cycle_three_phase_cos", lambda s, o: s.OneCycleLR(o, max_lr=0.5, total_steps=40, pct_start=0.3,
                                                            three_phase=True),
     S.one_cycle(0.5, 40, pct_start=0.3, three_phase=True), 40, 0.1, False),
    ("one_cycle_three_phase_linear", lambda s, o: s.OneCycleLR(o, max_lr=0.2, total_steps=33, pct_start=0.2,
                                                               anneal_strategy="linear", three_phase=True,
                                                               div_factor=5, final_div_factor=50),
     S.one_cycle(0.2, 33, pct_start=0.2, anneal="linear", three_phase=True, div_factor=5.0,
                 final_div_factor=50.0), 33, 0.1, False),
    ("one_cycle_momentum", lambda s, o: s.OneCycleLR(o, max_lr=0.4, total_steps=30, pct_start=0.25,
                                                     base_momentum=0.8, max_momentum=0.9),
     S.one_cycle_momentum(30, 0.8, 0.9, pct_start=0.25), 30, 0.1, True),
    ("one_cycle_momentum_three_phase_linear",
     lambda s, o: s.OneCycleLR(o, max_lr=0.4, total_steps=37, pct_start=0.3, three_phase=True,
                               anneal_strategy="linear", base_momentum=0.75, max_momentum=0.97),
     S.one_cycle_momentum(37, 0.75, 0.97, pct_start=0.3, anneal="linear", three_phase=True), 37, 0.1, True),
    ("one_cycle_momentum_three_phase_cos",
     lambda s, o: s.OneCycleLR(o, max_lr=0.4, total_steps=25, pct_start=0.35, three_phase=True),
     S.one_cycle_momentum(25, pct_start=0.35, three_phase=True), 25, 0.1, True),
    ("step_lr", lambda s, o: s.StepLR(o, step_size=4, gamma=0.7), S.step_decay(0.3, 4, 0.7), 30, 0.3, False),
    ("step_lr_1", lambda s, o: s.StepLR(o, step_size=1, gamma=0.9), S.step_decay(0.3, 1, 0.9), 30, 0.3, False),
    ("step_lr_growth", lambda s, o: s.StepLR(o, step_size=5, gamma=1.5), S.step_decay(0.01, 5, 1.5), 30, 0.01, False),
    ("multistep_lr", lambda s, o: s.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.5),
     S.multistep_decay(0.2, [3, 7, 7, 20], 0.5), 30, 0.2, False),
    ("multistep_lr_unsorted", lambda s, o: s.MultiStepLR(o, milestones=[12, 2], gamma=0.3),
     S.multistep_decay(0.2, [12, 2], 0.3), 30, 0.2, False),
    ("multistep_lr_zero", lambda s, o: s.MultiStepLR(o, milestones=[5], gamma=0.0),
     S.multistep_decay(0.2, [5], 0.0), 10, 0.2, False),
    ("lambda_lr", lambda s, o: s.LambdaLR(o, lambda t: 0.95 ** t + 0.01 * t),
     S.lambda_schedule(0.1, lambda t: 0.95 ** t + 0.01 * t), 30, 0.1, False),
    ("lambda_lr_warmup", lambda s, o: s.LambdaLR(o, lambda t: min(1.0, (t + 1) / 10)),
     S.lambda_schedule(0.3, lambda t: jnp.minimum(1.0, (t + 1) / 10)), 30, 0.3, False),
    ("multiplicative_lr", lambda s, o: s.MultiplicativeLR(o, lambda t: 0.9),
     S.multiplicative(0.1, lambda t: 0.9), 30, 0.1, False),
    ("multiplicative_lr_step", lambda s, o: s.MultiplicativeLR(o, lambda t: 1.0 - 0.01 * t),
     S.multiplicative(0.2, lambda t: 1.0 - 0.01 * t), 30, 0.2, False),
]


@pytest.mark.parametrize("name, torch_sched, schedule, steps, lr, momentum", TORCH, ids=[c[0] for c in TORCH])
def test_matches_torch_lr_scheduler(name, torch_sched, schedule, steps, lr, momentum):
  expected = torch_values(torch_sched, steps, lr=lr, momentum=momentum)
  np.testing.assert_allclose(ours(schedule, steps), expected, rtol=1e-12, atol=1e-15, err_msg=name)
  np.testing.assert_allclose(jitted(schedule, steps), expected, rtol=1e-12, atol=1e-15, err_msg=name)


def optax_cases():
  optax = pytest.importorskip("optax")
  return [
      ("sgdr", optax.sgdr_schedule([dict(init_value=0.0, peak_value=0.1, warmup_steps=3, decay_steps=10),
                                     dict(init_value=0.05, peak_value=0.2, warmup_steps=0, decay_steps=7,
                                          end_value=0.01),
                                     dict(init_value=0.0, peak_value=0.1, warmup_steps=5, decay_steps=12,
                                          exponent=2.0)]),
       S.sgdr([dict(init_value=0.0, peak_value=0.1, warmup_steps=3, decay_steps=10),
               dict(init_value=0.05, peak_value=0.2, warmup_steps=0, decay_steps=7, end_value=0.01),
               dict(init_value=0.0, peak_value=0.1, warmup_steps=5, decay_steps=12, exponent=2.0)]), 40),
      ("piecewise_linear", optax.piecewise_interpolate_schedule("linear", 0.1, {3: 2.0, 10: 0.1, 11: 0.5}),
       S.piecewise_interpolate("linear", 0.1, {3: 2.0, 10: 0.1, 11: 0.5}), 20),
      ("piecewise_cosine", optax.piecewise_interpolate_schedule("cosine", 0.3, {0: 0.5, 5: 3.0, 17: 0.01}),
       S.piecewise_interpolate("cosine", 0.3, {0: 0.5, 5: 3.0, 17: 0.01}), 25),
      ("piecewise_empty", optax.piecewise_interpolate_schedule("linear", 0.3, {}),
       S.piecewise_interpolate("linear", 0.3, {}), 5),
      ("linear_onecycle", optax.linear_onecycle_schedule(40, 0.5, 0.2, 0.7, 10.0, 100.0),
       S.linear_onecycle(40, 0.5, 0.2, 0.7, 10.0, 100.0), 50),
      ("linear_onecycle_defaults", optax.linear_onecycle_schedule(33, 0.1), S.linear_onecycle(33, 0.1), 40),
      ("cosine_onecycle", optax.cosine_onecycle_schedule(40, 0.5, 0.4, 5.0, 50.0),
       S.cosine_onecycle(40, 0.5, 0.4, 5.0, 50.0), 50),
      ("cosine_onecycle_defaults", optax.cosine_onecycle_schedule(27, 0.3), S.cosine_onecycle(27, 0.3), 30),
      ("warmup_constant", optax.warmup_constant_schedule(0.01, 0.3, 7), S.warmup_constant(0.01, 0.3, 7), 20),
      ("warmup_constant_down", optax.warmup_constant_schedule(0.5, 0.1, 3), S.warmup_constant(0.5, 0.1, 3), 10),
      ("warmup_exponential_decay", optax.warmup_exponential_decay_schedule(0.0, 0.4, 5, 3, 0.8),
       S.warmup_exponential_decay(0.0, 0.4, 5, 3, 0.8), 30),
      ("warmup_exponential_decay_staircase",
       optax.warmup_exponential_decay_schedule(0.1, 0.5, 4, 2, 0.5, transition_begin=3, staircase=True,
                                               end_value=0.05),
       S.warmup_exponential_decay(0.1, 0.5, 4, 2, 0.5, transition_begin=3, staircase=True, end_value=0.05), 30),
      ("warmup_exponential_growth", optax.warmup_exponential_decay_schedule(0.0, 0.1, 2, 4, 1.3, end_value=0.3),
       S.warmup_exponential_decay(0.0, 0.1, 2, 4, 1.3, end_value=0.3), 30),
  ]


def test_matches_optax_schedules():
  with jax.enable_x64(True):
    for name, reference, schedule, steps in optax_cases():
      with jax.numpy_dtype_promotion("standard"):  # optax's piecewise schedules dot a bool mask
        expected = np.asarray([float(reference(t)) for t in range(steps)])
      np.testing.assert_allclose(ours(schedule, steps), expected, rtol=1e-12, atol=1e-15, err_msg=name)
      np.testing.assert_allclose(jitted(schedule, steps), expected, rtol=1e-12, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("d_model, warmup, factor", [(512, 4000, 1.0), (64, 10, 2.0), (1024, 1, 0.5)])
def test_inverse_sqrt_is_vaswanis_rate(d_model, warmup, factor):
  """Vaswani et al. 2017, Eq. (3): lr = factor · d^-1/2 · min(n^-1/2, n · W^-3/2) at step n = t + 1."""
  schedule = S.inverse_sqrt(factor * (d_model * warmup) ** -0.5, warmup)
  steps = [0, 1, warmup - 2, warmup - 1, warmup, 3 * warmup, 10 * warmup + 7]
  expected = [factor * d_model ** -0.5 * min((t + 1) ** -0.5, (t + 1) * warmup ** -1.5) for t in steps if t >= 0]
  with jax.enable_x64(True):
    got = [float(schedule(jnp.asarray(t, jnp.int32))) for t in steps if t >= 0]
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_cosine_warm_restarts_restart_steps_are_exact_far_out():
  """Restarts at b_k = T_0 (T_mult^k - 1)/(T_mult - 1): value I exactly there, even past 10^8 steps."""
  schedule = S.cosine_warm_restarts(1.0, 3, T_mult=2, eta_min=0.0)
  with jax.enable_x64(True):
    for k in range(1, 28):
      start = 3 * (2 ** k - 1)
      assert float(schedule(jnp.asarray(start, jnp.int32))) == 1.0, k
      before = float(schedule(jnp.asarray(start - 1, jnp.int32)))
      period = 3 * 2 ** (k - 1)
      assert before == pytest.approx((1 + math.cos(math.pi * (period - 1) / period)) / 2, rel=1e-12), k


def test_schedules_drive_any_hyperparameter_without_recompiling():
  """One-cycle on the learning rate and its momentum companion on b1, in one jitted step."""
  traces = []

  @jax.jit
  def step(opt, params, state):
    traces.append(1)
    updates, state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
    return gx.apply_updates(params, updates), state

  params = {"w": jnp.zeros(3)}
  for peak in (0.1, 0.3):
    opt = gx.adam(S.one_cycle(peak, 20, three_phase=True), b1=S.one_cycle_momentum(20, 0.85, 0.95, three_phase=True))
    state = opt.init(params)
    for _ in range(3):
      params, state = step(opt, params, state)
  assert len(traces) == 1
  b1 = float(S.one_cycle_momentum(20, three_phase=True)(2))  # the value used at the third update
  assert any(float(v) == pytest.approx(b1) for v in gx.hyperparams(state).values()), gx.hyperparams(state)


@pytest.mark.parametrize("make, message", [
    (lambda: S.cosine_warm_restarts(0.1, 0), "T_0"),
    (lambda: S.cosine_warm_restarts(0.1, 5, T_mult=1.5), "T_mult"),
    (lambda: S.cyclic(0.1, 1.0, 4, mode="triangle"), "mode"),
    (lambda: S.cyclic(0.1, 1.0, 0), "step_size_up"),
    (lambda: S.cyclic(0.1, 1.0, 4, scale_fn=3.0), "scale_fn"),
    (lambda: S.one_cycle(0.1, 10, pct_start=0.6, three_phase=True), "pct_start < 0.5"),
    (lambda: S.one_cycle(0.1, 10, three_phase="yes"), "three_phase"),
    (lambda: S.one_cycle_momentum(10, base_momentum=1.5), "base_momentum"),
    (lambda: S.piecewise_interpolate("cubic", 0.1, {}), "interpolate_type"),
    (lambda: S.piecewise_interpolate("linear", 0.1, {5: -1.0}), "scale at boundary 5"),
    (lambda: S.linear_onecycle(0, 0.1), "transition_steps"),
    (lambda: S.inverse_sqrt(0.1, 0), "warmup_steps"),
    (lambda: S.step_decay(0.1, 0), "step_size"),
    (lambda: S.multistep_decay(0.1, [3, -1]), "milestones[1]"),
    (lambda: S.multistep_decay(0.1, 3), "milestones"),
    (lambda: S.lambda_schedule(0.1, 0.9), "fn"),
    (lambda: S.multiplicative(0.1, None), "fn"),
    (lambda: S.sgdr([]), "cosine_kwargs"),
    (lambda: S.sgdr([dict(init_value=0.0, peak_value=0.1, warmup_steps=1)]), "decay_steps"),
])
def test_bad_arguments_say_which_and_how(make, message):
  with pytest.raises((TypeError, ValueError)) as error:
    make()
  assert message in str(error.value) and "gx.schedules." in str(error.value)
