#!/usr/bin/env python
"""Amortized step time of Shampoo and SOAP at refresh frequency 10 and 100, as a multiple of gx.adam's.

Every row is the same jitted, donated step as ``benchmarks/update_step.py``
(``optimizer_step``: ``(params, state, grads) -> (new params, new state)``),
on a transformer-shaped tree (default: 4 layers, d_model 256, MLP 1024,
vocabulary 1024, 256 positions). The rows are timed round-robin in a random
order per round (``time_interleaved``), ``--reps`` calls each after one
untimed first call (which, for SOAP, sets up the preconditioner) and its
eigendecomposition at the second; the *mean* over the timed calls is the
amortized step: with 100 calls, a frequency-10 row refreshes 10 times and a
frequency-100 row once. The median is shown too (a step without refresh).

Usage::

    PYTHONPATH=. python benchmarks/shampoo_soap.py            # ~1-2 min on one CPU core
    PYTHONPATH=. python benchmarks/shampoo_soap.py --quick    # tiny tree, seconds
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import update_step as us  # noqa: E402  (timing helpers, threads, trees)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="a tiny tree and frequencies 2 and 5 (smoke test)")
  parser.add_argument("--reps", type=int, default=None, help="timed calls per row (default 100; 10 with --quick)")
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--d", type=int, default=256)
  parser.add_argument("--all-threads", action="store_true", help="do not pin the process to one core")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  threads = us.configure_threads(args.all_threads)
  import jax
  import numpy as np

  import gradxform as gx

  if args.quick:
    shapes = us.transformer_shapes(layers=1, d=32, vocab=64, positions=16)
    frequencies, reps = (2, 5), args.reps or 10
  else:
    shapes = us.transformer_shapes(layers=args.layers, d=args.d, vocab=1024, positions=256)
    frequencies, reps = (10, 100), args.reps or 100
  n_params = int(sum(np.prod(s) for s in shapes.values()))
  print(f"jax.devices(): {jax.devices()}; {threads}")
  print(f"tree: {len(shapes)} leaves, {n_params:,} parameters; {reps} timed calls per row")

  rows = {"gx.adam": gx.adam(1e-3)}
  for f in frequencies:
    rows[f"gx.soap, frequency {f}"] = gx.soap(1e-3, precondition_frequency=f)
  for f in frequencies:
    rows[f"gx.shampoo, frequency {f}"] = gx.shampoo(1e-3, precondition_frequency=f)

  grads = jax.tree.map(jax.numpy.asarray, us.make_arrays(shapes, 1))
  calls, first = {}, {}
  for name, opt in rows.items():
    step = jax.jit(us.optimizer_step(opt, gx.apply_updates), donate_argnums=(0, 1))
    params = jax.tree.map(jax.numpy.asarray, us.make_arrays(shapes, 0))
    box = {"params": params, "state": opt.init(params)}

    def call(step=step, box=box):
      box["params"], box["state"] = step(box["params"], box["state"], grads)
      jax.block_until_ready(box["params"])

    t0 = time.perf_counter()
    call()
    first[name] = time.perf_counter() - t0
    calls[name] = call
  times = us.time_interleaved(calls, reps)
  adam = float(np.mean(times["gx.adam"]))
  print(f"\n{'row':28s} {'1st call s':>10s} {'mean ms':>9s} {'median ms':>10s} {'max ms':>9s} {'mean vs adam':>13s}")
  for name, values in times.items():
    mean = float(np.mean(values))
    print(f"{name:28s} {first[name]:10.2f} {1e3 * mean:9.2f} {1e3 * us.percentile(values, 50):10.2f} "
          f"{1e3 * max(values):9.2f} {mean / adam:12.1f}x")


if __name__ == "__main__":
  main()
