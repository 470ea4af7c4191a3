"""Complex parameters with torch.optim's convention: a complex tensor is optimized as its real view.

Every catalogue optimizer with a torch counterpart is run on complex128 parameters against torch (which
supports complex in all of them) over 30 steps with an all-zero gradient step, in float64 precision. Then
the real-view equality, a complex least-squares problem, and the clear refusal where a transform has no
complex form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.catalogue import OPTIMIZERS, gradient_stream, initial_params

TORCH_CASES = [case for case in OPTIMIZERS if case.torch is not None]
STEPS = 30


def complex_stream():
  re, im = gradient_stream(steps=STEPS, seed=0), gradient_stream(steps=STEPS, seed=5)
  return [{k: r[k] + 1j * (0.0 if t == 3 else 1.0) * i[k] for k in r} for t, (r, i) in enumerate(zip(re, im))]


def complex_params():
  re, im = initial_params(seed=1), initial_params(seed=2)
  return {k: re[k] + 1j * im[k] for k in re}


@pytest.mark.parametrize("case", TORCH_CASES, ids=str)
def test_matches_torch_complex128(case):
  torch = pytest.importorskip("torch")
  keys = sorted(complex_params())
  torch.set_default_dtype(torch.float64)
  try:
    params = [torch.tensor(complex_params()[k], dtype=torch.complex128, requires_grad=True) for k in keys]
    opt = case.torch(torch, params)
    expected = []
    for grads in complex_stream():
      for p, k in zip(params, keys):
        p.grad = torch.tensor(grads[k], dtype=torch.complex128)
      opt.step()
      expected.append({k: p.detach().numpy().copy() for k, p in zip(keys, params)})
  except RuntimeError as error:  # torch has no complex form of it (Adafactor, Muon): neither has gradxform
    assert "complex" in str(error).lower(), error
    with pytest.raises(TypeError, match="no complex form"):
      case.make().init(jax.tree.map(lambda x: jnp.asarray(x, jnp.complex64), complex_params()))
    return
  finally:
    torch.set_default_dtype(torch.float32)
  with jax.enable_x64(True):
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.complex128), complex_params())
    opt = case.make()
    state = opt.init(params)
    step = jax.jit(opt.update)
    for t, grads in enumerate(complex_stream()):
      updates, state = step(jax.tree.map(lambda x: jnp.asarray(x, jnp.complex128), grads), state, params)
      params = gx.apply_updates(params, updates)
      for k in keys:
        assert params[k].dtype == jnp.complex128
        np.testing.assert_allclose(np.asarray(params[k]), expected[t][k], rtol=1e-10, atol=1e-12,
                                   err_msg=f"{case.id} step {t} {k}")


@pytest.mark.parametrize("make", [lambda: gx.adam(0.05, b1=0.8), lambda: gx.chain(gx.clip_by_global_norm(2.0),
                                                                                   gx.rmsprop(0.01, momentum=0.5)),
                                  lambda: gx.lion(0.01, weight_decay=0.1), lambda: gx.yogi(0.05, b1=0.8),
                                  lambda: gx.adabelief(0.05, b2=0.9)],
                         ids=["adam", "clip_rmsprop", "lion", "yogi", "adabelief"])
def test_complex_equals_the_real_view(make):
  """Optimizing z equals optimizing view_as_real(z), leaf by leaf, in complex64."""
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.complex64), complex_params())
  real_params = jax.tree.map(lambda z: jnp.stack([z.real, z.imag], -1), params)
  opt = make()
  state, real_state = opt.init(params), opt.init(real_params)
  for grads in complex_stream()[:10]:
    grads = jax.tree.map(lambda x: jnp.asarray(x, jnp.complex64), grads)
    u, state = opt.update(grads, state, params)
    v, real_state = opt.update(jax.tree.map(lambda z: jnp.stack([z.real, z.imag], -1), grads), real_state, real_params)
    params, real_params = gx.apply_updates(params, u), gx.apply_updates(real_params, v)
  for k in params:
    np.testing.assert_allclose(np.stack([params[k].real, params[k].imag], -1), real_params[k], rtol=1e-6, atol=1e-7)


def test_complex_least_squares_converges():
  """min_z ‖A z − b‖² over complex z (gradient 2Aᴴ(Az − b), the conjugate Wirtinger convention torch uses)."""
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(size=(20, 6)) + 1j * rng.normal(size=(20, 6)), jnp.complex64)
  z_true = jnp.asarray(rng.normal(size=6) + 1j * rng.normal(size=6), jnp.complex64)
  b = a @ z_true
  loss = lambda z: jnp.sum(jnp.abs(a @ z - b) ** 2)
  z = jnp.zeros(6, jnp.complex64)
  opt = gx.adam(0.05)
  state = opt.init(z)

  @jax.jit
  def step(z, state):
    grad = jnp.conj(jax.grad(loss, holomorphic=False)(z))  # JAX returns the conjugate of torch's gradient
    updates, state = opt.update(grad, state, z)
    return gx.apply_updates(z, updates), state

  for _ in range(1500):
    z, state = step(z, state)
  np.testing.assert_allclose(np.asarray(z), np.asarray(z_true), atol=2e-3)


def test_a_transform_without_a_complex_form_says_so():
  params = {"w": jnp.ones((3, 4), jnp.complex64)}
  with pytest.raises(TypeError, match="no complex form"):
    gx.clip_by_block_rms(1.0).init(params)


def mixed_tree():
  """float32 norms, bfloat16 matrices, complex64 spectra and a float64 scalar in one tree (under x64)."""
  rng = np.random.default_rng(3)
  return {
      "norm": jnp.asarray(rng.normal(size=4), jnp.float32),
      "matrix": jnp.asarray(rng.normal(size=(4, 4)), jnp.bfloat16),
      "spectrum": jnp.asarray(rng.normal(size=6) + 1j * rng.normal(size=6), jnp.complex64),
      "scale": jnp.asarray(0.7, jnp.float64),
  }


@pytest.mark.parametrize("make", [lambda: gx.adamw(1e-2, weight_decay=0.1), lambda: gx.sgd(1e-2, momentum=0.9),
                                  lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.lion(1e-3))],
                         ids=["adamw", "sgd_momentum", "clip_lion"])
def test_mixed_dtype_tree_keeps_every_dtype(make, tmp_path):
  """Each leaf keeps its dtype through init, update, apply_updates, packing and a checkpoint round trip; the
  packed step (one buffer per dtype, a complex64 buffer among them) equals the per-leaf step."""
  with jax.enable_x64(True):
    params = mixed_tree()
    dtypes = jax.tree.map(lambda x: x.dtype, params)
    grads = jax.tree.map(lambda p: (0.5 * p + 0.25).astype(p.dtype), params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    opt = make()
    state = opt.init(params)
    packer = gx.Packer(params)
    assert {name for name, _ in packer.sizes} == {"float32", "bfloat16", "complex64", "float64"}
    packed_opt = gx.packed(make(), packer)
    flat, flat_state = packer.pack(params), packed_opt.init(packer.pack(params))
    step = jax.jit(lambda g, s, p: opt.update(g, s, p))
    packed_step = jax.jit(lambda g, s, p: packed_opt.update(g, s, p))
    for g in [grads, zeros, grads]:
      updates, state = step(g, state, params)
      assert jax.tree.map(lambda x: x.dtype, updates) == dtypes
      params = gx.apply_updates(params, updates)
      assert jax.tree.map(lambda x: x.dtype, params) == dtypes
      flat_updates, flat_state = packed_step(packer.pack(g), flat_state, flat)
      flat = gx.apply_updates(flat, flat_updates)
    for k, leaf in packer.unpack(flat).items():  # fusion may differ by an ulp: 1 bf16 ulp, 2 float32 ulps
      rtol = {"matrix": 2**-7, "scale": 1e-13}.get(k, 2.5e-7)
      np.testing.assert_allclose(np.asarray(leaf, params[k].dtype if k != "matrix" else np.float32),
                                 np.asarray(params[k], params[k].dtype if k != "matrix" else np.float32),
                                 rtol=rtol, atol=1e-30, err_msg=k)
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
      key = next((p.key for p in path if isinstance(getattr(p, "key", None), str) and p.key in dtypes), None)
      if key is not None and jnp.ndim(leaf) == jnp.ndim(params[key]) and jnp.shape(leaf) == jnp.shape(params[key]):
        assert leaf.dtype == dtypes[key], (jax.tree_util.keystr(path), leaf.dtype)
    ocp = pytest.importorskip("orbax.checkpoint")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "mixed", {"params": params, "state": state})
    checkpointer.wait_until_finished()
    abstract = jax.eval_shape(lambda: {"params": params, "state": state})
    restored = checkpointer.restore(tmp_path / "mixed", abstract)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves({"params": params, "state": state})):
      assert a.dtype == b.dtype
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
