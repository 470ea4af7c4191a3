#!/usr/bin/env python
"""A whole training step per leaf and packed: compile time and step time, model included.

``update_step.py`` times the optimizer update alone. Here the step also
differentiates a model, so the packed path pays for unpacking: the loss sees
``packer.unpack(flat)`` (one ``lax.split`` per dtype and a reshape per leaf),
and the gradient comes back packed (one concatenation). The model is a chain
of ``L`` dense 32×32 layers with tanh (every leaf feeds a matrix product), on a
batch of 8, trained with Adam:

* ``per leaf``: ``jax.grad(loss)(params)``, ``gx.adam`` on the tree;
* ``packed``: ``jax.grad(lambda f: loss(packer.unpack(f)))(flat)``,
  ``gx.packed(gx.adam, packer)`` on the buffers.

Both steps are jitted with params and state donated. Reported: the compile
time (lower + compile), the median step time (interleaved in a random order
every round), and the parameters' agreement after one step.
Single-threaded by default, as ``update_step.py`` (``--all-threads`` to
leave threading alone).

Usage::

    PYTHONPATH=. python benchmarks/packed_training.py                # 500 layers, ~30 s here
    PYTHONPATH=. python benchmarks/packed_training.py --layers 1000
    PYTHONPATH=. python benchmarks/packed_training.py --quick        # 20 layers, seconds
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import update_step  # noqa: E402  (imports no jax at module level)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="20 layers, 5 timed rounds")
  parser.add_argument("--layers", type=int, default=None, help="leaves (default 500; 20 with --quick)")
  parser.add_argument("--reps", type=int, default=None, help="timed rounds (default 30; 5 with --quick)")
  parser.add_argument("--all-threads", action="store_true", help="do not pin the process to one core")
  args = parser.parse_args(argv)
  args.layers = args.layers or (20 if args.quick else 500)
  args.reps = args.reps or (5 if args.quick else 30)
  return args


def main(argv=None):
  args = parse_args(argv)
  threads = update_step.configure_threads(args.all_threads)  # before jax is imported
  import jax
  import jax.numpy as jnp
  import numpy as np

  import gradxform as gx

  rng = np.random.default_rng(0)
  params = {f"layer{i:04d}": jnp.asarray(rng.normal(size=(32, 32)) / np.sqrt(32), jnp.float32)
            for i in range(args.layers)}
  x = jnp.asarray(rng.normal(size=(8, 32)), jnp.float32)

  def loss(p):
    h = x
    for name in sorted(p):
      h = jnp.tanh(h @ p[name])
    return jnp.mean(h ** 2)

  packer = gx.Packer(params)
  tree_opt, flat_opt = gx.adam(1e-3), gx.packed(gx.adam(1e-3), packer)

  def tree_step(p, s):
    u, s = tree_opt.update(jax.grad(loss)(p), s, p)
    return gx.apply_updates(p, u), s

  def flat_step(f, s):
    u, s = flat_opt.update(jax.grad(lambda f: loss(packer.unpack(f)))(f), s, f)
    return gx.apply_updates(f, u), s

  print(f"packed_training: {args.layers} layers of 32x32 ({args.layers * 1024:,} parameters), "
        f"jax {jax.__version__}, {threads}")
  runs = {}
  for name, step, p, opt in (("per leaf", tree_step, params, tree_opt),
                             ("packed", flat_step, packer.pack(params), flat_opt)):
    p = jax.tree.map(jnp.copy, p)
    s = opt.init(p)
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(p, s).compile()
    compile_s = time.perf_counter() - t0
    p, s = compiled(p, s)
    jax.block_until_ready(p)
    runs[name] = {"fn": compiled, "carry": (p, s), "compile": compile_s, "times": [],
                  "first": p if name == "per leaf" else packer.unpack(p)}

  # One step from the same parameters: the gradients are bit-identical and the updates agree to
  # float32 rounding. (Over many steps of this deep tanh chain, whose gradients are ~1e-5..1e-8
  # and so comparable to Adam's eps, rounding differences are amplified; they are not compared.)
  first = [runs[name]["first"] for name in ("per leaf", "packed")]
  diff = max(float(jnp.max(jnp.abs(first[1][k] - first[0][k]))) for k in params)
  print(f"after one step, max |packed - per leaf| = {diff:.1e} (the step moves params by up to 1e-3)")
  if not diff <= 1e-6:
    print("WARNING: the packed step disagrees with the per-leaf step")

  def call(run):
    run["carry"] = run["fn"](*run["carry"])
    jax.block_until_ready(run["carry"])

  times = update_step.time_interleaved({n: functools.partial(call, r) for n, r in runs.items()}, args.reps)
  for name, run in runs.items():
    run["times"] = times[name]

  print(f"{'step':<10} {'compile s':>10} {'ms/step':>9} {'p25-p75 ms':>14}")
  for name, run in runs.items():
    t = np.asarray(run["times"]) * 1e3
    print(f"{name:<10} {run['compile']:>10.2f} {np.median(t):>9.2f} "
          f"{np.percentile(t, 25):>6.2f}-{np.percentile(t, 75):<6.2f}")
  leaf, flat = (np.median(runs[n]["times"]) for n in ("per leaf", "packed"))
  print(f"packed / per leaf: step {flat / leaf:.2f}x, compile "
        f"{runs['packed']['compile'] / runs['per leaf']['compile']:.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
