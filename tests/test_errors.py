"""Bad input raises a clear error at construction or at the first update, naming what and where."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx


@pytest.mark.parametrize("build,match", [
    (lambda: gx.adam(-1e-3), r"adam: .*learning_rate=-0.001 is out of range \[0, inf\)"),
    (lambda: gx.adam(1e-3, b1=1.0), r"adam: .*b1=1.0 is out of range \[0, 1\)"),
    (lambda: gx.adam(1e-3, b2=-0.1), r"b2=-0.1 is out of range"),
    (lambda: gx.adam(1e-3, eps=-1e-8), r"eps=-1e-08 is out of range"),
    (lambda: gx.adamw(1e-3, weight_decay=-0.1), r"adamw: .*weight_decay"),
    (lambda: gx.sgd(0.1, momentum=1.5), r"sgd: momentum=1.5 is out of range"),
    (lambda: gx.sgd(0.1, nesterov=True), r"nesterov=True needs a momentum > 0"),
    (lambda: gx.rmsprop(0.1, decay=1.0), r"rmsprop: .*decay=1.0"),
    (lambda: gx.adagrad(0.1, initial_accumulator_value=-1.0), r"initial_accumulator_value"),
    (lambda: gx.adadelta(eps=0.0), r"adadelta: .*eps=0.0 is out of range \(0, inf\)"),
    (lambda: gx.nadam(1e-3, momentum_decay=-1.0), r"momentum_decay"),
    (lambda: gx.lion(1e-3, b2=2.0), r"lion: .*b2=2.0"),
    (lambda: gx.clip_by_global_norm(-1.0), r"clip_by_global_norm: max_norm=-1.0"),
    (lambda: gx.clip(-1.0), r"clip: max_delta=-1.0"),
    (lambda: gx.adam(float("nan")), r"learning_rate=nan is not finite"),
    (lambda: gx.adam(jnp.array([1e-3, -1e-3])), r"learning_rate=\[ 0.001 -0.001\] is out of range"),
])
def test_out_of_range_hyperparameters_raise_value_error(build, match):
  with pytest.raises(ValueError, match=match):
    build()


@pytest.mark.parametrize("build,match", [
    (lambda: gx.adam("0.1"), r"learning_rate must be a number, an array or a schedule"),
    (lambda: gx.sgd(0.1, momentum=True), r"not a boolean"),
    (lambda: gx.scale_by_schedule(0.1), r"scale_by_schedule: step_size_fn must be a schedule"),
    (lambda: gx.chain(gx.adam(0.1), "sgd"), r"chain \(stage 1\): expected a gradient transformation"),
    (lambda: gx.stateless(3), r"stateless: expected a function"),
    (lambda: gx.GradientTransformation(1, 2), r"GradientTransformation\(init, update\) takes two functions"),
])
def test_wrong_types_raise_type_error(build, match):
  with pytest.raises(TypeError, match=match):
    build()


def _params():
  return {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}


def test_gradient_tree_structure_mismatch_names_transform_and_path():
  opt = gx.adam(1e-3)
  state = opt.init(_params())
  grads = {"dense": {"kernel": jnp.ones((2, 3))}}
  with pytest.raises(ValueError, match=r"scale_by_adam: .*missing leaves \[\"\['dense'\]\['bias'\]\"\]"):
    opt.update(grads, state, _params())


def test_gradient_shape_mismatch_names_path():
  opt = gx.sgd(0.1, momentum=0.9)
  state = opt.init(_params())
  grads = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(3)}}
  with pytest.raises(ValueError, match=r"trace: the update at \['dense'\]\['kernel'\] has shape \(3, 2\).*\(2, 3\)"):
    jax.jit(opt.update)(grads, state, _params())


def test_gradient_dtype_other_than_the_parameters_is_accepted():
  """Not an error since issue 11: computed in float32, returned in the parameters' dtype (tests/test_ports.py)."""
  opt = gx.adam(1e-3)
  state = opt.init(_params())
  grads = jax.tree.map(lambda x: x.astype(jnp.bfloat16), _params())
  updates, _ = opt.update(grads, state, _params())
  assert all(u.dtype == jnp.float32 for u in jax.tree.leaves(updates))


def test_integer_parameters_raise_type_error():
  params = {"w": jnp.ones(3), "step": jnp.array(3)}
  with pytest.raises(TypeError, match=r"adam.*parameter at \['step'\] has integer/boolean dtype int32"):
    gx.adam(1e-3).init(params)


def test_integer_gradients_to_stateless_transform_raise_type_error():
  opt = gx.scale(0.5)
  with pytest.raises(TypeError, match=r"scale: the update at \['n'\] has integer/boolean dtype"):
    opt.update({"n": jnp.arange(3)}, opt.init({"n": jnp.zeros(3)}))


def test_weight_decay_without_params():
  opt = gx.adamw(1e-3)
  state = opt.init(_params())
  with pytest.raises(ValueError, match=r"add_decayed_weights: params are required"):
    opt.update(_params(), state)


def test_weight_decay_mask_structure_mismatch():
  opt = gx.add_decayed_weights(0.1, mask={"dense": {"kernel": True}})
  with pytest.raises(ValueError, match=r"masked: the mask tree does not match the params tree"):
    opt.update(_params(), opt.init(_params()), _params())


def test_chain_state_mismatch():
  opt = gx.chain(gx.clip(1.0), gx.adam(1e-3))
  with pytest.raises(ValueError, match=r"chain: expected a state tuple of 2 entries"):
    opt.update(_params(), gx.sgd(1e-3).init(_params()), _params())
  with pytest.raises(TypeError, match=r"clip: expected a ClipState as state, got ScaleByRmsState"):
    opt.update(_params(), gx.adam(1e-3).init(_params()), _params())


def test_non_scalar_hyperparameter_outside_vmap():
  opt = gx.sgd(jnp.array([0.1, 0.2]))
  with pytest.raises(ValueError, match=r"hyperparameter learning_rate has shape \(2,\).*jax.vmap"):
    opt.init(_params())


def test_inputs_are_not_mutated():
  params = {"w": np.ones(3, np.float32)}
  grads = {"w": np.full(3, 0.5, np.float32)}
  before = (params["w"].copy(), grads["w"].copy())
  opt = gx.adamw(0.1)
  state = opt.init(params)
  updates, _ = opt.update(grads, state, params)
  gx.apply_updates(params, updates)
  np.testing.assert_array_equal(params["w"], before[0])
  np.testing.assert_array_equal(grads["w"], before[1])
  assert list(params) == ["w"] and list(grads) == ["w"]


def test_function_transformation_receives_only_the_extras_it_declares():
  seen = {}

  def update(updates, state, params=None, *, value):
    seen["value"] = value
    return updates, state

  opt = gx.chain(gx.GradientTransformation(lambda p: (), update), gx.scale(2.0))
  updates, _ = opt.update({"w": jnp.ones(2)}, opt.init({"w": jnp.ones(2)}), value=3.0, grad=None)
  assert seen == {"value": 3.0}
  np.testing.assert_array_equal(updates["w"], 2.0)


def test_apply_updates_refuses_to_broadcast_or_truncate():
  with pytest.raises(ValueError, match=r"apply_updates: the update at \['w'\] has shape \(3,\), but the parameter has shape \(3, 1\)"):
    gx.apply_updates({"w": jnp.ones((3, 1))}, {"w": jnp.ones(3)})
  with pytest.raises(TypeError, match=r"apply_updates: the parameter at \['n'\] has dtype int32"):
    gx.apply_updates({"n": jnp.array(3)}, {"n": jnp.array(0.5)})
  with pytest.raises(ValueError, match=r"apply_updates: the updates tree does not match the params tree"):
    gx.apply_updates({"w": jnp.ones(2)}, {"v": jnp.ones(2)})


def test_stateless_optimizers_also_refuse_integer_parameters():
  with pytest.raises(TypeError, match=r"scale_by_learning_rate: the parameter at \['n'\] has integer"):
    gx.sgd(0.1).init({"w": jnp.ones(2), "n": jnp.array(3)})
