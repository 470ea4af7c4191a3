"""Where optax uses another variant, the option named in our docstrings reproduces it.

Compared in float64 over the same gradient stream (with an all-zero step).
Skipped when optax is not installed.
"""

import jax
import jax.numpy as jnp
import pytest

import gradxform as gx
from tests.catalogue import gradient_stream, initial_params
from tests.helpers import assert_trees_close, cast

optax = pytest.importorskip("optax")

PAIRS = {
    # same rule, same defaults
    "adam": (lambda: gx.adam(0.05, b1=0.8, b2=0.9, eps=0.3), lambda: optax.adam(0.05, b1=0.8, b2=0.9, eps=0.3)),
    "scale_by_adam_eps_root": (lambda: gx.scale_by_adam(eps=0.1, eps_root=0.2),
                               lambda: optax.scale_by_adam(eps=0.1, eps_root=0.2)),
    "adamw": (lambda: gx.adamw(0.05, weight_decay=0.3), lambda: optax.adamw(0.05, weight_decay=0.3)),
    "adamax": (lambda: gx.adamax(0.05, b1=0.8, b2=0.9, eps=0.3), lambda: optax.adamax(0.05, b1=0.8, b2=0.9, eps=0.3)),
    "lion": (lambda: gx.lion(0.05, weight_decay=0.1), lambda: optax.lion(0.05, weight_decay=0.1)),
    "sgd_nesterov": (lambda: gx.sgd(0.1, momentum=0.8, nesterov=True),
                     lambda: optax.sgd(0.1, momentum=0.8, nesterov=True)),
    "adadelta": (lambda: gx.adadelta(0.5, rho=0.8, eps=0.1), lambda: optax.adadelta(0.5, rho=0.8, eps=0.1)),
    "ema": (lambda: gx.ema(0.7), lambda: optax.ema(0.7)),
    "trace": (lambda: gx.trace(0.7, nesterov=True), lambda: optax.trace(0.7, nesterov=True)),
    "clip": (lambda: gx.clip(0.5), lambda: optax.clip(0.5)),
    "sign": (gx.scale_by_sign, optax.scale_by_sign),
    # optax's variants, through the documented options
    "rmsprop_eps_in_root": (
        lambda: gx.chain(gx.scale_by_rms(0.9, eps=0.0, eps_root=1e-8), gx.scale_by_learning_rate(0.01)),
        lambda: optax.rmsprop(0.01)),
    "rmsprop_centered_eps_in_root": (
        lambda: gx.chain(gx.scale_by_rms(0.9, eps=0.0, eps_root=0.3, centered=True), gx.scale_by_learning_rate(0.01)),
        lambda: optax.rmsprop(0.01, eps=0.3, centered=True)),
    "rmsprop_eps_outside": (lambda: gx.rmsprop(0.01, decay=0.9, eps=0.3),
                            lambda: optax.rmsprop(0.01, decay=0.9, eps=0.3, eps_in_sqrt=False)),
    "adagrad_optax_start": (
        lambda: gx.chain(gx.scale_by_adagrad(0.1, eps=0.0, eps_root=1e-7), gx.scale_by_learning_rate(0.1)),
        lambda: optax.adagrad(0.1)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_reproduces_optax(name):
  ours, theirs = PAIRS[name]
  # optax itself mixes Python floats with int32 counts, which strict promotion refuses
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    params_a = params_b = cast(initial_params(), jnp.float64)
    opt_a, opt_b = ours(), theirs()
    state_a, state_b = opt_a.init(params_a), opt_b.init(params_b)
    for step, grads in enumerate(gradient_stream()):
      grads = cast(grads, jnp.float64)
      updates_a, state_a = opt_a.update(grads, state_a, params_a)
      updates_b, state_b = opt_b.update(grads, state_b, params_b)
      assert_trees_close(updates_a, updates_b, rtol=1e-9, atol=1e-12, what=f"{name} step {step}")
      params_a, params_b = gx.apply_updates(params_a, updates_a), optax.apply_updates(params_b, updates_b)
