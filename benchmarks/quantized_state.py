#!/usr/bin/env python
"""Memory-lean Adam state: 32-bit, bfloat16 and 8-bit blockwise-quantized moments, same training runs.

Three optimizers with the same learning rate, seeds and batches:

* ``adam-fp32``: ``gx.adam(lr)`` (float32 moments, 8 bytes per parameter);
* ``adam-bf16``: ``gx.adam(lr, mu_dtype=bfloat16, nu_dtype=bfloat16)`` (4 bytes);
* ``adam-8bit``: ``gx.adam_8bit(lr)`` (Dettmers et al. 2022: 1 byte per moment
  value plus a float32 scale per block of 2048; leaves under 4096 values stay
  float32).

on two tasks, each trained from ``SEEDS`` = 3 seeds (initial weights and
batch order; every optimizer sees the same ones):

1. the digits MLP of ``examples/digits_mlp.py`` (its functions are imported),
   widened to 64 → 1024 → 10 so that its state is mostly quantized (the two
   weight matrices, 5 × 2048 and 32 × 2048 values; only the 1,034 biases stay
   float32), trained for 10 epochs of mini-batches of 50 on the 1,400 training
   digits; the loss is the mean cross-entropy on the 397 held-out digits
   (about 0.06, the training loss about 0.02: the held-out loss is far from
   zero, so relative gaps mean something);
2. a character-level language model: an MLP over the embeddings of the
   previous 16 characters (embedding 32, hidden 512, 2 hidden layers), trained
   on the docstrings of a fixed list of standard-library modules (generated
   locally, nothing downloaded); the loss is the mean cross-entropy (nats per
   character) on a fixed held-out part of the text.

Printed per task and optimizer: the held-out loss (mean over seeds), its gap
to the 32-bit run in percent (mean over seeds of the gap between runs of the
same seed) and the standard deviation of that gap over seeds (a gap well
above it is not seed noise), the optimizer state's bytes (all leaves) and
their ratio to 32-bit Adam's, and the seconds of the runs (compilation
included).

Usage::

    PYTHONPATH=. python benchmarks/quantized_state.py          # < 2 min on 2 cores
    PYTHONPATH=. python benchmarks/quantized_state.py --quick  # < 20 s
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from digits_mlp import init_params as digits_init, load_data as digits_data, loss_fn as digits_loss  # noqa: E402

import gradxform as gx  # noqa: E402

MODULES = ("collections", "functools", "itertools", "json", "re", "string", "textwrap", "argparse",
           "pathlib", "inspect", "dataclasses", "typing", "datetime", "random", "statistics",
           "fractions", "decimal", "heapq", "bisect", "logging", "csv", "shutil", "tempfile",
           "subprocess", "threading", "enum", "contextlib", "abc", "copy", "pickle", "unittest")
CONTEXT, EMBED, HIDDEN = 16, 32, 512
DIGITS_SIZES = (64, 1024, 10)
SEEDS = 3


def optimizers(lr):
  return {
      "adam-fp32": gx.adam(lr),
      "adam-bf16": gx.adam(lr, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
      "adam-8bit": gx.adam_8bit(lr),
  }


def state_bytes(opt, params):
  return sum(leaf.nbytes for leaf in jax.tree.leaves(opt.init(params)))


def make_train(loss_fn):
  """``train(opt, params, batches, *data) -> params``: all steps in one jitted scan."""

  @jax.jit
  def train(opt, params, batches, *data):
    def step(carry, batch):
      params, state = carry
      grads = jax.grad(loss_fn)(params, batch, *data)
      updates, state = opt.update(grads, state, params)
      return (gx.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), batches)
    return params

  return train


# --- task 1: digits MLP ------------------------------------------------------------------------------


def digits_task(quick):
  """``(params, run, lr)``: ``run(opt, seed)`` trains the digits MLP and returns its held-out loss."""
  x, y, x_test, y_test = digits_data()
  epochs, steps = (2 if quick else 10), len(y) // 50
  train = make_train(lambda p, b, x, y: digits_loss(p, x[b], y[b]))
  held_out = jax.jit(digits_loss)

  def run(opt, seed):
    rng = np.random.default_rng(100 + seed)
    batches = np.stack([rng.permutation(len(y))[:steps * 50].reshape(steps, 50) for _ in range(epochs)])
    params = digits_init(jax.random.key(seed), sizes=DIGITS_SIZES)
    trained = train(opt, params, jnp.asarray(batches.reshape(epochs * steps, 50), jnp.int32), x, y)
    return float(held_out(trained, x_test, y_test))

  return digits_init(jax.random.key(0), sizes=DIGITS_SIZES), run, 1e-3


# --- task 2: character-level language model ----------------------------------------------------------


def corpus():
  """Docstrings of a fixed list of standard-library modules and their public members."""
  parts = []
  for name in MODULES:
    module = importlib.import_module(name)
    parts.append(inspect.getdoc(module) or "")
    for attr in sorted(dir(module)):
      if not attr.startswith("_"):
        doc = inspect.getdoc(getattr(module, attr, None))
        if doc and doc not in parts:
          parts.append(doc)
  text = "\n\n".join(parts)
  return "".join(ch for ch in text if ch.isascii())


def lm_init(key, vocab):
  keys = jax.random.split(key, 4)
  fan = CONTEXT * EMBED
  return {
      "embed": jax.random.normal(keys[0], (vocab, EMBED), jnp.float32) * 0.5,
      "w0": jax.random.normal(keys[1], (fan, HIDDEN), jnp.float32) * fan**-0.5,
      "b0": jnp.zeros(HIDDEN, jnp.float32),
      "w1": jax.random.normal(keys[2], (HIDDEN, HIDDEN), jnp.float32) * HIDDEN**-0.5,
      "b1": jnp.zeros(HIDDEN, jnp.float32),
      "w2": jax.random.normal(keys[3], (HIDDEN, vocab), jnp.float32) * HIDDEN**-0.5 * 0.1,
      "b2": jnp.zeros(vocab, jnp.float32),
  }


def lm_loss(params, windows):
  """Mean cross-entropy of predicting ``windows[:, -1]`` from the ``CONTEXT`` characters before it."""
  h = params["embed"][windows[:, :-1]].reshape(windows.shape[0], -1)
  h = jax.nn.gelu(h @ params["w0"] + params["b0"])
  h = jax.nn.gelu(h @ params["w1"] + params["b1"])
  log_probs = jax.nn.log_softmax(h @ params["w2"] + params["b2"])
  return -jnp.mean(jnp.take_along_axis(log_probs, windows[:, -1:], axis=1))


def lm_task(quick):
  """``(params, run, lr)``: ``run(opt, seed)`` trains the language model and returns its held-out loss."""
  text = corpus()
  chars = sorted(set(text))
  lookup = np.zeros(128, np.int32)
  lookup[[ord(c) for c in chars]] = np.arange(len(chars))
  ids = lookup[np.frombuffer(text.encode("ascii"), np.uint8)]
  split = int(0.9 * len(ids))
  windows = np.lib.stride_tricks.sliding_window_view(ids, CONTEXT + 1)
  train_windows, test_windows = windows[:split - CONTEXT], windows[split:]
  steps, batch = (150, 64) if quick else (2000, 128)
  test = jnp.asarray(test_windows[np.random.default_rng(2).permutation(len(test_windows))[:8192]])
  train = make_train(lambda p, b: lm_loss(p, b))
  held_out = jax.jit(lm_loss)

  def run(opt, seed):
    batches = train_windows[np.random.default_rng(2 + seed).integers(0, len(train_windows), size=(steps, batch))]
    params = lm_init(jax.random.key(3 + seed), len(chars))
    return float(held_out(train(opt, params, jnp.asarray(batches)), test))

  return lm_init(jax.random.key(3), len(chars)), run, 1e-3


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="few steps (smoke test)")
  args = parser.parse_args(argv)
  print(f"{'task':<8} {'optimizer':<10} {'loss':>7} {'gap %':>7} {'gap sd':>6} {'state bytes':>12} {'ratio':>6} {'s':>5}")
  for task, build in (("digits", digits_task), ("char-lm", lm_task)):
    params, run, lr = build(args.quick)
    reference = reference_bytes = None
    for name, opt in optimizers(lr).items():
      tic = time.perf_counter()
      losses = np.array([run(opt, seed) for seed in range(SEEDS)])
      seconds = time.perf_counter() - tic
      nbytes = state_bytes(opt, params)
      if reference is None:
        reference, reference_bytes = losses, nbytes
      gaps = 100 * (losses - reference) / reference  # per seed: the same initial weights and batches
      print(f"{task:<8} {name:<10} {losses.mean():>7.4f} {gaps.mean():>+7.2f} {gaps.std(ddof=1):>6.2f} "
            f"{nbytes:>12,d} {nbytes / reference_bytes:>6.3f} {seconds:>5.1f}", flush=True)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    print(f"{task:<8} ({n_params:,d} parameters, {SEEDS} seeds, held-out loss)")


if __name__ == "__main__":
  start = time.perf_counter()
  main()
  print(f"done in {time.perf_counter() - start:.1f} s")
