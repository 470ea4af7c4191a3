"""Shampoo and SOAP on 8 simulated CPU devices, run by ``tests/test_shampoo_sharding.py`` (own process).

float64, on meshes with Auto and Explicit axes: init places the state without gathering (moments as the
parameters; Shampoo's blocks split as the parameter's axes where the block count divides; SOAP's
``(d, d)`` factors and bases whole on the parameter's mesh); a model-parallel (4 x 2), a data-parallel
and a ZeRO-1 step equal the same steps on one device to 1e-9. SOAP's ``eps`` is 1e-3 here: with the
reference's 1e-8, coordinates of the projected gradient that are rounding noise (the second step sees
the first step's gradient, whose projection onto its own eigenbases is diagonal) are divided by ``eps``,
so a different summation order changes the update by ``~1e-16 |G| / eps`` (measured 3e-7 relative).
"""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    + ["--xla_force_host_platform_device_count=8"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import gradxform as gx  # noqa: E402
from tests.sharding_checks import assert_close, assert_not_gathered, meshes, same, single_device  # noqa: E402

jax.config.update("jax_enable_x64", True)
CHECKS = {}
OPTIMIZERS = {
    "soap": lambda: gx.soap(1e-2, eps=1e-3, precondition_frequency=2),
    "shampoo": lambda: gx.shampoo(1e-2, precondition_frequency=2, block_size=8),
}
SPECS = {"embed": ((32, 32), P("data", None)), "w1": ((16, 16), P(None, "model")), "b1": ((16,), P("model")),
         "w2": ((8, 8), P("model", None)), "scale": ((16, 16), P("data", "model"))}


def check(fn):
  CHECKS[fn.__name__] = fn
  return fn


def params_on(mesh, specs=None):
  rng = np.random.default_rng(0)
  return {k: jax.device_put(jnp.asarray(rng.normal(size=shape) * 0.3, jnp.float64),
                            NamedSharding(mesh, spec if specs is None else specs))
          for k, (shape, spec) in SPECS.items()}


def loss(params, x):
  """Elementwise in the parameters (no model code to shard): the gradients are full rank."""
  return sum(jnp.sum(jnp.sin(params[k] * x[k]) + 0.1 * (params[k] * x[k]) ** 2) for k in params)


def data_like(params, seed):
  return jax.tree.map(lambda p: jax.device_put(
      jnp.asarray(np.random.default_rng(seed + p.size).normal(size=p.shape)), p.sharding), params)


def run(opt, params, steps=5, out_shardings=None, state=None):
  def step(p, s, x):
    updates, s = opt.update(jax.grad(loss)(p, x), s, p)
    return gx.apply_updates(p, updates), s
  step = jax.jit(step, out_shardings=out_shardings)
  state = opt.init(params) if state is None else state
  for t in range(steps):
    params, state = step(params, state, data_like(params, t))
  return params, state


@check
def init_places_the_state_without_gathering():
  for mode, mesh in meshes((4, 2), ("data", "model")).items():
    params = params_on(mesh)
    shampoo = OPTIMIZERS["shampoo"]().init(params)[0]
    for key, param in params.items():
      assert same(shampoo.graft[key].sharding, param.sharding, param.ndim), f"{mode} graft[{key}]"
      assert_not_gathered(shampoo.graft[key], f"{mode} graft[{key}]")
    # embed (32, 32) in blocks of 8: (4, 4, 8, 8), the block rows split over 'data' as the parameter's rows
    for factor in shampoo.factors["embed"] + shampoo.roots["embed"]:
      assert factor.shape == (4, 4, 8, 8) and same(factor.sharding, NamedSharding(mesh, P("data")), 4), mode
      assert factor.addressable_shards[0].data.shape == (1, 4, 8, 8), mode
    soap = OPTIMIZERS["soap"]().init(params)[0]
    for key, param in params.items():
      for field in (soap.mu, soap.nu):
        assert same(field[key].sharding, param.sharding, param.ndim), f"{mode} soap {key}"
        assert_not_gathered(field[key], f"{mode} soap {key}")
    for matrix in soap.factors["embed"] + soap.eigenbases["embed"]:
      assert matrix.sharding.mesh.shape == mesh.shape and matrix.shape == (32, 32), mode


@check
def model_parallel_step_matches_one_device():
  for name, make in OPTIMIZERS.items():
    expected = None
    for mode, mesh in meshes((4, 2), ("data", "model")).items():
      params = params_on(mesh)
      p, s = run(make(), params)
      for key, param in params.items():
        assert same(p[key].sharding, param.sharding, param.ndim), f"{name}/{mode} params[{key}]"
      if expected is None:
        expected = run(make(), single_device(params))
      assert_close((p, s), expected, f"{name}/{mode}: sharded vs one device", rtol=1e-9, atol=1e-11)


@check
def data_parallel_and_zero1_match_one_device():
  for name, make in OPTIMIZERS.items():
    expected = None
    for mode, mesh in meshes((8,), ("data",)).items():
      params = params_on(mesh, P())
      for zero in (None, "data"):
        opt = make()
        shardings = gx.state_shardings(opt, params, mesh, zero_axis=zero)
        state = jax.jit(opt.init, out_shardings=shardings)(params)
        param_shardings = jax.tree.map(lambda x: x.sharding, params)
        p, s = run(opt, params, out_shardings=(param_shardings, shardings), state=state)
        if zero:
          moment = s[0].graft["embed"] if name == "shampoo" else s[0].nu["embed"]
          assert moment.addressable_shards[0].data.shape == (4, 32), f"{name}/{mode}: ZeRO-1 split"
        if expected is None:
          expected = run(make(), single_device(params))
        assert_close((p, s), expected, f"{name}/{mode}/zero={zero}: sharded vs one device", rtol=1e-9, atol=1e-11)


def main():
  assert len(jax.devices()) == 8, jax.devices()
  results = {}
  for name, fn in CHECKS.items():
    try:
      fn()
      results[name] = "ok"
      print(f"CHECK {name}: ok", flush=True)
    except Exception:  # noqa: BLE001 - report every check
      results[name] = traceback.format_exc()
      print(f"CHECK {name}: FAILED\n{results[name]}", flush=True)
  print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
  main()
