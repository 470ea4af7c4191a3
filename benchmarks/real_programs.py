#!/usr/bin/env python
"""gx against optax inside real training programs: first-call time and time per step, side by side.

``update_step.py`` times the optimizer alone; here it is held as the frameworks' own docs hold it, with a
model, its gradient and the update in one jitted step:

* ``jax.jit``: a plain step ``(params, opt_state) -> (params, opt_state)`` on a fixed batch, donated;
* ``flax.linen``: ``TrainState.create(apply_fn, params, tx)`` and ``state.apply_gradients``;
* ``flax.nnx``: ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` under ``nnx.jit``;
* ``equinox``: ``eqx.filter_jit`` with ``optim.update`` and ``eqx.apply_updates``.

Each with ``gx.adamw`` (hyperparameters as numbers), ``gx.inject(gx.adamw)`` (hyperparameters in the state,
as the README recommends for changing them without recompiling; linen, NNX and Equinox only) and
``optax.adamw``, on an MLP 64-256-256-10 on a batch of 128 (6 leaves) and a deeper one with 24 hidden
layers of 64 (50 leaves). Reported: the first call (trace + compile + run) and the median step time over
interleaved rounds (one step of each program per round, in a random order every round), with the ratio to
optax's program. Single core by default (as ``update_step.py``); frameworks that are not importable are
skipped.

Usage::

    PYTHONPATH=. python benchmarks/real_programs.py            # ~1 min here
    PYTHONPATH=. python benchmarks/real_programs.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import update_step  # noqa: E402  (imports no jax at module level)

WD, LR = 1e-4, 1e-3


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small models, 5 timed rounds")
  parser.add_argument("--reps", type=int, default=None, help="timed rounds (default 200; 5 with --quick)")
  parser.add_argument("--all-threads", action="store_true", help="do not pin the process to one core")
  args = parser.parse_args(argv)
  args.reps = args.reps or (5 if args.quick else 200)
  return args


def programs(sizes, batch):
  """``{name: (setup, step)}``: ``setup()`` returns a carry; ``step(carry) -> carry`` runs one blocked step."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import gradxform as gx
  import optax

  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.standard_normal((batch, sizes[0])), jnp.float32)
  ys = jnp.asarray(rng.integers(0, sizes[-1], batch))
  txs = {"gx": lambda: gx.adamw(LR, weight_decay=WD), "gx.inject": lambda: gx.inject(gx.adamw(LR, weight_decay=WD)),
         "optax": lambda: optax.adamw(LR, weight_decay=WD)}
  apply = {"gx": gx.apply_updates, "gx.inject": gx.apply_updates, "optax": optax.apply_updates}
  xent = lambda logits: -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(batch), ys])
  out = {}

  def mlp_params():
    keys = jax.random.split(jax.random.key(0), len(sizes) - 1)
    return {f"layer{i:02d}": {"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
            for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))}

  def mlp(params, x):
    names = sorted(params)
    for name in names[:-1]:
      x = jnp.tanh(x @ params[name]["w"] + params[name]["b"])
    return x @ params[names[-1]]["w"] + params[names[-1]]["b"]

  for lib in ("gx", "optax"):  # plain jax.jit
    def setup(lib=lib):
      params = mlp_params()
      return params, txs[lib]().init(params)

    def make_step(lib=lib):
      tx = txs[lib]()

      @functools.partial(jax.jit, donate_argnums=(0, 1))
      def step(params, state):
        grads = jax.grad(lambda p: xent(mlp(p, xs)))(params)
        updates, state = tx.update(grads, state, params)
        return apply[lib](params, updates), state
      return lambda carry: jax.block_until_ready(step(*carry))
    out[f"jax.jit, {lib}"] = (setup, make_step())

  try:
    from flax.training import train_state
  except ImportError:
    train_state = None
  if train_state is not None:
    for lib in txs:
      def setup(lib=lib):
        return train_state.TrainState.create(apply_fn=mlp, params=mlp_params(), tx=txs[lib]())

      @jax.jit
      def linen_step(ts):
        grads = jax.grad(lambda p: xent(ts.apply_fn(p, xs)))(ts.params)
        return ts.apply_gradients(grads=grads)
      out[f"flax.linen TrainState, {lib}"] = (setup, lambda ts, f=linen_step: jax.block_until_ready(f(ts)))

  try:
    from flax import nnx
  except ImportError:
    nnx = None
  if nnx is not None:
    class MLP(nnx.Module):
      def __init__(self, rngs):
        layers = [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])]
        self.layers = nnx.List(layers) if hasattr(nnx, "List") else layers

      def __call__(self, x):
        for layer in self.layers[:-1]:
          x = jnp.tanh(layer(x))
        return self.layers[-1](x)

    @nnx.jit
    def nnx_step(model, optimizer):
      grads = nnx.grad(lambda m: xent(m(xs)))(model)
      optimizer.update(model, grads)

    for lib in txs:
      def setup(lib=lib):
        model = MLP(nnx.Rngs(0))
        return model, nnx.Optimizer(model, txs[lib](), wrt=nnx.Param)

      def run(carry):
        nnx_step(*carry)
        jax.block_until_ready(nnx.state(carry[0]))
        return carry
      out[f"flax.nnx Optimizer, {lib}"] = (setup, run)

  try:
    import equinox as eqx
  except ImportError:
    eqx = None
  if eqx is not None:
    for lib in txs:
      def setup(lib=lib):
        model = eqx.nn.MLP(sizes[0], sizes[-1], sizes[1], len(sizes) - 2, activation=jnp.tanh,
                           key=jax.random.key(0))
        return model, txs[lib]().init(eqx.filter(model, eqx.is_inexact_array))

      def make_step(lib=lib):
        optim = txs[lib]()  # closed over (static under filter_jit), as Equinox's docs hold an optax optimizer

        @eqx.filter_jit
        def step(model, state):
          grads = eqx.filter_grad(lambda m: xent(jax.vmap(m)(xs)))(model)
          updates, state = optim.update(grads, state, eqx.filter(model, eqx.is_array))
          return eqx.apply_updates(model, updates), state
        return lambda carry: jax.block_until_ready(step(*carry))
      out[f"equinox filter_jit, {lib}"] = (setup, make_step())
  return out


def main(argv=None):
  args = parse_args(argv)
  threads = update_step.configure_threads(args.all_threads)  # before jax is imported
  import jax
  import numpy as np
  try:
    import optax  # noqa: F401
  except ImportError:
    print("real_programs: optax is not importable; nothing to compare against")
    return 0

  print(f"real_programs: jax {jax.__version__}, {threads}, {args.reps} interleaved rounds")
  models = {"MLP 64-256-256-10, batch 128 (6 leaves)": ([64, 256, 256, 10], 128),
            "MLP 32 -> 24 x 64 -> 10, batch 32 (50 leaves)": ([32] + [64] * 24 + [10], 32)}
  if args.quick:
    models = {"MLP 8-16-4, batch 4 (4 leaves)": ([8, 16, 4], 4)}
  for title, (sizes, batch) in models.items():
    progs = programs(sizes, batch)
    carries, first = {}, {}
    for name, (setup, step) in progs.items():
      carry = setup()
      t0 = time.perf_counter()
      carries[name] = step(carry)
      first[name] = time.perf_counter() - t0
    for name, (_, step) in progs.items():  # warm-up
      carries[name] = step(carries[name])

    def call(name):
      def run():
        carries[name] = progs[name][1](carries[name])
      return run
    times = update_step.time_interleaved({name: call(name) for name in progs}, args.reps)
    med = {name: float(np.median(t)) for name, t in times.items()}
    print(f"\n=== {title}")
    header = f"{'program':<38} {'1st call s':>10} {'ms/step':>9} {'vs optax':>9} {'1st vs optax':>13}"
    print(header)
    print("-" * len(header))
    for name in progs:
      frame = name.rsplit(", ", 1)[0]
      ref = f"{frame}, optax"
      print(f"{name:<38} {first[name]:>10.2f} {med[name] * 1e3:>9.3f} {med[name] / med[ref]:>8.2f}x "
            f"{first[name] / first[ref]:>12.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
