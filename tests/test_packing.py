"""Packed execution: Packer layout/errors, packed(opt) == opt, fully packed training == tree training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx


def _tree(seed=0):
  k = jax.random.split(jax.random.PRNGKey(seed), 4)
  return {
      "dense": {"kernel": jax.random.normal(k[0], (3, 4)), "bias": jax.random.normal(k[1], (4,))},
      "emb": jax.random.normal(k[2], (5, 2)).astype(jnp.bfloat16),
      "scale": [jax.random.normal(k[3], ()), jnp.ones((2, 1, 3))],
  }


def _assert_tree_equal(a, b, rtol=0.0):
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  assert ta == tb
  for x, y in zip(la, lb):
    assert x.shape == y.shape and x.dtype == y.dtype
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if rtol == 0.0:
      np.testing.assert_array_equal(x, y)
    else:
      np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(y)))))


def test_round_trip_mixed_dtypes():
  params = _tree()
  packer = gx.Packer(params)
  flat = packer.pack(params)
  assert set(flat) == {"float32", "bfloat16"}
  assert flat["float32"].shape == (12 + 4 + 1 + 6,) and flat["bfloat16"].shape == (10,)
  _assert_tree_equal(packer.unpack(flat), params)
  # leaf_slices / segment_ids agree with the layout
  ids = packer.segment_ids()
  for i, (name, start, stop) in enumerate(packer.leaf_slices):
    assert (ids[name][start:stop] == i).all()
  assert packer.num_leaves == 5


def test_round_trip_float64():
  with jax.enable_x64(True):
    params = {"a": jnp.ones((2, 2), jnp.float64), "b": jnp.zeros(3, jnp.float32)}
    packer = gx.Packer(params)
    flat = packer.pack(params)
    assert flat["float64"].dtype == jnp.float64 and flat["float32"].shape == (3,)
    _assert_tree_equal(packer.unpack(flat), params)


def test_packer_is_hashable_and_accepts_abstract_values():
  params = _tree()
  abstract = jax.eval_shape(lambda: params)
  assert gx.Packer(abstract) == gx.Packer(params)
  assert hash(gx.Packer(abstract)) == hash(gx.Packer(params))
  assert {k: v.shape for k, v in gx.Packer(params).abstract().items()} == {"float32": (23,), "bfloat16": (10,)}
  # works under jit (closed over), and unpack fuses into a computation
  packer = gx.Packer(params)
  out = jax.jit(lambda f: jax.tree.map(jnp.sum, packer.unpack(f)))(packer.pack(params))
  assert jax.tree.structure(out) == jax.tree.structure(params)


def test_errors_name_the_leaf():
  params = _tree()
  packer = gx.Packer(params)
  bad_shape = dict(params, dense={"kernel": jnp.ones((4, 3)), "bias": params["dense"]["bias"]})
  with pytest.raises(ValueError, match=r"\['dense'\]\['kernel'\].*shape"):
    packer.pack(bad_shape)
  bad_dtype = dict(params, emb=params["emb"].astype(jnp.float32))
  with pytest.raises(ValueError, match=r"\['emb'\].*dtype float32"):
    packer.pack(bad_dtype)
  bad_structure = {k: v for k, v in params.items() if k != "emb"}
  with pytest.raises(ValueError, match=r"missing leaves \[\"\['emb'\]\"\]"):
    packer.pack(bad_structure)
  with pytest.raises(ValueError, match=r"\['x'\] is None"):
    gx.Packer({"x": None, "y": jnp.ones(2)})
  with pytest.raises(TypeError, match=r"\['step'\].*int32"):
    gx.Packer({"step": jnp.zeros(2, jnp.int32)})
  with pytest.raises(ValueError, match=r"Packer.unpack: expected the buffers as a dict with the keys"):
    packer.unpack({"float32": jnp.zeros(23)})


OPTIMIZERS = {
    "sgd-momentum": lambda: gx.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: gx.adam(1e-2),
    "adamw": lambda: gx.adamw(1e-2, weight_decay=0.1),
    "lion": lambda: gx.lion(1e-3, weight_decay=0.01),
    "rmsprop-centered": lambda: gx.rmsprop(1e-2, centered=True, momentum=0.5),
    "clip+adam": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2)),
    "finite(accumulate(adam))": lambda: gx.apply_if_finite(gx.accumulate(gx.adam(1e-2), 2), 3),
}

# Stages that need the leaves (per-leaf reductions, labels, keys, optax): packed(...) runs them
# on the unpacked tree, so the numbers are still the tree's.
PER_LEAF = {
    "block_rms+adam": lambda: gx.chain(gx.clip_by_block_rms(0.5), gx.adam(1e-2)),
    "agc+sgd": lambda: gx.chain(gx.adaptive_grad_clip(0.05), gx.sgd(0.1, momentum=0.9)),
    "centralize+adam": lambda: gx.chain(gx.centralize(), gx.adam(1e-2)),
    "partition": lambda: gx.partition({"a": gx.adamw(1e-2, weight_decay=0.1), "b": gx.sgd(0.1)},
                                      [(r"dense", "a"), (r".*", "b")]),
    "masked-decay": lambda: gx.chain(gx.masked(gx.add_decayed_weights(0.1), lambda p: jax.tree.map(
        lambda x: x.ndim > 1, p)), gx.adam(1e-2)),
    "noise+zero_nans+adam": lambda: gx.chain(gx.add_noise(0.01, 0.55, seed=3), gx.zero_nans(), gx.adam(1e-2)),
    "finite(block_rms+adam)": lambda: gx.apply_if_finite(gx.chain(gx.clip_by_block_rms(0.5), gx.adam(1e-2)), 3),
}


def _run_both(opt, popt, flat_mode, steps=4):
  """``steps`` jitted steps of ``opt`` on the tree and of ``popt`` (tree or buffer mode)."""
  params = _tree()
  packer = gx.Packer(params)
  to_p = packer.pack if flat_mode else (lambda t: t)
  p_tree, p_pack = params, to_p(params)
  s_tree, s_pack = opt.init(params), popt.init(p_pack)

  @jax.jit
  def step(p_tree, s_tree, p_pack, s_pack, g):
    u, s_tree = opt.update(g, s_tree, p_tree)
    v, s_pack = popt.update(to_p(g), s_pack, p_pack)
    return gx.apply_updates(p_tree, u), s_tree, gx.apply_updates(p_pack, v), s_pack

  for i in range(steps):
    grads = jax.tree.map(lambda x: 3.0 * x.astype(jnp.float32).astype(x.dtype), _tree(10 + i))
    p_tree, s_tree, p_pack, s_pack = step(p_tree, s_tree, p_pack, s_pack, grads)
  return p_tree, (packer.unpack(p_pack) if flat_mode else p_pack), s_tree, s_pack


@pytest.mark.parametrize("flat_mode", [False, True], ids=["trees", "buffers"])
@pytest.mark.parametrize("name", list(OPTIMIZERS) + list(PER_LEAF))
def test_packed_equals_tree(name, flat_mode):
  make = {**OPTIMIZERS, **PER_LEAF}[name]
  packer = gx.Packer(_tree())
  popt = gx.packed(make(), packer if flat_mode else None)
  p_tree, p_pack, _, _ = _run_both(make(), popt, flat_mode)
  # The rules are the same per element, but XLA:CPU may compile the long packed
  # loop differently (vectorization/FMA): observed differences are ~1 ulp; the
  # global norm also sums in another order.
  _assert_tree_equal(p_pack, p_tree, rtol=1e-6)


def test_per_leaf_stage_keeps_tree_state_and_buffers_elsewhere():
  params = _tree()
  packer = gx.Packer(params)
  opt = gx.chain(gx.clip_by_block_rms(1.0), gx.trace(0.9), gx.centralize())
  for popt, p in ((gx.packed(opt), params), (gx.packed(opt, packer), packer.pack(params))):
    state = popt.init(p)
    assert set(state[1].trace) == {"float32", "bfloat16"}   # packed momentum
    u, _ = popt.update(p, state, p)
    assert jax.tree.structure(u) == jax.tree.structure(p)
  # per-leaf reductions see the leaves: block RMS of each leaf is clipped to 1 separately
  big = jax.tree.map(lambda x: 10.0 * x, params)
  u, _ = gx.packed(gx.clip_by_block_rms(1.0)).update(big, gx.packed(gx.clip_by_block_rms(1.0)).init(big))
  for leaf in jax.tree.leaves(u):
    rms = float(jnp.sqrt(jnp.mean(jnp.square(leaf.astype(jnp.float32)))))
    assert rms == pytest.approx(1.0, rel=1e-2)


def test_packed_state_is_buffers_and_eval_shape_works():
  params = _tree()
  popt = gx.packed(gx.adam(1e-3))
  state = jax.eval_shape(popt.init, params)
  nu = state[0].nu
  assert {k: v.shape for k, v in nu.items()} == {"float32": (23,), "bfloat16": (10,)}
  assert nu["bfloat16"].dtype == jnp.bfloat16
  # params left out where the optimizer does not need them
  u, _ = popt.update(params, popt.init(params))
  assert jax.tree.structure(u) == jax.tree.structure(params)


def _quadratic(params):
  return sum(jnp.sum(jnp.square(x.astype(jnp.float32) - 0.5)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("flat_mode", [False, True], ids=["trees", "buffers"])
def test_second_order_stages_get_the_objective_in_their_space(flat_mode):
  """L-BFGS with a zoom line search needs value_fn and grad: packed(...) converts them."""
  params = {"a": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.arange(4.0)}
  packer = gx.Packer(params)
  popt = gx.packed(gx.lbfgs(), packer if flat_mode else None)
  loss = (lambda f: _quadratic(packer.unpack(f))) if flat_mode else _quadratic
  opt = gx.lbfgs()
  p, q = (packer.pack(params) if flat_mode else params), params
  s, t = popt.init(p), opt.init(q)
  for _ in range(3):
    p, s, _ = gx.step(popt, loss, p, s)
    q, t, _ = gx.step(opt, _quadratic, q, t)
  _assert_tree_equal(packer.unpack(p) if flat_mode else p, q, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(q["b"]), 0.5, atol=1e-5)  # the known minimum


def test_buffer_mode_checks_its_inputs():
  params = _tree()
  packer = gx.Packer(params)
  popt = gx.packed(gx.adam(1e-3), packer)
  with pytest.raises(ValueError, match=r"packed\(...\).init: expected the parameters as a dict"):
    popt.init(params)
  state = popt.init(packer.pack(params))
  bad = dict(packer.pack(params), float32=jnp.zeros(5))
  with pytest.raises(ValueError, match=r"packed\(...\).update: the updates' buffer 'float32' is float32\[5\], "
                                       r"expected float32\[23\]"):
    popt.update(bad, state)
  with pytest.raises(TypeError, match="packer must be a gx.Packer"):
    gx.packed(gx.adam(1e-3), params)
  with pytest.raises(TypeError, match="expected a gradxform transform"):
    gx.packed(lambda g: g)


def _mlp(seed=0, sizes=(8, 16, 16, 4)):
  keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes))
  return [{"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
          for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def _loss(params, batch):
  x, y = batch
  for layer in params[:-1]:
    x = jnp.tanh(x @ layer["w"] + layer["b"])
  out = x @ params[-1]["w"] + params[-1]["b"]
  return jnp.mean((out - y) ** 2)


def test_fully_packed_training_equals_tree_training():
  params = _mlp()
  x = jax.random.normal(jax.random.PRNGKey(1), (32, 8))
  batch = (x, jnp.sin(x[:, :4]))
  opt = gx.adamw(1e-2, weight_decay=0.1)

  @jax.jit
  def tree_step(p, s, batch):
    g = jax.grad(_loss)(p, batch)
    u, s = opt.update(g, s, p)
    return gx.apply_updates(p, u), s

  packer = gx.Packer(params)
  traces = []

  @jax.jit
  def flat_step(flat, s, batch):
    traces.append(1)
    g = jax.grad(lambda f, b: _loss(packer.unpack(f), b))(flat, batch)
    assert set(g) == {"float32"} and g["float32"].ndim == 1
    u, s = opt.update(g, s, flat)
    return gx.apply_updates(flat, u), s

  p, s = params, opt.init(params)
  flat = packer.pack(params)
  fs = opt.init(flat)
  for _ in range(5):
    p, s = tree_step(p, s, batch)
    flat, fs = flat_step(flat, fs, batch)
  assert len(traces) == 1  # no recompile after the first call
  _assert_tree_equal(packer.unpack(flat), p, rtol=1e-6)


def test_packed_wrapper_does_not_recompile():
  params = _tree()
  popt = gx.packed(gx.adam(1e-3))
  traces = []

  @jax.jit
  def step(p, s, g):
    traces.append(1)
    u, s = popt.update(g, s, p)
    return gx.apply_updates(p, u), s

  s = popt.init(params)
  for _ in range(3):
    params, s = step(params, s, params)
  assert len(traces) == 1


def test_gradient_of_unpack_is_one_concatenation():
  """d/dflat loss(unpack(flat)) packs the cotangents once (O(size)), not one pad per leaf (O(N·size))."""
  params = _mlp()
  packer = gx.Packer(params)
  flat = packer.pack(params)
  x = jnp.ones((4, 8))
  loss = lambda f: _loss(packer.unpack(f), (x, jnp.zeros((4, 4))))
  jaxpr = str(jax.make_jaxpr(jax.grad(loss))(flat))
  assert "pad" not in jaxpr and jaxpr.count("concatenate") == 1, jaxpr
  # the same numbers as the tree's gradient, packed
  expected = packer.pack(jax.grad(lambda p: _loss(p, (x, jnp.zeros((4, 4)))))(params))
  np.testing.assert_allclose(np.asarray(jax.grad(loss)(flat)["float32"]), np.asarray(expected["float32"]),
                             rtol=1e-6, atol=1e-7)
  # forward mode works too (Hessian-vector products of a packed loss, e.g. for gx.newton or Sophia)
  v = jax.tree.map(jnp.ones_like, flat)
  hv_flat = gx.hvp(loss, flat, v)
  hv_tree = gx.hvp(lambda p: _loss(p, (x, jnp.zeros((4, 4)))), params, packer.unpack(v))
  np.testing.assert_allclose(np.asarray(hv_flat["float32"]), np.asarray(packer.pack(hv_tree)["float32"]),
                             rtol=1e-5, atol=1e-6)


def test_tree_mode_names_the_layout_when_the_tree_changes():
  opt = gx.packed(gx.adam(1e-3))
  state = opt.init({"a": jnp.ones(3), "b": jnp.ones(2)})
  with pytest.raises(ValueError, match=r"packed\(...\): scale_by_adam: the update at \['float32'\] has shape "
                                       r"\(7,\).*packed by dtype \(float32\[7\], 2 leaves\)"):
    opt.update({"a": jnp.ones(3), "b": jnp.ones(4)}, state)


def test_max_buffer_size_splits_a_dtype_into_buffers():
  params = {f"w{i}": jnp.full((3, 4), float(i)) for i in range(5)} | {"b": jnp.ones(30), "h": jnp.ones(2, jnp.bfloat16)}
  packer = gx.Packer(params, max_buffer_size=25)
  # leaves in flattening order: b (30: its own buffer), h (bf16), w0..w4 (12 each: two per buffer)
  assert dict(packer.sizes) == {"float32": 30, "bfloat16": 2, "float32:1": 24, "float32:2": 24, "float32:3": 12}
  flat = packer.pack(params)
  assert flat["float32:2"].dtype == jnp.float32 and flat["bfloat16"].dtype == jnp.bfloat16
  _assert_tree_equal(packer.unpack(flat), params)
  # optimizers and packed(...) are indifferent to the number of buffers
  opt = gx.packed(gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2)), packer)
  reference = gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2))
  u, _ = opt.update(flat, opt.init(flat), flat)
  v, _ = reference.update(params, reference.init(params), params)
  _assert_tree_equal(packer.unpack(u), v, rtol=1e-6)
  assert gx.Packer(params, max_buffer_size=25) == packer and gx.Packer(params) != packer
  with pytest.raises(ValueError, match="max_buffer_size=0 must be a positive int"):
    gx.Packer(params, max_buffer_size=0)
