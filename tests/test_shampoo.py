"""Shampoo and SOAP beyond the catalogue: options against the NumPy references in float64 over 35 steps,
the SOAP reference's first step, errors, no recompiles, populations, bf16 params with f32 statistics,
eval_shape, orbax resume between two refreshes, composition with masked/partition.

The multi-device checks are in tests/test_shampoo_sharding.py.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests import references as ref
from tests import references_shampoo as ref_kron
from tests.helpers import assert_trees_close, cast, compile_counter, run, run_reference

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 35


def _params(seed=1):
  # Shapes whose first-step factors have no repeated eigenvalue (one zero at most), so that eigenbases
  # are unique up to signs and NumPy's and XLA's agree; a scalar, a vector, a matrix, a 3-axis tensor.
  rng = np.random.default_rng(seed)
  return {"a": rng.normal(size=(2,)), "b": rng.normal(size=(4, 5)), "c": rng.normal(size=(2, 2, 5)),
          "d": rng.normal(size=()), "e": rng.normal(size=(6,))}


def _stream(params, steps=STEPS, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for t in range(steps):
    scale = 0.0 if t == 7 else float(10.0 ** rng.uniform(-1, 1))  # step 7 all zero
    out.append({k: scale * rng.normal(size=np.shape(v)) for k, v in params.items()})
  return out


def _relative_error(got, expected):
  worst = 0.0
  for g, e in zip(got, expected):
    for k in e:
      a, b = np.asarray(g[k], np.float64), np.asarray(e[k], np.float64)
      worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12 * max(1.0, np.max(np.abs(b)))))))
  return worst


def _compare(make, reference, params=None, vectors=True):
  params = params or _params()
  if not vectors:  # precondition_1d: a vector's rank-1 factor has repeated zero eigenvalues (kept for size 2)
    params = {k: v for k, v in params.items() if k != "e"}
  stream = _stream(params)
  expected, expected_params = run_reference(reference, params, stream)
  with jax.enable_x64(True):
    got, got_params, _ = run(make(), params, stream, jnp.float64, jit=True)
  assert _relative_error(got, expected) <= 1e-9
  assert _relative_error([got_params], [expected_params]) <= 1e-9
  return got


SOAP_CASES = {
    "defaults_off": (dict(b1=0.8, b2=0.9, shampoo_beta=0.7, eps=1e-3, precondition_frequency=3), {}),
    "merge_1d_max": (dict(b1=0.9, b2=0.8, eps=1e-3, precondition_frequency=3, merge_dims=True,
                          max_precond_dim=4, precondition_1d=True),
                     dict(merge_dims=True, max_dim=4, precondition_1d=True)),
    "normalize_nobias": (dict(b1=0.7, b2=0.95, eps=1e-2, precondition_frequency=4, normalize_grads=True,
                              correct_bias=False, max_precond_dim=4),
                         dict(normalize_grads=True, correct_bias=False, max_dim=4)),
}


@pytest.mark.parametrize("name", SOAP_CASES)
def test_soap_matches_numpy_reference_float64(name):
  kw, extra = SOAP_CASES[name]
  b1, b2, eps = kw["b1"], kw["b2"], kw["eps"]
  reference = ref.Chain(ref_kron.Soap(b1, b2, eps, shampoo_beta=kw.get("shampoo_beta"),
                                      frequency=kw["precondition_frequency"], **extra),
                        ref_kron.SoapStep(0.05, 0.1))
  _compare(lambda: gx.soap(0.05, weight_decay=0.1, **kw), reference, vectors=not extra.get("precondition_1d"))


def test_soap_first_step_only_sets_up_the_preconditioner():
  """As the reference: the first call returns a zero update (no decay either) and only fills L, R and Q."""
  params = cast(_params(), jnp.float32)
  grads = cast(_stream(_params(), 1)[0], jnp.float32)
  opt = gx.soap(0.1, weight_decay=0.5)
  updates, state = jax.jit(opt.update)(grads, opt.init(params), params)
  assert all(not np.any(np.asarray(u)) for u in jax.tree.leaves(updates))
  soap_state = state[0]
  assert not np.any(np.asarray(soap_state.mu["b"])) and not np.any(np.asarray(soap_state.nu["b"]))
  left, right = soap_state.factors["b"]
  g = np.asarray(grads["b"], np.float64)
  np.testing.assert_allclose(left, 0.05 * g @ g.T, rtol=1e-5)  # (1 - β_s) G Gᵀ, β_s = b2 = 0.95
  np.testing.assert_allclose(right, 0.05 * g.T @ g, rtol=1e-5)
  assert soap_state.factors["e"] == () and soap_state.eigenbases["e"] == ()  # vectors: plain Adam
  # the second call uses eigh(L), eigh(R) (descending), refreshed at its start
  _, state = jax.jit(opt.update)(grads, state, params)
  q = np.asarray(state[0].eigenbases["b"][0], np.float64)
  w = np.linalg.eigvalsh(0.05 * g @ g.T)[::-1]
  np.testing.assert_allclose(np.diag(q.T @ (0.05 * g @ g.T) @ q), w, rtol=1e-4, atol=1e-6)


SHAMPOO_CASES = {
    "plain": (dict(block_size=None), {}),
    "blocks_late_start_rmsprop_root2": (
        dict(block_size=3, precondition_frequency=3, start_preconditioning_step=4, graft_type="rmsprop",
             exponent=2), dict(block_size=3, frequency=3, start=4, graft="rmsprop", exponent=2)),
    "sum_adagrad_blocks": (dict(b2=1.0, graft_type="adagrad", block_size=2, precondition_frequency=2),
                           dict(b2=1.0, graft="adagrad", block_size=2, frequency=2)),
    "sgd_graft": (dict(graft_type="sgd", block_size=4, precondition_frequency=5),
                  dict(graft="sgd", block_size=4, frequency=5)),
}


@pytest.mark.parametrize("name", SHAMPOO_CASES)
def test_shampoo_matches_numpy_reference_float64(name):
  kw, extra = SHAMPOO_CASES[name]
  kw = dict(kw)
  b2 = kw.pop("b2", 0.9)
  extra = {"b2": b2, **extra}
  reference = ref.Chain(ref_kron.Shampoo(eps=1e-3, matrix_eps=1e-2, **extra),
                        ref.Momentum(0.8, nesterov=True), ref.DecayedWeights(0.1), ref.LearningRate(0.05))
  _compare(lambda: gx.shampoo(0.05, b1=0.8, b2=b2, eps=1e-3, matrix_eps=1e-2, weight_decay=0.1, nesterov=True,
                              **kw), reference)


def test_shampoo_blocks_are_independent_preconditioners():
  """A (6, 4) matrix with block_size 4 is a (4, 4) and a (2, 4) block (padded): each is Shampoo on that block alone."""
  rng = np.random.default_rng(3)
  stream = [{"w": rng.normal(size=(6, 4))} for _ in range(5)]
  kw = dict(b2=0.9, matrix_eps=1e-3, precondition_frequency=1, graft_type="adam")
  whole, _, _ = run(gx.scale_by_shampoo(block_size=4, **kw), {"w": np.zeros((6, 4))}, stream, jnp.float32, jit=True)
  for rows in (slice(0, 4), slice(4, 6)):
    part, _, _ = run(gx.scale_by_shampoo(block_size=None, **kw), {"w": np.zeros((rows.stop - rows.start, 4))},
                     [{"w": g["w"][rows]} for g in stream], jnp.float32, jit=True)
    for a, b in zip(whole, part):
      np.testing.assert_allclose(a["w"][rows], b["w"], rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("make, match", [
    (lambda: gx.soap(b1=1.0), r"soap: scale_by_soap: b1=1.0 is out of range"),
    (lambda: gx.soap(shampoo_beta=-0.5), r"scale_by_soap: shampoo_beta=-0.5"),
    (lambda: gx.soap(weight_decay=-1.0), r"soap: weight_decay=-1.0"),
    (lambda: gx.soap(precondition_frequency=0), r"scale_by_soap: precondition_frequency=0"),
    (lambda: gx.shampoo(0.1, b2=0.0), r"shampoo: scale_by_shampoo: b2=0.0 is out of range"),
    (lambda: gx.shampoo(0.1, matrix_eps=0.0), r"scale_by_shampoo: matrix_eps=0.0"),
    (lambda: gx.shampoo(0.1, graft_type="lamb"), r"scale_by_shampoo: graft_type='lamb'"),
    (lambda: gx.shampoo(0.1, b2=1.0), r"scale_by_shampoo: b2=1 .*graft_type='adagrad'"),
    (lambda: gx.shampoo(0.1, block_size=0), r"scale_by_shampoo: block_size=0"),
    (lambda: gx.shampoo(0.1, b1=1.5), r"shampoo: trace: decay=1.5"),
])
def test_bad_hyperparameters_are_named(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_mismatched_gradients_say_where():
  opt = gx.soap()
  state = opt.init({"w": jnp.zeros((3, 4))})
  with pytest.raises(ValueError, match=r"scale_by_soap: the update at \['w'\] has shape \(4, 3\)"):
    opt.update({"w": jnp.zeros((4, 3))}, state, {"w": jnp.zeros((4, 3))})
  with pytest.raises(ValueError, match=r"scale_by_soap: the update tree does not match"):
    opt.update({"v": jnp.zeros((3, 4))}, state, {"v": jnp.zeros((3, 4))})


@pytest.mark.parametrize("factory", [
    lambda lr, b1, wd: gx.soap(lr, b1=b1, weight_decay=wd, precondition_frequency=2),
    lambda lr, b1, wd: gx.shampoo(lr, b1=b1, weight_decay=wd, precondition_frequency=2),
], ids=["soap", "shampoo"])
def test_new_hyperparameters_and_refreshes_never_recompile(factory):
  params = cast({"w": np.ones((4, 3)), "b": np.zeros(3)}, jnp.float32)

  @jax.jit
  def step(opt, params, state, grads):
    updates, state = opt.update(grads, state, params)
    return gx.apply_updates(params, updates), state

  state = factory(1e-3, 0.9, 0.01).init(params)
  events, stop = compile_counter()
  try:
    for t, grads in enumerate(_stream(params, 7, seed=4)):  # steps 0..6: set-up, eigh and QR refreshes
      params, state = step(factory(1e-3 * (t + 1), 0.5 + 0.05 * t, 0.01 * (t + 1)), params, state, cast(grads, jnp.float32))
  finally:
    stop()
  assert len(events) == 1


@pytest.mark.parametrize("factory", [
    lambda lr: gx.soap(lr, precondition_frequency=2), lambda lr: gx.shampoo(lr, precondition_frequency=2)],
    ids=["soap", "shampoo"])
def test_population_over_learning_rates_equals_separate_runs(factory):
  rng = np.random.default_rng(0)
  # (5, 4): the first factors have one zero eigenvalue at most, so the eigenbases are unique up to signs
  params = {"w": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32), "b": jnp.asarray(rng.normal(size=4), jnp.float32)}
  x, y = jnp.asarray(rng.normal(size=(6, 8, 5)), jnp.float32), jnp.asarray(rng.normal(size=(6, 8, 4)), jnp.float32)
  loss = lambda p, batch: jnp.mean((jnp.tanh(batch[0] @ p["w"] + p["b"]) - batch[1]) ** 2)
  lrs = [1e-3, 1e-2, 1e-1]
  pop = gx.Population(factory, {"lr": lrs})
  stacked, state = pop.init(params)
  step = pop.step(loss)
  for t in range(6):
    stacked, state, _ = step(pop.hyperparams, stacked, state, (x[t], y[t]))
  for i, lr in enumerate(lrs):
    opt, p = factory(lr), params
    s = opt.init(p)
    update = jax.jit(opt.update)
    for t in range(6):
      updates, s = update(jax.grad(loss)(p, (x[t], y[t])), s, p)
      p = gx.apply_updates(p, updates)
    assert_trees_close(jax.tree.map(lambda a: a[i], stacked), p, 2e-5, 1e-6, f"member {i}")


@pytest.mark.parametrize("make", [lambda: gx.soap(1e-2, precondition_frequency=2),
                                  lambda: gx.shampoo(1e-2, precondition_frequency=2)], ids=["soap", "shampoo"])
def test_bfloat16_params_keep_float32_statistics(make):
  params = cast(_params(), jnp.bfloat16)
  stream = [cast(g, jnp.bfloat16) for g in _stream(_params(), 6)]
  updates, new_params, state = run(make(), params, stream, jnp.bfloat16, jit=True)
  assert {x.dtype for x in jax.tree.leaves((updates, new_params))} == {jnp.dtype(jnp.bfloat16)}
  stats = [x for x in jax.tree.leaves(state[0]._asdict()["factors"]) if x.ndim]
  assert stats and {x.dtype for x in stats} == {jnp.dtype(jnp.float32)}
  full, _, _ = run(make(), cast(params, jnp.float32), [cast(g, jnp.float32) for g in stream], jnp.float32,
                   jit=True)
  for a, b in zip(jax.tree.leaves(updates[-1]), jax.tree.leaves(full[-1])):
    b = np.asarray(b, np.float64)
    assert np.linalg.norm(np.asarray(a, np.float64) - b) <= 0.05 * np.linalg.norm(b) + 1e-6


@pytest.mark.parametrize("make", [lambda: gx.soap(merge_dims=True, max_precond_dim=6),
                                  lambda: gx.shampoo(1e-2, block_size=3)], ids=["soap", "shampoo"])
def test_eval_shape_of_init(make):
  params = cast(_params(), jnp.bfloat16)
  abstract = jax.eval_shape(make().init, params)
  concrete = make().init(params)
  assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
  assert [(a.shape, a.dtype) for a in jax.tree.leaves(abstract)] == \
      [(c.shape, c.dtype) for c in jax.tree.leaves(concrete)]


def test_shampoo_factor_shapes_follow_the_blocks():
  state = gx.scale_by_shampoo(block_size=4).init({"w": jnp.zeros((10, 3)), "b": jnp.zeros(7)})
  assert [f.shape for f in state.factors["w"]] == [(3, 1, 4, 4), (3, 1, 3, 3)]
  assert state.factors["b"] == ()


def test_masked_and_partition_equal_running_on_the_group_alone():
  params = cast(_params(), jnp.float32)
  stream = [cast(g, jnp.float32) for g in _stream(_params(), 6)]
  matrices = {k: np.ndim(v) >= 2 for k, v in params.items()}
  alone, _, _ = run(gx.soap(1e-2, precondition_frequency=2), {k: params[k] for k in ("b", "c")},
                    [{k: g[k] for k in ("b", "c")} for g in stream], jnp.float32, jit=True)
  partitioned = gx.partition({"soap": gx.soap(1e-2, precondition_frequency=2), "adam": gx.adam(1e-2)},
                             {k: "soap" if m else "adam" for k, m in matrices.items()})
  masked = gx.chain(gx.masked(gx.soap(1e-2, precondition_frequency=2), matrices),
                    gx.masked(gx.sgd(1.0), {k: not m for k, m in matrices.items()}))
  for opt in (partitioned, masked):
    got, _, _ = run(opt, params, stream, jnp.float32, jit=True)
    for a, b in zip(got, alone):
      for k in ("b", "c"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)


RESUME = """
import sys, json, jax, numpy as np, orbax.checkpoint as ocp
from tests.test_shampoo import CHECKPOINT_CASES
from tests.checkpoint_cases import init_params, train
ckpt_dir, out_dir, split, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for name, make in CHECKPOINT_CASES.items():
  opt = make()
  params = init_params()
  abstract = {"params": jax.eval_shape(lambda: params), "opt_state": jax.eval_shape(opt.init, params)}
  restored = ocp.StandardCheckpointer().restore(f"{ckpt_dir}/{name}", abstract)
  final, _ = train(opt, restored["params"], restored["opt_state"], split, total)
  np.savez(f"{out_dir}/{name}.npz", *jax.tree.leaves(final))
"""

# refreshes (at the start of calls 1, 4, 7 for SOAP; steps 1, 4, 7 for Shampoo): the split at 5 is between two
CHECKPOINT_CASES = {
    "soap": lambda: gx.soap(1e-2, precondition_frequency=3),
    "shampoo": lambda: gx.shampoo(1e-2, precondition_frequency=3, block_size=2),
}


def test_orbax_resume_between_two_refreshes_is_bit_exact(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  from tests.checkpoint_cases import init_params, train
  split, total = 5, 9
  checkpointer = ocp.StandardCheckpointer()
  expected = {}
  for name, make in CHECKPOINT_CASES.items():
    opt, params = make(), init_params()
    expected[name], _ = train(opt, params, opt.init(params), 0, total)
    halfway, state = train(opt, params, opt.init(params), 0, split)
    checkpointer.save(tmp_path / "ckpt" / name, {"params": halfway, "opt_state": state})
  checkpointer.wait_until_finished()
  env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  result = subprocess.run([sys.executable, "-c", RESUME, str(tmp_path / "ckpt"), str(tmp_path), str(split), str(total)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  for name in CHECKPOINT_CASES:
    got = np.load(tmp_path / f"{name}.npz")
    leaves = jax.tree.leaves(expected[name])
    assert len(got.files) == len(leaves)
    for i, leaf in enumerate(leaves):
      np.testing.assert_array_equal(got[f"arr_{i}"], np.asarray(leaf), err_msg=f"{name} leaf {i}")
