"""L-BFGS and the line searches against independent references.

The two-loop recursion against the dense BFGS inverse-Hessian update; whole
minimizations against ``scipy.optimize.minimize(method="L-BFGS-B")`` (the
solution to 1e-6 and the iteration counts, printed side by side); the Armijo
and strong Wolfe conditions checked on every accepted step with a NumPy
Rosenbrock; line searches after other directions; jit against eager.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import gradxform as gx
from gradxform._second_order.lbfgs import two_loop_recursion


def rosenbrock(x):
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_np(x):
  """Value and gradient of Rosenbrock in NumPy (independent of JAX)."""
  value = np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
  grad = np.zeros_like(x)
  grad[:-1] += -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
  grad[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
  return value, grad


def logistic_data():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(200, 8))
  labels = np.sign(features @ rng.normal(size=8) + 0.3 + rng.normal(size=200))  # noisy: not separable
  return features, labels


FEATURES, LABELS = logistic_data()


def logistic(params):
  """Mean logistic loss with a little L2 (a pytree: weights and a bias)."""
  margins = jnp.asarray(LABELS) * (jnp.asarray(FEATURES) @ params["w"] + params["b"])
  return jnp.mean(jnp.logaddexp(0.0, -margins)) + 1e-3 * jnp.sum(params["w"] ** 2)


PROBLEMS = {
    # name: (loss, start, ravel, unravel)
    "rosenbrock-2d": (rosenbrock, np.array([-1.2, 1.0]), lambda p: np.asarray(p), jnp.asarray),
    "rosenbrock-10d": (rosenbrock, np.tile([-1.2, 1.0], 5), lambda p: np.asarray(p), jnp.asarray),
    "logistic": (logistic, np.zeros(9),
                 lambda p: np.concatenate([np.asarray(p["b"])[None], np.asarray(p["w"])]),
                 lambda x: {"b": jnp.asarray(x[0]), "w": jnp.asarray(x[1:])}),
}


def scipy_lbfgs(loss, x0, unravel):
  value_and_grad = jax.jit(jax.value_and_grad(lambda x: loss(unravel(x))))

  def fun(x):
    value, grad = value_and_grad(jnp.asarray(x))
    return float(value), np.asarray(grad, np.float64)

  return scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                                 options=dict(maxcor=10, gtol=1e-9, ftol=0.0, maxiter=1000))


def test_lbfgs_matches_scipy_solutions_and_iteration_counts(capsys, record_property):
  rows = []
  with jax.enable_x64(True):
    for name, (loss, x0, ravel, unravel) in PROBLEMS.items():
      reference = scipy_lbfgs(loss, x0, unravel)
      runs = {}
      for label, opt in (("zoom", gx.lbfgs()), ("backtracking", gx.lbfgs(linesearch=gx.scale_by_backtracking_linesearch()))):
        result = gx.minimize(opt, loss, unravel(x0), max_steps=500, tol=1e-9)
        np.testing.assert_allclose(ravel(result.params), reference.x, atol=1e-6, err_msg=f"{name} {label}")
        runs[label] = (int(result.num_steps), int(result.state[1].total_evaluations))
      rows.append((name, reference.nit, reference.nfev, *runs["zoom"], *runs["backtracking"]))
      # a comparable number of iterations (the Wolfe search is the like-for-like one)
      assert runs["zoom"][0] <= 1.5 * reference.nit + 5, rows[-1]
  header = (f"{'problem':<15}{'scipy nit':>10}{'nfev':>6}{'gx zoom nit':>13}{'trials':>8}"
            f"{'gx backtrack nit':>18}{'trials':>8}")
  table = "\n".join([header] + [f"{r[0]:<15}{r[1]:>10}{r[2]:>6}{r[3]:>13}{r[4]:>8}{r[5]:>18}{r[6]:>8}"
                                for r in rows])
  record_property("lbfgs_vs_scipy", table)
  with capsys.disabled():
    print("\nL-BFGS (memory 10) to gradient norm 1e-9; solutions equal to scipy's within 1e-6. scipy's nfev\n"
          "counts value+gradient evaluations; gx's trials count line-search evaluations (plus one\n"
          "value+gradient per iteration, not counted):\n" + table)


def test_two_loop_recursion_equals_dense_bfgs_update():
  rng = np.random.default_rng(1)
  n, m, filled = 6, 5, 3
  root = rng.normal(size=(n, n))
  curvature = root @ root.T + n * np.eye(n)  # y = M s with M positive definite: sᵀy > 0
  s = rng.normal(size=(filled, n))
  y = s @ curvature.T
  g = rng.normal(size=n)
  gamma = s[-1] @ y[-1] / (y[-1] @ y[-1])
  inverse = gamma * np.eye(n)  # H_0 = γI, then the BFGS update with each pair, oldest first
  for si, yi in zip(s, y):
    rho = 1.0 / (si @ yi)
    v = np.eye(n) - rho * np.outer(yi, si)
    inverse = v.T @ inverse @ v + rho * np.outer(si, si)
  with jax.enable_x64(True):
    pad = lambda a: jnp.asarray(np.concatenate([np.zeros((m - filled,) + a.shape[1:]), a]))
    got = jax.jit(two_loop_recursion)(pad(s), pad(y), pad(1.0 / np.sum(s * y, axis=1)[:, None])[:, 0],
                                      jnp.int32(filled), jnp.asarray(g), jnp.float64(gamma))
  np.testing.assert_allclose(np.asarray(got), inverse @ g, rtol=1e-10)


def check_steps(opt, x0, steps, check):
  """Runs ``steps`` jitted ``gx.step``s on Rosenbrock and calls ``check(x, x_new, state)`` after each."""
  run = jax.jit(gx.step, static_argnums=1)
  x, state = jnp.asarray(x0), opt.init(jnp.asarray(x0))
  for _ in range(steps):
    x_new, state, _ = run(opt, rosenbrock, x, state)
    check(np.asarray(x), np.asarray(x_new), state)
    x = x_new
  return x


def test_backtracking_steps_satisfy_armijo_and_are_the_first_that_do():
  c1, beta = 1e-4, 0.5
  accepted = []

  def check(x, x_new, state):
    ls = state[-1]
    alpha, u = float(ls.step_size), x_new - x
    f, g = rosenbrock_np(x)
    f_new, _ = rosenbrock_np(x_new)
    assert bool(ls.success) and alpha > 0
    assert f_new <= f + c1 * g @ u, (x, alpha)                  # Armijo: f(x − αd) ≤ f(x) − c1 α gᵀd
    if alpha < 1.0:                                              # the previous trial α/β failed it
      f_before, _ = rosenbrock_np(x + u / beta)
      assert f_before > f + c1 * g @ u / beta
    np.testing.assert_allclose(np.log2(alpha), np.round(np.log2(alpha)), atol=1e-9)  # α = βʲ
    accepted.append(alpha)

  with jax.enable_x64(True):
    opt = gx.chain(gx.scale_by_backtracking_linesearch(c1=c1, decrease_factor=beta))  # plain gradient descent
    check_steps(opt, [-1.2, 1.0], 40, check)
  assert min(accepted) < 1e-2  # Rosenbrock's walls force real backtracking


@pytest.mark.parametrize("direction", ["lbfgs", "gradient"])
def test_zoom_steps_satisfy_strong_wolfe(direction):
  c1, c2 = 1e-4, 0.9 if direction == "lbfgs" else 0.1
  successes = []

  def check(x, x_new, state):
    ls = state[-1]
    successes.append(bool(ls.success))
    if not ls.success:
      return
    f, g = rosenbrock_np(x)
    f_new, g_new = rosenbrock_np(x_new)
    u = x_new - x
    assert f_new <= f + c1 * g @ u + 1e-12                     # sufficient decrease
    assert abs(g_new @ u) <= c2 * abs(g @ u) + 1e-12           # strong curvature condition
    np.testing.assert_allclose(f_new, float(ls.value), rtol=1e-10, atol=1e-14)

  with jax.enable_x64(True):
    stages = [gx.scale_by_lbfgs(memory_size=10)] if direction == "lbfgs" else []
    opt = gx.chain(*stages, gx.scale_by_zoom_linesearch(c1=c1, c2=c2))
    x = check_steps(opt, [-1.2, 1.0], 40, check)
  assert np.mean(successes) >= 0.9, successes
  if direction == "lbfgs":
    np.testing.assert_allclose(np.asarray(x), [1.0, 1.0], atol=1e-6)


def test_linesearch_after_momentum_and_non_descent_fallback():
  with jax.enable_x64(True):
    ravine = lambda x: 0.5 * (x[0] ** 2 + 100.0 * x[1] ** 2)
    result = gx.minimize(gx.chain(gx.trace(0.5), gx.scale_by_zoom_linesearch()), ravine, jnp.array([-4.0, 1.0]),
                      max_steps=300, tol=1e-8)
    np.testing.assert_allclose(np.asarray(result.params), [0.0, 0.0], atol=1e-7)
    # an ascent direction (−g): the search runs along the gradient instead
    opt = gx.scale_by_zoom_linesearch()
    x = jnp.array([-4.0, 1.0])
    value, grad = jax.value_and_grad(ravine)(x)
    update = jax.jit(opt.update, static_argnames="value_fn")
    flipped, _ = update(-grad, opt.init(x), x, value=value, grad=grad, value_fn=ravine)
    plain, _ = update(grad, opt.init(x), x, value=value, grad=grad, value_fn=ravine)
    np.testing.assert_allclose(np.asarray(flipped), np.asarray(plain))
    assert float(grad @ flipped) < 0


def test_chain_spelling_equals_lbfgs_and_jit_matches_eager():
  with jax.enable_x64(True):
    x0 = jnp.array([-1.2, 1.0])
    spelled = gx.chain(gx.scale_by_lbfgs(memory_size=10), gx.scale_by_zoom_linesearch())
    assert spelled == gx.lbfgs()
    jitted = jax.jit(gx.step, static_argnums=1)
    x_eager, s_eager, x_jit, s_jit = x0, spelled.init(x0), x0, spelled.init(x0)
    for _ in range(2):
      x_eager, s_eager, _ = gx.step(spelled, rosenbrock, x_eager, s_eager)
      x_jit, s_jit, _ = jitted(spelled, rosenbrock, x_jit, s_jit)
    np.testing.assert_allclose(np.asarray(x_jit), np.asarray(x_eager), rtol=1e-12)
    assert int(s_jit[0].num_pairs) == 1


def test_lbfgs_with_fixed_learning_rate_and_float32():
  result = gx.minimize(gx.lbfgs(learning_rate=0.5), lambda x: jnp.sum((x - 1.0) ** 2), jnp.zeros(3, jnp.float32),
                    max_steps=100, tol=1e-5)
  assert result.params.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(result.params), np.ones(3), atol=1e-5)


@pytest.mark.parametrize("build,error,match", [
    (lambda: gx.scale_by_lbfgs(memory_size=0), ValueError, r"scale_by_lbfgs: memory_size=0 must be an integer >= 1"),
    (lambda: gx.lbfgs(1.0, linesearch=gx.scale_by_zoom_linesearch()), ValueError, r"lbfgs: pass a learning_rate or"),
    (lambda: gx.scale_by_zoom_linesearch(c1=0.5, c2=0.1), ValueError, r"scale_by_zoom_linesearch: c1=0.5 must be smaller"),
    (lambda: gx.scale_by_zoom_linesearch(c2=1.0), ValueError, r"scale_by_zoom_linesearch: c2=1.0 is out of range"),
    (lambda: gx.scale_by_backtracking_linesearch(decrease_factor=1.0), ValueError, r"decrease_factor=1.0"),
    (lambda: gx.scale_by_backtracking_linesearch(max_evaluations=0), ValueError, r"max_evaluations=0"),
])
def test_bad_arguments_raise(build, error, match):
  with pytest.raises(error, match=match):
    build()


@pytest.mark.parametrize("opt,match", [
    (gx.scale_by_zoom_linesearch(), r"scale_by_zoom_linesearch.*value_fn"),
    (gx.scale_by_backtracking_linesearch(), r"scale_by_backtracking_linesearch.*value_fn"),
    (gx.lbfgs(), r"scale_by_zoom_linesearch.*value_fn"),
])
def test_missing_value_fn_names_the_line_search(opt, match):
  x = jnp.array([-1.2, 1.0])
  with pytest.raises(TypeError, match=match):
    opt.update(jax.grad(rosenbrock)(x), opt.init(x), x)
  with pytest.raises(TypeError, match=match):  # at trace time too
    jax.jit(opt.update)(jnp.ones(2), opt.init(x), x)


def test_lbfgs_needs_params():
  opt = gx.scale_by_lbfgs()
  with pytest.raises(ValueError, match=r"scale_by_lbfgs: params are required in update\(\)"):
    opt.update(jnp.ones(2), opt.init(jnp.ones(2)))


def test_curvature_safeguard_is_scale_free_on_a_float32_quadratic():
  """f(x) = c·(½xᵀAx − bᵀx) with c = 1, 1e4, 1e6, 1e8 in float32: every pair kept, as optax.lbfgs and scipy.

  The safeguard used to be ``sᵀy > ε·yᵀy``, which rejects every pair once the
  curvature ``c·λ`` exceeds 1/ε: at c = 1e6 L-BFGS kept no pair and stalled.
  """
  optax = pytest.importorskip("optax")
  rng = np.random.default_rng(0)
  n = 20
  q = np.linalg.qr(rng.normal(size=(n, n)))[0]
  a = (q * np.logspace(0, 2, n)) @ q.T  # condition number 100
  b = rng.normal(size=n)
  x_star = np.linalg.solve(a, b)
  a32, b32 = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  loss = lambda x, c: c * (0.5 * x @ a32 @ x - b32 @ x)
  opt, ref = gx.lbfgs(), optax.lbfgs()
  ref_value_and_grad = optax.value_and_grad_from_state(loss)

  @jax.jit
  def gx_run(c):
    def body(_, carry):
      x, state = carry
      x, state, _ = gx.step(opt, lambda p: loss(p, c), x, state)
      return x, state
    x = jnp.zeros(n, jnp.float32)
    return jax.lax.fori_loop(0, 60, body, (x, opt.init(x)))

  @jax.jit
  def optax_run(c):
    def body(_, carry):
      x, state = carry
      value, grad = ref_value_and_grad(x, c, state=state)
      updates, state = ref.update(grad, state, x, value=value, grad=grad, value_fn=loss, c=c)
      return optax.apply_updates(x, updates), state
    x = jnp.zeros(n, jnp.float32)
    return jax.lax.fori_loop(0, 60, body, (x, ref.init(x)))[0]

  for c in (1.0, 1e4, 1e6, 1e8):
    x, state = gx_run(jnp.float32(c))
    with jax.numpy_dtype_promotion("standard"):
      x_optax = optax_run(jnp.float32(c))
    x_scipy = scipy.optimize.minimize(lambda x: (c * (0.5 * x @ a @ x - b @ x), c * (a @ x - b)), np.zeros(n),
                                      jac=True, method="L-BFGS-B", options=dict(gtol=0.0, ftol=0.0)).x
    error = lambda x: float(np.linalg.norm(np.asarray(x, np.float64) - x_star) / np.linalg.norm(x_star))
    assert int(state[0].num_pairs) == 10, f"c={c}: only {int(state[0].num_pairs)} pairs kept"
    assert error(x_scipy) < 1e-5 and error(x_optax) < 1e-3, (c, error(x_scipy), error(x_optax))
    assert error(x) < 1e-3, f"c={c}: gx at relative distance {error(x):.2e} (optax {error(x_optax):.2e})"
