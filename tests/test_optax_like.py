"""``gx.optax_like`` reproduces optax step by step (float64, 30 steps, an all-zero gradient step included).

Each pair runs with optax's defaults and with off-default hyperparameters; the
updates must agree to 1e-9 relative at every step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform import optax_like
from tests.catalogue import gradient_stream, initial_params
from tests.helpers import assert_trees_close, cast

optax = pytest.importorskip("optax")

PAIRS = {  # name: (gx.optax_like call, optax call), the same arguments
    "adam": lambda o: o.adam(1e-2),
    "adam_off": lambda o: o.adam(0.05, b1=0.8, b2=0.9, eps=0.3, eps_root=0.1),
    "adamw": lambda o: o.adamw(1e-2),
    "adamw_off": lambda o: o.adamw(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.3,
                                   mask={"b": False, "w": True}),
    "rmsprop": lambda o: o.rmsprop(1e-2),
    "rmsprop_off": lambda o: o.rmsprop(0.05, decay=0.8, eps=0.3, momentum=0.5, nesterov=True),
    "rmsprop_centered": lambda o: o.rmsprop(0.05, decay=0.8, eps=0.3, centered=True, momentum=0.5),
    "rmsprop_eps_outside_debiased": lambda o: o.rmsprop(0.05, eps=0.3, eps_in_sqrt=False, bias_correction=True),
    "adagrad": lambda o: o.adagrad(0.1),
    "adagrad_off": lambda o: o.adagrad(0.3, initial_accumulator_value=0.5, eps=0.2),
    "adadelta": lambda o: o.adadelta(),  # optax's default: no learning rate, the update is not negated
    "adadelta_off": lambda o: o.adadelta(0.5, rho=0.8, eps=0.1, weight_decay=0.2),
    "adamax": lambda o: o.adamax(1e-2),
    "adamax_off": lambda o: o.adamax(0.05, b1=0.8, b2=0.9, eps=0.3),
    "sgd": lambda o: o.sgd(0.1),
    "sgd_off": lambda o: o.sgd(0.1, momentum=0.8, nesterov=True),
    "amsgrad": lambda o: o.amsgrad(1e-2),
    "amsgrad_off": lambda o: o.amsgrad(0.05, b1=0.8, b2=0.9, eps=0.3),
    "adam_nesterov": lambda o: o.adam(0.05, b1=0.8, b2=0.9, eps=0.3, nesterov=True),
    "adamw_nesterov": lambda o: o.adamw(0.05, b1=0.8, b2=0.9, weight_decay=0.3, nesterov=True),
    "lion": lambda o: o.lion(1e-2),
    "lion_off": lambda o: o.lion(0.05, b1=0.8, b2=0.95, weight_decay=0.3),
    "clip_by_global_norm+adamw": lambda o: o.chain(o.clip_by_global_norm(2.0), o.adamw(1e-2)),
    "clip_by_global_norm_zero": lambda o: o.clip_by_global_norm(0.5),
    "scale_by_adam": lambda o: o.scale_by_adam(b1=0.8, b2=0.9, eps=0.3, eps_root=0.1),
    "scale_by_rms": lambda o: o.scale_by_rms(decay=0.8, eps=0.3),
    "scale_by_stddev": lambda o: o.scale_by_stddev(decay=0.8, eps=0.3),
    "scale_by_adamax": lambda o: o.scale_by_adamax(b1=0.8, b2=0.9, eps=0.3),
    "scale_by_adadelta": lambda o: o.scale_by_adadelta(rho=0.8, eps=0.1),
    "scale_by_lion": lambda o: o.scale_by_lion(b1=0.8, b2=0.9),
    "scale_by_learning_rate": lambda o: o.scale_by_learning_rate(0.3),
    "scale_by_learning_rate_no_flip": lambda o: o.scale_by_learning_rate(0.3, flip_sign=False),
    "trace": lambda o: o.trace(0.7, nesterov=True),
    "ema": lambda o: o.ema(0.7),
    "add_decayed_weights": lambda o: o.add_decayed_weights(0.3, mask={"b": True, "w": False}),
    "masked": lambda o: o.masked(o.adam(0.1), {"b": True, "w": False}),
    "apply_if_finite": lambda o: o.apply_if_finite(o.sgd(0.1, momentum=0.9), 3),
    "nadam": lambda o: o.nadam(0.05),
    "nadam_off": lambda o: o.nadam(0.05, b1=0.8, b2=0.9, eps=0.1, eps_root=0.01),
    "nadamw": lambda o: o.nadamw(0.05, b1=0.8, weight_decay=0.3, mask={"b": False, "w": True}),
    "radam": lambda o: o.radam(0.05),
    "radam_off": lambda o: o.radam(0.05, b1=0.8, b2=0.99, eps=0.1, eps_root=0.01, threshold=4.5),
    "radam_nesterov": lambda o: o.radam(0.05, b2=0.95, nesterov=True),
    "scale_by_radam": lambda o: o.scale_by_radam(b1=0.7, b2=0.9, threshold=6.0),
    # optax's transforms and optimizers that gradxform has under the same name
    "sgd_accumulator_dtype": lambda o: o.sgd(0.1, momentum=0.8, nesterov=True, accumulator_dtype=jnp.float32),
    "trace_accumulator_dtype": lambda o: o.trace(0.7, accumulator_dtype=jnp.float32),
    "ema_accumulator_dtype": lambda o: o.ema(0.7, debias=False, accumulator_dtype=jnp.float32),
    "scale_by_rms_initial_scale": lambda o: o.scale_by_rms(decay=0.8, eps=0.3, initial_scale=0.5),
    "scale_by_stddev_initial_scale": lambda o: o.scale_by_stddev(decay=0.8, eps=0.3, initial_scale=0.5,
                                                                 eps_in_sqrt=False),
    "scale_by_amsgrad": lambda o: o.scale_by_amsgrad(b1=0.8, b2=0.9, eps=0.3),
    "amsgrad_eps_root": lambda o: o.amsgrad(0.05, b1=0.8, b2=0.9, eps=0.3, eps_root=0.2),
    "scale_by_rss": lambda o: o.scale_by_rss(initial_accumulator_value=0.3, eps=0.2),
    "adafactor": lambda o: o.adafactor(min_dim_size_to_factor=3),
    "adafactor_off": lambda o: o.adafactor(0.05, min_dim_size_to_factor=3, decay_rate=0.7, decay_offset=2,
                                           clipping_threshold=0.8, momentum=0.6, weight_decay_rate=0.01,
                                           eps=1e-20, weight_decay_mask={"b": False, "w": True}),
    "adafactor_unfactored": lambda o: o.adafactor(0.1, factored=False, multiply_by_parameter_scale=False,
                                                  clipping_threshold=None),
    "scale_by_factored_rms": lambda o: o.scale_by_factored_rms(decay_rate=0.7, min_dim_size_to_factor=3,
                                                               epsilon=0.1),
    "signum": lambda o: o.signum(0.05, beta=0.7),
    "scale_by_lion_smooth": lambda o: o.scale_by_lion(b1=0.8, b2=0.9, mode="smooth", smooth_beta=0.7),
    "scale_by_lion_refined": lambda o: o.scale_by_lion(b1=0.8, b2=0.9, mode="refined"),
    "noisy_sgd": lambda o: o.noisy_sgd(0.05, eta=0.3, gamma=0.6, key=3),
    "add_noise": lambda o: o.add_noise(0.3, 0.6, 5),
    "add_noise_typed_key": lambda o: o.add_noise(0.3, 0.6, key=jax.random.key(11)),
    "noisy_sgd_typed_key": lambda o: o.noisy_sgd(0.05, eta=0.3, key=jax.random.key(4)),
    "adabelief": lambda o: o.adabelief(0.05, b1=0.8, b2=0.9, eps=1e-6, eps_root=1e-7, nesterov=True),
    "adamaxw": lambda o: o.adamaxw(0.05, b1=0.8, b2=0.9, weight_decay=0.2, mask={"b": False, "w": True}),
    "adan": lambda o: o.adan(0.05, b1=0.9, b2=0.8, b3=0.95, weight_decay=0.1),
    "lamb": lambda o: o.lamb(0.05, b1=0.8, b2=0.9, weight_decay=0.1),
    "lars": lambda o: o.lars(0.5, weight_decay=0.1, trust_coefficient=0.01, momentum=0.8, nesterov=True),
    "fromage": lambda o: o.fromage(0.05, min_norm=0.1),
    "novograd": lambda o: o.novograd(0.05, b1=0.8, b2=0.3, weight_decay=0.1),
    "yogi": lambda o: o.yogi(0.05, b1=0.8, b2=0.9, eps=0.1),
    "sm3": lambda o: o.sm3(0.5, momentum=0.8),
    "sign_sgd": lambda o: o.sign_sgd(0.05),
    "optimistic_gradient_descent": lambda o: o.optimistic_gradient_descent(0.05, alpha=0.7, beta=0.3),
    "optimistic_adam_v2": lambda o: o.optimistic_adam_v2(0.05, alpha=0.7, beta=0.3, b1=0.8),
    "centralize+clip_by_block_rms": lambda o: o.chain(o.centralize(), o.clip_by_block_rms(0.5)),
    "normalize_by_update_norm": lambda o: o.normalize_by_update_norm(0.5, eps=0.1),
    "scale_by_trust_ratio": lambda o: o.chain(o.scale_by_adam(), o.scale_by_trust_ratio(min_norm=0.1)),
    "scale_by_param_block_norm": lambda o: o.scale_by_param_block_norm(0.1),
    "scale_by_param_block_rms": lambda o: o.scale_by_param_block_rms(0.1),
    "scale_by_distance_over_gradients": lambda o: o.scale_by_distance_over_gradients(reps_rel=1e-3),
    "zero_nans+freeze": lambda o: o.chain(o.zero_nans(), o.freeze({"b": True, "w": False}), o.sgd(0.1)),
    "partition": lambda o: o.partition({"a": o.adam(0.05), "s": o.sgd(0.1, momentum=0.9)}, {"b": "a", "w": "s"}),
    "multi_transform": lambda o: o.multi_transform({"a": o.adam(0.05), "s": o.sgd(0.1)}, {"b": "a", "w": "s"}),
    "stateless": lambda o: o.stateless(lambda u, p: jax.tree.map(lambda g, x: g + 0.1 * x, u, p)),
    "masked_nested": lambda o: o.masked(o.chain(o.adam(0.1), o.add_decayed_weights(0.1)), {"b": False, "w": True}),
    "inject_hyperparams": lambda o: o.inject_hyperparams(o.adamw)(0.05, b1=0.8, weight_decay=0.3),
    "inject_hyperparams_schedule": lambda o: o.inject_hyperparams(o.sgd)(
        o.linear_schedule(0.1, 0.01, 20), momentum=0.8),
    "sgd_warmup_cosine_decay_schedule": lambda o: o.sgd(o.warmup_cosine_decay_schedule(0.0, 0.1, 5, 25, 0.01)),
    "adam_exponential_decay": lambda o: o.adam(o.schedules.exponential_decay(0.1, 5, 0.5, 2, staircase=True)),
    "sgd_piecewise_constant_schedule": lambda o: o.sgd(o.piecewise_constant_schedule(0.1, {5: 0.5, 12: 0.1})),
    "sgd_join_schedules": lambda o: o.sgd(o.join_schedules(
        [o.linear_schedule(0.0, 0.1, 5), o.cosine_decay_schedule(0.1, 20, alpha=0.1)], [5])),
    "sgd_sgdr_schedule": lambda o: o.sgd(o.sgdr_schedule([dict(init_value=0.0, peak_value=0.1, warmup_steps=2,
                                                              decay_steps=10)] * 3)),
    "sgd_onecycle": lambda o: o.sgd(o.cosine_onecycle_schedule(30, 0.1)),
    "sgd_linear_onecycle": lambda o: o.sgd(o.linear_onecycle_schedule(30, 0.1)),
    "sgd_polynomial": lambda o: o.sgd(o.polynomial_schedule(0.1, 0.01, 2.0, 20, 3)),
    "sgd_warmup_exponential": lambda o: o.sgd(o.warmup_exponential_decay_schedule(0.0, 0.1, 5, 3, 0.7)),
    "sgd_warmup_constant": lambda o: o.sgd(o.warmup_constant_schedule(0.0, 0.1, 5)),
    "sgd_piecewise_interpolate": lambda o: o.sgd(o.piecewise_interpolate_schedule("cosine", 0.1, {5: 0.5, 10: 0.2})),
    # optax.contrib
    "contrib.ademamix": lambda o: o.contrib.ademamix(0.05, b1=0.8, b3=0.99, alpha=3.0, weight_decay=0.1,
                                                     mask={"b": False, "w": True}),
    "contrib.scale_by_ademamix": lambda o: o.contrib.scale_by_ademamix(b1=0.8, b3=0.99, alpha=3.0),
    "contrib.simplified_ademamix": lambda o: o.contrib.simplified_ademamix(0.05, alpha=2.0, weight_decay=0.1,
                                                                           mask={"b": False, "w": True}),
    "contrib.adopt": lambda o: o.contrib.adopt(0.05, b1=0.8, b2=0.99, nesterov=True),
    "contrib.adopt_no_clipping": lambda o: o.contrib.adopt(0.05, use_clipping=False),
    "contrib.scale_by_adopt_clip_fn": lambda o: o.contrib.scale_by_adopt(clip_value_fn=lambda t: 0.5 + t),
    "contrib.dadapt_adamw": lambda o: o.contrib.dadapt_adamw(0.5, betas=(0.8, 0.9), weight_decay=0.1),
    "contrib.prodigy": lambda o: o.contrib.prodigy(0.5, betas=(0.8, 0.9), beta3=0.95, weight_decay=0.1),
    "contrib.dog": lambda o: o.contrib.dog(0.5, weight_decay=0.1),
    "contrib.dowg": lambda o: o.contrib.dowg(0.5),
    "contrib.schedule_free_sgd": lambda o: o.contrib.schedule_free_sgd(0.1, warmup_steps=3, b1=0.8),
    "contrib.schedule_free_adamw": lambda o: o.contrib.schedule_free_adamw(0.05, warmup_steps=3, weight_decay=0.1),
    "contrib.cocob": lambda o: o.contrib.cocob(),
    "contrib.normalize": lambda o: o.contrib.normalize(),
    "contrib.muon": lambda o: o.contrib.muon(0.02, beta=0.85, weight_decay=0.04, adam_b1=0.8,
                                             adam_weight_decay=0.03, adam_learning_rate=0.005),
    "contrib.muon_consistent_rms": lambda o: o.contrib.muon(0.02, consistent_rms=0.3, nesterov=False),
}


# Where optax rounds to float32 under x64, the two agree to float32's precision only: most optax schedules
# (and schedule-free's warmup, built on one) return float32 values; with a float32 accumulator, optax
# multiplies the stored buffer by a weakly typed Python float in float32 (here: in the update's dtype).
_FLOAT32_ROUNDED = ["adam_exponential_decay", "inject_hyperparams_schedule", "contrib.schedule_free_adamw",
                    "contrib.schedule_free_sgd", "ema_accumulator_dtype", "sgd_accumulator_dtype",
                    "trace_accumulator_dtype"] + [name for name in PAIRS if name.startswith("sgd_") and
                                                  name != "sgd_off"]
RTOL = dict.fromkeys(_FLOAT32_ROUNDED, 2e-6)  # float32's epsilon, grown over 30 steps
RTOL.update(dict.fromkeys([name for name in _FLOAT32_ROUNDED if "accumulator" in name], 2e-5))  # near 0 crossings
RTOL["sgd_onecycle"] = 1e-5  # optax's float32 cosine near the end of the cycle, where the rate is ~5e-4
# optax.contrib.normalize divides the all-zero gradient by its norm 0 (NaN); here the update is 0
ZERO_GRADIENT_NAN_IN_OPTAX = {"contrib.normalize"}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_reproduces_optax_step_by_step(name):
  # optax itself mixes Python floats with int32 counts, which strict promotion refuses
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    ours, theirs = PAIRS[name](optax_like), PAIRS[name](optax)
    params_a = params_b = cast(initial_params(), jnp.float64)
    state_a, state_b = ours.init(params_a), theirs.init(params_b)
    update_a, update_b = jax.jit(ours.update), jax.jit(theirs.update)
    for step, grads in enumerate(gradient_stream(30, seed=2)):  # step 3 is all zeros
      grads = cast(grads, jnp.float64)
      updates_a, state_a = update_a(grads, state_a, params_a)
      updates_b, state_b = update_b(grads, state_b, params_b)
      if step == 3 and name in ZERO_GRADIENT_NAN_IN_OPTAX:
        assert all(bool(jnp.all(jnp.isnan(u))) for u in jax.tree.leaves(updates_b)), name
        assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates_a)), name
        updates_b = updates_a  # optax's parameters become NaN; continue from the same point
      assert_trees_close(updates_a, updates_b, rtol=RTOL.get(name, 1e-9), atol=1e-12, what=f"{name} step {step}")
      params_a, params_b = gx.apply_updates(params_a, updates_a), optax.apply_updates(params_b, updates_b)


def test_defaults_differ_from_the_default_namespace_where_optax_and_torch_differ():
  """The point of the namespace: the same call, optax's numbers here and torch's in ``gx``."""
  adamw = optax_like.adamw(1e-3)
  assert float(adamw.transforms[1].weight_decay) == 1e-4 and float(gx.adamw(1e-3).transforms[1].weight_decay) == 1e-2
  assert gx.optax_like is optax_like and gx.optax_like.chain is gx.chain


def test_radam_options_are_checked():
  with pytest.raises(ValueError, match=r"scale_by_radam: threshold=4\.0 is out of range \(4, inf\)"):
    optax_like.radam(1e-3, threshold=4.0)  # (ρ − 4) under the root: NaN at or below 4
  with pytest.raises(ValueError, match="scale_by_radam: threshold and nesterov belong to optax's rule"):
    gx.scale_by_radam(nesterov=True)
  with pytest.raises(TypeError, match="scale_by_radam: nesterov"):
    optax_like.radam(1e-3, nesterov="yes")


def _parameters(fn):
  import inspect  # noqa: PLC0415
  return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


def _optax_names():
  names = [("", n) for n in dir(optax_like) if not n.startswith("_") and hasattr(optax, n)]
  return names + [("contrib.", n) for n in optax_like.contrib.__all__ if hasattr(optax.contrib, n)]


@pytest.mark.parametrize("prefix,name", _optax_names(), ids=lambda x: x)
def test_signatures_are_optax_s(prefix, name):
  """A search-and-replace port: optax's parameters, in optax's order (gradxform may add keyword-only ones)."""
  ours = getattr(optax_like.contrib if prefix else optax_like, name)
  theirs = getattr(optax.contrib if prefix else optax, name)
  if not callable(theirs) or isinstance(theirs, type) or not callable(ours):
    return
  if isinstance(ours, type) and isinstance(theirs, type):
    return
  try:
    expected = _parameters(theirs)
  except (TypeError, ValueError):
    return
  got = _parameters(ours)
  if name == "chain":  # optax: chain(*args); gradxform: chain(*transforms, **named)
    assert got[0][1] == expected[0][1]
    return
  assert got[:len(expected)] == expected, f"{prefix}{name}: {got} vs optax's {expected}"
  assert all(kind.name == "KEYWORD_ONLY" for _, kind in got[len(expected):]), got


@pytest.mark.parametrize("name", ["constant_schedule", "cosine_decay_schedule", "cosine_onecycle_schedule",
                                  "exponential_decay", "linear_onecycle_schedule", "linear_schedule",
                                  "piecewise_constant_schedule", "polynomial_schedule", "warmup_constant_schedule",
                                  "warmup_cosine_decay_schedule", "warmup_exponential_decay_schedule"])
def test_schedules_are_optax_s_in_float32(name):
  args = {"constant_schedule": (0.3,), "cosine_decay_schedule": (0.3, 40, 0.1, 1.5),
          "cosine_onecycle_schedule": (50, 0.3), "exponential_decay": (0.3, 7, 0.6, 5, True, 0.01),
          "linear_onecycle_schedule": (50, 0.3), "linear_schedule": (0.3, 0.01, 40, 5),
          "piecewise_constant_schedule": (0.3, {10: 0.5, 30: 0.2}), "polynomial_schedule": (0.3, 0.01, 2.0, 40, 5),
          "warmup_constant_schedule": (0.0, 0.3, 10), "warmup_cosine_decay_schedule": (0.0, 0.3, 10, 50, 0.01),
          "warmup_exponential_decay_schedule": (0.0, 0.3, 10, 7, 0.6)}[name]
  ours, theirs = getattr(optax_like, name)(*args), getattr(optax, name)(*args)
  with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
    for count in range(70):
      a, b = float(ours(jnp.int32(count))), float(theirs(jnp.int32(count)))
      assert a == pytest.approx(b, rel=1e-5, abs=1e-8), (name, count, a, b)
  assert getattr(optax_like.schedules, name) is getattr(optax_like, name)


def _run_pair(ours, theirs, params, grads_stream, extra=lambda p: {}, rtol=1e-9, apply=None):
  apply = apply or (lambda p, u: jax.tree.map(lambda a, b: a + b, p, u))
  params_a = params_b = params
  state_a, state_b = ours.init(params_a), theirs.init(params_b)
  for step, grads in enumerate(grads_stream):
    updates_a, state_a = ours.update(grads(params_a), state_a, params_a, **extra(params_a))
    updates_b, state_b = theirs.update(grads(params_b), state_b, params_b, **extra(params_b))
    assert_trees_close(updates_a, updates_b, rtol=rtol, atol=1e-12, what=f"step {step}")
    params_a, params_b = apply(params_a, updates_a), apply(params_b, updates_b)
  return state_a, state_b


def _quadratic(p):
  return sum(jnp.sum(jnp.arange(1, x.size + 1).reshape(x.shape) * (x - 0.3) ** 2) for x in jax.tree.leaves(p))


@pytest.mark.parametrize("make", [
    lambda o: o.polyak_sgd(),
    lambda o: o.polyak_sgd(max_learning_rate=0.3, scaling=0.5, f_min=1.0, eps=0.1),
    lambda o: o.polyak_sgd(f_min=0.5, variant="sps+"),
    lambda o: o.contrib.momo(0.5, beta=0.8, lower_bound=0.1),
    lambda o: o.contrib.momo(0.5, adapt_lower_bound=True, weight_decay=0.01),
    lambda o: o.contrib.momo_adam(0.05, b1=0.8),
], ids=["polyak_sgd", "polyak_sgd_off", "polyak_sgd_sps_plus", "momo", "momo_adapt", "momo_adam"])
def test_methods_reading_the_loss_value_reproduce_optax(make):
  """f_min above the loss's minimum: the gap f − f* turns negative, where 'sps' and 'sps+' differ."""
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    params = cast(initial_params(), jnp.float64)
    stream = [jax.grad(_quadratic)] * 25
    _run_pair(make(optax_like), make(optax), params, stream, extra=lambda p: {"value": _quadratic(p)})


def test_polyak_variant_sps_ascends_below_f_min_and_sps_plus_stops():
  params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.5])
  for variant, sign in (("sps", 1.0), ("sps+", 0.0)):
    opt = optax_like.polyak_sgd(f_min=2.0, variant=variant)
    updates, _ = opt.update(grads, opt.init(params), params, value=jnp.asarray(1.0))
    assert jnp.all(jnp.sign(updates) == sign), (variant, updates)  # gap = 1 - 2 < 0
  with pytest.raises(ValueError, match="scale_by_polyak: variant='spsx' is not one of"):
    optax_like.polyak_sgd(variant="spsx")


@pytest.mark.parametrize("axis", [None, (0,), (1, 2)])
def test_adaptive_grad_clip_uses_optax_s_units(axis):
  rng = np.random.default_rng(0)
  shapes = {"b": (5,), "r": (1, 6), "w": (3, 4), "k": (2, 3, 4), "c": (2, 2, 3, 4), "d": (2, 1, 2, 3, 4)}
  if axis is not None:
    shapes = {"k": (2, 3, 4)}
  params = {k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()}
  grads = {k: jnp.asarray(10 * rng.normal(size=s)) for k, s in shapes.items()}
  with jax.enable_x64(True):
    params, grads = cast(params, jnp.float64), cast(grads, jnp.float64)
    ours, theirs = optax_like.adaptive_grad_clip(0.05, axis=axis), optax.adaptive_grad_clip(0.05, axis=axis)
    assert_trees_close(ours.update(grads, ours.init(params), params)[0],
                       theirs.update(grads, theirs.init(params), params)[0], rtol=1e-9, atol=1e-12)


def test_lookahead_on_optax_s_params_layout():
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    params = cast(initial_params(), jnp.float64)
    for reset in (False, True):
      make = lambda o: o.lookahead(o.adam(0.1), sync_period=3, slow_step_size=0.4, reset_state=reset)
      start = optax.LookaheadParams.init_synced(params)
      ours, theirs = make(optax_like), make(optax)
      ours_params = optax_like.LookaheadParams.init_synced(params)
      state_a, state_b = ours.init(ours_params), theirs.init(start)
      for step in range(10):
        u_a, state_a = ours.update(jax.grad(_quadratic)(ours_params.fast), state_a, ours_params)
        u_b, state_b = theirs.update(jax.grad(_quadratic)(start.fast), state_b, start)
        assert_trees_close(tuple(u_a), tuple(u_b), rtol=1e-9, atol=1e-12, what=f"reset={reset} step {step}")
        ours_params = optax_like.LookaheadParams(*jax.tree.map(lambda p, u: p + u, tuple(ours_params), tuple(u_a)))
        start = optax.apply_updates(start, u_b)
  with pytest.raises(TypeError, match="slow_step_size must be a number, as in optax"):
    optax_like.lookahead(optax_like.sgd(0.1), 2, optax_like.linear_schedule(0.5, 0.1, 10))
  with pytest.raises(TypeError, match="params must be a LookaheadParams"):
    opt = optax_like.lookahead(optax_like.sgd(0.1), 2, 0.5)
    opt.update(params, opt.init(params), params)


def test_multi_steps_is_optax_s():
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    params = cast(initial_params(), jnp.float64)
    for mean in (True, False):
      assert jax.tree.leaves(optax_like.MultiSteps(optax_like.adam(0.1), 3).init(params).grad_acc)[0].dtype == \
          jnp.float32  # optax's default accumulator dtype
      ours = optax_like.MultiSteps(optax_like.adam(0.1), every_k_schedule=3, use_grad_mean=mean,
                                   accumulator_dtype=jnp.float64)
      theirs = optax.MultiSteps(optax.adam(0.1), every_k_schedule=3, use_grad_mean=mean,
                                accumulator_dtype=jnp.float64)
      state_a, state_b = ours.init(params), theirs.init(params)
      for step, grads in enumerate(gradient_stream(10, seed=4)):
        grads = cast(grads, jnp.float64)
        u_a, state_a = ours.update(grads, state_a, params)
        u_b, state_b = theirs.update(grads, state_b, params)
        # optax keeps Welford's running mean, gx.accumulate the sum: equal up to float64 rounding
        assert_trees_close(u_a, u_b, rtol=1e-9, atol=1e-12, what=f"mean={mean} step {step}")
        assert bool(ours.has_updated(state_a)) == bool(theirs.has_updated(state_b))
        params = jax.tree.map(lambda p, u: p + u, params, u_a)
      assert ours.gradient_transformation() is not None and ours.inner_opt is not None


def test_inject_hyperparams_writes_take_effect_without_recompiling():
  opt = optax_like.inject_hyperparams(optax_like.adamw)(learning_rate=0.1, weight_decay=0.01)
  params = {"w": jnp.ones(3, jnp.bfloat16)}
  state = opt.init(params)
  assert state.hyperparams["b2"].dtype == jnp.float32  # never the parameters' bfloat16 (0.999 -> 1.0)
  traces = []

  @jax.jit
  def step(params, state):
    traces.append(1)
    updates, state = opt.update({"w": jnp.full(3, 0.5, jnp.bfloat16)}, state, params)
    return gx.apply_updates(params, updates), state

  params, state = step(params, state)
  state.hyperparams["learning_rate"] = 0.0
  frozen, state = step(params, state)
  assert traces == [1] and jnp.array_equal(frozen["w"], params["w"] * (1 - 0.0))  # lr 0: nothing moves
  scheduled = optax_like.inject_hyperparams(optax_like.sgd)(optax_like.linear_schedule(0.1, 0.0, 10))
  s = scheduled.init(params)
  with pytest.raises(TypeError, match="follows a schedule"):
    s.hyperparams["learning_rate"] = 0.5
  with pytest.raises(ValueError, match="hyperparam_dtype=bfloat16 is refused"):
    optax_like.inject_hyperparams(optax_like.adam, hyperparam_dtype=jnp.bfloat16)
  with pytest.raises(ValueError, match=r"static_args \['nope'\] are not parameters"):
    optax_like.inject_hyperparams(optax_like.adam, static_args=("nope",))


def test_optax_s_inject_hyperparams_state_reads_the_same_values():
  """optax's own wrapper around optax_like factories and ours around optax's: the same updates."""
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    params = cast(initial_params(), jnp.float64)
    ours = optax_like.inject_hyperparams(optax_like.lion)(0.05, b1=0.8, weight_decay=0.1)
    theirs = optax.inject_hyperparams(optax.lion)(0.05, b1=0.8, weight_decay=0.1)
    state_a, state_b = ours.init(params), theirs.init(params)
    for step, grads in enumerate(gradient_stream(8, seed=1)):
      grads = cast(grads, jnp.float64)
      if step == 4:
        state_a.hyperparams["learning_rate"] = 0.01
        state_b.hyperparams["learning_rate"] = jnp.asarray(0.01)
      u_a, state_a = ours.update(grads, state_a, params)
      u_b, state_b = theirs.update(grads, state_b, params)
      assert_trees_close(u_a, u_b, rtol=1e-9, atol=1e-12, what=f"step {step}")
      params = jax.tree.map(lambda p, u: p + u, params, u_a)


def test_adam_s_state_has_optax_s_field_names():
  params = {"w": jnp.ones(3)}
  state = optax_like.adam(0.1).init(params)
  assert optax.tree.get(state, "mu")["w"].dtype == jnp.float32 and state[0].nu["w"].shape == (3,)
  state = optax_like.adam(0.1, mu_dtype=jnp.bfloat16).init(params)
  assert optax.tree.get(state, "mu")["w"].dtype == jnp.bfloat16
  assert optax.tree.get(optax_like.amsgrad(0.1).init(params), "nu_max")["w"].shape == (3,)
  with pytest.raises(TypeError, match=r"scale_by_adam \(optax_like\): expected a ScaleByAdamState"):
    optax_like.scale_by_adam().update(params, optax_like.scale_by_amsgrad().init(params))


def test_optimistic_adam_warns_as_optax_does():
  with pytest.warns(DeprecationWarning, match="use `optimistic_adam_v2` instead"):
    optax_like.optimistic_adam(1e-3)


def test_degenerate_schedule_values_mean_what_they_mean_in_optax():
  """optax reads transition_steps <= 0 and decay_rate = 0 as a constant (and says so); so does optax_like."""
  with pytest.warns(UserWarning, match="the schedule is the constant init_value"):
    for schedule in (optax_like.exponential_decay(0.3, -1, 0.5), optax_like.exponential_decay(0.3, 5, 0.0),
                     optax_like.polynomial_schedule(0.3, 1.0, 2.0, 0), optax_like.linear_schedule(0.3, 1.0, -2)):
      assert [float(schedule(jnp.int32(c))) for c in (0, 7, 40)] == pytest.approx([0.3] * 3)
  peakless = optax_like.warmup_cosine_decay_schedule(0.2, 0.0, 50, 100, end_value=-3.0, exponent=2.0)
  reference = optax.warmup_cosine_decay_schedule(0.2, 0.0, 50, 100, end_value=-3.0, exponent=2.0)
  with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
    for count in (0, 10, 50, 75, 100, 130):
      assert float(peakless(jnp.int32(count))) == pytest.approx(float(reference(jnp.int32(count))), abs=1e-7)
  with pytest.raises(ValueError, match="transition_steps=-1 must be a non-negative integer"):
    gx.schedules.exponential_decay(0.3, -1, 0.5)  # the default namespace refuses it


def test_line_search_states_keep_optax_s_positions():
  """optax's code reads ``state[0]`` as the learning rate of a line search."""
  params = jnp.array([1.0, -2.0])
  for search in (optax_like.scale_by_backtracking_linesearch(10), optax_like.scale_by_zoom_linesearch(10)):
    state = search.init(params)
    assert state[:4] == (state.learning_rate, state.value, state.grad, state.info)
  state = optax_like.scale_by_lbfgs().init(params)
  assert state._fields[:6] == optax.ScaleByLBFGSState._fields


def test_a_transform_that_keeps_nothing_takes_none_as_its_state_as_in_optax():
  grads = {"a": jnp.array([3.0, 4.0])}
  updates, state = optax_like.clip_by_global_norm(1.0).update(grads, None)
  np.testing.assert_allclose(updates["a"], [0.6, 0.8], rtol=1e-6)
  assert int(state.count) == 1
  np.testing.assert_allclose(gx.clip(1.0).update(grads, None)[0]["a"], [1.0, 1.0])
  for refuses in (gx.trace(0.9), gx.clip_by_global_norm(1.0), gx.inject(gx.scale(0.5))):  # state to keep or read
    with pytest.raises(TypeError, match="as state, got NoneType"):
      refuses.update(grads, None)


def test_noise_keys_are_integers_or_concrete_threefry_keys():
  raw = optax_like.add_noise(0.1, 0.5, key=jax.random.PRNGKey(3)).init({"w": jnp.zeros(2)}).rng_key
  typed = optax_like.add_noise(0.1, 0.5, key=jax.random.key(3)).init({"w": jnp.zeros(2)}).rng_key
  assert jnp.array_equal(raw, typed) and jnp.array_equal(raw, jax.random.PRNGKey(3))
  with pytest.raises(TypeError, match="key must be an integer or a threefry jax.random key"):
    optax_like.add_noise(0.1, 0.5, key=jnp.zeros(3))
  with pytest.raises(ValueError, match="pass key or seed, not both"):
    optax_like.noisy_sgd(0.1, key=jax.random.key(0), seed=1)
