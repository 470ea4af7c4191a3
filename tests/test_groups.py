"""Parameter groups: masked, freeze and partition, against hand-split references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform._transforms.groups import path_str
from tests.helpers import assert_trees_close


def _params():
  return {
      "embed": {"table": jnp.arange(6.0).reshape(3, 2)},
      "dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.full((2,), 0.5)},
      "LayerNorm_0": {"scale": jnp.ones((2,))},
  }


def _grads(step):
  return jax.tree.map(lambda p: jnp.sin(p + step), _params())


def _run(opt, steps=4):
  params, state = _params(), opt.init(_params())
  for step in range(steps):
    updates, state = opt.update(_grads(step), state, params)
    params = gx.apply_updates(params, updates)
  return params, state


def _run_subset(opt, keep, steps=4):
  """Reference: the optimizer run on the selected leaves only (a smaller tree)."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(_params())
  chosen = [i for i, (path, _) in enumerate(flat) if keep(path_str(path))]
  sub = [flat[i][1] for i in chosen]
  state = opt.init(sub)
  for step in range(steps):
    grads = jax.tree.leaves(_grads(step))
    updates, state = opt.update([grads[i] for i in chosen], state, sub)
    sub = gx.apply_updates(sub, updates)
  return dict(zip([path_str(flat[i][0]) for i in chosen], sub))


def _by_path(tree):
  return {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


NO_DECAY = lambda path: path.endswith("bias") or "LayerNorm" in path


def test_partition_by_regex_rules_equals_separate_runs():
  opt = gx.partition(
      {"decay": gx.adamw(0.1, weight_decay=0.5), "no_decay": gx.adam(0.1), "embed": gx.sgd(0.01)},
      [(r"^embed/", "embed"), (r"bias$|LayerNorm", "no_decay"), (r".*", "decay")])
  got = _by_path(_run(opt)[0])
  expected = {}
  expected.update(_run_subset(gx.adamw(0.1, weight_decay=0.5), lambda p: p.startswith("dense/kernel")))
  expected.update(_run_subset(gx.adam(0.1), lambda p: NO_DECAY(p)))
  expected.update(_run_subset(gx.sgd(0.01), lambda p: p.startswith("embed")))
  assert set(got) == set(expected)
  for path in got:
    np.testing.assert_allclose(got[path], expected[path], rtol=1e-6, err_msg=path)


def test_partition_labels_as_function_of_path_and_as_tree():
  rules = lambda path, leaf: "frozen" if path.startswith("embed") else "train"
  tree = {"embed": "frozen", "dense": "train", "LayerNorm_0": "train"}  # a prefix of the params
  results = []
  for labels in (rules, tree, lambda params: jax.tree.map(lambda _: "train", params) | {"embed": {"table": "frozen"}}):
    opt = gx.partition({"train": gx.adam(0.1), "frozen": gx.set_to_zero()}, labels)
    results.append(_run(opt)[0])
  for r in results[1:]:
    assert_trees_close(r, results[0], 0, 0)
  np.testing.assert_array_equal(results[0]["embed"]["table"], _params()["embed"]["table"])


def test_partition_state_mirrors_the_params():
  opt = gx.partition({"a": gx.adam(0.1), "b": gx.sgd(0.1, momentum=0.9)},
                     lambda path, leaf: "a" if "dense" in path else "b")
  params = _params()
  state = opt.init(params)
  mu = state.inner_states["a"].inner_state[0].numerator.ema
  assert jax.tree.structure(mu, is_leaf=lambda x: x is None) == jax.tree.structure(params)
  assert mu["embed"]["table"] is None and mu["dense"]["kernel"].shape == (2, 2)
  # tools can map over params and state together; f sees None outside the group
  kinds = jax.tree.map(lambda p, m: "none" if m is None else "array", params, mu)
  assert kinds["dense"] == {"kernel": "array", "bias": "array"} and kinds["embed"] == {"table": "none"}
  # and the whole thing is a valid jit carry / eval_shape target
  assert jax.tree.structure(jax.eval_shape(opt.init, params)) == jax.tree.structure(state)
  jax.jit(opt.update)(_grads(0), state, params)


def test_freeze_and_masked_nest():
  inner = gx.masked(gx.masked(gx.sgd(0.1), {"dense": True, "embed": True, "LayerNorm_0": False}),
                    lambda path, leaf: not path.endswith("bias"))
  opt = gx.chain(gx.freeze({"embed": True, "dense": False, "LayerNorm_0": False}), inner)
  params, _ = _run(opt)
  expected = _run_subset(gx.sgd(0.1), lambda p: p == "dense/kernel")
  np.testing.assert_allclose(params["dense"]["kernel"], expected["dense/kernel"], rtol=1e-6)
  for path in ("embed/table",):
    np.testing.assert_array_equal(_by_path(params)[path], _by_path(_params())[path])  # frozen
  # bias and LayerNorm pass through the masks unchanged: raw gradients are applied
  np.testing.assert_allclose(params["dense"]["bias"],
                             _params()["dense"]["bias"] + sum(_grads(s)["dense"]["bias"] for s in range(4)),
                             rtol=1e-6)


def test_masked_keeps_no_state_outside_the_mask():
  opt = gx.masked(gx.adam(0.1), lambda path, leaf: path.startswith("dense"))
  state = opt.init(_params())
  nu = state.inner_state[0].nu
  assert nu["embed"]["table"] is None and nu["LayerNorm_0"]["scale"] is None
  assert nu["dense"]["kernel"].shape == (2, 2)


def test_weight_decay_mask_by_path():
  opt = gx.chain(gx.add_decayed_weights(0.5, mask=lambda path, leaf: not NO_DECAY(path)),
                 gx.scale_by_learning_rate(1.0))
  updates, _ = opt.update(jax.tree.map(jnp.zeros_like, _params()), opt.init(_params()), _params())
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.5 * _params()["dense"]["kernel"])
  np.testing.assert_array_equal(updates["dense"]["bias"], 0.0)
  np.testing.assert_array_equal(updates["LayerNorm_0"]["scale"], 0.0)


def test_partition_errors():
  with pytest.raises(ValueError, match=r"partition: the parameter 'dense/bias' has label 'head', "
                                       r"which has no transform"):
    gx.partition({"body": gx.adam(0.1)}, lambda path, leaf: "head" if "bias" in path else "body").init(_params())
  with pytest.raises(ValueError, match=r"partition: no rule matches the parameter 'LayerNorm_0/scale'"):
    gx.partition({"a": gx.adam(0.1)}, [(r"dense|embed", "a")]).init(_params())
  with pytest.raises(ValueError, match=r"masked: the mask tree does not match the params tree"):
    gx.masked(gx.adam(0.1), {"dense": True}).init(_params())
  with pytest.raises(TypeError, match=r"masked: mask values must be Python booleans"):
    gx.masked(gx.adam(0.1), lambda path, leaf: "yes").init(_params())
  with pytest.raises(TypeError, match=r"partition: transforms must be a non-empty dict"):
    gx.partition([gx.adam(0.1)], lambda p, l: 0)


def test_groups_with_optax_inside():
  optax = pytest.importorskip("optax")
  opt = gx.partition({"a": optax.sgd(0.1), "b": gx.sgd(0.1)}, lambda path, leaf: "a" if "dense" in path else "b")
  with jax.numpy_dtype_promotion("standard"):
    got = _run(opt)[0]
  assert_trees_close(got, _run(gx.sgd(0.1))[0], 1e-6, 1e-7)
