"""Adafactor on 8 simulated CPU devices, run by ``tests/test_adafactor.py`` in its own process.

Factored statistics follow their parameter: ``v_row`` (the column axis reduced
to 1) is sharded like the parameter's rows, ``v_col`` like its columns; the
sharded update needs only all-reduces (of the row/column sums and of the two
per-leaf RMS scalars), never an all-gather; a sharded step equals the
single-device step. Prints ``RESULTS {json}`` as ``tests/sharding_checks.py``,
whose helpers (meshes, parameters, comparisons) it reuses.
"""

import json
import sys
import traceback

from tests import sharding_checks as sc  # sets XLA_FLAGS to 8 devices before jax starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import gradxform as gx  # noqa: E402

CHECKS = {}


def check(fn):
  CHECKS[fn.__name__] = fn
  return fn


def make_opt():
  return gx.adafactor(0.05, weight_decay=0.1)


def reduced(spec, ndim, axis):
  entries = (list(spec) + [None] * ndim)[:ndim]
  entries[axis] = None
  return P(*entries)


def factored_state(state):
  return state[0]  # the scale_by_factored_rms stage


@check
def init_places_factored_statistics():
  """Eager init and jit(init, out_shardings=state_shardings(...)): rows like rows, columns like columns."""
  for mode, mesh in sc.meshes((4, 2), ("data", "model")).items():
    params, _ = sc.model_parallel_params(mesh)
    opt = make_opt()
    state = opt.init(params)
    expected = gx.state_shardings(opt, params)
    jitted = jax.jit(opt.init, out_shardings=expected)(params)
    for key, param in params.items():
      spec = param.sharding.spec
      for field, axis in (("v_row", -1), ("v_col", -2), ("v", None)):
        leaf = getattr(factored_state(state), field)[key]
        if leaf is None:
          continue
        want = NamedSharding(mesh, spec if axis is None else reduced(spec, param.ndim, axis))
        for what, got in (("init", leaf.sharding), ("state_shardings", getattr(factored_state(expected), field)[key]),
                          ("jit(init)", getattr(factored_state(jitted), field)[key].sharding)):
          assert sc.same(got, want, param.ndim), f"{mode} {what} {field}[{key}]: {got}, expected {want}"
        sc.assert_not_gathered(leaf, f"{mode} {field}[{key}]")
    sc.assert_close(jitted, state, f"{mode}: jit(init) values", 0, 0)


@check
def sharded_step_matches_one_device_without_gathers():
  """Model-parallel parameters: 3 jitted steps equal one device; the update compiles to no all-gather."""
  opt = make_opt()
  step = jax.jit(sc.make_step(opt))
  expected = None
  for mode, mesh in sc.meshes((4, 2), ("data", "model")).items():
    params, batch = sc.model_parallel_params(mesh)
    state = opt.init(params)
    grads = jax.tree.map(lambda p: p * 0.5 + 0.1, params)
    update_hlo = jax.jit(opt.update).lower(grads, state, params).compile().as_text()
    for collective in ("all-gather", "all-to-all", "collective-permute"):
      assert collective not in update_hlo, f"{mode}: the sharded update has an {collective}"
    assert "all-reduce" in update_hlo, f"{mode}: expected all-reduces of the row/column sums"
    p, s = params, state
    for _ in range(3):
      p, s = step(p, s, batch)
    for key, param in params.items():
      assert sc.same(p[key].sharding, param.sharding, param.ndim), f"{mode} params[{key}]"
      row = factored_state(s).v_row[key]
      if row is not None:
        want = NamedSharding(mesh, reduced(param.sharding.spec, param.ndim, -1))
        assert sc.same(row.sharding, want, param.ndim), f"{mode} v_row[{key}]: {row.sharding}"
        sc.assert_not_gathered(row, f"{mode} v_row[{key}]")
    if expected is None:
      p1, s1 = sc.single_device((params, state))
      batch1 = sc.single_device(batch)
      for _ in range(3):
        p1, s1 = step(p1, s1, batch1)
      expected = (p1, s1)
    sc.assert_close((p, s), expected, f"{mode}: sharded vs one device")


@check
def data_parallel_and_zero1_match_one_device():
  """Replicated params, batch over 'data'; statistics replicated (DP) or split over 'data' (ZeRO-1)."""
  opt = make_opt()

  def step(params, state, x, y):
    grads = jax.grad(sc.mlp_loss)(params, x, y)
    updates, state = opt.update(grads, state, params)
    return gx.apply_updates(params, updates), state

  xs, ys = sc.mlp_batches(4)
  p1 = sc.single_device(sc.mlp_params())
  s1 = opt.init(p1)
  for t in range(4):
    p1, s1 = jax.jit(step)(p1, s1, xs[t], ys[t])
  for mode, mesh in sc.meshes((8,), ("data",)).items():
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    params = jax.device_put(sc.mlp_params(), replicated)
    param_shardings = jax.tree.map(lambda p: p.sharding, params)
    for zero in (None, "data"):
      shardings = gx.state_shardings(opt, params, mesh, zero_axis=zero)
      if zero:  # w0 (64, 64): rows (64, 1) and columns (1, 64) each split 8 ways
        assert sc.same(factored_state(shardings).v_row["w0"], NamedSharding(mesh, P("data")), 2)
        assert sc.same(factored_state(shardings).v_col["w0"], NamedSharding(mesh, P(None, "data")), 2)
      step_fn = jax.jit(step, out_shardings=(param_shardings, shardings))
      p, s = params, jax.jit(opt.init, out_shardings=shardings)(params)
      for t in range(4):
        p, s = step_fn(p, s, jax.device_put(xs[t], split), jax.device_put(ys[t], split))
      if zero:
        assert factored_state(s).v_row["w0"].addressable_shards[0].data.shape == (8, 1)
      sc.assert_close((p, s), (p1, s1), f"{mode}/zero={zero}: sharded vs one device")


def main():
  assert len(jax.devices()) == 8, jax.devices()
  results = {}
  for name, fn in CHECKS.items():
    try:
      fn()
      results[name] = "ok"
    except Exception:  # noqa: BLE001 - report every check
      results[name] = traceback.format_exc()
    print(f"CHECK {name}: {'ok' if results[name] == 'ok' else 'FAILED'}", flush=True)
  print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
  sys.exit(main())
