"""SAM against optax.contrib.sam in float64 (both modes), and its errors, jit and vmap behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.helpers import assert_trees_close

A = np.random.default_rng(0).normal(size=(5, 5))
H = A @ A.T / 5 + 0.1 * np.eye(5)
W0 = np.random.default_rng(1).normal(size=5)
B0 = np.random.default_rng(2).normal(size=(2, 3))
STEPS = 36


def loss(p):  # bounded below and not quadratic, so the gradient at the perturbed point turns too
  return (0.5 * p["w"] @ jnp.asarray(H, p["w"].dtype) @ p["w"] + jnp.sum(jnp.cos(p["b"]))
          + jnp.sum(jnp.sin(p["w"][:3]) * jnp.cos(p["b"][0])))


def run(opt, zero_at=(), opaque=False, steps=STEPS):
  """Trains with ``opt`` (gradient zeroed at the steps ``zero_at``); returns the parameters after each step."""
  grad = jax.grad(loss)

  @jax.jit
  def step(p, state, zero):
    g = jax.tree.map(lambda x: jnp.where(zero, jnp.zeros_like(x), x), grad(p))
    extra = {"grad_fn": lambda q, i: grad(q)} if opaque else {}
    u, state = opt.update(g, state, p, **extra)
    return gx.apply_updates(p, u), state

  p = {"w": jnp.asarray(W0), "b": jnp.asarray(B0)}
  state = opt.init(p)
  seen = []
  for t in range(steps):
    p, state = step(p, state, t in zero_at)
    seen.append(p)
  return seen, state


def assert_runs_equal(got, expected, rtol=1e-9):
  assert len(got) == len(expected)
  for t, (g, e) in enumerate(zip(got, expected)):
    for name in ("w", "b"):
      scale = np.max(np.abs(np.asarray(e[name])))
      np.testing.assert_allclose(np.asarray(g[name]), np.asarray(e[name]), rtol=rtol, atol=rtol * scale,
                                 err_msg=f"step {t}, leaf {name}")


def pairs(optax):
  """(gradxform, optax) pairs of (outer, adversary), off their defaults."""
  return {
      # the paper's adversary, rho = 0.07, with a Nesterov heavy-ball outer optimizer
      "paper": ((gx.sgd(0.04, momentum=0.7, nesterov=True), gx.chain(gx.normalize(), gx.sgd(0.07))),
                (optax.sgd(0.04, momentum=0.7, nesterov=True),
                 optax.chain(optax.contrib.normalize(), optax.sgd(0.07)))),
      # an adversary with state (so reset_state matters) and Adam outside
      "adam_momentum": ((gx.adam(0.03, b1=0.8, b2=0.99, eps=1e-6), gx.sgd(0.05, momentum=0.6)),
                        (optax.adam(0.03, b1=0.8, b2=0.99, eps=1e-6), optax.sgd(0.05, momentum=0.6))),
  }


_CONFIGS = [("paper", True, 2), ("paper", False, 3), ("adam_momentum", True, 3), ("adam_momentum", False, 2)]


@pytest.mark.parametrize("pair, reset_state, sync_period", _CONFIGS)
def test_matches_optax_contrib_sam(pair, reset_state, sync_period):
  optax = pytest.importorskip("optax")
  (outer, adv), (optax_outer, optax_adv) = pairs(optax)[pair]
  # optax's normalize divides 0 by 0 on a zero gradient (NaN); the zero step is for the adversaries without it
  zero_at = () if pair == "paper" else (7, 8)
  with jax.enable_x64(True):
    with jax.numpy_dtype_promotion("standard"):  # optax blends the branches as bool * float
      expected, _ = run(optax.contrib.sam(optax_outer, optax_adv, sync_period, reset_state), zero_at)
    got, state = run(gx.sam(outer, adv, sync_period=sync_period, reset_state=reset_state), zero_at)
  assert_runs_equal(got, expected)
  assert int(state.steps_since_sync) == STEPS % sync_period
  assert int(state.count) == STEPS


@pytest.mark.parametrize("pair, reset_state, sync_period",
                         [("paper", True, 2), ("paper", False, 4), ("adam_momentum", True, 4),
                          ("adam_momentum", False, 2)])
def test_opaque_mode_matches_optax(pair, reset_state, sync_period):
  optax = pytest.importorskip("optax")
  (outer, adv), (optax_outer, optax_adv) = pairs(optax)[pair]
  zero_at = () if pair == "paper" else (5,)
  with jax.enable_x64(True):
    with jax.numpy_dtype_promotion("standard"):
      expected, _ = run(optax.contrib.sam(optax_outer, optax_adv, sync_period, reset_state, opaque_mode=True),
                        zero_at, opaque=True)
    got, state = run(gx.sam(outer, adv, sync_period, reset_state, opaque_mode=True), zero_at, opaque=True)
  assert_runs_equal(got, expected)
  assert state.cache is None and int(state.steps_since_sync) == 0


def test_opaque_mode_takes_the_same_path_as_the_default_mode():
  """One opaque update equals ``sync_period`` default-mode updates on the same gradients."""
  with jax.enable_x64(True):
    outer, adv = gx.adam(0.02, b1=0.7), gx.chain(gx.normalize(), gx.sgd(0.1, momentum=0.5))
    opaque, _ = run(gx.sam(outer, adv, 3, opaque_mode=True), opaque=True, steps=10)
    default, _ = run(gx.sam(outer, adv, 3), steps=30)
  assert_runs_equal(opaque, default[2::3], rtol=1e-12)


def test_paper_rule_by_hand():
  """Two default-mode steps with the paper's adversary: w + ρ g/‖g‖, then w − lr ∇L(w + ε̂)."""
  rho, lr = 0.07, 0.04
  with jax.enable_x64(True):
    seen, _ = run(gx.sam(gx.sgd(lr), gx.chain(gx.normalize(), gx.sgd(rho))), steps=2)
    w = {"w": jnp.asarray(W0), "b": jnp.asarray(B0)}
    g = jax.grad(loss)(w)
    norm = np.sqrt(sum(float(jnp.sum(x ** 2)) for x in jax.tree.leaves(g)))
    perturbed = jax.tree.map(lambda p, gi: p + rho * gi / norm, w, g)
    descended = jax.tree.map(lambda p, gi: p - lr * gi, w, jax.grad(loss)(perturbed))
  assert_runs_equal(seen, [perturbed, descended], rtol=1e-13)


def test_zero_gradient_gives_no_perturbation():
  """optax's normalize returns NaN on an all-zero gradient; gx.normalize returns zeros, and SAM stays finite."""
  g = {"w": jnp.zeros(5), "b": jnp.zeros((2, 3))}
  u, _ = gx.normalize().update(g, gx.normalize().init(g))
  assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u))
  with jax.enable_x64(True):
    seen, _ = run(gx.sam(gx.sgd(0.04), gx.chain(gx.normalize(), gx.sgd(0.07))), zero_at=(0, 4, 5), steps=8)
    assert_runs_equal(seen[:1], [{"w": jnp.asarray(W0), "b": jnp.asarray(B0)}], rtol=0)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(seen))


def test_normalize_matches_optax():
  optax = pytest.importorskip("optax")
  g = {"w": jnp.asarray(W0), "b": jnp.asarray(B0)}
  with jax.enable_x64(True):
    g = jax.tree.map(jnp.asarray, g)
    ours, _ = gx.normalize().update(g, gx.normalize().init(g))
    theirs, _ = optax.contrib.normalize().update(g, optax.contrib.normalize().init(g))
  assert_trees_close(ours, theirs, rtol=1e-14, atol=0)


def test_sync_period_one_is_the_outer_optimizer():
  """With no adversarial step SAM is its outer optimizer (optax's sam instead undoes every other update)."""
  with jax.enable_x64(True):
    outer = gx.adamw(0.02, weight_decay=0.1)
    got, _ = run(gx.sam(outer, gx.sgd(0.5), sync_period=1), zero_at=(3,), steps=12)
    expected, _ = run(outer, zero_at=(3,), steps=12)
  assert_runs_equal(got, expected, rtol=1e-13)


def test_diagnostics_report_the_phase():
  params = {"w": jnp.ones(3)}
  opt = gx.sam(gx.sgd(0.1), gx.chain(gx.normalize(), gx.sgd(0.05)), sync_period=3)
  state = opt.init(params)
  phases = []
  for _ in range(4):
    _, state = opt.update({"w": jnp.ones(3)}, state, params)
    phases.append(int(gx.diagnostics(state)["steps_since_sync"]))
  assert phases == [1, 2, 0, 1]


def test_float32_state_and_updates_keep_their_dtypes_under_jit():
  params = {"w": jnp.ones(3, jnp.float32), "h": jnp.ones(2, jnp.bfloat16)}
  opt = gx.sam(gx.adam(0.1), gx.chain(gx.normalize(), gx.sgd(0.05)))
  state = opt.init(params)
  step = jax.jit(opt.update)
  for _ in range(3):
    updates, new_state = step(jax.tree.map(jnp.ones_like, params), state, params)
    assert jax.tree.map(lambda x: x.dtype, new_state) == jax.tree.map(lambda x: x.dtype, state)
    state, params = new_state, gx.apply_updates(params, updates)
  assert updates["h"].dtype == jnp.bfloat16 and updates["w"].dtype == jnp.float32


def test_new_hyperparameter_values_do_not_recompile():
  traces = []

  @jax.jit
  def step(opt, grads, state, params):
    traces.append(1)
    return opt.update(grads, state, params)

  make = lambda v: gx.sam(gx.sgd(v, momentum=0.5), gx.chain(gx.normalize(), gx.sgd(2 * v)))
  params = {"w": jnp.ones(3), "b": jnp.zeros(2)}
  state = make(0.01).init(params)
  for value in (0.01, 0.02, 0.03, 0.04):
    updates, state = step(make(value), {"w": jnp.ones(3), "b": jnp.ones(2)}, state, params)
    params = gx.apply_updates(params, updates)
  assert len(traces) == 1


def test_vmap_over_rho_equals_separate_runs():
  w0 = {"w": jnp.asarray(W0, jnp.float32), "b": jnp.asarray(B0, jnp.float32)}

  def train(rho):
    opt = gx.sam(gx.sgd(0.05), gx.chain(gx.normalize(), gx.sgd(rho)))
    p, state = w0, opt.init(w0)
    for _ in range(6):
      u, state = opt.update(jax.grad(loss)(p), state, p)
      p = gx.apply_updates(p, u)
    return p

  rhos = jnp.array([0.0, 0.05, 0.2], jnp.float32)
  together = jax.jit(jax.vmap(train))(rhos)
  for i, rho in enumerate(rhos):
    assert_trees_close(jax.tree.map(lambda x: x[i], together), jax.jit(train)(rho), rtol=1e-5, atol=1e-6)


def test_batch_axis_name_averages_the_adversarial_gradients():
  """Under a named vmap the adversarial gradients are pmean-ed, as optax's sam with batch_axis_name."""
  optax = pytest.importorskip("optax")
  shift = jnp.asarray([[0.1, -0.2, 0.3, 0.0, 0.5], [-0.4, 0.2, 0.0, 0.1, -0.1]])
  params = {"w": jnp.asarray(W0, jnp.float32), "b": jnp.asarray(B0, jnp.float32)}

  def one(opt):
    def member(s):
      grad_fn = lambda q, i: jax.grad(lambda r: loss(r) + jnp.sum(s * r["w"]))(q)
      g = jax.lax.pmean(grad_fn(params, -1), "batch")
      return opt.update(g, opt.init(params), params, grad_fn=grad_fn)[0]
    return jax.vmap(member, axis_name="batch")(shift)

  got = one(gx.sam(gx.sgd(0.1), gx.chain(gx.normalize(), gx.sgd(0.2)), opaque_mode=True, batch_axis_name="batch"))
  expected = one(optax.contrib.sam(optax.sgd(0.1), optax.chain(optax.contrib.normalize(), optax.sgd(0.2)),
                                   opaque_mode=True, batch_axis_name="batch"))
  assert_trees_close(got, expected, rtol=1e-5, atol=1e-6)
  assert_trees_close(jax.tree.map(lambda x: x[0], got), jax.tree.map(lambda x: x[1], got), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sync_period": 0}, ValueError, "sam: sync_period=0 is out of range"),
    ({"sync_period": 2.0}, ValueError, "sam: sync_period must be a Python integer"),
    ({"sync_period": True}, ValueError, "sam: sync_period must be a Python integer"),
    ({"reset_state": "yes"}, TypeError, "sam: reset_state is an option"),
    ({"opaque_mode": 1}, TypeError, "sam: opaque_mode is an option"),
    ({"batch_axis_name": 0}, TypeError, "sam: batch_axis_name must be None or the name"),
    ({"optimizer": 0.1}, TypeError, r"sam \(optimizer\): expected a gradient transformation"),
    ({"adv_optimizer": "sgd"}, TypeError, r"sam \(adv_optimizer\): expected a gradient transformation"),
])
def test_bad_arguments_raise(kwargs, error, match):
  arguments = {"optimizer": gx.sgd(0.1), "adv_optimizer": gx.sgd(0.05), **kwargs}
  with pytest.raises(error, match=match):
    gx.sam(**arguments)


def test_opaque_mode_without_grad_fn_and_missing_params_raise():
  params = {"w": jnp.ones(3)}
  opt = gx.sam(gx.sgd(0.1), gx.sgd(0.05), opaque_mode=True)
  with pytest.raises(ValueError, match="sam: with opaque_mode=True, update needs grad_fn="):
    opt.update(params, opt.init(params), params)
  with pytest.raises(ValueError, match="sam"):
    opt.init(None)
  default = gx.sam(gx.sgd(0.1), gx.sgd(0.05))
  with pytest.raises(ValueError, match="sam"):
    default.update(params, default.init(params), None)
