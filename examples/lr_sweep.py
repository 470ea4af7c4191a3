"""A learning-rate sweep as one compiled program: 64 rates × 2 optimizers on the digits MLP.

The MLP, data and mini-batches of ``examples/digits_mlp.py`` (64 → 64 → 10
tanh on scikit-learn's digits) are trained by two populations of 64 members
each, ``gx.Population(lambda lr: gx.adam(lr), ...)`` over ``10^-4.5 … 10^0``
and ``gx.Population(lambda lr: gx.sgd(lr, momentum=0.9), ...)`` over ``10^-3
… 10^1``. Every member has its own parameters and optimizer state (all start
from the same weights and see the same batches); a ``jax.vmap`` over the
members runs them in lock-step, and the whole sweep (both populations, all
epochs, every member's loss curve and final loss) is a single
``jax.jit``-compiled function, compiled once.

Each member's result equals its own separate run: the script re-runs some
members alone (one jitted run per member, the optimizer as an argument so
that the compilation is shared) and prints the largest difference of final
losses. Each is also re-run with every batch's examples in reverse order
(the same mean, added in another order): at learning rates on the edge of
stability that alone moves the final loss by tens of percent (float32
rounding amplified by the dynamics), so those members are listed apart. The
script prints the wall time of the population against running the members
one by one (a subset of the separate runs is timed and scaled to all members;
the output says how many).

Writes ``lr_sweep.png``: the final training loss (full training set) against
the learning rate for both optimizers, and the loss curves (each epoch's mean
mini-batch loss) of every member coloured by its learning rate. Prints the
best setting of each optimizer.

Usage: python examples/lr_sweep.py [--quick] [--out DIR]
"""

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import gradxform as gx  # noqa: E402
from digits_mlp import BATCH_SIZE, accuracy, init_params, load_data, loss_fn  # noqa: E402

SWEEPS = {  # name: (factory, log10 of the smallest and largest learning rate)
    "adam": (lambda lr: gx.adam(lr), (-4.5, 0.0)),
    "sgd+momentum": (lambda lr: gx.sgd(lr, momentum=0.9), (-3.0, 1.0)),
}


def batch_loss(params, batch):
  return loss_fn(params, *batch)


def make_sweep(populations):
  """One jitted function: every population, every epoch; the loss curves and final losses."""
  trains = {name: pop.train(batch_loss) for name, pop in populations.items()}

  @jax.jit
  def sweep(hyperparams, params, states, data, batches):
    x_train, y_train = data

    def epoch(carry, indices):
      params, states = carry
      batch = (x_train[indices], y_train[indices])  # (steps, batch, ...), shared by all members
      new_params, new_states, curves = {}, {}, {}
      for name, train in trains.items():
        new_params[name], new_states[name], losses = train(hyperparams[name], params[name], states[name], batch)
        curves[name] = jnp.mean(losses, axis=0)  # each member's mean mini-batch loss over the epoch
      return (new_params, new_states), curves

    (params, _), curves = jax.lax.scan(epoch, (params, states), batches)
    final = {name: jax.vmap(loss_fn, in_axes=(0, None, None))(p, x_train, y_train) for name, p in params.items()}
    return params, curves, final  # curves[name]: (epochs, members); final[name]: (members,)

  return sweep


@jax.jit
def separate_run(opt, params, data, batches):
  """One member alone: the same epochs and batches, no vmap; returns its final training loss.

  The optimizer is an argument (a pytree whose learning rate is a leaf), so
  all learning rates share one compilation.
  """
  x_train, y_train = data

  def step(carry, indices):
    params, state = carry
    grads = jax.grad(loss_fn)(params, x_train[indices], y_train[indices])
    updates, state = opt.update(grads, state, params)
    return (gx.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), batches.reshape(-1, batches.shape[-1]))
  return loss_fn(params, x_train, y_train)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="16 rates, 4 epochs (smoke test)")
  parser.add_argument("--out", default="out", help="directory for the figure (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  members, epochs, timed = (16, 4, 4) if args.quick else (64, 60, 8)

  x_train, y_train, x_test, y_test = load_data()
  data = (x_train, y_train)
  params0 = init_params(jax.random.key(0))
  rng = np.random.default_rng(1)
  steps = len(y_train) // BATCH_SIZE
  batches = np.stack([rng.permutation(len(y_train))[:steps * BATCH_SIZE] for _ in range(epochs)])
  batches = jnp.asarray(batches.reshape(epochs, steps, BATCH_SIZE), jnp.int32)

  populations = {name: gx.Population(factory, {"lr": np.logspace(*bounds, members)})
                 for name, (factory, bounds) in SWEEPS.items()}
  hyperparams = {name: pop.hyperparams for name, pop in populations.items()}
  stacked = {name: pop.init(params0) for name, pop in populations.items()}
  params = {name: p for name, (p, _) in stacked.items()}
  states = {name: s for name, (_, s) in stacked.items()}
  sweep = make_sweep(populations)

  tic = time.perf_counter()
  compiled = sweep.lower(hyperparams, params, states, data, batches).compile()
  compile_time = time.perf_counter() - tic
  tic = time.perf_counter()
  final_params, curves, finals = jax.block_until_ready(compiled(hyperparams, params, states, data, batches))
  population_time = time.perf_counter() - tic
  curves = {name: np.asarray(c) for name, c in curves.items()}
  finals = {name: np.asarray(f) for name, f in finals.items()}
  total = len(populations) * members
  print(f"population: {len(populations)} optimizers × {members} learning rates = {total} members, "
        f"{epochs} epochs of {steps} steps, one program: compile {compile_time:.2f} s, run {population_time:.2f} s")

  # Some members alone: the same result, and the time of running members one by one. Each is run
  # twice: as the population saw its batches, and with every batch's examples in reverse order
  # (the same mean, added in another order): a control for how much float32 rounding alone moves
  # the final loss of that learning rate.
  picks = np.linspace(0, members - 1, timed).round().astype(int)
  separate_time, rows = 0.0, []
  for name, pop in populations.items():
    factory, lrs = SWEEPS[name][0], np.asarray(pop.hyperparams["lr"])
    separate_run(factory(float(lrs[0])), params0, data, batches)  # compile once (all rates share it), not timed
    for i in picks:
      tic = time.perf_counter()
      alone = float(separate_run(factory(float(lrs[i])), params0, data, batches))
      separate_time += time.perf_counter() - tic
      reordered = float(separate_run(factory(float(lrs[i])), params0, data, batches[..., ::-1]))
      rel = lambda a, b: abs(a - b) / max(abs(b), 1e-30) if np.isfinite(a) and np.isfinite(b) else float(a != b)
      rows.append((name, lrs[i], rel(finals[name][i], alone), rel(reordered, alone)))
  per_member = separate_time / len(rows)
  print(f"separate runs: {timed} of {members} members per optimizer timed one by one "
        f"({per_member * 1e3:.1f} ms each), scaled to all {total}: {per_member * total:.2f} s; "
        f"population / separate: {population_time / (per_member * total):.2f}× the time (compilation excluded)")
  robust = [r for r in rows if r[3] < 1e-3]
  sensitive = [r for r in rows if r[3] >= 1e-3]
  print(f"final training loss, population member vs its separate run, {len(rows)} members: largest relative "
        f"difference {max([r[2] for r in robust], default=0.0):.1e} over the {len(robust)} whose loss moves < 1e-3 "
        f"when the batches' examples are reordered; largest ratio to that reordering control "
        f"{max([r[2] / max(r[3], 1e-7) for r in robust], default=0.0):.2f}")
  for name, lr, diff, control in sensitive:
    print(f"  {name} lr={lr:.3g}: differs by {diff:.1e}; reordering alone moves it by {control:.1e} "
          "(rounding amplified by the dynamics, not another computation)")

  print(f"\n{'optimizer':<14} {'best lr':>9} {'train loss':>10} {'test acc':>8}   diverged (loss NaN or > 10)")
  for name, pop in populations.items():
    final = finals[name]
    lrs = np.asarray(pop.hyperparams["lr"])
    best = int(np.nanargmin(np.where(np.isfinite(final), final, np.nan)))
    best_params = jax.tree.map(lambda x: x[best], final_params[name])
    acc = float(accuracy(best_params, x_test, y_test))
    diverged = lrs[~(final < 10)]
    note = f"lr ≥ {diverged.min():.3g} ({len(diverged)} members)" if len(diverged) else "none"
    print(f"{name:<14} {lrs[best]:>9.3g} {final[best]:>10.2e} {acc:>8.4f}   {note}")

  fig, axes = plt.subplots(1, 1 + len(populations), figsize=(5 + 4.5 * len(populations), 4.2))
  for (name, pop), color in zip(populations.items(), ("C0", "C3")):
    lrs, final = np.asarray(pop.hyperparams["lr"]), finals[name]
    axes[0].plot(lrs, np.where(np.isfinite(final), final, np.nan), "o-", ms=3, color=color, label=name)
  axes[0].set_xscale("log")
  axes[0].set_yscale("log")
  axes[0].set_xlabel("learning rate")
  axes[0].set_ylabel(f"training loss after {epochs} epochs")
  axes[0].set_title("final loss against learning rate (gaps: diverged)")
  axes[0].grid(alpha=0.3, which="both")
  axes[0].legend()
  for ax, (name, pop) in zip(axes[1:], populations.items()):
    lrs = np.asarray(pop.hyperparams["lr"])
    norm = matplotlib.colors.LogNorm(lrs.min(), lrs.max())
    for i in range(members):
      ax.plot(np.arange(1, epochs + 1), curves[name][:, i], color=plt.cm.viridis(norm(lrs[i])), lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(top=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean mini-batch loss in the epoch")
    ax.set_title(f"{name}: {members} loss curves")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="learning rate")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "lr_sweep.png"), dpi=120)
  plt.close(fig)
  print(f"figure written to {args.out}/lr_sweep.png")


if __name__ == "__main__":
  start_time = time.perf_counter()
  main()
  print(f"done in {time.perf_counter() - start_time:.1f} s")
