"""Adafactor beyond the catalogue: torch.optim.Adafactor and optax.adafactor step by step in float64
(35 steps, off-default hyperparameters, one all-zero gradient), leaves of every rank, errors,
no recompiles, populations, state dtypes and memory, composition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.helpers import compile_counter

SHAPES = {"vec": (5,), "mat": (3, 4), "stack": (2, 3, 4), "scalar": (), "heads": (4, 3, 2), "wide": (6, 2, 5)}
TORCH_SHAPES = ("vec", "mat", "stack", "scalar")
STEPS = 35


def _stream(shapes, steps=STEPS, seed=0):
  rng = np.random.default_rng(seed)
  params = {k: rng.normal(size=SHAPES[k]) for k in shapes}
  grads = []
  for t in range(steps):
    scale = 0.0 if t == 4 else float(10.0 ** rng.uniform(-1, 1))
    grads.append({k: scale * rng.normal(size=SHAPES[k]) for k in shapes})
  return params, grads


def _run_gx(opt, params, grads, dtype=jnp.float64, jit=True):
  params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  history = []
  for g in grads:
    updates, state = update(jax.tree.map(lambda x: jnp.asarray(x, dtype), g), state, params)
    params = gx.apply_updates(params, updates)
    history.append(jax.tree.map(lambda x: np.asarray(x, np.float64), params))
  return history


def _assert_close(got, expected, rtol, what):
  for step, (g, e) in enumerate(zip(got, expected)):
    for k in e:
      np.testing.assert_allclose(g[k], e[k], rtol=rtol, atol=rtol * np.max(np.abs(e[k])),
                                 err_msg=f"{what} step {step} {k}")


TORCH_CONFIGS = {
    "off_default": (dict(lr=0.3, beta2_decay=-0.6, eps=(1e-3, 1e-2), d=1.5, weight_decay=0.05),
                    dict(learning_rate=0.3, beta2_decay=-0.6, eps=(1e-3, 1e-2), d=1.5, weight_decay=0.05)),
    "defaults": ({}, {}),
    "maximize_decay_small_lr": (dict(lr=1e-3, weight_decay=0.5, maximize=True, d=1.0),
                                dict(learning_rate=1e-3, weight_decay=0.5, maximize=True)),
}


def _run_torch(torch, kwargs, params, grads, dtype):
  keys = sorted(params)
  tensors = [torch.tensor(params[k], dtype=dtype, requires_grad=True) for k in keys]
  opt = torch.optim.Adafactor(tensors, **kwargs)
  history = []
  for g in grads:
    for t, k in zip(tensors, keys):
      t.grad = torch.tensor(g[k], dtype=dtype)
    opt.step()
    history.append({k: t.detach().numpy().astype(np.float64).copy() for k, t in zip(keys, tensors)})
  return history


@pytest.mark.parametrize("config", sorted(TORCH_CONFIGS))
def test_matches_torch_float64(config):
  torch = pytest.importorskip("torch")
  torch_kwargs, gx_kwargs = TORCH_CONFIGS[config]
  params, grads = _stream(TORCH_SHAPES)
  expected = _run_torch(torch, torch_kwargs, params, grads, torch.float64)
  with jax.enable_x64(True):
    got = _run_gx(gx.adafactor(**gx_kwargs), params, grads)
  _assert_close(got, expected, 1e-9, config)


def test_matches_torch_float32_with_float32_machine_epsilon():
  """eps1=None is the machine epsilon of the parameters' dtype in both (1.2e-7 here)."""
  torch = pytest.importorskip("torch")
  params, grads = _stream(TORCH_SHAPES, steps=12)
  expected = _run_torch(torch, {}, params, grads, torch.float32)
  got = _run_gx(gx.adafactor(), params, grads, jnp.float32)
  _assert_close(got, expected, 2e-5, "float32")


def _optax_configs():
  f32 = jnp.float32
  shared = dict(eps=(0.0, 1e-3), relative_step=False, factor_axes="largest")
  return {
      # optax.adafactor's defaults, with dims small enough to factor
      "relative_no_lr": (dict(min_dim_size_to_factor=2, decay_rate=0.7, eps=1e-20),
                         dict(learning_rate=None, beta2_decay=f32(-0.7), min_dim_size_to_factor=2,
                              eps_root=1e-20, **shared)),
      "lr_momentum_decay_clip": (
          dict(learning_rate=0.05, min_dim_size_to_factor=3, decay_rate=0.6, momentum=0.7,
               weight_decay_rate=1e-2, clipping_threshold=0.8, decay_offset=2, eps=1e-25,
               dtype_momentum=jnp.float64),
          dict(learning_rate=0.05, min_dim_size_to_factor=3, beta2_decay=f32(-0.6), momentum=0.7,
               weight_decay=1e-2, d=0.8, step_offset=2, eps_root=1e-25, **shared)),
      "no_clip_no_scale_unfactored": (
          dict(learning_rate=0.1, clipping_threshold=None, multiply_by_parameter_scale=False, factored=False),
          dict(learning_rate=0.1, d=None, multiply_by_parameter_scale=False, factored=False,
               beta2_decay=f32(-0.8), eps_root=1e-30, **shared)),
  }


@pytest.mark.parametrize("config", sorted(_optax_configs()))
def test_matches_optax_float64(config):
  optax = pytest.importorskip("optax")
  optax_kwargs, gx_kwargs = _optax_configs()[config]
  params, grads = _stream(SHAPES)
  with jax.enable_x64(True):
    with jax.numpy_dtype_promotion("standard"):  # optax mixes its float32 beta_t with float64 statistics
      expected = _run_gx(optax.adafactor(**optax_kwargs), params, grads)
    got = _run_gx(gx.adafactor(**gx_kwargs), params, grads)
  _assert_close(got, expected, 1e-9, config)


def test_optax_defaults_factor_only_large_axes():
  """min_dim_size_to_factor=128: a (130, 3, 129) leaf is factored over its two large axes, (3, 200) is not."""
  optax = pytest.importorskip("optax")
  rng = np.random.default_rng(3)
  shapes = {"big": (130, 3, 129), "small": (3, 200)}
  params = {k: rng.normal(size=s) for k, s in shapes.items()}
  grads = [{k: (0.0 if t == 1 else 1.0) * rng.normal(size=s) for k, s in shapes.items()} for t in range(4)]
  with jax.enable_x64(True):
    with jax.numpy_dtype_promotion("standard"):
      expected = _run_gx(optax.adafactor(), params, grads)
    opt = gx.adafactor(None, beta2_decay=jnp.float32(-0.8), eps=(0.0, 1e-3), relative_step=False,
                       factor_axes="largest", min_dim_size_to_factor=128, eps_root=1e-30)
    got = _run_gx(opt, params, grads)
    state = opt.init(jax.tree.map(jnp.asarray, params))[0]
  _assert_close(got, expected, 1e-9, "optax defaults")
  assert state.v_row["big"].shape == (1, 3, 129) and state.v_col["big"].shape == (130, 3, 1)  # columns: the largest axis
  assert state.v["small"].shape == (3, 200) and state.v_row["small"] is None


@pytest.mark.parametrize("build,match", [
    (lambda: gx.adafactor(beta2_decay=0.5), r"adafactor: scale_by_factored_rms: beta2_decay=0.5 is out of range"),
    (lambda: gx.adafactor(eps=1e-3), r"adafactor: eps must be a pair \(eps1, eps2\)"),
    (lambda: gx.adafactor(eps=(-1.0, 1e-3)), r"scale_by_factored_rms: eps=-1.0 is out of range"),
    (lambda: gx.adafactor(eps=(None, -1.0)), r"scale_by_param_block_rms: min_scale=-1.0 is out of range"),
    (lambda: gx.adafactor(d=-1.0), r"clip_by_block_rms: threshold=-1.0"),
    (lambda: gx.adafactor(-0.1), r"adafactor: .*learning_rate=-0.1 is out of range"),
    (lambda: gx.adafactor(None), r"adafactor: learning_rate=None needs relative_step=False"),
    (lambda: gx.adafactor(weight_decay=-1.0), r"add_decayed_weights: weight_decay=-1.0"),
    (lambda: gx.adafactor(momentum=1.5, relative_step=False), r"adafactor: ema: decay=1.5"),
    (lambda: gx.scale_by_factored_rms(factor_axes="first"), r"scale_by_factored_rms: factor_axes='first'"),
    (lambda: gx.scale_by_factored_rms(min_dim_size_to_factor=-1), r"min_dim_size_to_factor=-1"),
    (lambda: gx.scale_by_relative_step(-1.0), r"scale_by_relative_step: learning_rate=-1.0"),
])
def test_bad_hyperparameters_name_transform_and_hyperparameter(build, match):
  with pytest.raises((ValueError, TypeError), match=match):
    build()


def test_wrong_gradient_shape_names_the_leaf():
  opt = gx.adafactor()
  params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
  state = opt.init(params)
  with pytest.raises(ValueError, match=r"scale_by_factored_rms: the update at \['w'\] has shape \(4, 3\)"):
    opt.update({"w": jnp.ones((4, 3)), "b": jnp.ones(4)}, state, params)
  with pytest.raises(ValueError, match=r"scale_by_factored_rms: .*missing leaves"):
    opt.update({"w": jnp.ones((3, 4))}, state, params)
  with pytest.raises(ValueError, match=r"scale_by_param_block_rms: params are required"):
    opt.update({"w": jnp.ones((3, 4)), "b": jnp.ones(4)}, state)


def test_new_hyperparameter_values_do_not_recompile():
  params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
  grads = jax.tree.map(lambda p: 0.1 * p, params)
  step = jax.jit(lambda opt, state: opt.update(grads, state, params))
  state = gx.adafactor(weight_decay=0.01).init(params)
  step(gx.adafactor(weight_decay=0.01), state)
  events, stop = compile_counter()
  try:
    for lr, decay, wd, d in [(0.1, -0.5, 0.1, 2.0), (0.02, -0.9, 0.3, 1.5)]:
      _, state = step(gx.adafactor(lr, beta2_decay=decay, d=d, weight_decay=wd), state)
  finally:
    stop()
  assert len(events) == 0


def test_vmap_over_learning_rates_equals_separate_runs():
  params, grads = _stream(("mat", "vec", "stack"), steps=6)
  lrs = jnp.array([0.3, 0.05, 1e-3])

  def train(lr):
    opt = gx.adafactor(lr, weight_decay=0.1)
    p = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    state = opt.init(p)
    for g in grads:
      updates, state = opt.update(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g), state, p)
      p = gx.apply_updates(p, updates)
    return p

  together = jax.jit(jax.vmap(train))(lrs)
  for i, lr in enumerate(lrs):
    alone = jax.jit(train)(lr)
    for k in alone:
      np.testing.assert_allclose(together[k][i], alone[k], rtol=1e-6, atol=1e-7)


def test_bfloat16_params_with_float32_statistics():
  params, grads = _stream(("mat", "vec", "stack"), steps=8)
  as_bf16 = lambda t: jax.tree.map(lambda x: np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64), t)
  params, grads = as_bf16(params), [as_bf16(g) for g in grads]
  opt = gx.adafactor(0.1, nu_dtype=jnp.float32)
  state = opt.init(jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), params))
  stats = [x for x in jax.tree.leaves(state[0]) if x.ndim > 0]
  assert stats and all(x.dtype == jnp.float32 for x in stats)
  mixed = _run_gx(opt, params, grads, jnp.bfloat16)[-1]
  bf16_stats = _run_gx(gx.adafactor(0.1), params, grads, jnp.bfloat16)[-1]
  full = _run_gx(gx.adafactor(0.1), params, grads, jnp.float32)[-1]
  for k in full:  # params are bf16 in both: the float32 statistics only remove the statistics' rounding
    np.testing.assert_allclose(mixed[k], full[k], rtol=2e-2, atol=1e-2)
    assert np.abs(mixed[k] - full[k]).max() <= np.abs(bf16_stats[k] - full[k]).max() + 1e-2


def test_state_memory_against_adam():
  params = {"w": jnp.zeros((512, 2048)), "b": jnp.zeros(2048), "s": jnp.zeros(())}
  nbytes = lambda tree: sum(x.nbytes for x in jax.tree.leaves(tree) if x.ndim > 0)
  factored = nbytes(gx.adafactor().init(params))
  assert factored == 4 * (512 + 2048 + 2048)  # rows + columns of w, full v of b
  assert nbytes(gx.adam(1e-3).init(params)) == 2 * 4 * (512 * 2048 + 2048)
  with_momentum = nbytes(gx.adafactor(0.1, relative_step=False, momentum=0.9).init(params))
  assert with_momentum == factored + 4 * (512 * 2048 + 2048)


def test_eval_shape_of_init_matches_init():
  params = {k: jnp.ones(SHAPES[k], jnp.bfloat16) for k in SHAPES}
  for opt in (gx.adafactor(), gx.adafactor(None, relative_step=False, momentum=0.9, mu_dtype=jnp.float32,
                                           factor_axes="largest", nu_dtype=jnp.float32)):
    abstract = jax.eval_shape(opt.init, params)
    concrete = opt.init(params)
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    assert [(a.shape, a.dtype) for a in jax.tree.leaves(abstract)] == \
        [(c.shape, c.dtype) for c in jax.tree.leaves(concrete)]


def test_partition_and_masked_compose():
  """Adafactor on the matrices and Adam on the rest equals each run on its own leaves."""
  params, grads = _stream(("mat", "stack", "vec", "scalar"), steps=6)
  labels = {"mat": "factored", "stack": "factored", "vec": "adam", "scalar": "adam"}
  opt = gx.partition({"factored": gx.adafactor(0.1, weight_decay=0.1), "adam": gx.adam(1e-2)}, labels)
  together = _run_gx(opt, params, grads, jnp.float32, jit=False)[-1]
  pick = lambda tree, keys: {k: tree[k] for k in keys}
  alone_f = _run_gx(gx.adafactor(0.1, weight_decay=0.1), pick(params, ("mat", "stack")),
                    [pick(g, ("mat", "stack")) for g in grads], jnp.float32)[-1]
  alone_a = _run_gx(gx.adam(1e-2), pick(params, ("vec", "scalar")), [pick(g, ("vec", "scalar")) for g in grads],
                    jnp.float32)[-1]
  for k, v in {**alone_f, **alone_a}.items():
    np.testing.assert_allclose(together[k], v, rtol=1e-6, atol=1e-7)
  mask = {"mat": True, "stack": True, "vec": False, "scalar": False}
  opt = gx.masked(gx.adafactor(0.1), mask)
  p32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = opt.init(p32)
  inner = state.inner_state[0]
  assert inner.v["vec"] is None and inner.v_row["vec"] is None and inner.v_row["mat"].shape == (3, 1)
  g32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads[0])
  updates, _ = opt.update(g32, state, p32)
  alone, _ = gx.adafactor(0.1).update(pick(g32, ("mat", "stack")), gx.adafactor(0.1).init(pick(p32, ("mat", "stack"))),
                                      pick(p32, ("mat", "stack")))
  for k in ("mat", "stack"):
    np.testing.assert_array_equal(updates[k], alone[k])
  for k in ("vec", "scalar"):
    np.testing.assert_array_equal(updates[k], g32[k])  # outside the mask: passed through


@pytest.fixture(scope="module")
def sharding_results():
  """tests/adafactor_sharding_checks.py on 8 simulated CPU devices, in its own process (about 25 s of CPU)."""
  import json
  import os
  import pathlib
  import subprocess
  import sys
  root = pathlib.Path(__file__).resolve().parents[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
  result = subprocess.run([sys.executable, "-W", "error", str(root / "tests" / "adafactor_sharding_checks.py")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
  lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
  assert result.returncode == 0 and lines, f"the checks did not finish:\n{result.stdout}\n{result.stderr}"
  return json.loads(lines[-1][len("RESULTS "):])


SHARDING_CHECKS = ["init_places_factored_statistics", "sharded_step_matches_one_device_without_gathers",
                   "data_parallel_and_zero1_match_one_device"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHARDING_CHECKS)
def test_sharding(sharding_results, name):
  assert sorted(sharding_results) == sorted(SHARDING_CHECKS)
  assert sharding_results[name] == "ok", f"{name} failed on 8 devices:\n{sharding_results[name]}"


@pytest.mark.slow
def test_benchmark_quick():
  """benchmarks/adafactor.py --quick runs, checks its optax row against optax.adafactor and prints every row."""
  pytest.importorskip("optax")
  from tests.test_benchmarks import run_quick
  stdout, output = run_quick("adafactor.py")
  for row in ("gx.adafactor (torch rule)", "gx.adafactor (optax variant)", "optax.adafactor", "gx.adam", "optax.adam"):
    assert row in stdout, (row, output)
  assert "max |gx optax variant - optax.adafactor|" in stdout and "WARNING" not in output, output


@pytest.mark.parametrize("make", [lambda: gx.adafactor(0.05, weight_decay=0.1),
                                  lambda: gx.adafactor(0.05, relative_step=False, momentum=0.9,
                                                       factor_axes="largest", nu_dtype=jnp.float32)],
                         ids=["torch_rule", "optax_variant_momentum"])
def test_orbax_restore_continues_bit_identically(tmp_path, make):
  """Save after 4 steps, restore from the abstract state (None for the unused statistics), run to 10."""
  ocp = pytest.importorskip("orbax.checkpoint")
  from tests.checkpoint_cases import init_params, train
  opt, params = make(), init_params()
  expected, _ = train(opt, params, opt.init(params), 0, 10)
  halfway, state = train(opt, params, opt.init(params), 0, 4)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", {"params": halfway, "opt_state": state})
  checkpointer.wait_until_finished()
  abstract = {"params": jax.eval_shape(lambda: params), "opt_state": jax.eval_shape(opt.init, params)}
  restored = checkpointer.restore(tmp_path / "ckpt", abstract)
  assert jax.tree.structure(restored["opt_state"]) == jax.tree.structure(state)
  final, _ = train(make(), restored["params"], restored["opt_state"], 4, 10)
  for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
