"""Muon: torch.optim.Muon and optax.contrib.muon step by step in float64, leaf routing, >2-D leaves, errors.

JAX layout: a 2-D leaf is ``(fan_in, fan_out)``; torch's ``weight`` is its transpose, so gx.muon on ``Wᵀ``
is compared with torch's Muon on ``W``. torch runs Newton-Schulz in bfloat16; for the float64 comparison its
own ``_zeropower_via_newtonschulz`` is recompiled from torch's source with the ``.bfloat16()`` cast removed.
"""

import inspect
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests import helpers

STEPS = 32
ZERO_STEP = 5


def _stream(shapes, steps=STEPS, seed=0):
  rng = np.random.default_rng(seed)
  stream = []
  for t in range(steps):
    scale = 0.0 if t == ZERO_STEP else float(10.0 ** rng.uniform(-1, 1))
    stream.append({k: scale * rng.normal(size=s) for k, s in shapes.items()})
  return stream


def _rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.fixture
def torch_ns_float64(monkeypatch):
  """torch's Newton-Schulz without its bfloat16 cast (the rest of torch's source as it is)."""
  torch = pytest.importorskip("torch")
  from torch.optim import _muon
  source = textwrap.dedent(inspect.getsource(_muon._zeropower_via_newtonschulz))
  assert "grad.bfloat16()" in source
  namespace = dict(vars(_muon))
  exec(source.replace("grad.bfloat16()", "grad.clone()"), namespace)
  monkeypatch.setattr(_muon, "_zeropower_via_newtonschulz", namespace["_zeropower_via_newtonschulz"])
  return torch


MATRICES = {"a": (6, 4), "b": (3, 7), "c": (5, 5)}  # JAX layout (fan_in, fan_out)
OTHERS = {"bias": (4,), "lm_head": (5, 3)}           # to AdamW: a vector, and a matrix by its path


@pytest.mark.parametrize("adjust_lr,nesterov", [("original", True), ("match_rms_adamw", False)])
def test_matches_torch_muon_and_adamw_float64(torch_ns_float64, adjust_lr, nesterov):
  """gx.muon = torch.optim.Muon on the transposed matrices + torch.optim.AdamW on the other leaves."""
  torch = torch_ns_float64
  shapes = {**MATRICES, **OTHERS}
  stream = _stream(shapes)
  rng = np.random.default_rng(1)
  params = {k: rng.normal(size=s) for k, s in shapes.items()}
  hyper = dict(momentum=0.8, nesterov=nesterov, weight_decay=0.05, ns_coefficients=(3.0, -3.2, 1.2),
               ns_steps=4, eps=1e-3)
  adam = dict(lr=0.01, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.02)
  with jax.enable_x64(True):
    opt = gx.muon(0.03, **hyper, adjust_lr=adjust_lr, adam_learning_rate=adam["lr"], adam_b1=0.8, adam_b2=0.9,
                  adam_eps=adam["eps"], adam_weight_decay=adam["weight_decay"])
    p = helpers.cast(params, jnp.float64)
    state = opt.init(p)
    step = jax.jit(opt.update)
    history = []
    for grads in stream:
      updates, state = step(helpers.cast(grads, jnp.float64), state, p)
      p = gx.apply_updates(p, updates)
      history.append(p)
  as_torch = lambda k, v: torch.tensor((v.T if k in MATRICES else v).copy(), dtype=torch.float64)
  weights = {k: as_torch(k, v).requires_grad_() for k, v in params.items()}
  torch_muon = torch.optim.Muon([weights[k] for k in MATRICES], lr=0.03, adjust_lr_fn=adjust_lr, **hyper)
  torch_adamw = torch.optim.AdamW([weights[k] for k in OTHERS], **adam)
  for t, grads in enumerate(stream):
    for k, w in weights.items():
      w.grad = as_torch(k, grads[k])
    torch_muon.step()
    torch_adamw.step()
    for k, w in weights.items():
      expected = w.detach().numpy().T if k in MATRICES else w.detach().numpy()
      err = _rel_err(history[t][k], expected)
      assert err <= 1e-9, f"step {t}, leaf {k}: relative error {err:.2e}"


def test_bfloat16_newton_schulz_tracks_torch():
  torch = pytest.importorskip("torch")
  from torch.optim import _muon
  rng = np.random.default_rng(2)
  for shape in [(6, 4), (3, 7), (32, 32)]:
    g = rng.normal(size=shape)
    expected = _muon._zeropower_via_newtonschulz(torch.tensor(g.T.copy()), (3.4445, -4.775, 2.0315), 5, 1e-7)
    ours = gx.newton_schulz(jnp.asarray(g, jnp.float32), ((3.4445, -4.775, 2.0315),) * 5, 1e-7,
                            dtype=jnp.bfloat16)
    exact = gx.newton_schulz(jnp.asarray(g, jnp.float32), ((3.4445, -4.775, 2.0315),) * 5, 1e-7)
    expected = expected.float().numpy().T
    # bfloat16 keeps ~3 significant digits: our bf16 path is as close to torch's as to itself in float32
    assert _rel_err(ours, expected) < 0.06, shape
    assert _rel_err(ours, exact) < 0.06, shape
    assert ours.dtype == jnp.float32


def _optax_stream_run(gx_opt, optax_opt, params, stream):
  # optax's Muon mixes Python floats and int32 counts: it needs standard dtype promotion
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    p_gx = p_ox = helpers.cast(params, jnp.float64)
    s_gx, s_ox = gx_opt.init(p_gx), optax_opt.init(p_ox)
    step_gx, step_ox = jax.jit(gx_opt.update), jax.jit(optax_opt.update)
    for t, grads in enumerate(stream):
      g = helpers.cast(grads, jnp.float64)
      u_gx, s_gx = step_gx(g, s_gx, p_gx)
      u_ox, s_ox = step_ox(g, s_ox, p_ox)
      p_gx, p_ox = gx.apply_updates(p_gx, u_gx), gx.apply_updates(p_ox, u_ox)
      for k in params:
        err = _rel_err(p_gx[k], p_ox[k])
        assert err <= 1e-9, f"step {t}, leaf {k}: relative error {err:.2e}"


TREE = {"bias": (7,), "kernel": (6, 4), "wide": (3, 7), "scale": ()}


@pytest.mark.parametrize("options", [
    {},
    {"consistent_rms": 0.3, "nesterov": False},
    {"adaptive": True, "ns_coeffs": ((4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (2.8769, -3.1427, 1.2046))},
], ids=["defaults", "consistent_rms", "adaptive_per_step_coefficients"])
def test_matches_optax_contrib_muon_float64(options):
  optax = pytest.importorskip("optax")
  stream = _stream(TREE)
  rng = np.random.default_rng(3)
  params = {k: rng.normal(size=s) for k, s in TREE.items()}
  ox = optax.contrib.muon(0.02, beta=0.85, weight_decay=0.04, adam_b1=0.8, adam_b2=0.95,
                          adam_weight_decay=0.03, adam_learning_rate=0.005, **options)
  kwargs = dict(momentum=0.85, weight_decay=0.04, eps=1e-8, eps_mode="add", debias=True, adam_paths=None,
                adam_nesterov=options.get("nesterov", True), nesterov=options.get("nesterov", True),
                adam_b1=0.8, adam_b2=0.95, adam_weight_decay=0.03, adam_learning_rate=0.005,
                adaptive=options.get("adaptive", False))
  if "consistent_rms" in options:
    kwargs.update(adjust_lr="match_rms_adamw", consistent_rms=options["consistent_rms"])
  if "ns_coeffs" in options:
    kwargs.update(ns_coefficients=options["ns_coeffs"])
  _optax_stream_run(gx.muon(0.02, **kwargs), ox, params, stream)


def test_leaves_are_routed_by_shape_and_path_and_the_split_is_in_the_state():
  params = {"embed": {"table": jnp.ones((10, 4))}, "dense": {"kernel": jnp.ones((4, 8)), "bias": jnp.zeros(8)},
            "norm": {"scale": jnp.ones(4)}, "lm_head": jnp.ones((4, 10)), "stack": jnp.ones((2, 4, 4))}
  state = gx.muon(0.02).init(params)
  muon_mu = state.inner_states["muon"].inner_state[0].mu
  assert muon_mu["dense"]["kernel"].shape == (4, 8) and muon_mu["stack"].shape == (2, 4, 4)
  assert muon_mu["embed"]["table"] is None and muon_mu["dense"]["bias"] is None and muon_mu["lm_head"] is None
  adam_nu = state.inner_states["adam"].inner_state[0].nu
  assert adam_nu["embed"]["table"].shape == (10, 4) and adam_nu["dense"]["kernel"] is None
  # a rule sends the head to Muon and the stack to AdamW; adam_paths=None routes by shape only
  rules = [(r"lm_head", gx.MuonDimensionNumbers(0, 1)), (r"stack", None)]
  state = gx.muon(0.02, dimension_numbers=rules, adam_paths=None).init(params)
  muon_mu = state.inner_states["muon"].inner_state[0].mu
  assert muon_mu["lm_head"].shape == (4, 10) and muon_mu["embed"]["table"].shape == (10, 4)
  assert muon_mu["stack"] is None


def test_batch_axes_equal_separate_matrices_and_conv_rule_equals_flattened_kernel():
  rng = np.random.default_rng(4)
  coefficients = ((3.4445, -4.775, 2.0315),) * 5
  with jax.enable_x64(True):
    stack = jnp.asarray(rng.normal(size=(3, 5, 4)))
    tx = gx.scale_by_muon(momentum=0.0, nesterov=False)
    u, _ = tx.update({"w": stack}, tx.init({"w": stack}))
    for i in range(3):
      expected = gx.newton_schulz(stack[i], coefficients, 1e-7)
      np.testing.assert_allclose(u["w"][i], expected, rtol=1e-12, atol=1e-14)
    conv = jnp.asarray(rng.normal(size=(3, 3, 2, 4)))  # (h, w, in, out)
    tx = gx.scale_by_muon(momentum=0.0, nesterov=False,
                          dimension_numbers=[(r"conv", gx.MuonDimensionNumbers((0, 1, 2), 3))])
    u, _ = tx.update({"conv": conv}, tx.init({"conv": conv}))
    flat = gx.newton_schulz(conv.reshape(18, 4), coefficients, 1e-7) * np.sqrt(max(1, 4 / 18))
    np.testing.assert_allclose(u["conv"], flat.reshape(3, 3, 2, 4), rtol=1e-12, atol=1e-14)


def test_newton_schulz_orthogonalizes():
  rng = np.random.default_rng(5)
  with jax.enable_x64(True):
    g = jnp.asarray(rng.normal(size=(40, 16)))
    # Polar Express-like many steps of the cubic Newton-Schulz (1.5, -0.5, 0) converge to U Vᵀ
    o = gx.newton_schulz(g, ((1.5, -0.5, 0.0),) * 60, 1e-7)
    u, _, vt = np.linalg.svd(np.asarray(g), full_matrices=False)
    np.testing.assert_allclose(o, u @ vt, atol=1e-8)


@pytest.mark.parametrize("kwargs,names", [
    ({"momentum": 1.2}, ["scale_by_muon", "momentum"]),
    ({"eps": -1.0}, ["scale_by_muon", "eps"]),
    ({"adjust_lr": "spectral"}, ["scale_by_muon", "adjust_lr"]),
    ({"ns_steps": 200}, ["scale_by_muon", "ns_steps"]),
    ({"ns_coefficients": (1.0, 2.0)}, ["scale_by_muon", "ns_coefficients"]),
    ({"weight_decay": -0.1}, ["add_decayed_weights", "weight_decay"]),
    ({"adam_b2": 1.0}, ["adam", "b2"]),
    ({"eps_mode": "max"}, ["scale_by_muon", "eps_mode"]),
])
def test_bad_hyperparameters_name_the_transform(kwargs, names):
  with pytest.raises((ValueError, TypeError)) as info:
    gx.muon(0.02, **kwargs)
  message = str(info.value)
  assert message.startswith("muon:")
  for name in names:
    assert name in message


def test_bad_shapes_name_the_leaf():
  with pytest.raises(ValueError, match=r"scale_by_muon.*'b'.*not a matrix"):
    gx.scale_by_muon().init({"b": jnp.zeros(3), "w": jnp.zeros((2, 2))})
  with pytest.raises(ValueError, match=r"scale_by_muon.*'w'.*names an axis twice"):
    gx.scale_by_muon(dimension_numbers=gx.MuonDimensionNumbers(0, 0)).init({"w": jnp.zeros((2, 2))})
  with pytest.raises(ValueError, match=r"scale_by_muon.*'w'.*does not fit"):
    gx.scale_by_muon(dimension_numbers=gx.MuonDimensionNumbers(0, 3)).init({"w": jnp.zeros((2, 2))})


def test_new_hyperparameter_values_do_not_recompile():
  params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
  grads = {"w": jnp.full((4, 3), 0.5), "b": jnp.ones(3)}

  @jax.jit
  def step(opt, state):
    return opt.update(grads, state, params)

  state = gx.muon(0.02).init(params)
  step(gx.muon(0.02), state)
  events, stop = helpers.compile_counter()
  try:
    for lr, momentum, wd in [(0.01, 0.9, 0.2), (0.05, 0.5, 0.0001)]:
      step(gx.muon(lr, momentum=momentum, weight_decay=wd, adam_learning_rate=lr / 10), state)
  finally:
    stop()
  assert len(events) == 0


def test_vmap_over_learning_rates_equals_separate_runs():
  rng = np.random.default_rng(6)
  params = {"w": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32), "b": jnp.zeros(4)}
  stream = [helpers.cast(g, jnp.float32) for g in _stream({"w": (6, 4), "b": (4,)}, steps=6)]

  def train(lr):
    opt = gx.muon(lr, adam_learning_rate=lr / 10)
    p, s = params, opt.init(params)
    for g in stream:
      u, s = opt.update(g, s, p)
      p = gx.apply_updates(p, u)
    return p

  lrs = jnp.asarray([0.01, 0.03, 0.1])
  together = jax.jit(jax.vmap(train))(lrs)
  for i, lr in enumerate([0.01, 0.03, 0.1]):
    alone = jax.jit(train)(jnp.asarray(lr))
    helpers.assert_trees_close(jax.tree.map(lambda x: x[i], together), alone, 1e-5, 1e-6, f"lr={lr}")


def test_bfloat16_params_with_float32_momentum_and_eval_shape():
  params = {"w": jnp.ones((8, 4), jnp.bfloat16), "b": jnp.zeros(4, jnp.bfloat16)}
  opt = gx.muon(0.02, mu_dtype=jnp.float32)
  abstract = jax.eval_shape(opt.init, params)
  state = opt.init(params)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), abstract) == jax.tree.map(lambda a: (a.shape, a.dtype), state)
  assert state.inner_states["muon"].inner_state[0].mu["w"].dtype == jnp.float32
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.25, p.dtype), params)
  updates, state = jax.jit(opt.update)(grads, state, params)
  assert updates["w"].dtype == jnp.bfloat16 and updates["b"].dtype == jnp.bfloat16
  assert bool(jnp.all(jnp.isfinite(updates["w"].astype(jnp.float32))))


def test_orbax_resume_is_bit_identical(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  rng = np.random.default_rng(7)
  params = {"w": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32), "b": jnp.zeros(4)}
  stream = [helpers.cast(g, jnp.float32) for g in _stream({"w": (6, 4), "b": (4,)}, steps=6)]
  opt = gx.muon(0.02, mu_dtype=jnp.float32)
  step = jax.jit(lambda p, s, g: (lambda u, s: (gx.apply_updates(p, u), s))(*opt.update(g, s, p)))

  def run(p, s, grads):
    for g in grads:
      p, s = step(p, s, g)
    return p, s

  straight = run(params, opt.init(params), stream)
  half = run(params, opt.init(params), stream[:3])
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "step3", {"params": half[0], "opt_state": half[1]})
  checkpointer.wait_until_finished()
  abstract = {"params": jax.eval_shape(lambda: params), "opt_state": jax.eval_shape(opt.init, params)}
  restored = checkpointer.restore(tmp_path / "step3", abstract)
  resumed = run(restored["params"], restored["opt_state"], stream[3:])
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
