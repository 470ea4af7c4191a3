"""torch.optim's options and optimizers (maximize, weight decay, dampening, lr_decay, Rprop, ASGD, NAdamW)
against torch in float64, and optax's variants (Adam with Nesterov, AMSGrad, AdamaxW, RMSProp options, Lion
masks) against optax in float64: 32 steps with off-default hyperparameters and an all-zero gradient step.
Plus what the catalogue does not cover: option and range errors, no recompile, vmap, the accumulator dtype."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import gradxform as gx
from tests.catalogue import gradient_stream, initial_params
from tests.helpers import assert_trees_close, cast

STEPS = 32  # gradient_stream's step 3 is all zeros
RTOL = 1e-9

# name: (gradxform optimizer, torch.optim class, its keyword arguments)
TORCH_PAIRS = {
    "sgd_maximize_l2": (lambda: gx.sgd(0.05, weight_decay=0.1, maximize=True), "SGD",
                        dict(lr=0.05, weight_decay=0.1, maximize=True)),
    "sgd_dampening": (lambda: gx.sgd(0.05, momentum=0.7, dampening=0.4, weight_decay=0.1), "SGD",
                      dict(lr=0.05, momentum=0.7, dampening=0.4, weight_decay=0.1)),
    "sgd_nesterov_maximize": (lambda: gx.sgd(0.05, momentum=0.7, nesterov=True, maximize=True), "SGD",
                              dict(lr=0.05, momentum=0.7, nesterov=True, maximize=True)),
    "adam_l2_amsgrad_maximize": (
        lambda: gx.adam(0.02, b1=0.7, b2=0.95, eps=1e-3, amsgrad=True, weight_decay=0.3, maximize=True), "Adam",
        dict(lr=0.02, betas=(0.7, 0.95), eps=1e-3, amsgrad=True, weight_decay=0.3, maximize=True)),
    "adam_decoupled": (lambda: gx.adam(0.02, b1=0.7, b2=0.95, eps=1e-3, weight_decay=0.3,
                                       decoupled_weight_decay=True), "Adam",
                       dict(lr=0.02, betas=(0.7, 0.95), eps=1e-3, weight_decay=0.3, decoupled_weight_decay=True)),
    "adamw_maximize": (lambda: gx.adamw(0.02, b1=0.7, b2=0.95, eps=1e-3, weight_decay=0.3, maximize=True), "AdamW",
                       dict(lr=0.02, betas=(0.7, 0.95), eps=1e-3, weight_decay=0.3, maximize=True)),
    "amsgrad": (lambda: gx.amsgrad(0.02, b1=0.7, b2=0.95, eps=1e-3, weight_decay=0.1), "Adam",
                dict(lr=0.02, betas=(0.7, 0.95), eps=1e-3, amsgrad=True, weight_decay=0.1)),
    "adamax_l2_maximize": (lambda: gx.adamax(0.02, b1=0.7, b2=0.95, eps=1e-3, weight_decay=0.3, maximize=True),
                           "Adamax", dict(lr=0.02, betas=(0.7, 0.95), eps=1e-3, weight_decay=0.3, maximize=True)),
    "nadam_l2_maximize": (lambda: gx.nadam(0.02, b1=0.7, b2=0.95, eps=1e-3, momentum_decay=0.01, weight_decay=0.3,
                                           maximize=True), "NAdam",
                          dict(lr=0.02, betas=(0.7, 0.95), eps=1e-3, momentum_decay=0.01, weight_decay=0.3,
                               maximize=True)),
    "nadam_decoupled": (lambda: gx.nadam(0.02, b1=0.7, b2=0.95, weight_decay=0.3, decoupled_weight_decay=True),
                        "NAdam", dict(lr=0.02, betas=(0.7, 0.95), weight_decay=0.3, decoupled_weight_decay=True)),
    "nadamw_maximize": (lambda: gx.nadamw(0.02, b1=0.7, b2=0.95, weight_decay=0.3, maximize=True), "NAdam",
                        dict(lr=0.02, betas=(0.7, 0.95), weight_decay=0.3, decoupled_weight_decay=True,
                             maximize=True)),
    "radam_l2_maximize": (lambda: gx.radam(0.02, b1=0.7, b2=0.95, eps=1e-3, weight_decay=0.3, maximize=True),
                          "RAdam", dict(lr=0.02, betas=(0.7, 0.95), eps=1e-3, weight_decay=0.3, maximize=True)),
    "radam_decoupled": (lambda: gx.radam(0.02, b1=0.7, b2=0.95, weight_decay=0.3, decoupled_weight_decay=True),
                        "RAdam", dict(lr=0.02, betas=(0.7, 0.95), weight_decay=0.3, decoupled_weight_decay=True)),
    "rmsprop_l2_maximize": (lambda: gx.rmsprop(0.01, decay=0.8, eps=1e-3, centered=True, momentum=0.6,
                                               weight_decay=0.3, maximize=True), "RMSprop",
                            dict(lr=0.01, alpha=0.8, eps=1e-3, centered=True, momentum=0.6, weight_decay=0.3,
                                 maximize=True)),
    "adagrad_lr_decay_l2_maximize": (
        lambda: gx.adagrad(0.1, initial_accumulator_value=0.3, eps=1e-4, lr_decay=0.2, weight_decay=0.3,
                           maximize=True), "Adagrad",
        dict(lr=0.1, initial_accumulator_value=0.3, eps=1e-4, lr_decay=0.2, weight_decay=0.3, maximize=True)),
    "adadelta_l2_maximize": (lambda: gx.adadelta(0.5, rho=0.7, eps=1e-3, weight_decay=0.3, maximize=True),
                             "Adadelta", dict(lr=0.5, rho=0.7, eps=1e-3, weight_decay=0.3, maximize=True)),
    "rprop": (lambda: gx.rprop(0.02, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-3, max_step_size=0.4), "Rprop",
              dict(lr=0.02, etas=(0.3, 1.5), step_sizes=(1e-3, 0.4), foreach=False)),
    "rprop_maximize_clamped_start": (lambda: gx.rprop(2.0, max_step_size=1.0, maximize=True), "Rprop",
                                     dict(lr=2.0, step_sizes=(1e-6, 1.0), maximize=True, foreach=False)),
    "asgd": (lambda: gx.asgd(0.05, lambd=0.2, alpha=0.6, t0=7.0, weight_decay=0.1), "ASGD",
             dict(lr=0.05, lambd=0.2, alpha=0.6, t0=7.0, weight_decay=0.1, foreach=False)),
    "asgd_maximize": (lambda: gx.asgd(0.05, lambd=0.2, t0=0.0, maximize=True), "ASGD",
                      dict(lr=0.05, lambd=0.2, t0=0.0, maximize=True, foreach=False)),
}


def _run_torch(cls, kwargs, steps):
  torch = pytest.importorskip("torch")
  torch.set_default_dtype(torch.float64)  # NAdam's mu_product and ASGD's eta/mu live in the default dtype
  try:
    keys = sorted(initial_params())
    params = [torch.tensor(initial_params()[k], dtype=torch.float64, requires_grad=True) for k in keys]
    opt = getattr(torch.optim, cls)(params, **kwargs)
    history, averages = [], []
    for grads in gradient_stream(steps=steps):
      for p, k in zip(params, keys):
        p.grad = torch.tensor(grads[k], dtype=torch.float64)
      opt.step()
      history.append({k: p.detach().numpy().copy() for k, p in zip(keys, params)})
      if cls == "ASGD":
        averages.append({k: opt.state[p]["ax"].numpy().copy() for k, p in zip(keys, params)})
  finally:
    torch.set_default_dtype(torch.float32)
  return history, averages


def _run_gx(opt, steps):
  params = cast(initial_params(), jnp.float64)
  state = opt.init(params)
  history, states = [], []
  for grads in gradient_stream(steps=steps):
    updates, state = opt.update(cast(grads, jnp.float64), state, params)
    params = gx.apply_updates(params, updates)
    history.append(params)
    states.append(state)
  return history, states


@pytest.mark.parametrize("name", sorted(TORCH_PAIRS))
def test_matches_torch_float64(name):
  make, cls, kwargs = TORCH_PAIRS[name]
  expected, averages = _run_torch(cls, kwargs, STEPS)
  with jax.enable_x64(True):
    got, states = _run_gx(make(), STEPS)
    for step, (g, e) in enumerate(zip(got, expected)):
      assert_trees_close(g, e, rtol=RTOL, atol=1e-12, what=f"{name} step {step}")
    for step, (state, e) in enumerate(zip(states, averages)):
      assert_trees_close(gx.asgd_averaged_params(state), e, rtol=RTOL, atol=1e-12, what=f"{name} ax step {step}")
  if cls == "ASGD":
    assert len(averages) == STEPS
  moved = np.linalg.norm(expected[-1]["w"] - initial_params()["w"])
  assert moved > 1e-3, f"{name}: the parameters barely moved ({moved}); the comparison would prove little"


def test_adamw_is_adam_with_decoupled_weight_decay():
  pair = (gx.adamw(0.02, b1=0.7, weight_decay=0.3), gx.adam(0.02, b1=0.7, weight_decay=0.3,
                                                            decoupled_weight_decay=True))
  assert pair[0] == pair[1]
  with jax.enable_x64(True):
    (a, _), (b, _) = (_run_gx(opt, STEPS) for opt in pair)
  assert_trees_close(a, b, rtol=0, atol=0, what="adamw vs adam(decoupled_weight_decay=True)")


def _optax_pairs():
  optax = pytest.importorskip("optax")
  mask = {"b": False, "w": True}
  return {
      "adam_nesterov": (lambda: gx.adam(0.02, b1=0.7, b2=0.95, eps=1e-3, nesterov=True),
                        lambda: optax.adam(0.02, b1=0.7, b2=0.95, eps=1e-3, nesterov=True)),
      "adamw_nesterov_mask": (
          lambda: gx.adamw(0.02, b1=0.7, b2=0.95, eps=1e-3, weight_decay=0.3, nesterov=True, mask=mask),
          lambda: optax.adamw(0.02, b1=0.7, b2=0.95, eps=1e-3, weight_decay=0.3, nesterov=True, mask=mask)),
      "amsgrad_optax": (lambda: gx.amsgrad(0.02, b1=0.7, b2=0.95, eps=1e-3, debias_before_max=True),
                        lambda: optax.amsgrad(0.02, b1=0.7, b2=0.95, eps=1e-3)),
      "adamaxw": (lambda: gx.adamaxw(0.02, b1=0.7, b2=0.95, eps=1e-3, weight_decay=0.3, mask=mask),
                  lambda: optax.adamaxw(0.02, b1=0.7, b2=0.95, eps=1e-3, weight_decay=0.3, mask=mask)),
      "adamaxw_defaults": (lambda: gx.adamaxw(0.02), lambda: optax.adamaxw(0.02)),
      "rmsprop_optax_defaults": (lambda: gx.rmsprop(0.01, decay=0.9, eps_in_sqrt=True), lambda: optax.rmsprop(0.01)),
      "rmsprop_all_options": (
          lambda: gx.rmsprop(0.01, decay=0.8, eps=1e-3, momentum=0.6, nesterov=True, eps_in_sqrt=True,
                             bias_correction=True, initial_scale=0.4),
          lambda: optax.rmsprop(0.01, decay=0.8, eps=1e-3, momentum=0.6, nesterov=True, eps_in_sqrt=True,
                                bias_correction=True, initial_scale=0.4)),
      "rmsprop_centered_options": (
          lambda: gx.rmsprop(0.01, decay=0.8, eps=1e-3, centered=True, momentum=0.6, bias_correction=True,
                             initial_scale=0.4),
          lambda: optax.rmsprop(0.01, decay=0.8, eps=1e-3, centered=True, momentum=0.6, eps_in_sqrt=False,
                                bias_correction=True, initial_scale=0.4)),
      "lion_mask": (lambda: gx.lion(0.02, b1=0.7, b2=0.95, weight_decay=0.3, mask=mask),
                    lambda: optax.lion(0.02, b1=0.7, b2=0.95, weight_decay=0.3, mask=mask)),
      "sgd_accumulator_dtype": (lambda: gx.sgd(0.05, momentum=0.7, nesterov=True, accumulator_dtype=jnp.float64),
                                lambda: optax.sgd(0.05, momentum=0.7, nesterov=True, accumulator_dtype=jnp.float64)),
  }


@pytest.mark.parametrize("name", ["adam_nesterov", "adamw_nesterov_mask", "amsgrad_optax", "adamaxw",
                                  "adamaxw_defaults", "rmsprop_optax_defaults", "rmsprop_all_options",
                                  "rmsprop_centered_options", "lion_mask", "sgd_accumulator_dtype"])
def test_matches_optax_float64(name):
  optax = pytest.importorskip("optax")
  ours, theirs = _optax_pairs()[name]
  # optax mixes Python floats with int32 counts, which strict promotion refuses
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    params_a = params_b = cast(initial_params(), jnp.float64)
    opt_a, opt_b = ours(), theirs()
    state_a, state_b = opt_a.init(params_a), opt_b.init(params_b)
    for step, grads in enumerate(gradient_stream(steps=STEPS)):
      grads = cast(grads, jnp.float64)
      updates_a, state_a = opt_a.update(grads, state_a, params_a)
      updates_b, state_b = opt_b.update(grads, state_b, params_b)
      assert_trees_close(updates_a, updates_b, rtol=RTOL, atol=1e-13, what=f"{name} step {step}")
      params_a, params_b = gx.apply_updates(params_a, updates_a), optax.apply_updates(params_b, updates_b)
  assert np.linalg.norm(np.asarray(params_a["w"]) - initial_params()["w"]) > 1e-3


def test_amsgrad_default_is_torch_not_optax():
  """The two AMSGrads differ from the second step on; the default is torch's."""
  with jax.enable_x64(True):
    (torch_rule, _), (optax_rule, _) = (_run_gx(opt, 4) for opt in (
        gx.amsgrad(0.02, b2=0.95), gx.amsgrad(0.02, b2=0.95, debias_before_max=True)))
  assert not np.allclose(torch_rule[-1]["w"], optax_rule[-1]["w"], rtol=1e-6)


@pytest.mark.parametrize("make,dtype", [
    (lambda dt: gx.trace(0.9, accumulator_dtype=dt), jnp.bfloat16),
    (lambda dt: gx.sgd(0.1, momentum=0.9, accumulator_dtype=dt), jnp.bfloat16),
    (lambda dt: gx.rmsprop(0.1, momentum=0.9, accumulator_dtype=dt), jnp.bfloat16),
    (lambda dt: gx.sgd(0.1, momentum=0.9, nesterov=True, accumulator_dtype=dt), jnp.float16),
], ids=["trace", "sgd", "rmsprop", "sgd_nesterov_f16"])
def test_accumulator_dtype_stores_the_buffer_in_it(make, dtype):
  params = cast(initial_params(), jnp.float32)
  opt = make(dtype)
  state = opt.init(params)
  traces = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, gx.TraceState))
            if isinstance(s, gx.TraceState)]
  assert len(traces) == 1 and {x.dtype for x in jax.tree.leaves(traces[0].trace)} == {jnp.dtype(dtype)}
  step = jax.jit(opt.update)
  for grads in gradient_stream(steps=6):
    updates, state = step(cast(grads, jnp.float32), state, params)
    assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
  assert {x.dtype for x in jax.tree.leaves(traces[0].trace)} == {jnp.dtype(dtype)}


def test_accumulator_dtype_update_reads_the_stored_buffer():
  """trace's update is the buffer as stored in bfloat16 (NumPy emulation of the rounding)."""
  params = cast(initial_params(), jnp.float32)
  opt = gx.trace(0.9, accumulator_dtype=jnp.bfloat16)
  state = opt.init(params)
  buf = {k: np.zeros_like(v, np.float32) for k, v in initial_params().items()}
  for grads in gradient_stream(steps=6):
    updates, state = opt.update(cast(grads, jnp.float32), state, params)
    for k in buf:
      exact = np.float32(0.9) * buf[k] + np.asarray(grads[k], np.float32)
      buf[k] = exact.astype(ml_dtypes.bfloat16).astype(np.float32)
      np.testing.assert_array_equal(np.asarray(updates[k]), buf[k])


@pytest.mark.parametrize("build,name", [
    (lambda: gx.adam(1e-3, maximize=1), "adam: maximize"),
    (lambda: gx.adam(1e-3, decoupled_weight_decay="yes"), "adam: decoupled_weight_decay"),
    (lambda: gx.adam(1e-3, nesterov=None), "scale_by_adam: nesterov"),
    (lambda: gx.sgd(0.1, momentum=0.9, nesterov=1), "sgd: nesterov"),
    (lambda: gx.rmsprop(0.1, eps_in_sqrt=0), "rmsprop: eps_in_sqrt"),
    (lambda: gx.rmsprop(0.1, bias_correction="True"), "rmsprop: bias_correction"),
    (lambda: gx.amsgrad(0.1, debias_before_max=1.0), "scale_by_adam: debias_before_max"),
    (lambda: gx.rprop(0.1, maximize=np.float64(1)), "rprop: maximize"),
    (lambda: gx.asgd(0.1, maximize=[True]), "asgd: maximize"),
    (lambda: gx.scale_by_rms(centered=1), "scale_by_rms: centered"),
    (lambda: gx.trace(0.9, accumulator_dtype=jnp.int32), "trace: accumulator_dtype"),
    (lambda: gx.sgd(0.1, momentum=0.9, accumulator_dtype="int8"), "sgd: accumulator_dtype"),
])
def test_options_must_be_bools_and_dtypes(build, name):
  with pytest.raises(TypeError, match=name):
    build()


@pytest.mark.parametrize("build,match", [
    (lambda: gx.rprop(0.1, eta_minus=1.5), r"rprop: scale_by_rprop: eta_minus=1.5 is out of range \(0, 1\)"),
    (lambda: gx.rprop(0.1, eta_plus=0.9), r"scale_by_rprop: eta_plus=0.9 is out of range \(1, inf\)"),
    (lambda: gx.rprop(0.1, min_step_size=2.0, max_step_size=1.0), r"scale_by_rprop: min_step_size=2.0 is above"),
    (lambda: gx.rprop(-0.1), r"scale_by_rprop: learning_rate=-0.1"),
    (lambda: gx.asgd(0.1, lambd=-1.0), r"asgd: scale_by_asgd: lambd=-1.0"),
    (lambda: gx.asgd(0.1, t0=-1.0), r"scale_by_asgd: t0=-1.0"),
    (lambda: gx.asgd(0.1, alpha=float("inf")), r"scale_by_asgd: alpha=inf is not finite"),
    (lambda: gx.sgd(0.1, momentum=0.9, dampening=1.5), r"sgd: dampening=1.5 is out of range \[0, 1\]"),
    (lambda: gx.sgd(0.1, dampening=-0.5), r"sgd: dampening=-0.5 is out of range"),
    (lambda: gx.sgd(0.1, momentum=0.9, nesterov=True, dampening=0.1), r"sgd: trace: nesterov=True needs dampening=0"),
    (lambda: gx.adagrad(0.1, lr_decay=-0.1), r"adagrad: scale_by_adagrad: lr_decay=-0.1"),
    (lambda: gx.rmsprop(0.1, nesterov=True), r"rmsprop: nesterov=True needs a momentum"),
    (lambda: gx.rmsprop(0.1, initial_scale=-1.0), r"scale_by_rms: initial_scale=-1.0"),
    (lambda: gx.adam(0.1, weight_decay=-0.1), r"adam: add_decayed_weights: weight_decay=-0.1"),
    (lambda: gx.nadamw(0.1, weight_decay=-0.1), r"nadamw: add_decayed_weights: weight_decay=-0.1"),
])
def test_bad_hyperparameters_name_the_transform(build, match):
  with pytest.raises(ValueError, match=match):
    build()


def test_asgd_needs_params_and_its_average_must_be_found():
  params = cast(initial_params(), jnp.float32)
  opt = gx.asgd(0.1)
  state = opt.init(params)
  with pytest.raises(ValueError, match=r"scale_by_asgd: params are required in update\(\)"):
    opt.update(params, state)
  assert_trees_close(gx.asgd_averaged_params(state), params, rtol=0, atol=0, what="average before any step")
  with pytest.raises(ValueError, match=r"asgd_averaged_params: found no ScaleByAsgdState"):
    gx.asgd_averaged_params(gx.sgd(0.1).init(params))


@pytest.mark.parametrize("make", [
    lambda v: gx.rprop(v, eta_minus=v, eta_plus=1 + v),
    lambda v: gx.asgd(v, lambd=v, alpha=v, t0=v, weight_decay=v, maximize=True),
    lambda v: gx.sgd(v, momentum=v, dampening=v, weight_decay=v, maximize=True),
    lambda v: gx.adagrad(v, lr_decay=v, weight_decay=v),
    lambda v: gx.rmsprop(v, decay=v, momentum=v, nesterov=True, initial_scale=v, bias_correction=True),
    lambda v: gx.nadamw(v, weight_decay=v),
], ids=["rprop", "asgd", "sgd", "adagrad", "rmsprop", "nadamw"])
def test_new_hyperparameter_values_do_not_recompile(make):
  traces = []

  @jax.jit
  def step(opt, grads, state, params):
    traces.append(1)
    return opt.update(grads, state, params)

  params = cast(initial_params(), jnp.float32)
  for value in (0.3, 0.2, 0.1):
    opt = make(value)
    state = opt.init(params)
    for grads in gradient_stream(steps=2):
      _, state = step(opt, cast(grads, jnp.float32), state, params)
  assert len(traces) == 1


@pytest.mark.parametrize("make", [lambda lr: gx.rprop(lr), lambda lr: gx.asgd(lr, t0=2.0)], ids=["rprop", "asgd"])
def test_vmap_over_learning_rate_equals_separate_runs(make):
  lrs = jnp.array([0.05, 0.1, 0.2], jnp.float32)
  params = cast(initial_params(), jnp.float32)
  stream = [cast(g, jnp.float32) for g in gradient_stream(steps=5)]

  def run(lr):
    opt = make(lr)
    p, state = params, opt.init(params)
    for grads in stream:
      updates, state = opt.update(grads, state, p)
      p = gx.apply_updates(p, updates)
    return p

  stacked = jax.jit(jax.vmap(run))(lrs)
  single = jax.jit(run)
  for i, lr in enumerate(lrs):
    assert_trees_close(jax.tree.map(lambda x: x[i], stacked), single(lr), rtol=1e-6, atol=1e-7,
                       what=f"member {i}")


@pytest.mark.parametrize("flat_mode", [False, True], ids=["trees", "buffers"])
@pytest.mark.parametrize("make", [
    lambda: gx.rprop(0.05, maximize=True),
    lambda: gx.asgd(0.05, lambd=0.1, t0=1.0, weight_decay=0.1),
    lambda: gx.sgd(0.05, momentum=0.8, dampening=0.2, maximize=True),
    lambda: gx.adagrad(0.05, lr_decay=0.1, weight_decay=0.1),
    lambda: gx.rmsprop(0.01, momentum=0.5, nesterov=True, eps_in_sqrt=True, initial_scale=0.1, bias_correction=True),
    lambda: gx.adam(0.01, nesterov=True, amsgrad=True, weight_decay=0.1, decoupled_weight_decay=True),
], ids=["rprop", "asgd", "sgd", "adagrad", "rmsprop", "adam"])
def test_new_stages_run_on_packed_buffers(make, flat_mode):
  from gradxform._scale_out.packed import runs_on_buffers
  from tests.test_packing import _assert_tree_equal, _run_both, _tree

  assert all(runs_on_buffers(stage) for stage in make().transforms)
  packer = gx.Packer(_tree())
  p_tree, p_pack, _, _ = _run_both(make(), gx.packed(make(), packer if flat_mode else None), flat_mode)
  _assert_tree_equal(p_pack, p_tree, rtol=1e-6)
