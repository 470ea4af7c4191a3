"""Complex parameters in L-BFGS, the line searches, the curvature step and Newton (torch's convention).

``gx.lbfgs(learning_rate)`` against ``torch.optim.LBFGS(max_iter=1)`` on the same complex128 parameters,
step by step (torch's strong-Wolfe search is a different algorithm from gradxform's zoom search, so with a
line search the references are the real view and the known minima); optimizing ``z`` equals optimizing its
real view for every second-order stage; convergence to the known minima; the gradient convention of
``gx.step`` (torch's, the conjugate of ``jax.grad``'s).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

STEPS = 20


def least_squares_data():
  """A complex least-squares problem with singular values over a decade (L-BFGS does not finish in 20 steps)."""
  rng = np.random.default_rng(0)
  a = (rng.normal(size=(40, 12)) + 1j * rng.normal(size=(40, 12))) * np.logspace(0, -1, 12)
  b = rng.normal(size=40) + 1j * rng.normal(size=40)
  return a, b


A, B = least_squares_data()
# Scales chosen so that the first gradient's real-view L1 norm is below 1: torch's first step is then
# lr·g (min(1, 1/‖g‖₁) = 1), as gradxform's (min(1, 1/‖g‖₂) = 1).
LSQ_SCALE, ROSENBROCK_SCALE = 0.005, 0.001


def least_squares(z, xp=jnp):
  return LSQ_SCALE * xp.sum(xp.abs(xp.asarray(A) @ z - xp.asarray(B)) ** 2)


def rosenbrock(z, xp=jnp):
  """Σ 100|z_{k+1} − z_k²|² + |1 − z_k|²: its global minimum is z = 1, where the start below leads."""
  return ROSENBROCK_SCALE * xp.sum(100 * xp.abs(z[1:] - z[:-1] ** 2) ** 2 + xp.abs(1 - z[:-1]) ** 2)


PROBLEMS = {
    # name: (loss(z, xp), start, learning rate of the fixed-step comparison)
    "least_squares": (least_squares, np.zeros(12, complex), 0.5),
    "rosenbrock": (rosenbrock, np.array([0.5 + 0.3j, 0.8 - 0.2j, 0.4 + 0.1j, 0.2j]), 1.0),
}


def minimum(name):
  if name == "least_squares":
    return np.linalg.lstsq(A, B, rcond=None)[0]
  return np.ones(len(PROBLEMS[name][1]), complex)


def real_view(z):
  return jnp.stack([z.real, z.imag], -1)


def gx_path(opt, loss, z0, steps=STEPS):
  params, path = jnp.asarray(z0), []  # complex128 or its float64 real view (under enable_x64)
  state = opt.init(params)
  step = jax.jit(lambda p, s: gx.step(opt, loss, p, s)[:2])
  for _ in range(steps):
    params, state = step(params, state)
    path.append(np.asarray(params))
  return path


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_lbfgs_matches_torch_lbfgs_on_complex128(name):
  """gx.lbfgs(lr) equals torch.optim.LBFGS(lr, max_iter=1, line_search_fn=None) step by step."""
  torch = pytest.importorskip("torch")
  loss, z0, lr = PROBLEMS[name]
  z = torch.tensor(z0, dtype=torch.complex128, requires_grad=True)
  opt = torch.optim.LBFGS([z], lr=lr, max_iter=1, history_size=10, tolerance_grad=0.0, tolerance_change=0.0)

  def closure():
    opt.zero_grad()
    value = loss(z, xp=torch)
    value.backward()
    return value

  expected = []
  for _ in range(STEPS):
    opt.step(closure)
    expected.append(z.detach().numpy().copy())
  with jax.enable_x64(True):
    got = gx_path(gx.lbfgs(lr, memory_size=10), loss, z0)
  for t, (g, e) in enumerate(zip(got, expected)):
    assert g.dtype == np.complex128
    # relative in norm: rounding differences grow along the path (to ~3e-11 at step 20 on least squares)
    error = np.linalg.norm(g - e) / np.linalg.norm(e)
    assert error <= 1e-9, f"{name} step {t}: relative error {error:.2e}"


LINE_SEARCHES = {
    "zoom": lambda: gx.lbfgs(),
    "backtracking": lambda: gx.lbfgs(linesearch=gx.scale_by_backtracking_linesearch()),
}


@pytest.mark.parametrize("search", sorted(LINE_SEARCHES))
def test_lbfgs_with_line_search_equals_the_real_view(search):
  """On a tree with a real and a complex leaf (Rosenbrock): the raveled L-BFGS state holds the complex
  leaf's real view, and the path equals that of the real view."""
  def loss(p):
    return rosenbrock(jnp.concatenate([p["w"].astype(jnp.complex128), p["z"]]))

  def real_loss(p):
    return loss({"w": p["w"], "z": jax.lax.complex(p["z"][..., 0], p["z"][..., 1])})

  with jax.enable_x64(True):
    start = {"w": jnp.asarray([0.5, 0.8]), "z": jnp.asarray([0.4 + 0.1j, 0.2j])}
    real_start = {"w": start["w"], "z": real_view(start["z"])}
    opt = LINE_SEARCHES[search]()
    state, real_state = opt.init(start), opt.init(real_start)
    assert state[0].params.shape == (2 + 2 * 2,) and state[0].params.dtype == jnp.float64
    step = jax.jit(lambda p, s: gx.step(opt, loss, p, s))
    real_step = jax.jit(lambda p, s: gx.step(opt, real_loss, p, s))
    params, real_params = start, real_start
    for t in range(STEPS):
      params, state, _ = step(params, state)
      real_params, real_state, _ = real_step(real_params, real_state)
      np.testing.assert_allclose(np.asarray(params["w"]), np.asarray(real_params["w"]), rtol=1e-12,
                                 err_msg=f"{search} step {t}")
      np.testing.assert_allclose(np.asarray(real_view(params["z"])), np.asarray(real_params["z"]),
                                 rtol=1e-12, atol=1e-14, err_msg=f"{search} step {t}")


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_lbfgs_reaches_the_known_minimum_as_torch_strong_wolfe_does(name):
  """Both line searches of gx.lbfgs, and torch's LBFGS with its strong-Wolfe search (a different algorithm
  from the zoom search, so only the solutions are compared)."""
  torch = pytest.importorskip("torch")
  loss, z0, _ = PROBLEMS[name]
  z = torch.tensor(z0, dtype=torch.complex128, requires_grad=True)
  opt = torch.optim.LBFGS([z], max_iter=500, max_eval=2000, history_size=10, line_search_fn="strong_wolfe",
                          tolerance_grad=1e-12, tolerance_change=0.0)

  def closure():
    opt.zero_grad()
    value = loss(z, xp=torch)
    value.backward()
    return value

  opt.step(closure)
  np.testing.assert_allclose(z.detach().numpy(), minimum(name), atol=1e-6)
  with jax.enable_x64(True):
    for search, make in sorted(LINE_SEARCHES.items()):
      got = gx.minimize(make(), loss, jnp.asarray(z0), max_steps=500, tol=1e-12).params
      assert got.dtype == jnp.complex128
      np.testing.assert_allclose(np.asarray(got), minimum(name), atol=1e-6, err_msg=search)


@pytest.mark.parametrize("make", [lambda: gx.curvature_descent(), lambda: gx.newton(damping=1e-3)],
                         ids=["curvature_descent", "newton"])
def test_curvature_and_newton_equal_the_real_view(make):
  loss, z0, _ = PROBLEMS["rosenbrock"]
  with jax.enable_x64(True):
    got = gx_path(make(), loss, z0, steps=10)
    as_complex = lambda x: jax.lax.complex(x[..., 0], x[..., 1])
    real = gx_path(make(), lambda x: loss(as_complex(x)), real_view(jnp.asarray(z0)), steps=10)
  for t, (g, r) in enumerate(zip(got, real)):
    # the Hessian through complex arithmetic and through the real view round differently
    np.testing.assert_allclose(np.stack([g.real, g.imag], -1), r, rtol=1e-10, atol=1e-13, err_msg=f"step {t}")


def test_newton_solves_complex_least_squares_in_one_step():
  with jax.enable_x64(True):
    got = gx_path(gx.newton(), least_squares, np.zeros(12, complex), steps=1)[-1]
  np.testing.assert_allclose(got, minimum("least_squares"), rtol=1e-10)


def test_step_passes_torchs_gradient():
  """gx.step's gradient of |z − c|² is 2(z − c) (torch's ∂f/∂Re z + i·∂f/∂Im z), so SGD moves toward c."""
  c = jnp.asarray([1.0 + 2.0j], jnp.complex64)
  loss = lambda z: jnp.sum(jnp.abs(z - c) ** 2)
  opt = gx.sgd(0.25)
  z = jnp.zeros(1, jnp.complex64)
  z, _, _ = gx.step(opt, loss, z, opt.init(z))
  np.testing.assert_allclose(np.asarray(z), 0.5 * np.asarray(c), rtol=1e-6)
