#!/usr/bin/env python
"""Time one Muon step: gx.muon against optax.contrib.muon, and Newton-Schulz's FLOP rate against a plain matmul.

The tree is a GPT-style transformer (``update_step.transformer_shapes``): 12 layers, d_model 512, MLP 2048,
vocabulary 8192, 1024 positions by default. Both optimizers send the same leaves to Muon (the 2-D kernels:
4 per layer) and to AdamW (embeddings, biases, norm scales), and do the same arithmetic in float32:
gx.muon runs with the options that reproduce optax.contrib.muon (checked after one step), and also with its
torch defaults. Every row is the same jitted, donated step as in ``benchmarks/update_step.py``
(``optimizer_step``), timed round-robin in a random order per round (``time_interleaved``) in one run.

Reported: median ms per step (p25-p75) and the ratio to optax; the Newton-Schulz FLOPs of one step
(per iteration on an m x n matrix with m <= n: ``4 m² n + 2 m³``) divided by the step time, and by the time
of Newton-Schulz alone on the same matrices; and the rate of a plain jitted 512x2048 @ 2048x512 matmul timed
in the same rounds. The process is pinned to one core unless ``--all-threads`` (see ``update_step.py``).

Usage::

    PYTHONPATH=. python benchmarks/muon.py                 # 12 layers (on 1 CPU core: seconds per step)
    PYTHONPATH=. python benchmarks/muon.py --layers 2      # the same per-layer work, 6x less of it
    PYTHONPATH=. python benchmarks/muon.py --quick         # tiny tree, seconds (the smoke test)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import update_step  # noqa: E402  (imports no jax at module level)

NS_STEPS = 5


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="2 layers of d=64 and 2 rounds (a smoke test)")
  parser.add_argument("--layers", type=int, default=12)
  parser.add_argument("--d", type=int, default=512)
  parser.add_argument("--reps", type=int, default=None, help="timed rounds (default 5; 2 with --quick)")
  parser.add_argument("--all-threads", action="store_true", help="do not pin the process to one core")
  args = parser.parse_args(argv)
  if args.quick:
    args.layers, args.d = 2, 64
  if args.reps is None:
    args.reps = 2 if args.quick else 5
  return args


def ns_flops(shapes):
  """Newton-Schulz FLOPs of one step: 4 m² n + 2 m³ per iteration per Muon matrix (m <= n)."""
  total = 0
  for shape in shapes.values():
    if len(shape) == 2 and not shape_is_adam(shape):
      m, n = sorted(shape)
      total += NS_STEPS * (4 * m * m * n + 2 * m ** 3)
  return total


def shape_is_adam(shape):
  return len(shape) != 2


def main(argv=None):
  args = parse_args(argv)
  threads = update_step.configure_threads(args.all_threads)
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import gradxform as gx

  shapes = update_step.transformer_shapes(layers=args.layers, d=args.d, vocab=8192 if not args.quick else 512,
                                          positions=1024 if not args.quick else 64)
  shapes = {k: s for k, s in shapes.items()}
  muon_shapes = {k: s for k, s in shapes.items() if len(s) == 2 and not k.startswith("embed")}
  n_params = int(sum(np.prod(s) for s in shapes.values()))
  print(f"jax.devices(): {jax.devices()}; {threads}")
  print(f"versions: jax {jax.__version__}, optax {optax.__version__}")
  print(f"=== tree: {args.layers} layers, d_model {args.d}, MLP {4 * args.d}: {len(shapes)} leaves, "
        f"{n_params:,} parameters, {len(muon_shapes)} Muon matrices")

  lr = 0.02
  optax_dims = {k: (optax.contrib.MuonDimensionNumbers() if k in muon_shapes else None) for k in shapes}
  optax_opt = optax.contrib.muon(lr, muon_weight_dimension_numbers=optax_dims)
  gx_optax = gx.muon(lr, weight_decay=0.0, eps=1e-8, eps_mode="add", debias=True, adam_nesterov=True,
                     adam_paths=r"^embed")
  gx_torch = gx.muon(lr, adam_paths=r"^embed")
  impls = [update_step.JaxImpl("gx.muon (optax options)", gx_optax.init,
                               update_step.optimizer_step(gx_optax, gx.apply_updates)),
           update_step.JaxImpl("optax.contrib.muon", optax_opt.init,
                               update_step.optimizer_step(optax_opt, optax.apply_updates)),
           update_step.JaxImpl("gx.muon (torch defaults)", gx_torch.init,
                               update_step.optimizer_step(gx_torch, gx.apply_updates))]
  params_np, grads_np = update_step.make_arrays(shapes, 0), update_step.make_arrays(shapes, 1)
  with jax.numpy_dtype_promotion("standard"):
    for impl in impls:
      impl.setup(params_np, grads_np)
  after = {impl.name: impl.params_np() for impl in impls}
  for k in shapes:
    np.testing.assert_allclose(after["gx.muon (optax options)"][k], after["optax.contrib.muon"][k],
                               rtol=1e-4, atol=1e-6, err_msg=k)
  print("check: gx.muon (optax options) equals optax.contrib.muon after one step (float32, rtol 1e-4)")

  # Newton-Schulz alone on the Muon matrices, and a plain matmul
  coefficients = ((3.4445, -4.775, 2.0315),) * NS_STEPS
  mats = {k: jnp.asarray(grads_np[k]) for k in muon_shapes}
  ns_alone = jax.jit(lambda ms: {k: gx.newton_schulz(m, coefficients, 1e-7) for k, m in ms.items()})
  d, f = args.d, 4 * args.d
  a, b = jnp.ones((d, f), jnp.float32), jnp.ones((f, d), jnp.float32)
  matmul = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready((ns_alone(mats), matmul(a, b)))
  calls = {impl.name: impl.call for impl in impls}
  calls["newton_schulz alone"] = lambda: jax.block_until_ready(ns_alone(mats))
  calls["matmul"] = lambda: jax.block_until_ready(matmul(a, b))
  times = update_step.time_interleaved(calls, args.reps)
  median = {k: float(np.median(v)) for k, v in times.items()}

  flops = ns_flops(muon_shapes)
  print(f"\nNewton-Schulz work per step: {flops / 1e9:.1f} GFLOP ({NS_STEPS} iterations, 4m²n + 2m³ each)")
  print(f"{'implementation':28s} {'ms/step':>10s} {'p25-p75 ms':>16s} {'vs optax':>9s} {'NS GFLOP/s':>11s}")
  for name in [impl.name for impl in impls] + ["newton_schulz alone"]:
    t = times[name]
    spread = f"{update_step.percentile(t, 25) * 1e3:.1f}-{update_step.percentile(t, 75) * 1e3:.1f}"
    print(f"{name:28s} {median[name] * 1e3:10.1f} {spread:>16s} "
          f"{median[name] / median['optax.contrib.muon']:8.2f}x {flops / median[name] / 1e9:11.1f}")
  mm_rate = 2 * d * f * d / median["matmul"] / 1e9
  print(f"{'matmul ' + f'{d}x{f} @ {f}x{d}':28s} {median['matmul'] * 1e3:10.2f} {'':16s} {'':9s} {mm_rate:11.1f}")
  print(f"\nratio gx.muon / optax.contrib.muon (same options): "
        f"{median['gx.muon (optax options)'] / median['optax.contrib.muon']:.2f}")
  print(f"Newton-Schulz rate in the gx.muon step: {flops / median['gx.muon (optax options)'] / 1e9 / mm_rate:.2f} "
        f"of the matmul rate ({mm_rate:.1f} GFLOP/s)")


if __name__ == "__main__":
  main()
