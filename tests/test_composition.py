"""Adam is honestly built from primitives: RMS scaling whose numerator is momentum."""

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx
from tests.catalogue import gradient_stream, initial_params
from tests.helpers import assert_trees_close, run


def test_adam_is_rms_scaling_of_momentum():
  composed = gx.chain(
      gx.scale_by_rms(decay=0.99, eps=0.3, debias=True, numerator=gx.ema(0.8, debias=True)),
      gx.scale_by_learning_rate(0.05),
  )
  named = gx.adam(0.05, b1=0.8, b2=0.99, eps=0.3)
  with jax.enable_x64(True):
    got, _, _ = run(named, initial_params(), gradient_stream(), jnp.float64)
    expected, _, _ = run(composed, initial_params(), gradient_stream(), jnp.float64)
  for g, e in zip(got, expected):
    assert_trees_close(g, e, rtol=0, atol=0)


def test_amsgrad_and_adamw_compose_the_same_way():
  composed = gx.chain(
      gx.scale_by_rms(decay=0.9, eps=0.3, debias=True, amsgrad=True, numerator=gx.ema(0.8)),
      gx.add_decayed_weights(0.1),
      gx.scale_by_learning_rate(0.05),
  )
  named = gx.adamw(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.1, amsgrad=True)
  with jax.enable_x64(True):
    got, _, _ = run(named, initial_params(), gradient_stream(), jnp.float64)
    expected, _, _ = run(composed, initial_params(), gradient_stream(), jnp.float64)
  for g, e in zip(got, expected):
    assert_trees_close(g, e, rtol=0, atol=0)


def test_sequential_momentum_then_rms_is_not_adam():
  """In a plain chain the RMS stage would see the momentum's output, not the gradient."""
  sequential = gx.chain(gx.ema(0.8), gx.scale_by_rms(decay=0.99, eps=0.3, debias=True))
  adam = gx.scale_by_adam(0.8, 0.99, eps=0.3)
  with jax.enable_x64(True):
    a, _, _ = run(sequential, initial_params(), gradient_stream(), jnp.float64)
    b, _, _ = run(adam, initial_params(), gradient_stream(), jnp.float64)
  assert np.allclose(a[0]["w"], b[0]["w"])  # identical at the first step (m̂ = g)...
  assert not np.allclose(a[-1]["w"], b[-1]["w"], rtol=1e-3)  # ...then they part


def test_adam_state_exposes_both_moments():
  params = {"w": jnp.zeros(3)}
  opt = gx.adam(0.1, b1=0.5, b2=0.75)
  state = opt.init(params)
  _, state = opt.update({"w": jnp.array([1.0, 2.0, -2.0])}, state, params)
  np.testing.assert_allclose(state[0].numerator.ema["w"], [0.5, 1.0, -1.0])  # m = (1 - b1) g
  np.testing.assert_allclose(state[0].nu["w"], [0.25, 1.0, 1.0])           # v = (1 - b2) g²


def test_rmsprop_is_rms_scaling_of_the_gradient():
  with jax.enable_x64(True):
    a, _, _ = run(gx.rmsprop(0.01, decay=0.9), initial_params(), gradient_stream(), jnp.float64)
    b, _, _ = run(gx.chain(gx.scale_by_rms(0.9, numerator=gx.identity()), gx.scale_by_learning_rate(0.01)),
                  initial_params(), gradient_stream(), jnp.float64)
  for g, e in zip(a, b):
    assert_trees_close(g, e, rtol=0, atol=0)
