"""Pure bfloat16 training without drift: float32 master weights against bfloat16-only parameters.

Trains the digits MLP of examples/digits_mlp.py with AdamW in four ways and reports the held-out loss
(mean and spread over seeds) and the bytes of parameters plus optimizer state:

  (a) float32 parameters and moments (the master-weights baseline);
  (b) bfloat16 parameters and moments, round-to-nearest (``gx.apply_updates``);
  (c) bfloat16 parameters and moments, stochastic rounding (``gx.apply_updates(..., key=)``);
  (d) bfloat16 parameters and moments, Kahan-compensated updates (``gx.kahan_summation``, a bf16 buffer);
  (e), (f) as (c), (d) with the second moment in float32.

The forward pass computes in float32 in every variant, so the differences come from how the parameters
and moments are stored and rounded, not from low-precision matmuls.

Usage: python benchmarks/bf16_training.py [--quick]
"""

import argparse
import os
import sys

import numpy as np

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import gradxform as gx  # noqa: E402
from digits_mlp import BATCH_SIZE, init_params, load_data, loss_fn  # noqa: E402

LR, WEIGHT_DECAY = 3e-4, 1e-2


def f32_loss(params, x, y):
  return loss_fn(jax.tree.map(lambda p: p.astype(jnp.float32), params), x, y)


VARIANTS = {  # name: (params dtype, optimizer, stochastic rounding?)
    "(a) float32 master": (jnp.float32, lambda: gx.adamw(LR, weight_decay=WEIGHT_DECAY), False),
    "(b) bf16 nearest": (jnp.bfloat16, lambda: gx.adamw(LR, weight_decay=WEIGHT_DECAY), False),
    "(c) bf16 stochastic": (jnp.bfloat16, lambda: gx.adamw(LR, weight_decay=WEIGHT_DECAY), True),
    "(d) bf16 Kahan": (jnp.bfloat16, lambda: gx.kahan_summation(gx.adamw(LR, weight_decay=WEIGHT_DECAY)), False),
    # the second moment in bf16 is what costs (c) and (d): (1 - b2)·g² is below half its ulp at b2 = 0.999
    "(e) (c), f32 nu": (jnp.bfloat16, lambda: gx.adamw(LR, weight_decay=WEIGHT_DECAY, nu_dtype=jnp.float32), True),
    "(f) (d), f32 nu": (jnp.bfloat16, lambda: gx.kahan_summation(
        gx.adamw(LR, weight_decay=WEIGHT_DECAY, nu_dtype=jnp.float32)), False),
}


def run(dtype, opt, stochastic, seed, epochs, data):
  x, y, x_test, y_test = data
  params = jax.tree.map(lambda p: p.astype(dtype), init_params(jax.random.key(seed)))
  rng = np.random.default_rng(seed)
  steps = len(y) // BATCH_SIZE
  batches = jnp.asarray(np.stack([rng.permutation(len(y))[:steps * BATCH_SIZE] for _ in range(epochs)])
                        .reshape(epochs * steps, BATCH_SIZE), jnp.int32)

  @jax.jit
  def train(params):
    def step(carry, inputs):
      params, state = carry
      t, batch = inputs
      grads = jax.grad(f32_loss)(params, x[batch], y[batch])
      updates, state = opt.update(grads, state, params)
      key = jax.random.fold_in(jax.random.PRNGKey(seed), t) if stochastic else None
      return (gx.apply_updates(params, updates, key=key), state), None

    state = opt.init(params)
    (params, state), _ = jax.lax.scan(step, (params, state), (jnp.arange(len(batches)), batches))
    return params, state

  params, state = train(params)
  nbytes = sum(leaf.nbytes for leaf in jax.tree.leaves((params, state)) if jnp.ndim(leaf) > 0)
  return float(f32_loss(params, x_test, y_test)), nbytes


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="2 seeds, 5 epochs (smoke test)")
  args = parser.parse_args()
  seeds, epochs = (2, 5) if args.quick else (3, 150)
  data = load_data()
  rows = {}
  for name, (dtype, make, stochastic) in VARIANTS.items():
    results = [run(dtype, make(), stochastic, seed, epochs, data) for seed in range(seeds)]
    losses = np.asarray([r[0] for r in results])
    rows[name] = (losses, results[0][1])
  base_loss, base_bytes = rows["(a) float32 master"][0].mean(), rows["(a) float32 master"][1]
  print(f"digits MLP, AdamW lr {LR}, {epochs} epochs, {seeds} seeds; held-out loss")
  print(f"{'variant':<22} {'loss mean':>10} {'min':>8} {'max':>8} {'gap to (a)':>11} {'bytes':>8} {'of (a)':>7}")
  for name, (losses, nbytes) in rows.items():
    print(f"{name:<22} {losses.mean():>10.4f} {losses.min():>8.4f} {losses.max():>8.4f} "
          f"{(losses.mean() - base_loss) / base_loss:>+10.2%} {nbytes:>8d} {nbytes / base_bytes:>6.0%}")


if __name__ == "__main__":
  main()
