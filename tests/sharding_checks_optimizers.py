"""Every named optimizer and wrapper on 8 simulated CPU devices, run by ``tests/test_sharding_optimizers.py``.

For each transform (the catalogue's named optimizers, every wrapper, the
second-order stages and line searches) three jitted ``gx.step``s run on
parameters split over a 1-D mesh (w ``P("data", None)``, b ``P("data")``) and
a 2-D mesh of shape (4, 2) (w ``P("data", "model")``, b ``P("model")``), each
with ``Auto`` and with ``Explicit`` axes. The steps must trace, keep the
parameters' and every per-parameter state leaf's sharding, and equal the same
steps on one device. Prints ``RESULTS {json}`` (one entry per transform) last.
"""

import json
import sys

import tests.sharding_checks as sc  # noqa: I001 - sets the 8-device XLA flag before jax starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import gradxform as gx  # noqa: E402

STEPS = 3
LAYOUTS = {"1-D": ((8,), ("data",), {"w": P("data", None), "b": P("data")}),
           "2-D": ((4, 2), ("data", "model"), {"w": P("data", "model"), "b": P("model")})}


def every_transform():
  """The catalogue's named optimizers, the wrappers and the second-order stages: ``{name: () -> transform}``."""
  from tests.catalogue import OPTIMIZERS  # noqa: PLC0415 - other families join the catalogue on import
  cases = {case.id: case.make for case in OPTIMIZERS}
  cases.update({
      "clip_by_global_norm+adamw": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-2)),
      "accumulate": lambda: gx.accumulate(gx.adam(1e-2), every_k=2),
      "lookahead": lambda: gx.lookahead(gx.adam(1e-2), sync_period=2),
      "ema_params": lambda: gx.ema_params(gx.sgd(0.05, momentum=0.9), decay=0.9),
      "apply_if_finite": lambda: gx.apply_if_finite(gx.rmsprop(1e-2), max_consecutive_errors=3),
      "masked": lambda: gx.masked(gx.adagrad(0.1), {"w": True, "b": False}),
      "partition": lambda: gx.partition({"w": gx.adamw(1e-2), "b": gx.radam(1e-2)}, {"w": "w", "b": "b"}),
      "freeze": lambda: gx.chain(gx.freeze({"w": False, "b": True}), gx.nadam(1e-2)),
      "packed": lambda: gx.packed(gx.adam(1e-2)),
      "hygiene": lambda: gx.chain(gx.zero_nans(), gx.centralize(), gx.adaptive_grad_clip(0.1),
                                  gx.clip_by_block_rms(1.0), gx.adamax(1e-2)),
      "add_noise": lambda: gx.chain(gx.add_noise(0.01, 0.55, seed=0), gx.sgd(0.05)),
      "adam_8bit": lambda: gx.adam_8bit(1e-2),
      "adamw_8bit": lambda: gx.adamw_8bit(1e-2),
      "lbfgs": lambda: gx.lbfgs(),
      "lbfgs_lr": lambda: gx.lbfgs(0.1),
      "backtracking": lambda: gx.chain(gx.scale_by_adam(), gx.scale_by_backtracking_linesearch()),
      "polyak_sgd": lambda: gx.polyak_sgd(),
      "sophia": lambda: gx.sophia(1e-2),
      "newton": lambda: gx.newton(),
      "curvature_descent": lambda: gx.curvature_descent(),
  })
  return cases


def loss(params):
  """Curvature in [0.55, 1.45] for w (Newton converges: no chaos to amplify rounding); elementwise
  terms and whole-array sums only (no constant arrays), so any layout type-checks."""
  w, b = params["w"], params["b"]
  return jnp.sum(0.5 * w * w + 0.05 * jnp.sin(3.0 * w)) + jnp.sum(jnp.log(jnp.cosh(b - 0.5)) + 0.1 * b * b)


def make_params(mesh, specs):
  rng = np.random.default_rng(4)
  values = {"w": rng.normal(size=(16, 8)), "b": rng.normal(size=(8,))}
  return {k: jax.device_put(jnp.asarray(v, jnp.float32), NamedSharding(mesh, specs[k])) for k, v in values.items()}


def run(make, params):
  """``STEPS`` jitted steps from an eager ``init`` (as a user writes it: with Auto axes, a jitted init
  would need out_shardings)."""
  opt = make()
  state = opt.init(params)

  def steps(p, s):
    for _ in range(STEPS):
      p, s, _ = gx.step(opt, loss, p, s)
    return p, s

  return jax.jit(steps)(params, state)


def check_one(make):
  """Problems of one transform over the four meshes (an empty list if none)."""
  problems = []
  one = sc.single_device(make_params(Mesh(np.array(jax.devices()[:1]), ("data",)), {"w": P(), "b": P()}))
  expected = run(make, one)
  for layout, (shape, names, specs) in LAYOUTS.items():
    for mode, mesh in sc.meshes(shape, names).items():
      where = f"{layout}/{mode}"
      params = make_params(mesh, specs)
      try:
        with jax.set_mesh(mesh):
          p, state = run(make, params)
      except Exception as error:  # noqa: BLE001 - report each mesh
        problems.append(f"{where}: {type(error).__name__}: {str(error).splitlines()[0][:300]}")
        continue
      for key, param in params.items():
        if not sc.same(p[key].sharding, param.sharding, param.ndim):
          problems.append(f"{where}: params[{key}] came back as {p[key].sharding.spec}, not {param.sharding.spec}")
      for path, leaf, param in sc.per_parameter_leaves(state, params):
        if not sc.same(leaf.sharding, param.sharding, param.ndim):
          problems.append(f"{where}: state{path} is {leaf.sharding.spec}, not {param.sharding.spec}")
      try:
        sc.assert_close((p, state), expected, where, rtol=1e-5, atol=1e-5)
      except AssertionError as error:
        problems.append(f"{where}: differs from one device: "
                        f"{[line for line in str(error).splitlines() if 'difference' in line]}")
  return problems


def main():
  assert len(jax.devices()) == 8, jax.devices()
  cases = every_transform()
  names = sys.argv[1:] or list(cases)
  results = {}
  for name in names:
    try:
      problems = check_one(cases[name])
    except Exception as error:  # noqa: BLE001 - the one-device run failed
      problems = [f"one device: {type(error).__name__}: {error}"]
    results[name] = "ok" if not problems else "\n".join(problems)
    print(f"CHECK {name}: {results[name]}", flush=True)
  print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
  main()
