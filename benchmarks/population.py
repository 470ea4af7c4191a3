#!/usr/bin/env python
"""Per-member cost of a population (one vmapped, jitted step) against separate runs.

The workload is the digits MLP of ``examples/digits_mlp.py`` (64 → 64 → 10
tanh, softmax cross-entropy, mini-batches of 50) on synthetic data of the same
shapes, trained with Adam; each member has its own learning rate, parameters
and optimizer state.

* ``population n``: ``gx.Population(lambda lr: gx.adam(lr), {"lr": n rates})``;
  one call runs the ``n`` members together (``jax.vmap`` under ``jax.jit``).
* ``separate n``: the same ``n`` members one after the other, each call a
  jitted single-member function that takes the optimizer as an argument (so
  all learning rates share one compilation): ``n`` calls.

Two granularities: ``1 step`` (one training step per call: the usual Python
training loop, where each call pays the dispatch overhead) and ``28 steps``
(one epoch per call, a ``jax.lax.scan`` inside the jitted function). Every
configuration is timed once per round, interleaved, so that noise on a shared
machine hits all alike, in a random order drawn anew every round: a small call
right after a large one is slowed by XLA:CPU's thread pool (measured here: a
0.2 ms step takes 0.4-0.6 ms when it follows a 55 ms call), and a fixed cyclic
order would always give the same configuration that penalty. The table gives
medians with the 25th-75th percentiles, after untimed warm-up rounds. Reported: the time of one
call of the population, the cost per member and step for the population and
for separate runs, their ratio, and the compile time of the first call. After
the first call the script checks that every population member equals its
separate run (largest difference of the parameters).

Usage::

    PYTHONPATH=. python benchmarks/population.py            # sizes 1, 8, 64; 100 rounds, ~30 s
    PYTHONPATH=. python benchmarks/population.py --quick    # sizes 1, 8; 3 rounds (smoke test)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

import jax
import jax.numpy as jnp

import gradxform as gx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import digits_mlp  # noqa: E402  (the same MLP as the example)
from digits_mlp import init_params  # noqa: E402

BATCH, STEPS = 50, 28


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="sizes 1 and 8, 3 rounds (a smoke test)")
  parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 100; 3 with --quick)")
  parser.add_argument("--sizes", type=int, nargs="+", default=None, help="population sizes (default 1 8 64)")
  parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
  args = parser.parse_args(argv)
  args.rounds = args.rounds or (3 if args.quick else 100)
  args.sizes = args.sizes or ([1, 8] if args.quick else [1, 8, 64])
  return args


def loss_fn(params, batch):
  """The digits MLP's loss (``examples/digits_mlp.py``) on one ``(x, y)`` batch."""
  return digits_mlp.loss_fn(params, *batch)


def single_step(opt, params, state, batch):
  grads = jax.grad(loss_fn)(params, batch)
  updates, state = opt.update(grads, state, params)
  return gx.apply_updates(params, updates), state


def single_epoch(opt, params, state, batches):
  def body(carry, batch):
    return single_step(opt, *carry, batch), None
  (params, state), _ = jax.lax.scan(body, (params, state), batches)
  return params, state


class Config:
  """One row: a population of ``n`` or ``n`` separate runs, at one granularity; ``call()`` is timed."""

  def __init__(self, kind, n, steps, lrs, params0, batches):
    self.kind, self.n, self.steps, self.times = kind, n, steps, []
    self.batches = batches if steps > 1 else jax.tree.map(lambda b: b[0], batches)
    if kind == "population":
      self.pop = gx.Population(lambda lr: gx.adam(lr), {"lr": lrs})
      self.params, self.state = self.pop.init(params0)
      self.fn = self.pop.train(loss_fn) if steps > 1 else self.pop.step(loss_fn)
    else:
      self.opts = [gx.adam(float(lr)) for lr in lrs]
      self.params = [params0] * n
      self.state = [opt.init(params0) for opt in self.opts]
      self.fn = jax.jit(single_epoch if steps > 1 else single_step)
    tic = time.perf_counter()
    self.call()
    self.first_s = time.perf_counter() - tic

  def call(self):
    if self.kind == "population":
      self.params, self.state, _ = self.fn(self.pop.hyperparams, self.params, self.state, self.batches)
      jax.block_until_ready(self.params)
    else:
      for i, opt in enumerate(self.opts):
        self.params[i], self.state[i] = self.fn(opt, self.params[i], self.state[i], self.batches)
      jax.block_until_ready(self.params)

  def member_params(self, i):
    if self.kind == "population":
      return jax.tree.map(lambda x: x[i], self.params)
    return self.params[i]


def main():
  args = parse_args()
  print(f"population benchmark, {datetime.date.today()}: {platform.platform()}, python "
        f"{platform.python_version()}, jax {jax.__version__}, {os.cpu_count()} CPUs visible")
  print(f"jax.devices(): {jax.devices()}")
  rng = np.random.default_rng(0)
  batches = (jnp.asarray(rng.normal(size=(STEPS, BATCH, 64)), jnp.float32),
             jnp.asarray(rng.integers(0, 10, size=(STEPS, BATCH)), jnp.int32))
  params0 = init_params(jax.random.key(0))
  configs = []
  for steps in (1, STEPS):
    for n in args.sizes:
      lrs = np.logspace(-4, -1, n) if n > 1 else np.array([1e-3])
      pair = [Config(kind, n, steps, lrs, params0, batches) for kind in ("population", "separate")]
      diff = max(float(jnp.max(jnp.abs(a - b))) for i in range(n) for a, b in
                 zip(jax.tree.leaves(pair[0].member_params(i)), jax.tree.leaves(pair[1].member_params(i))))
      print(f"n={n:<3} {steps:>2} step(s)/call: after the first call, max |population member - separate run| "
            f"= {diff:.1e}{'  WARNING' if diff > 1e-5 else ''}")
      configs += pair

  order_rng = np.random.default_rng(1)
  for r in range(args.warmup + args.rounds):  # interleaved: each configuration once per round
    for k in order_rng.permutation(len(configs)):  # a new order each round (see the docstring)
      config = configs[k]
      tic = time.perf_counter()
      config.call()
      if r >= args.warmup:
        config.times.append(time.perf_counter() - tic)

  print(f"\n{args.rounds} rounds after {args.warmup} warm-up rounds; "
        "per member and step = time of one call / (members × steps per call)")
  header = (f"{'members':>7} {'steps/call':>10} {'population ms/call':>18} {'p25-p75':>13} "
            f"{'pop µs/member/step':>18} {'separate µs/member/step':>23} {'p25-p75':>13} "
            f"{'separate/pop':>12} {'1st call s pop/sep':>18}")
  print(header)
  print("-" * len(header))
  for i in range(0, len(configs), 2):
    pop, sep = configs[i], configs[i + 1]
    scale = 1e6 / (pop.n * pop.steps)
    p = np.percentile(pop.times, [25, 50, 75])
    s = np.percentile(sep.times, [25, 50, 75])
    print(f"{pop.n:>7} {pop.steps:>10} {p[1] * 1e3:>18.3f} {p[0] * 1e3:>6.2f}-{p[2] * 1e3:<6.2f} "
          f"{p[1] * scale:>18.1f} {s[1] * scale:>23.1f} {s[0] * scale:>6.1f}-{s[2] * scale:<6.1f} "
          f"{s[1] / p[1]:>11.2f}x {pop.first_s:>9.2f}/{sep.first_s:<8.2f}")


if __name__ == "__main__":
  start = time.perf_counter()
  main()
  print(f"total time {time.perf_counter() - start:.1f} s")
