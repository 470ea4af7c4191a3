"""gx.to_optax: gradxform transforms inside optax's wrappers, with the extra arguments they need.

optax forwards ``value=``, ``grad=``, ``value_fn=`` only to instances of
``optax.GradientTransformationExtraArgs``. Each test runs a gradxform method
that needs them (Polyak, L-BFGS with its line search, Sophia, Newton) inside an
optax wrapper and compares with the same method run by gradxform alone.
optax code runs under standard dtype promotion (see tests/test_interop.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

optax = pytest.importorskip("optax")

A = jnp.asarray([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 2.0]], jnp.float32)
PARAMS0 = {"x": jnp.asarray([1.5, -2.0, 0.5], jnp.float32)}


def loss(p):
  return 0.5 * p["x"] @ A @ p["x"] + jnp.sum(jnp.cos(p["x"]))


def run(tx, steps, params=PARAMS0, state=None):
  """Steps of ``tx`` with every extra argument a gradxform second-order method may need."""

  @jax.jit
  def step(params, state):
    value, grad = jax.value_and_grad(loss)(params)
    updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    return optax.apply_updates(params, updates), state

  with jax.numpy_dtype_promotion("standard"):
    state = tx.init(params) if state is None else state
    for _ in range(steps):
      params, state = step(params, state)
  return params, state


def assert_same(got, expected, moved_from=PARAMS0):
  assert float(jnp.max(jnp.abs(expected["x"] - moved_from["x"]))) > 1e-3
  np.testing.assert_allclose(got["x"], expected["x"], rtol=1e-6, atol=1e-7)


def test_to_optax_is_a_genuine_extra_args_transform():
  tx = gx.to_optax(gx.adam(1e-2))
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  init, update = tx
  assert_same(run(optax.GradientTransformationExtraArgs(init, update), 3)[0], run(gx.adam(1e-2), 3)[0])
  with pytest.raises(TypeError, match="needs no conversion"):
    gx.to_optax(optax.adam(1e-2))


def test_polyak_inside_optax_chain_gets_the_value():
  expected, _ = run(gx.polyak_sgd(max_learning_rate=0.5), 4)
  got, _ = run(optax.chain(optax.identity(), gx.to_optax(gx.polyak_sgd(max_learning_rate=0.5))), 4)
  assert_same(got, expected)
  # what to_optax is for: optax.chain drops the extra arguments of anything else
  with pytest.raises(Exception, match="value"):
    run(optax.chain(gx.polyak_sgd()), 1)


def test_lbfgs_with_line_search_inside_optax_chain_and_multisteps():
  expected, _ = run(gx.lbfgs(), 3)
  got, _ = run(optax.chain(gx.to_optax(gx.lbfgs())), 3)
  assert_same(got, expected)
  # MultiSteps(k=2): the same gradient twice (the parameters do not move in between) is one L-BFGS step
  got, state = run(optax.MultiSteps(gx.to_optax(gx.lbfgs()), every_k_schedule=2), 6)
  assert_same(got, expected)
  assert int(state.gradient_step) == 3


def test_sophia_inside_optax_apply_if_finite():
  expected, _ = run(gx.sophia(0.2, update_every=2), 4)
  got, state = run(optax.apply_if_finite(gx.to_optax(gx.sophia(0.2, update_every=2)), 3), 4)
  assert_same(got, expected)
  assert int(state.total_notfinite) == 0


def test_newton_inside_optax_inject_hyperparams():
  """optax's inject_hyperparams over a gradxform factory: optax's own way of changing a learning rate."""
  make = optax.inject_hyperparams(gx.to_optax(gx.newton), static_args=("max_parameters",))
  tx = make(learning_rate=0.5, damping=0.1)
  params, state = run(tx, 2)
  state.hyperparams["learning_rate"] = 0.25
  got, _ = run(tx, 2, params, state)
  # reference: the injected gradxform optimizer, its learning rate set the same way
  ref_tx = gx.inject(gx.newton(0.5, damping=0.1))
  ref_params, ref_state = run(ref_tx, 2)
  expected, _ = run(ref_tx, 2, ref_params, gx.set_hyperparams(ref_state, learning_rate=0.25))
  assert_same(got, expected)
  # and the value 0.25 mattered
  unchanged, _ = run(gx.newton(0.5, damping=0.1), 4)
  assert float(jnp.max(jnp.abs(unchanged["x"] - expected["x"]))) > 1e-4
