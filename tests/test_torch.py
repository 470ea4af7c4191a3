"""Optional cross-check: each named optimizer against torch.optim, step by step.

Skipped when torch is not installed (the README's test command does not
install it: an unpinned torch pulls several GB of CUDA packages).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.catalogue import OPTIMIZERS, gradient_stream, initial_params

torch = pytest.importorskip("torch")

TORCH_CASES = [case for case in OPTIMIZERS if case.torch is not None]


def _run_torch(case, dtype):
  keys = sorted(initial_params())
  params = [torch.tensor(initial_params()[k], dtype=dtype, requires_grad=True) for k in keys]
  opt = case.torch(torch, params)
  history = []
  for grads in gradient_stream(steps=12):
    for p, k in zip(params, keys):
      p.grad = torch.tensor(grads[k], dtype=dtype)
    opt.step()
    history.append({k: p.detach().numpy().astype(np.float64).copy() for k, p in zip(keys, params)})
  return history


def _run_gx(case, dtype):
  history = []
  params = jax.tree.map(lambda x: jnp.asarray(x, dtype), initial_params())
  opt = case.make()
  state = opt.init(params)
  for grads in gradient_stream(steps=12):
    updates, state = opt.update(jax.tree.map(lambda x: jnp.asarray(x, dtype), grads), state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    history.append(jax.tree.map(lambda x: np.asarray(x, np.float64), params))
  return history


@pytest.mark.parametrize("case", TORCH_CASES, ids=str)
def test_matches_torch_float64(case):
  torch.set_default_dtype(torch.float64)  # torch keeps NAdam's mu_product in the default dtype
  try:
    expected = _run_torch(case, torch.float64)
  finally:
    torch.set_default_dtype(torch.float32)
  with jax.enable_x64(True):
    got = _run_gx(case, jnp.float64)
  for step, (g, e) in enumerate(zip(got, expected)):
    for k in e:
      np.testing.assert_allclose(g[k], e[k], rtol=1e-12, atol=1e-13, err_msg=f"{case.id} step {step} {k}")


@pytest.mark.parametrize("case", TORCH_CASES, ids=str)
def test_matches_torch_float32(case):
  expected = _run_torch(case, torch.float32)
  got = _run_gx(case, jnp.float32)
  for step, (g, e) in enumerate(zip(got, expected)):
    for k in e:
      np.testing.assert_allclose(g[k], e[k], rtol=1e-5, atol=1e-5, err_msg=f"{case.id} step {step} {k}")
