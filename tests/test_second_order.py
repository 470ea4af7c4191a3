"""Second-order building blocks against independent references.

Hessian-vector products against the explicit Hessian and finite differences;
the curvature step against the exact line search computed in NumPy; Newton
against the closed-form minimizer of a quadratic and its quadratic rate;
Polyak's step against its formula; Hutchinson's estimate against the true
diagonal; Sophia's convergence; the extra-argument plumbing (``step``,
``minimize``, the errors when an argument is missing); jit against eager.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

# A quadratic f(x) = ½ xᵀAx − bᵀx with A symmetric positive definite, on a pytree.
A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, -0.4], [0.5, -0.4, 2.0]])
B = np.array([1.0, -2.0, 0.5])


def flat(params):
  return jnp.concatenate([params["a"], params["b"]])


def quadratic(params):
  x = flat(params)
  return 0.5 * x @ jnp.asarray(A, x.dtype) @ x - jnp.asarray(B, x.dtype) @ x


def start():
  return {"a": jnp.array([1.0, 2.0]), "b": jnp.array([-1.5])}


def nonquadratic(params):
  """A smooth non-quadratic test function on a pytree (its Hessian depends on x)."""
  x, w = params["x"], params["w"]
  return jnp.sum(jnp.sin(x) * x**2) + jnp.sum(jnp.exp(0.3 * w) * jnp.cos(w[0])) + (x @ w[:2]) ** 2


def nonquadratic_point():
  return {"x": jnp.array([0.3, -1.2]), "w": jnp.array([0.5, 0.1, -0.7])}


def ravel_np(tree):
  return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


# --------------------------------------------------------------------------- Hessian-vector products


def test_hvp_matches_explicit_hessian_and_finite_differences():
  with jax.enable_x64(True):
    params = nonquadratic_point()
    v = {"x": jnp.array([1.0, -0.5]), "w": jnp.array([0.2, 0.3, -1.0])}
    got = ravel_np(jax.jit(gx.hvp, static_argnums=0)(nonquadratic, params, v))
    # explicit Hessian over the raveled parameters (leaves in tree order: w, x)
    hessian = np.asarray(jax.jit(gx.hessian_matrix, static_argnums=0)(nonquadratic, params))
    np.testing.assert_allclose(got, hessian @ ravel_np(v), rtol=1e-12, atol=1e-12)
    # central finite differences of the gradient: (∇f(x + hv) − ∇f(x − hv)) / 2h
    h = 1e-5
    grad = jax.jit(jax.grad(nonquadratic))
    shifted = lambda sign: jax.tree.map(lambda p, d: p + sign * h * d, params, v)
    fd = (ravel_np(grad(shifted(1.0))) - ravel_np(grad(shifted(-1.0)))) / (2 * h)
    np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-8)
    # and the explicit Hessian against second finite differences of the function itself
    n, eye = hessian.shape[0], np.eye(hessian.shape[0])
    flat_params = ravel_np(params)
    unravel = lambda x: {"w": jnp.asarray(x[:3]), "x": jnp.asarray(x[3:])}
    f_jit = jax.jit(lambda x: nonquadratic(unravel(x)))
    f = lambda x: float(f_jit(x))
    h = 1e-4
    fd_hessian = np.array([[(f(flat_params + h * (eye[i] + eye[j])) - f(flat_params + h * (eye[i] - eye[j]))
                             - f(flat_params - h * (eye[i] - eye[j])) + f(flat_params - h * (eye[i] + eye[j])))
                            / (4 * h * h) for j in range(n)] for i in range(n)])
    np.testing.assert_allclose(hessian, fd_hessian, rtol=1e-6, atol=1e-6)


def test_grad_and_hvp_returns_gradient_and_keeps_dtypes():
  params = start()
  v = jax.tree.map(jnp.ones_like, params)
  grad, hv = jax.jit(gx.grad_and_hvp, static_argnums=0)(quadratic, params, v)
  np.testing.assert_allclose(ravel_np(grad), A @ ravel_np(params) - B, rtol=1e-6)
  np.testing.assert_allclose(ravel_np(hv), A @ np.ones(3), rtol=1e-6)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(hv))


def test_hvp_rejects_mismatched_vector():
  with pytest.raises(ValueError, match=r"hvp: the vector at \['a'\] has shape \(3,\).*\(2,\)"):
    gx.hvp(quadratic, start(), {"a": jnp.ones(3), "b": jnp.ones(1)})


def test_hutchinson_converges_to_true_diagonal():
  with jax.enable_x64(True):
    params = nonquadratic_point()
    true_diagonal = np.diag(np.asarray(jax.jit(gx.hessian_matrix, static_argnums=0)(nonquadratic, params)))
    estimate = jax.jit(gx.hutchinson_diagonal, static_argnums=(0, 3))(
        nonquadratic, params, jax.random.PRNGKey(0), 20_000)
    # the variance of one sample of coordinate i is Σ_{j≠i} H_ij²; 20000 samples -> ~1% of that
    error = np.abs(ravel_np(estimate) - true_diagonal)
    assert np.max(error) < 0.05 * max(1.0, np.max(np.abs(true_diagonal))), (ravel_np(estimate), true_diagonal)
    single = ravel_np(jax.jit(gx.hutchinson_diagonal, static_argnums=0)(nonquadratic, params, jax.random.PRNGKey(1)))
    assert not np.allclose(single, true_diagonal, atol=1e-3)  # one sample is noisy: the average matters


# --------------------------------------------------------------------------- curvature step


def test_curvature_step_is_exact_line_search_on_quadratic():
  with jax.enable_x64(True):
    params = start()
    opt = gx.curvature_descent()
    new_params, state, value = jax.jit(gx.step, static_argnums=1)(opt, quadratic, params, opt.init(params))
    x = ravel_np(params)
    g = A @ x - B
    eps = (g @ g) / (g @ A @ g)                 # the minimizer of f(x − εg) in closed form
    np.testing.assert_allclose(ravel_np(new_params), x - eps * g, rtol=1e-12)
    np.testing.assert_allclose(float(state[0].step_size), eps, rtol=1e-12)
    np.testing.assert_allclose(float(value), 0.5 * x @ A @ x - B @ x, rtol=1e-12)
    # exact line search: the new gradient is orthogonal to the old one
    assert abs((A @ ravel_np(new_params) - B) @ g) < 1e-10 * (g @ g)


def test_curvature_step_along_preconditioned_direction():
  with jax.enable_x64(True):
    params = start()
    diag = np.array([0.5, 2.0, 1.0])  # a diagonal preconditioner: d = diag ⊙ g
    precondition = gx.stateless(lambda u, p: {"a": u["a"] * jnp.asarray(diag[:2]), "b": u["b"] * jnp.asarray(diag[2:])})
    opt = gx.chain(precondition, gx.scale_by_curvature_step(), gx.scale_by_learning_rate(1.0))
    new_params, _, _ = jax.jit(gx.step, static_argnums=1)(opt, quadratic, params, opt.init(params))
    x = ravel_np(params)
    g = A @ x - B
    d = diag * g
    np.testing.assert_allclose(ravel_np(new_params), x - (g @ d) / (d @ A @ d) * d, rtol=1e-12)


def test_curvature_step_fallback_and_cap():
  with jax.enable_x64(True):
    concave = lambda p: -0.5 * jnp.sum(p["a"] ** 2)   # dᵀHd < 0: the fallback step
    params = {"a": jnp.array([1.0, -2.0])}
    opt = gx.scale_by_curvature_step(fallback_step=0.1, max_step=5.0)
    update = jax.jit(opt.update, static_argnames="value_fn")
    updates, state = update(params, opt.init(params), params, value_fn=concave)
    # direction d = [1, -2] = -g: gᵀd < 0, so the fallback runs the other way, downhill
    np.testing.assert_allclose(ravel_np(updates), -0.1 * np.array([1.0, -2.0]))
    assert float(state.curvature) < 0 and float(state.step_size) == -0.1
    flat_ish = lambda p: 1e-6 * jnp.sum(p["a"] ** 2) + jnp.sum(p["a"])  # tiny curvature: the cap
    updates, state = update({"a": jnp.ones(2)}, opt.init(params), params, value_fn=flat_ish)
    assert float(state.step_size) == 5.0


# --------------------------------------------------------------------------- Newton


def test_newton_solves_quadratic_in_one_step():
  with jax.enable_x64(True):
    result = gx.minimize(gx.newton(), quadratic, start(), max_steps=10, tol=1e-10)
    assert int(result.num_steps) == 1
    np.testing.assert_allclose(ravel_np(result.params), np.linalg.solve(A, B), rtol=1e-12)


def test_newton_damping_and_indefinite_hessian_match_numpy():
  with jax.enable_x64(True):
    params = nonquadratic_point()
    hessian = np.asarray(jax.jit(gx.hessian_matrix, static_argnums=0)(nonquadratic, params))
    eigenvalues, vectors = np.linalg.eigh(hessian)
    assert eigenvalues[0] < 0 < eigenvalues[-1], "the test point should have an indefinite Hessian"
    g = jax.jit(jax.grad(nonquadratic))(params)
    opt = gx.scale_by_newton(damping=0.5, eigenvalue_floor=0.2)
    update = jax.jit(opt.update, static_argnames="value_fn")
    direction, state = update(g, opt.init(params), params, value_fn=nonquadratic)
    modified = np.maximum(np.abs(eigenvalues), 0.2) + 0.5
    expected = vectors @ ((vectors.T @ ravel_np(g)) / modified)
    np.testing.assert_allclose(ravel_np(direction), expected, rtol=1e-10)
    assert ravel_np(g) @ ravel_np(direction) > 0  # a descent direction despite the negative curvature
    np.testing.assert_allclose(float(state.min_eigenvalue), eigenvalues[0], rtol=1e-10)
    # positive definite with eigenvalues above the floor: exactly Levenberg-Marquardt (H + μI)⁻¹ g
    params_q = start()
    g_q = jax.grad(quadratic)(params_q)
    direction, _ = update(g_q, opt.init(params_q), params_q, value_fn=quadratic)
    np.testing.assert_allclose(ravel_np(direction), np.linalg.solve(A + 0.5 * np.eye(3), ravel_np(g_q)),
                               rtol=1e-10)


def test_newton_converges_quadratically_on_rosenbrock():
  with jax.enable_x64(True):
    rosenbrock = lambda x: (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2
    opt = gx.newton()
    run = jax.jit(gx.step, static_argnums=1)
    x, state = jnp.array([1.2, 1.2]), opt.init(jnp.zeros(2))
    errors = [np.linalg.norm(np.asarray(x) - 1.0)]
    while errors[-1] > 1e-10 and len(errors) < 20:
      x, state, _ = run(opt, rosenbrock, x, state)
      errors.append(np.linalg.norm(np.asarray(x) - 1.0))
    assert errors[-1] < 1e-10, errors
    ratios = [e1 / e0**2 for e0, e1 in zip(errors, errors[1:]) if e0 > 1e-7]
    assert len(ratios) >= 3 and max(ratios) < 1e3, (errors, ratios)  # e_{k+1} <= C e_k²


def test_newton_refuses_large_problems():
  with pytest.raises(ValueError, match=r"scale_by_newton: the parameters have 200 entries.*max_parameters=100"):
    gx.scale_by_newton(max_parameters=100).init({"w": jnp.zeros((10, 20))})


# --------------------------------------------------------------------------- Polyak and Sophia


def test_polyak_step_closed_form():
  params = start()
  opt = gx.polyak_sgd(max_learning_rate=10.0, f_min=-1.0)
  value, grad = jax.value_and_grad(quadratic)(params)
  updates, state = jax.jit(opt.update)(grad, opt.init(params), params, value=value)
  g = ravel_np(grad)
  gamma = (float(value) + 1.0) / (g @ g)
  assert gamma < 10.0
  np.testing.assert_allclose(ravel_np(updates), -gamma * g, rtol=1e-6)
  np.testing.assert_allclose(float(state[0].step_size), gamma, rtol=1e-6)
  capped = gx.scale_by_polyak(f_min=-1.0, max_learning_rate=1e-3)
  update = jax.jit(capped.update)
  updates, state = update(grad, capped.init(params), params, value=value)
  np.testing.assert_allclose(ravel_np(updates), 1e-3 * g, rtol=1e-6)
  # below f_min, or at a zero gradient: no step (and no NaN)
  zero = jax.tree.map(jnp.zeros_like, grad)
  updates, _ = update(zero, capped.init(params), params, value=value)
  assert np.all(ravel_np(updates) == 0)


def test_polyak_sgd_converges_with_known_minimum():
  f_star = float(quadratic({"a": jnp.asarray(np.linalg.solve(A, B)[:2], jnp.float32),
                            "b": jnp.asarray(np.linalg.solve(A, B)[2:], jnp.float32)}))
  result = gx.minimize(gx.polyak_sgd(max_learning_rate=1.0, f_min=f_star), quadratic, start(), max_steps=500, tol=1e-4)
  np.testing.assert_allclose(ravel_np(result.params), np.linalg.solve(A, B), atol=1e-3)


def test_sophia_converges_on_quadratic():
  result = gx.minimize(gx.sophia(0.05, update_every=2), quadratic, start(), max_steps=600, tol=1e-5)
  np.testing.assert_allclose(ravel_np(result.params), np.linalg.solve(A, B), atol=1e-4)
  state = result.state[0]
  # the Hessian EMA tracks diag(A) (Hutchinson on a quadratic: z ⊙ Az = diag(A) + off-diagonal
  # noise), less the EMA's start-up bias 0.99^300 ≈ 5% (Sophia does not debias h)
  np.testing.assert_allclose(ravel_np(state.hessian), np.diag(A), rtol=0.2)
  assert not np.array_equal(np.asarray(state.key), np.asarray(jax.random.PRNGKey(0)))


def test_sophia_refreshes_hessian_every_k_steps():
  params = start()
  opt = gx.scale_by_sophia(update_every=3)
  state = opt.init(params)
  update = jax.jit(opt.update, static_argnames="value_fn")
  seen = []
  for _ in range(7):
    _, state = update(jax.grad(quadratic)(params), state, params, value_fn=quadratic)
    seen.append(ravel_np(state.hessian))
  changed = [not np.array_equal(a, b) for a, b in zip([np.zeros(3)] + seen, seen)]
  assert changed == [True, False, False, True, False, False, True]


# --------------------------------------------------------------------------- the objective in extra args


MISSING = [
    (lambda: gx.scale_by_curvature_step(), "value_fn", r"scale_by_curvature_step.*value_fn"),
    (lambda: gx.scale_by_newton(), "value_fn", r"scale_by_newton.*value_fn"),
    (lambda: gx.scale_by_sophia(), "value_fn", r"scale_by_sophia.*value_fn"),
    (lambda: gx.scale_by_polyak(), "value", r"scale_by_polyak.*value"),
    (lambda: gx.curvature_descent(), "value_fn", r"scale_by_curvature_step.*value_fn"),
]


@pytest.mark.parametrize("make,arg,match", MISSING, ids=[m[2].split(".")[0] for m in MISSING])
def test_missing_extra_argument_names_transform_and_argument(make, arg, match):
  opt = make()
  params = start()
  with pytest.raises(TypeError, match=match):
    opt.update(jax.grad(quadratic)(params), opt.init(params), params)
  with pytest.raises(TypeError, match=match):  # also at trace time, under jit
    jax.jit(opt.update)(jax.grad(quadratic)(params), opt.init(params), params)


def test_missing_params_is_a_clear_error():
  opt = gx.scale_by_curvature_step()
  with pytest.raises(ValueError, match=r"scale_by_curvature_step: params are required in update\(\)"):
    opt.update(start(), opt.init(start()), None, value_fn=quadratic)


def test_step_passes_value_grad_and_value_fn_through_chain():
  seen = {}

  def spy(updates, state, params=None, **extra):
    seen.update(extra)
    return updates, state

  opt = gx.chain(gx.GradientTransformation(lambda p: (), spy), gx.sgd(0.1))
  params = start()
  new_params, _, value = gx.step(opt, quadratic, params, opt.init(params))
  assert set(seen) == {"value", "grad", "value_fn"} and seen["value_fn"] is quadratic
  np.testing.assert_allclose(float(seen["value"]), float(quadratic(params)))
  np.testing.assert_allclose(ravel_np(seen["grad"]), ravel_np(jax.grad(quadratic)(params)))
  np.testing.assert_allclose(ravel_np(new_params), ravel_np(params) - 0.1 * ravel_np(seen["grad"]), rtol=1e-6)


def test_minimize_stops_on_tolerance_and_can_continue():
  result = gx.minimize(gx.sgd(0.2), quadratic, start(), max_steps=1000, tol=1e-3)
  grad_norm = np.linalg.norm(ravel_np(jax.grad(quadratic)(result.params)))
  assert 0 < int(result.num_steps) < 1000 and grad_norm <= 1e-3
  more = gx.minimize(gx.sgd(0.2), quadratic, result.params, max_steps=1000, tol=1e-5, state=result.state)
  assert np.linalg.norm(ravel_np(jax.grad(quadratic)(more.params))) <= 1e-5
  assert int(gx.minimize(gx.sgd(0.2), quadratic, start(), max_steps=7, tol=0.0).num_steps) == 7


def test_minimize_rejects_non_scalar_loss():
  with pytest.raises(ValueError, match=r"minimize: loss_fn must return a scalar"):
    gx.minimize(gx.sgd(0.1), lambda p: p["a"], start())


@pytest.mark.parametrize("make", [gx.curvature_descent, lambda: gx.polyak_sgd(0.5)], ids=["curvature", "polyak"])
def test_jit_matches_eager(make):
  # (eager execution of Hessian-based transforms is slow here: op by op; newton and
  # sophia run jitted against NumPy references above)
  opt = make()
  params, state = start(), opt.init(start())
  jitted = jax.jit(gx.step, static_argnums=1)
  p_eager, s_eager, p_jit, s_jit = params, state, params, state
  for _ in range(2):
    p_eager, s_eager, _ = gx.step(opt, quadratic, p_eager, s_eager)
    p_jit, s_jit, _ = jitted(opt, quadratic, p_jit, s_jit)
  np.testing.assert_allclose(ravel_np(p_jit), ravel_np(p_eager), rtol=1e-5, atol=1e-6)
  assert not np.allclose(ravel_np(p_jit), ravel_np(params))


def test_hyperparameters_are_leaves_vmap_over_learning_rates():
  lrs = jnp.array([0.25, 0.5, 1.0])
  final = jax.vmap(lambda lr: flat(gx.minimize(gx.curvature_descent(lr), quadratic, start(),
                                            max_steps=3, tol=0.0).params))(lrs)
  for lr, row in zip(lrs, np.asarray(final)):
    single = gx.minimize(gx.curvature_descent(float(lr)), quadratic, start(), max_steps=3, tol=0.0).params
    np.testing.assert_allclose(row, ravel_np(single), rtol=1e-5)


@pytest.mark.parametrize("build,match", [
    (lambda: gx.scale_by_curvature_step(max_step=0.0), r"scale_by_curvature_step: max_step=0.0 is out of range"),
    (lambda: gx.scale_by_newton(damping=-1.0), r"scale_by_newton: damping=-1.0 is out of range"),
    (lambda: gx.newton(eigenvalue_floor=0.0), r"newton: scale_by_newton: eigenvalue_floor=0.0"),
    (lambda: gx.polyak_sgd(max_learning_rate=-1.0), r"polyak_sgd: scale_by_polyak: max_learning_rate=-1.0"),
    (lambda: gx.sophia(1e-3, b1=1.0), r"sophia: scale_by_sophia: b1=1.0 is out of range"),
    (lambda: gx.scale_by_sophia(update_every=0), r"scale_by_sophia: update_every=0 must be an integer >= 1"),
    (lambda: gx.hutchinson_diagonal(quadratic, start(), jax.random.PRNGKey(0), 0), r"num_samples=0"),
])
def test_bad_hyperparameters_raise(build, match):
  with pytest.raises(ValueError, match=match):
    build()
