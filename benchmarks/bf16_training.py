"""Pure bfloat16 training without drift: float32 master weights against bfloat16-only parameters.

Trains (1) the digits MLP of examples/digits_mlp.py with AdamW and (2) the character-level MLP language model of
benchmarks/quantized_state.py with AdamW, each in these ways, and reports the held-out loss (mean and spread over
seeds) and the bytes of parameters plus optimizer state:

  (a)  float32 parameters and moments (the master-weights baseline);
  (b)  bfloat16 parameters and moments, round-to-nearest (``gx.apply_updates``);
  (c)  bfloat16 parameters and moments, stochastic rounding of the parameters (``gx.apply_updates(..., key=)``);
  (c+) (c) with the moments stored with stochastic rounding too (``gx.stochastic_state_rounding``);
  (d)  bfloat16 parameters and moments, Kahan-compensated updates (``gx.kahan_summation``, a bf16 buffer);
  (d+) (d) with the moments stored with stochastic rounding;
  (e), (f) as (c), (d) with the second moment in float32 (round-to-nearest).

The forward pass computes in float32 in every variant, so the differences come from how the parameters
and moments are stored and rounded, not from low-precision matmuls.

Usage: python benchmarks/bf16_training.py [--quick] [--tasks digits,char-lm]
"""

import argparse
import os
import sys

import numpy as np

import jax
import jax.numpy as jnp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)
import gradxform as gx  # noqa: E402
from digits_mlp import BATCH_SIZE, init_params, load_data, loss_fn  # noqa: E402

LR, WEIGHT_DECAY = 3e-4, 1e-2
LM_LR = 1e-3


def f32_loss(params, x, y):
  return loss_fn(jax.tree.map(lambda p: p.astype(jnp.float32), params), x, y)


def variants(lr):
  """``{name: (params dtype, optimizer, stochastic rounding of the parameters?)}``."""
  adamw = lambda **kw: gx.adamw(lr, weight_decay=WEIGHT_DECAY, **kw)
  sr_state = gx.stochastic_state_rounding
  return {
      "(a) float32 master": (jnp.float32, adamw(), False),
      "(b) bf16 nearest": (jnp.bfloat16, adamw(), False),
      "(c) bf16 stochastic": (jnp.bfloat16, adamw(), True),
      "(c+) (c), sr state": (jnp.bfloat16, sr_state(adamw()), True),
      "(d) bf16 Kahan": (jnp.bfloat16, gx.kahan_summation(adamw()), False),
      "(d+) (d), sr state": (jnp.bfloat16, gx.kahan_summation(sr_state(adamw())), False),
      # the second moment in bf16 is what costs (c) and (d): (1 - b2)·g² is below half its ulp at b2 = 0.999
      "(e) (c), f32 nu": (jnp.bfloat16, adamw(nu_dtype=jnp.float32), True),
      "(f) (d), f32 nu": (jnp.bfloat16, gx.kahan_summation(adamw(nu_dtype=jnp.float32)), False),
  }


def train(params, opt, stochastic, seed, loss, batches):
  """All steps in one jitted scan; returns the trained parameters and the bytes of parameters plus state."""

  @jax.jit
  def run(params, batches):
    def step(carry, inputs):
      params, state = carry
      t, batch = inputs
      grads = jax.grad(loss)(params, batch)
      updates, state = opt.update(grads, state, params)
      key = jax.random.fold_in(jax.random.PRNGKey(seed), t) if stochastic else None
      return (gx.apply_updates(params, updates, key=key), state), None

    state = opt.init(params)
    (params, state), _ = jax.lax.scan(step, (params, state), (jnp.arange(len(batches)), batches))
    return params, state

  params, state = run(params, batches)
  nbytes = sum(leaf.nbytes for leaf in jax.tree.leaves((params, state)) if jnp.ndim(leaf) > 0)
  return params, nbytes


def digits_task(quick):
  """``(describe, run)``: ``run(dtype, opt, stochastic, seed) -> (held-out loss, bytes)``."""
  x, y, x_test, y_test = load_data()
  epochs = 5 if quick else 150

  def run(dtype, opt, stochastic, seed):
    params = jax.tree.map(lambda p: p.astype(dtype), init_params(jax.random.key(seed)))
    rng = np.random.default_rng(seed)
    steps = len(y) // BATCH_SIZE
    batches = jnp.asarray(np.stack([rng.permutation(len(y))[:steps * BATCH_SIZE] for _ in range(epochs)])
                          .reshape(epochs * steps, BATCH_SIZE), jnp.int32)
    params, nbytes = train(params, opt, stochastic, seed, lambda p, b: f32_loss(p, x[b], y[b]), batches)
    return float(f32_loss(params, x_test, y_test)), nbytes

  return f"digits MLP, AdamW lr {LR}, {epochs} epochs", LR, run


def lm_task(quick):
  """The character-level MLP language model of quantized_state.py (577k parameters), AdamW."""
  import quantized_state as qs  # noqa: E402  (benchmarks/)
  vocab, batches, test = qs.lm_data(quick)
  loss = lambda p, b: qs.lm_loss(jax.tree.map(lambda a: a.astype(jnp.float32), p), b)
  held_out = jax.jit(loss)

  def run(dtype, opt, stochastic, seed):
    params = jax.tree.map(lambda p: p.astype(dtype), qs.lm_init(jax.random.key(3 + seed), vocab))
    params, nbytes = train(params, opt, stochastic, seed, loss, batches(seed))
    return float(held_out(params, test)), nbytes

  return f"char-level MLP LM (577k parameters), AdamW lr {LM_LR}, {batches(0).shape[0]} steps", LM_LR, run


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="2 seeds, few steps (smoke test)")
  parser.add_argument("--tasks", default="digits,char-lm", help="comma-separated: digits, char-lm")
  args = parser.parse_args()
  seeds = 2 if args.quick else 3
  tasks = {"digits": digits_task, "char-lm": lm_task}
  for task in args.tasks.split(","):
    describe, lr, run = tasks[task](args.quick)
    rows = {}
    for name, (dtype, opt, stochastic) in variants(lr).items():
      results = [run(dtype, opt, stochastic, seed) for seed in range(seeds)]
      rows[name] = (np.asarray([r[0] for r in results]), results[0][1])
    base_loss, base_bytes = rows["(a) float32 master"][0].mean(), rows["(a) float32 master"][1]
    print(f"{describe}, {seeds} seeds; held-out loss")
    print(f"{'variant':<22} {'loss mean':>10} {'min':>8} {'max':>8} {'gap to (a)':>11} {'bytes':>10} {'of (a)':>7}")
    for name, (losses, nbytes) in rows.items():
      print(f"{name:<22} {losses.mean():>10.4f} {losses.min():>8.4f} {losses.max():>8.4f} "
            f"{(losses.mean() - base_loss) / base_loss:>+10.2%} {nbytes:>10d} {nbytes / base_bytes:>6.0%}",
            flush=True)


if __name__ == "__main__":
  main()
