#!/usr/bin/env python
"""Donated optimizer state: Lion's step with and without the copy of its momentum.

Lion's update ``sign(b1 m + (1-b1) g)`` and its new momentum ``b2 m + (1-b2) g``
both read the old momentum. ``optax.lion`` writes them as two expressions, and
XLA:CPU (no multi-output fusion) copies ``m`` when the state is donated;
``gx.lion`` materializes the sign as one byte per value first, and copies
nothing (``tests/test_donation.py`` checks both HLOs). This script times one
jitted step ``apply_updates(params, opt.update(grads, state, params))`` for

* ``gx.lion`` and ``optax.lion`` (same hyperparameters), with params and
  state donated and not donated;
* ``gx.sgd(momentum=0.9)`` donated: a one-buffer momentum method whose step
  moves about the bytes a copy-free Lion step moves (24 against 28 per
  parameter), as a yardstick;

on the two trees of ``update_step.py`` (148-leaf transformer, 2,000 leaves of
32x32). Calls are interleaved in a random order every round, medians of N;
single core (as ``update_step.py``; ``--all-threads`` to leave threading
alone). After one step the two Lions' parameters are compared.

Usage::

    PYTHONPATH=. python benchmarks/donated_state.py             # both trees, ~2 min here
    PYTHONPATH=. python benchmarks/donated_state.py --quick     # tiny trees (smoke test)
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
  parser.add_argument("--quick", action="store_true", help="tiny trees, 5 rounds")
  parser.add_argument("--reps", type=int, default=None, help="timed rounds (default 20; 5 with --quick)")
  parser.add_argument("--trees", choices=["big", "many", "both"], default="both")
  parser.add_argument("--all-threads", action="store_true", help="do not pin the process to one core")
  args = parser.parse_args(argv)
  args.reps = args.reps or (5 if args.quick else 20)
  return args


def run_tree(label, description, shapes, args):
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import gradxform as gx

  params_np, grads_np = update_step.make_arrays(shapes, 0), update_step.make_arrays(shapes, 1)
  grads = {k: jnp.asarray(v) for k, v in grads_np.items()}
  cases = {
      "gx.lion, donated": (gx.lion(1e-4), gx.apply_updates, True),
      "optax.lion, donated": (optax.lion(1e-4), optax.apply_updates, True),
      "gx.lion, not donated": (gx.lion(1e-4), gx.apply_updates, False),
      "optax.lion, not donated": (optax.lion(1e-4), optax.apply_updates, False),
      "gx.sgd momentum, donated": (gx.sgd(1e-4, momentum=0.9), gx.apply_updates, True),
  }
  print(f"\n=== tree '{label}': {description}: {len(shapes)} leaves, "
        f"{sum(int(np.prod(s)) for s in shapes.values()):,} parameters")
  runs = {}
  with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats with int32 counts
    for name, (opt, apply, donate) in cases.items():
      params = {k: jnp.asarray(v) for k, v in params_np.items()}
      fn = jax.jit(update_step.optimizer_step(opt, apply), donate_argnums=(0, 1) if donate else ())
      t0 = time.perf_counter()
      carry = fn(params, opt.init(params), grads)
      jax.block_until_ready(carry)
      runs[name] = {"fn": fn, "carry": carry, "first_s": time.perf_counter() - t0, "times": [],
                    "after_one": {k: np.asarray(v) for k, v in carry[0].items()}}
    one = [runs[n]["after_one"] for n in ("gx.lion, donated", "optax.lion, donated")]
    diff = max(float(np.max(np.abs(one[0][k] - one[1][k]))) for k in one[0])
    print(f"after one step, max |gx.lion - optax.lion| = {diff:.1e} (the step moves params by 1e-4)")
    if not diff <= 1e-7:
      print("WARNING: gx.lion and optax.lion disagree")

    def call(run):
      run["carry"] = run["fn"](*run["carry"], grads)
      jax.block_until_ready(run["carry"])

    times = update_step.time_interleaved({n: functools.partial(call, r) for n, r in runs.items()}, args.reps)
    for name, run in runs.items():
      run["times"] = times[name]
  base = np.median(runs["optax.lion, donated"]["times"])
  print(f"{'implementation':<26} {'1st call s':>10} {'ms/step':>9} {'p25-p75 ms':>15} {'vs optax.lion donated':>22}")
  for name, run in runs.items():
    t = np.asarray(run["times"]) * 1e3
    print(f"{name:<26} {run['first_s']:>10.2f} {np.median(t):>9.2f} "
          f"{np.percentile(t, 25):>7.2f}-{np.percentile(t, 75):<7.2f} {np.median(t) / base / 1e3:>21.2f}x")


def main(argv=None):
  args = parse_args(argv)
  threads = update_step.configure_threads(args.all_threads)  # before jax is imported
  import jax
  print(f"donated_state: jax {jax.__version__}, {threads}, {args.reps} rounds")
  specs = update_step.tree_specs(args.quick)
  labels = ["big", "many"] if args.trees == "both" else [args.trees]
  for label in labels:
    run_tree(label, *specs[label], args)
  return 0


if __name__ == "__main__":
  sys.exit(main())
