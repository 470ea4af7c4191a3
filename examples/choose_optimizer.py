"""Which optimizer? Nine of them on the digits MLP, each at its best learning rate, over three seeds.

AdamW, Lion, ADOPT, AdEMAMix, MARS, cautious AdamW, schedule-free AdamW, Prodigy and LAMB (those this
version of gradxform has; the script skips a missing one) train the MLP of ``examples/digits_mlp.py``
(64 → 64 → 10 on scikit-learn's digits). For each optimizer one ``gx.Population`` sweeps the learning
rate (Prodigy's is a multiplier of its estimated step, so its grid is centred on 1) in a single compiled
program; the rate with the lowest validation loss (a held-out fifth of the training set) is then run
with three seeds (other initial weights and batch orders). Schedule-free AdamW is evaluated at its
averaged parameters (``gx.schedule_free_eval_params``), as the method prescribes.

Writes ``choose_optimizer.png``: the validation loss per epoch at each optimizer's best rate (mean over
the seeds, the band is the min-max spread) and the final test loss with its spread; prints the table
(best rate, final test loss ± spread over seeds, test accuracy, wall time per step) and writes it as
``choose_optimizer.md``. One machine, one run: the wall times are ratios measured side by side, not a
benchmark.

Usage: python examples/choose_optimizer.py [--quick] [--out DIR]
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


def _if(name, make):
  return make if hasattr(gx, name) else None


# name: (factory lr -> optimizer or None when this gradxform lacks it, log10 range of the rates)
CANDIDATES = {
    "adamw": (lambda lr: gx.adamw(lr, weight_decay=1e-4), (-3.5, -0.5)),
    "lion": (_if("lion", lambda lr: gx.lion(lr, weight_decay=1e-4)), (-4.5, -1.5)),
    "adopt": (_if("adopt", lambda lr: gx.adopt(lr)), (-3.5, -0.5)),
    "ademamix": (_if("ademamix", lambda lr: gx.ademamix(lr)), (-4.0, -1.0)),
    "mars": (_if("mars", lambda lr: gx.mars(lr)), (-3.5, -0.5)),
    "cautious adamw": (_if("cautious", lambda lr: gx.cautious(gx.adamw(lr, weight_decay=1e-4))), (-3.5, -0.5)),
    "schedule-free adamw": (_if("schedule_free_adamw", lambda lr: gx.schedule_free_adamw(lr)), (-3.5, -0.5)),
    "prodigy": (_if("prodigy", lambda lr: gx.prodigy(lr)), (-1.0, 1.0)),
    "lamb": (_if("lamb", lambda lr: gx.lamb(lr)), (-3.5, -0.5)),
}


def eval_params(state, params):
  """The parameters to evaluate: schedule-free's averaged sequence where present, else the iterate."""
  if hasattr(gx, "schedule_free_eval_params"):
    is_sf = lambda x: type(x).__name__ == "ScheduleFreeState"
    if any(is_sf(x) for x in jax.tree.leaves(state, is_leaf=is_sf)):
      return gx.schedule_free_eval_params(state, params)
  return params


def make_train(population, steps_per_epoch):
  """A jitted run of all epochs for a whole population: per-epoch validation losses and final params."""
  train = population.train(lambda params, batch: loss_fn(params, *batch))

  @jax.jit
  def run(hyperparams, params, states, data, batches, x_val, y_val):
    x, y = data

    def epoch(carry, indices):
      params, states = carry
      params, states, _ = train(hyperparams, params, states, (x[indices], y[indices]))
      evaluated = jax.vmap(eval_params)(states, params)
      return (params, states), jax.vmap(loss_fn, in_axes=(0, None, None))(evaluated, x_val, y_val)

    (params, states), val = jax.lax.scan(epoch, (params, states), batches)
    return jax.vmap(eval_params)(states, params), val  # val: (epochs, members)

  return run


def batches_for(seed, epochs, n):
  rng = np.random.default_rng(seed)
  steps = n // BATCH_SIZE
  order = np.stack([rng.permutation(n)[:steps * BATCH_SIZE] for _ in range(epochs)])
  return jnp.asarray(order.reshape(epochs, steps, BATCH_SIZE), jnp.int32)


def time_per_step(optimizers, params, x, y, rounds=7, repeats=20):
  """Median wall time of one jitted training step per optimizer, timed interleaved round by round."""
  xb, yb = x[:BATCH_SIZE], y[:BATCH_SIZE]
  runs = {}
  for name, opt in optimizers.items():
    @jax.jit
    def step(params, state, xb, yb, opt=opt):
      grads = jax.grad(loss_fn)(params, xb, yb)
      updates, state = opt.update(grads, state, params)
      return gx.apply_updates(params, updates), state

    runs[name] = [step, jax.block_until_ready(step(params, opt.init(params), xb, yb))]
  times = {name: [] for name in optimizers}
  for _ in range(rounds):
    for name, run in runs.items():
      step, carry = run
      tic = time.perf_counter()
      for _ in range(repeats):
        carry = step(*carry, xb, yb)
      jax.block_until_ready(carry)
      times[name].append((time.perf_counter() - tic) / repeats)
      run[1] = carry
  return {name: float(np.median(t)) for name, t in times.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="4 optimizers, 4 rates, 2 seeds, 3 epochs (smoke test)")
  parser.add_argument("--out", default="out", help="directory for the figure and table (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  rates, seeds, epochs = (4, 2, 3) if args.quick else (12, 3, 40)
  candidates = {k: v for k, v in CANDIDATES.items() if v[0] is not None}
  if args.quick:
    candidates = dict(list(candidates.items())[:4])

  x_all, y_all, x_test, y_test = load_data()
  n_val = len(y_all) // 5
  x_val, y_val, x, y = x_all[:n_val], y_all[:n_val], x_all[n_val:], y_all[n_val:]
  rows, curves, best_optimizers = [], {}, {}
  for name, (factory, bounds) in candidates.items():
    tic = time.perf_counter()
    lrs = np.logspace(*bounds, rates)
    population = gx.Population(factory, {"lr": lrs})
    run = make_train(population, len(y) // BATCH_SIZE)
    params, states = population.init(init_params(jax.random.key(0)))
    _, val = run(population.hyperparams, params, states, (x, y), batches_for(0, epochs, len(y)), x_val, y_val)
    final_val = np.asarray(val[-1])
    best = int(np.nanargmin(np.where(np.isfinite(final_val), final_val, np.nan)))
    # the best rate, with `seeds` seeds: one population whose members differ in initial weights
    seeded = gx.Population(factory, {"lr": np.full(seeds, lrs[best])})
    inits = [init_params(jax.random.key(s)) for s in range(seeds)]
    run_s = make_train(seeded, len(y) // BATCH_SIZE)
    val_curves, test_losses, accs = [], [], []
    for s in range(seeds):  # seed s: its own initial weights and batch order (member s of the population)
      member_params, member_states = seeded.init(inits[s])
      final_params, val_s = run_s(seeded.hyperparams, member_params, member_states, (x, y),
                                  batches_for(s + 1, epochs, len(y)), x_val, y_val)
      p = jax.tree.map(lambda a: a[s], final_params)
      val_curves.append(np.asarray(val_s[:, s]))
      test_losses.append(float(loss_fn(p, x_test, y_test)))
      accs.append(float(accuracy(p, x_test, y_test)))
    best_optimizers[name] = factory(float(lrs[best]))
    curves[name] = np.stack(val_curves)
    test_losses = np.asarray(test_losses)
    rows.append([name, lrs[best], test_losses.mean(), test_losses.min(), test_losses.max(), np.mean(accs)])
    print(f"{name:<20} best lr {lrs[best]:.3g}  test loss {test_losses.mean():.4f} "
          f"[{test_losses.min():.4f}, {test_losses.max():.4f}]  acc {np.mean(accs):.4f}  "
          f"({time.perf_counter() - tic:.1f} s)", flush=True)
  per_step = time_per_step(best_optimizers, init_params(jax.random.key(0)), x, y)
  for row in rows:
    row.append(per_step[row[0]])

  header = "| optimizer | best lr | test loss (mean over seeds) | spread (min – max) | test accuracy | µs per step |"
  lines = [header, "|---|---|---|---|---|---|"]
  for name, lr, mean, lo, hi, acc, per_step in sorted(rows, key=lambda r: r[2]):
    lines.append(f"| {name} | {lr:.3g} | {mean:.4f} | {lo:.4f} – {hi:.4f} | {acc:.4f} | {per_step * 1e6:.0f} |")
  table = "\n".join(lines)
  print(f"\n{seeds} seeds, {epochs} epochs, {rates} learning rates per optimizer; step times are medians of "
        f"interleaved rounds in this run\n{table}")
  with open(os.path.join(args.out, "choose_optimizer.md"), "w") as f:
    f.write(table + "\n")

  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
  for name, c in curves.items():
    epochs_axis = np.arange(1, c.shape[1] + 1)
    line, = left.plot(epochs_axis, c.mean(axis=0), label=name)
    left.fill_between(epochs_axis, c.min(axis=0), c.max(axis=0), color=line.get_color(), alpha=0.2)
  left.set(xlabel="epoch", ylabel="validation loss", yscale="log", title="at each optimizer's best learning rate")
  left.legend(fontsize=8)
  ordered = sorted(rows, key=lambda r: r[2])
  names = [r[0] for r in ordered]
  means = np.asarray([r[2] for r in ordered])
  err = np.asarray([[r[2] - r[3] for r in ordered], [r[4] - r[2] for r in ordered]])
  right.barh(names, means, xerr=err, color="tab:blue", alpha=0.7)
  right.invert_yaxis()
  right.set(xlabel=f"test loss (mean, min-max over {seeds} seeds)", title="final test loss")
  fig.tight_layout()
  path = os.path.join(args.out, "choose_optimizer.png")
  fig.savefig(path, dpi=100)
  print(f"figure written to {path}")


if __name__ == "__main__":
  main()
