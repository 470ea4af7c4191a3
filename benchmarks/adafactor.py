#!/usr/bin/env python
"""Adafactor's step time and state bytes against optax.adafactor and Adam, side by side in one run.

On a transformer-shaped tree (12 layers, d_model 512, MLP 2048, vocabulary
8192, 1024 positions: 148 leaves, 44.0M parameters) each row is the same jitted, donated step
(``benchmarks/update_step.py``'s ``optimizer_step``)::

    updates, state = opt.update(grads, state, params); params = apply_updates(params, updates)

for ``gx.adafactor()`` (torch.optim.Adafactor's rule), ``gx.adafactor`` set to
optax's numbers, ``optax.adafactor()``, ``gx.adam(1e-3)`` and ``optax.adam(1e-3)``,
timed round-robin in a random order per round (``update_step.time_interleaved``)
on one pinned core. State bytes are the arrays of ``opt.init(params)`` (scalars
included), also as a multiple of one float32 copy of the parameters. Before
timing, one step of the optax-variant row is checked against optax.adafactor.

Usage::

    PYTHONPATH=. python benchmarks/adafactor.py            # the full tree, about a minute
    PYTHONPATH=. python benchmarks/adafactor.py --quick    # 2 layers, d=64: seconds
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import update_step as us  # noqa: E402  (timing helpers, shared with the Adam benchmark)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="a tiny tree and few repetitions (smoke test)")
  parser.add_argument("--reps", type=int, default=None, help="timed calls per row (default 20; 3 with --quick)")
  parser.add_argument("--all-threads", action="store_true", help="do not pin the process to one core")
  args = parser.parse_args(argv)
  if args.reps is None:
    args.reps = 3 if args.quick else 20
  return args


def implementations():
  import jax.numpy as jnp
  import optax

  import gradxform as gx
  optax_like = gx.adafactor(None, beta2_decay=jnp.float32(-0.8), eps=(0.0, 1e-3), relative_step=False,
                            factor_axes="largest", min_dim_size_to_factor=128, eps_root=1e-30)
  rows = [("gx.adafactor (torch rule)", gx.adafactor(), gx.apply_updates),
          ("gx.adafactor (optax variant)", optax_like, gx.apply_updates),
          ("optax.adafactor", optax.adafactor(), optax.apply_updates),
          ("gx.adam", gx.adam(1e-3), gx.apply_updates),
          ("optax.adam", optax.adam(1e-3), optax.apply_updates)]
  return [(name, opt, us.JaxImpl(name, opt.init, us.optimizer_step(opt, apply))) for name, opt, apply in rows]


def main(argv=None):
  args = parse_args(argv)
  threads = us.configure_threads(args.all_threads)  # before jax is imported
  import jax
  import numpy as np

  shapes = us.transformer_shapes(layers=2, d=64, vocab=256, positions=64) if args.quick else \
      us.transformer_shapes(layers=12, d=512, vocab=8192, positions=1024)
  n_params = int(sum(np.prod(s) for s in shapes.values()))
  print(f"jax {jax.__version__} on {jax.devices()}; {threads}")
  print(f"tree: {len(shapes)} leaves, {n_params:,} parameters ({n_params * 4 / 2**20:.1f} MiB per float32 copy)")
  params_np, grads_np = us.make_arrays(shapes, 0), us.make_arrays(shapes, 1)
  rows = implementations()
  state_bytes = {}
  for name, opt, impl in rows:
    abstract = jax.eval_shape(opt.init, params_np)
    state_bytes[name] = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract))
    impl.setup(params_np, grads_np)
  after = {name: impl.params_np() for name, _, impl in rows}
  diff = max(float(np.max(np.abs(after["gx.adafactor (optax variant)"][k] - after["optax.adafactor"][k])))
             for k in shapes)
  moved = max(float(np.max(np.abs(after["optax.adafactor"][k] - params_np[k]))) for k in shapes)
  print(f"after one step, max |gx optax variant - optax.adafactor| = {diff:.1e} (the step moves params by up to "
        f"{moved:.1e})")
  if not diff <= 1e-4 * moved:
    print("WARNING: the optax variant disagrees with optax.adafactor")
  for _, _, impl in rows:
    impl.call()
  times = us.time_interleaved({name: impl.call for name, _, impl in rows}, args.reps)
  med = {name: us.percentile(t, 50) for name, t in times.items()}
  header = (f"{'optimizer':<30} {'1st call s':>10} {'ms/step':>9} {'p25-p75 ms':>15} {'vs optax.adafactor':>19} "
            f"{'vs gx.adam':>11} {'state MiB':>10} {'param copies':>13}")
  print(header)
  print("-" * len(header))
  for name, _, impl in rows:
    m = med[name]
    spread = f"{us.percentile(times[name], 25) * 1e3:.2f}-{us.percentile(times[name], 75) * 1e3:.2f}"
    print(f"{name:<30} {impl.first_call_s:>10.2f} {m * 1e3:>9.2f} {spread:>15} "
          f"{m / med['optax.adafactor']:>18.2f}x {m / med['gx.adam']:>10.2f}x "
          f"{state_bytes[name] / 2**20:>10.2f} {state_bytes[name] / (4 * n_params):>13.4f}")


if __name__ == "__main__":
  main()
