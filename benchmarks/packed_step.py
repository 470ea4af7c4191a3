#!/usr/bin/env python
"""Time one Adam step per-leaf vs packed: gx.adam, packed(gx.adam), fully packed, optax, torch fused.

Implementations (each a jitted step donating params and state, as in update_step.py):

* (a) ``gx.adam`` per leaf: tree params, tree grads;
* (b) ``packed(gx.adam)``: tree params and grads in, packed optimizer state;
* (c) fully packed: params, state and grads are one flat float32 buffer
  (``gx.Packer``), ``gx.adam`` on the buffers; this is what a training step
  that differentiates ``loss(packer.unpack(flat))`` w.r.t. ``flat`` sees;
* (d) ``optax.adam`` per leaf (if importable);
* (e) ``torch.optim.Adam(fused=True)`` (if importable, one thread).

Trees (the shapes of benchmarks/update_step.py): ``many`` (2,000 leaves of
32x32) and ``big`` (148-leaf transformer). Timed round-robin, medians;
single-threaded (process pinned to one core before jax is imported). Prints
ms/step, the first call (trace + compile + run), ratios vs optax and vs torch
fused, and whether the targets hold.

Usage::

    PYTHONPATH=. python benchmarks/packed_step.py           # both trees, < 3 min
    PYTHONPATH=. python benchmarks/packed_step.py --quick   # tiny trees, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import update_step as us  # noqa: E402  (no jax import at module level)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny trees, few repetitions")
  parser.add_argument("--reps", type=int, default=None, help="timed calls each (default 30; 5 quick)")
  parser.add_argument("--trees", choices=["big", "many", "both"], default="both")
  parser.add_argument("--wrapper-on-many", action="store_true",
                      help="also time (b) packed(gx.adam) on the full 2,000-leaf tree (its compile "
                           "takes minutes on XLA:CPU; skipped by default there)")
  parser.add_argument("--all-threads", action="store_true", help="do not pin to one core")
  args = parser.parse_args(argv)
  if args.reps is None:
    args.reps = 5 if args.quick else 30
  return args


def gx_tree_impl():
  import gradxform as gx
  opt = gx.adam(us.LR)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return gx.apply_updates(params, updates), state

  return us.JaxImpl("(a) gx.adam per-leaf", opt.init, step)


def gx_packed_wrapper_impl():
  import gradxform as gx
  from gradxform._packing import packed
  opt = packed(gx.adam(us.LR))

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return gx.apply_updates(params, updates), state

  return us.JaxImpl("(b) packed(gx.adam)", opt.init, step)


class FlatImpl(us.JaxImpl):
  """(c): params/state/grads packed outside the timed region; the step sees flat buffers."""

  def __init__(self):
    import gradxform as gx
    self.opt = gx.adam(us.LR)

    def step(params, state, grads):
      updates, state = self.opt.update(grads, state, params)
      return gx.apply_updates(params, updates), state

    super().__init__("(c) fully packed adam", self.opt.init, step)

  def setup(self, params_np, grads_np):
    import jax
    import jax.numpy as jnp
    from gradxform._packing import Packer
    self.jax = jax
    tree = {k: jnp.array(v) for k, v in params_np.items()}
    self.packer = Packer(tree)
    self.params = self.packer.pack(tree)
    self.grads = self.packer.pack({k: jnp.array(v) for k, v in grads_np.items()})
    self.state = self.opt.init(self.params)
    jax.block_until_ready((self.params, self.state, self.grads))
    self.jitted = jax.jit(self.step_fn, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    self.call()
    self.first_call_s = time.perf_counter() - t0

  def params_np(self):
    import numpy as np
    return {k: np.asarray(v) for k, v in self.packer.unpack(self.params).items()}


def build(args, n_leaves):
  impls = [gx_tree_impl()]
  if args.quick or args.wrapper_on_many or n_leaves <= 500:
    impls.append(gx_packed_wrapper_impl())
  impls.append(FlatImpl())
  notes = []
  try:
    impls.append(us.optax_impl())
    impls[-1].name = "(d) optax.adam"
  except ImportError as error:
    notes.append(f"optax not importable ({error})")
  try:
    import torch
    if not args.all_threads:
      torch.set_num_threads(1)
    impls.append(us.TorchImpl("fused"))
    impls[-1].name = "(e) torch fused Adam"
  except ImportError as error:
    notes.append(f"torch not importable ({error})")
  return impls, notes


def run_tree(label, description, shapes, args):
  import numpy as np
  n_params = int(sum(np.prod(s) for s in shapes.values()))
  print(f"\n=== tree '{label}': {description}: {len(shapes)} leaves, {n_params:,} parameters")
  params_np, grads_np = us.make_arrays(shapes, 0), us.make_arrays(shapes, 1)
  impls, notes = build(args, len(shapes))
  for note in notes:
    print("note:", note)
  for impl in impls:
    impl.setup(params_np, grads_np)
  ref = impls[0].params_np()
  diffs = {impl.name: max(float(np.max(np.abs(impl.params_np()[k] - ref[k]))) for k in ref)
           for impl in impls}
  print("after one step, max |params - (a)|: " + ", ".join(f"{n}: {d:.1e}" for n, d in diffs.items()))
  for impl in impls:
    impl.call()  # warm-up
  for rep in range(args.reps):
    shift = rep % len(impls)
    for impl in impls[shift:] + impls[:shift]:
      t0 = time.perf_counter()
      impl.call()
      impl.times.append(time.perf_counter() - t0)
  med = {impl.name: us.percentile(impl.times, 50) for impl in impls}
  optax_m = next((m for n, m in med.items() if "optax" in n), None)
  torch_m = next((m for n, m in med.items() if "torch" in n), None)
  header = f"{'implementation':<24} {'1st call s':>10} {'ms/step':>9} {'p25-p75 ms':>15} {'vs optax':>9} {'vs torch':>9}"
  print(header)
  print("-" * len(header))
  for impl in impls:
    m = med[impl.name]
    spread = f"{us.percentile(impl.times, 25) * 1e3:.2f}-{us.percentile(impl.times, 75) * 1e3:.2f}"
    vo = f"{m / optax_m:.3f}x" if optax_m else "-"
    vt = f"{m / torch_m:.3f}x" if torch_m else "-"
    print(f"{impl.name:<24} {impl.first_call_s:>10.2f} {m * 1e3:>9.2f} {spread:>15} {vo:>9} {vt:>9}")
  return {impl.name: (med[impl.name], impl.first_call_s) for impl in impls}


def main(argv=None):
  args = parse_args(argv)
  threads = us.configure_threads(args.all_threads)
  import jax
  print(f"packed_step: jax {jax.__version__}, {threads}")
  specs = us.tree_specs(args.quick)
  labels = ["many", "big"] if args.trees == "both" else [args.trees]
  results = {label: run_tree(label, *specs[label], args) for label in labels}

  print("\ntargets (fully packed (c) is the packed path; sizes are the --quick ones with --quick):")
  if "many" in results:
    r = results["many"]
    flat_m, flat_first = r["(c) fully packed adam"]
    opt = r.get("(d) optax.adam")
    tor = r.get("(e) torch fused Adam")
    if opt:
      print(f"  many: (c) >= 10x faster than per-leaf optax: {opt[0] / flat_m:.1f}x -> "
            f"{'HOLDS' if opt[0] / flat_m >= 10 else 'FAILS'}")
    if tor:
      print(f"  many: (c) faster than torch fused: {flat_m * 1e3:.2f} vs {tor[0] * 1e3:.2f} ms -> "
            f"{'HOLDS' if flat_m < tor[0] else 'FAILS'}")
    wrapper = r.get("(b) packed(gx.adam)")
    wrapper = f"{wrapper[1]:.2f} s" if wrapper else "skipped (--wrapper-on-many)"
    print(f"  many: first-call compile of (c) under 2 s: {flat_first:.2f} s -> "
          f"{'HOLDS' if flat_first < 2 else 'FAILS'}; (b) packed(gx.adam): {wrapper}; "
          f"(a) per-leaf: {r['(a) gx.adam per-leaf'][1]:.2f} s")
  if "big" in results:
    r = results["big"]
    flat_m = r["(c) fully packed adam"][0]
    print(f"  big: (c) is the flat-buffer time by construction ({flat_m * 1e3:.2f} ms); "
          f"(a) per-leaf {r['(a) gx.adam per-leaf'][0] * 1e3:.2f} ms, "
          f"(b) packed(gx.adam) {r['(b) packed(gx.adam)'][0] * 1e3:.2f} ms "
          f"-> per-leaf no slower than flat (within 10%): "
          f"{'HOLDS' if r['(a) gx.adam per-leaf'][0] <= 1.1 * flat_m else 'FAILS'}")


if __name__ == "__main__":
  main()
