#!/usr/bin/env python
"""Memory-lean optimizer state: 32-bit, bfloat16, 8-bit and 4-bit state, same training runs.

Optimizers in groups, each group against its float32-state baseline (the first
of the group), with the same learning rate, seeds and batches:

* ``adam-fp32``: ``gx.adam(lr)`` (float32 moments, 8 bytes per parameter);
* ``adam-bf16``: ``gx.adam(lr, mu_dtype=bfloat16, nu_dtype=bfloat16)`` (4 bytes);
* ``adam-8bit``: ``gx.adam_8bit(lr)`` (Dettmers et al. 2022: 1 byte per moment
  value plus a float32 scale per block of 2048; leaves under 4096 values stay
  float32);
* ``adam-4bit``: ``gx.adam_4bit(lr)`` (Li et al. 2023: ½ byte per moment value;
  ``mu`` blockwise (128), ``nu`` rank-1 scales on the linear map without zero);
* ``sgd``, ``lion``, ``ademamix``, ``muon``, ``adafactor`` (with momentum
  0.9): ``-fp32`` the optimizer, ``-8bit`` ``gx.quantized_state(it)``, whose
  momenta (and AdEMAMix's ``nu``) are stored in 8 bits between steps.

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
to its group's 32-bit run in percent (mean over seeds of the gap between runs
of the same seed) and the standard deviation of that gap over seeds (a gap
well above it is not seed noise), the optimizer state's bytes (all leaves)
and their ratio to the group's 32-bit state, the median time of one jitted
update step on the task's parameters and its ratio to the 32-bit state's
(the two timed alternately, in the same run), and the seconds of the runs
(compilation included).

Usage::

    PYTHONPATH=. python benchmarks/quantized_state.py          # a few minutes on 2 cores
    PYTHONPATH=. python benchmarks/quantized_state.py --quick  # adam and lion groups, few steps
    PYTHONPATH=. python benchmarks/quantized_state.py --tasks digits --groups sgd,muon
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
  """``{group: {name: optimizer}}``; the first of each group is its float32-state baseline."""
  q = gx.quantized_state
  floats = {
      "sgd": gx.sgd(30 * lr, momentum=0.9),
      "lion": gx.lion(lr / 3),
      "ademamix": gx.ademamix(lr),
      "muon": gx.muon(10 * lr),
      "adafactor": gx.adafactor(10 * lr, momentum=0.9),
  }
  groups = {"adam": {
      "adam-fp32": gx.adam(lr),
      "adam-bf16": gx.adam(lr, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
      "adam-8bit": gx.adam_8bit(lr),
      "adam-4bit": gx.adam_4bit(lr),
  }}
  for name, opt in floats.items():
    groups[name] = {f"{name}-fp32": opt, f"{name}-8bit": q(opt)}
  return groups


def state_bytes(opt, params):
  return sum(leaf.nbytes for leaf in jax.tree.leaves(opt.init(params)))


def step_times(opts, params, repeats):
  """Median seconds of one jitted update of each optimizer, timed alternately (same load for all)."""
  grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
  steps, states = [], []
  for opt in opts:
    step = jax.jit(lambda opt, params, state, grads: opt.update(grads, state, params))
    state = opt.init(params)
    jax.block_until_ready(step(opt, params, state, grads))  # compile
    steps.append(step)
    states.append(state)
  times = [[] for _ in opts]
  for _ in range(repeats):
    for i, opt in enumerate(opts):
      tic = time.perf_counter()
      jax.block_until_ready(steps[i](opt, params, states[i], grads))
      times[i].append(time.perf_counter() - tic)
  return [float(np.median(t)) for t in times]


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


def lm_data(quick):
  """``(vocab, batches, test)``: the vocabulary size, ``batches(seed)`` (the training windows of one seed,
  ``steps × batch × (CONTEXT + 1)``) and the held-out windows."""
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

  def batches(seed):
    rng = np.random.default_rng(2 + seed)
    return jnp.asarray(train_windows[rng.integers(0, len(train_windows), size=(steps, batch))])

  return len(chars), batches, test


def lm_task(quick):
  """``(params, run, lr)``: ``run(opt, seed)`` trains the language model and returns its held-out loss."""
  vocab, batches, test = lm_data(quick)
  train = make_train(lambda p, b: lm_loss(p, b))
  held_out = jax.jit(lm_loss)

  def run(opt, seed):
    params = lm_init(jax.random.key(3 + seed), vocab)
    return float(held_out(train(opt, params, batches(seed)), test))

  return lm_init(jax.random.key(3), vocab), run, 1e-3


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="few steps (smoke test)")
  parser.add_argument("--groups", default=None,
                      help="comma-separated groups to run (default: all; with --quick: adam,lion)")
  parser.add_argument("--tasks", default="digits,char-lm", help="comma-separated tasks to run")
  args = parser.parse_args(argv)
  groups = (args.groups or ("adam,lion" if args.quick else ",".join(optimizers(1.0)))).split(",")
  print(f"{'task':<8} {'optimizer':<14} {'loss':>7} {'gap %':>7} {'gap sd':>6} {'state bytes':>12} {'ratio':>6} "
        f"{'step ms':>8} {'x fp32':>6} {'s':>5}")
  for task, build in (("digits", digits_task), ("char-lm", lm_task)):
    if task not in args.tasks.split(","):
      continue
    params, run, lr = build(args.quick)
    for group, opts in optimizers(lr).items():
      if group not in groups:
        continue
      times = step_times(list(opts.values()), params, 5 if args.quick else 30)
      reference = reference_bytes = None
      for (name, opt), step_time in zip(opts.items(), times):
        tic = time.perf_counter()
        losses = np.array([run(opt, seed) for seed in range(SEEDS)])
        seconds = time.perf_counter() - tic
        nbytes = state_bytes(opt, params)
        if reference is None:
          reference, reference_bytes, reference_time = losses, nbytes, step_time
        gaps = 100 * (losses - reference) / reference  # per seed: the same initial weights and batches
        print(f"{task:<8} {name:<14} {losses.mean():>7.4f} {gaps.mean():>+7.2f} {gaps.std(ddof=1):>6.2f} "
              f"{nbytes:>12,d} {nbytes / reference_bytes:>6.3f} {1e3 * step_time:>8.3f} "
              f"{step_time / reference_time:>6.2f} {seconds:>5.1f}", flush=True)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    print(f"{task:<8} ({n_params:,d} parameters, {SEEDS} seeds, held-out loss)")


if __name__ == "__main__":
  start = time.perf_counter()
  main()
  print(f"done in {time.perf_counter() - start:.1f} s")
