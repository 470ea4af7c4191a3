"""Muon on 8 simulated CPU devices, run by ``tests/test_sharding_muon.py`` in its own process.

Prints ``RESULTS {json}`` (check name -> "ok" or the error) and ``COLLECTIVES {json}`` (the communication XLA
inserted into the sharded Muon update, counted in its compiled HLO).
"""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    + ["--xla_force_host_platform_device_count=8"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import gradxform as gx  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")

MESH = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
SPECS = {  # JAX layout (fan_in, fan_out); "embed" goes to AdamW, "b" too
    "embed": ((32, 16), P("data", None)),
    "w_col": ((16, 32), P(None, "model")),     # column (fan_out) split: Megatron's first MLP matrix
    "w_row": ((32, 16), P("model", None)),     # row (fan_in) split: the second
    "w_2d": ((16, 16), P("data", "model")),
    "stack": ((4, 8, 8), P("data", None, "model")),
    "b": ((16,), P("model")),
}


def loss(p, x):
  h = jnp.tanh(x @ p["embed"] @ p["w_col"])
  h = jnp.tanh(h @ p["w_row"] @ p["w_2d"] + p["b"])
  for i in range(4):
    h = h[:, :8] @ p["stack"][i]
  return jnp.mean(jnp.square(h))


def setup():
  rng = np.random.default_rng(0)
  host = {k: (rng.normal(size=s) * 0.3).astype(np.float32) for k, (s, _) in SPECS.items()}
  x = rng.normal(size=(16, 32)).astype(np.float32)
  return host, x


def train(opt, params, x, steps=3, out_shardings=None):
  step = jax.jit(lambda p, s: (lambda g: (lambda u, s: (gx.apply_updates(p, u), s))(*opt.update(g, s, p)))(
      jax.grad(loss)(p, x)), out_shardings=out_shardings)
  state = opt.init(params)
  for _ in range(steps):
    params, state = step(params, state)
  return params, state, step


def close(a, b, what):
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5,
                               err_msg=f"{what} {jax.tree_util.keystr(path)}")


def check_init_follows_parameter_sharding():
  host, _ = setup()
  params = {k: jax.device_put(v, NamedSharding(MESH, SPECS[k][1])) for k, v in host.items()}
  state = gx.muon(0.02).init(params)
  mu = state.inner_states["muon"].inner_state[0].mu
  nu = state.inner_states["adam"].inner_state[0].nu
  for k, leaf in list(mu.items()) + list(nu.items()):
    if leaf is None:
      continue
    assert leaf.sharding.is_equivalent_to(params[k].sharding, leaf.ndim), (k, leaf.sharding, params[k].sharding)
    block = leaf.sharding.shard_shape(leaf.shape)
    assert all(s.data.shape == block for s in leaf.addressable_shards), k


def check_two_d_sharded_step_matches_one_device():
  host, x = setup()
  one_device = train(gx.muon(0.02), jax.device_put(host, jax.devices()[0]), jax.device_put(x, jax.devices()[0]))[0]
  params = {k: jax.device_put(v, NamedSharding(MESH, SPECS[k][1])) for k, v in host.items()}
  xs = jax.device_put(x, NamedSharding(MESH, P("data")))
  shardings = {k: NamedSharding(MESH, s) for k, (_, s) in SPECS.items()}
  sharded, state, step = train(gx.muon(0.02), params, xs, out_shardings=(shardings, None))
  close(sharded, one_device, "2-D sharded")
  for k, leaf in sharded.items():
    assert leaf.sharding.is_equivalent_to(shardings[k], leaf.ndim), k
  # the communication of the Muon update alone, per leaf (sharded gradient in, same sharding out)
  counts = {}
  for k in ("w_col", "w_row", "w_2d", "stack"):
    tx = gx.scale_by_muon()
    g = sharded[k]
    update = jax.jit(lambda g, s: tx.update(g, s)[0], out_shardings=g.sharding)
    hlo = update.lower(g, tx.init(g)).compile().as_text()
    counts[k] = {op: len(re.findall(rf"= [^=]* {op}(?:-start)?\(", hlo)) for op in
                 ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")}
    counts[k] = {op: n for op, n in counts[k].items() if n}
    counts[k]["spec"] = str(SPECS[k][1])
  print("COLLECTIVES " + json.dumps(counts), flush=True)


def check_data_parallel_step_matches_one_device():
  host, x = setup()
  one_device = train(gx.muon(0.02), jax.device_put(host, jax.devices()[0]), jax.device_put(x, jax.devices()[0]))[0]
  mesh = Mesh(np.array(jax.devices()), ("data",))
  params = jax.device_put(host, NamedSharding(mesh, P()))
  xs = jax.device_put(x, NamedSharding(mesh, P("data")))
  close(train(gx.muon(0.02), params, xs)[0], one_device, "data parallel")


def check_explicit_axes_step_matches_one_device():
  """Under ``jax.set_mesh`` with ``Explicit`` axes (``jax.make_mesh``'s default), where Newton-Schulz runs with
  them as ``Auto``: the parameters keep their shardings and equal the one-device run."""
  host, _ = setup()
  elementwise = lambda p: sum(jnp.sum(0.5 * v * v + 0.05 * jnp.sin(3.0 * v)) for v in jax.tree.leaves(p))

  def run(params):
    opt = gx.muon(0.02)
    step = jax.jit(lambda p, s: (lambda u, s: (gx.apply_updates(p, u), s))(
        *opt.update(jax.grad(elementwise)(p), s, p)))
    state = opt.init(params)
    for _ in range(3):
      params, state = step(params, state)
    return params

  one_device = run(jax.device_put(host, jax.devices()[0]))
  mesh = jax.make_mesh((4, 2), ("data", "model"))
  params = {k: jax.device_put(v, NamedSharding(mesh, SPECS[k][1])) for k, v in host.items()}
  with jax.set_mesh(mesh):
    sharded = run(params)
  close(sharded, one_device, "Explicit axes")
  for k, leaf in sharded.items():
    assert leaf.sharding.is_equivalent_to(params[k].sharding, leaf.ndim), k

if __name__ == "__main__":
  results = {}
  for name, fn in list(globals().items()):
    if name.startswith("check_"):
      try:
        fn()
        results[name[len("check_"):]] = "ok"
      except Exception:  # noqa: BLE001  (reported to the pytest module)
        results[name[len("check_"):]] = traceback.format_exc()
  print("RESULTS " + json.dumps(results), flush=True)
