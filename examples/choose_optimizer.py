"""Which optimizer? Ten of them on the digits MLP and on a character-level LM, each at its best learning rate.

AdamW, AdamW with a tuned cosine schedule, Lion, ADOPT, AdEMAMix, MARS, cautious AdamW, schedule-free AdamW,
Prodigy and LAMB (those this version of gradxform has; the script skips a missing one) train two models:

- ``digits``: the MLP of ``examples/digits_mlp.py`` (64 → 64 → 10 on scikit-learn's digits) for 40 epochs;
  the validation set is a held-out fifth of the training set, the test set is digits_mlp's.
- ``lm``: the character-level transformer of ``examples/char_lm.py`` (2 layers, d=64, on Python's
  ``argparse`` source) for 400 steps of 16 × 64 characters; the validation and test sets are the two
  halves of char_lm's held-out text.

For each optimizer one ``gx.Population`` sweeps the learning rate (Prodigy's is a multiplier of its
estimated step, so its grid is centred on 1) in a single compiled program; the rate with the lowest final
validation loss is then run with three seeds, as a second population whose members start from their own
initial weights and see their own batch order. "adamw + cosine" warms its rate up linearly over the first
5 % of the steps and then decays it to 0 by a cosine (``gx.schedules.warmup_cosine_decay``); the population
sweeps the peak. Schedule-free AdamW gets the same warmup and no decay, and is evaluated at its averaged
parameters (``gx.schedule_free_eval_params``), as the method prescribes; the others run at a constant rate.

Writes, per task, ``choose_optimizer.png`` and ``choose_optimizer_lm.png``: the validation loss at each
optimizer's best rate (mean over the seeds, the band is the min-max spread) and the final test loss with its
spread; prints the table (best rate, final test loss ± spread over seeds, test accuracy (the LM's: of the
next character), wall time per step) and writes it as ``choose_optimizer.md`` / ``choose_optimizer_lm.md``.
One machine, one run: the wall times are ratios measured side by side, not a benchmark.

Usage: python examples/choose_optimizer.py [--quick] [--task digits|lm|both] [--out DIR]
"""

import argparse
import os
import time
from typing import Any, Callable, NamedTuple

# XLA's CPU scheduler can deadlock a vmapped population of some optimizers (see examples/char_lm.py); its
# plain scheduler does not. Set before jax starts its CPU backend.
if "concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_cpu_enable_concurrency_optimized_scheduler=false").strip()

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import char_lm  # noqa: E402
import digits_mlp  # noqa: E402
import gradxform as gx  # noqa: E402


def _if(name, make):
  return make if hasattr(gx, name) else None


def candidates(steps):
  """name: (factory lr -> optimizer, or None when this gradxform lacks it; log10 range of the rates swept)."""
  warmup = max(1, steps // 20)
  cosine = lambda peak: gx.schedules.warmup_cosine_decay(0.0, peak, warmup, steps)
  return {
      "adamw": (lambda lr: gx.adamw(lr, weight_decay=1e-4), (-3.5, -0.5)),
      "adamw + cosine": (lambda lr: gx.adamw(cosine(lr), weight_decay=1e-4), (-3.5, -0.5)),
      "lion": (_if("lion", lambda lr: gx.lion(lr, weight_decay=1e-4)), (-4.5, -1.5)),
      "adopt": (_if("adopt", lambda lr: gx.adopt(lr)), (-3.5, -0.5)),
      "ademamix": (_if("ademamix", lambda lr: gx.ademamix(lr)), (-4.0, -1.0)),
      "mars": (_if("mars", lambda lr: gx.mars(lr)), (-3.5, -0.5)),
      "cautious adamw": (_if("cautious", lambda lr: gx.cautious(gx.adamw(lr, weight_decay=1e-4))), (-3.5, -0.5)),
      "schedule-free adamw": (_if("schedule_free_adamw", lambda lr: gx.schedule_free_adamw(
          lr, warmup_steps=warmup, weight_decay=1e-4)), (-3.5, -0.5)),
      "prodigy": (_if("prodigy", lambda lr: gx.prodigy(lr)), (-1.0, 1.0)),
      "lamb": (_if("lamb", lambda lr: gx.lamb(lr)), (-3.5, -0.5)),
  }


# ------------------------------------------------------------------ the two tasks

class Task(NamedTuple):
  name: str
  init: Callable[[jax.Array], Any]  # key -> params
  loss: Callable[[Any, Any], jax.Array]  # (params, batch) -> mean loss
  accuracy: Callable[[Any, Any], jax.Array]  # (params, batch) -> share of right predictions
  batches: Callable[[int], Any]  # seed -> a run's batches, leaves of shape (evaluations, steps between, ...)
  val: Any
  test: Any
  steps: int
  axis: tuple  # the curves' x axis: (label, steps per evaluation)
  rates: int  # learning rates swept per optimizer


def digits_task(quick):
  epochs = 3 if quick else 40
  x_all, y_all, x_test, y_test = digits_mlp.load_data()
  n_val = len(y_all) // 5
  x_val, y_val, x, y = x_all[:n_val], y_all[:n_val], x_all[n_val:], y_all[n_val:]
  per_epoch = len(y) // digits_mlp.BATCH_SIZE

  def batches(seed):
    rng = np.random.default_rng(seed)
    order = np.stack([rng.permutation(len(y))[:per_epoch * digits_mlp.BATCH_SIZE] for _ in range(epochs)])
    order = order.reshape(epochs, per_epoch, digits_mlp.BATCH_SIZE)
    return x[order], y[order]

  return Task("digits", digits_mlp.init_params, lambda p, b: digits_mlp.loss_fn(p, *b),
              lambda p, b: digits_mlp.accuracy(p, *b), batches, (x_val, y_val), (x_test, y_test),
              steps=epochs * per_epoch, axis=("epoch", per_epoch), rates=4 if quick else 12)


def lm_task(quick):
  if quick:
    d, layers, heads, context, batch, steps, every, rates = 32, 1, 2, 32, 8, 40, 10, 4
  else:
    d, layers, heads, context, batch, steps, every, rates = 64, 2, 4, 64, 16, 400, 40, 6
  train, held_out, vocab = char_lm.load_text()
  half = len(held_out) // 2
  val = jnp.asarray(char_lm.windows(held_out[:half], np.random.default_rng(1), 128, context))
  test = jnp.asarray(char_lm.windows(held_out[half:], np.random.default_rng(2), 128, context))

  def accuracy(params, batch):
    return jnp.mean(jnp.argmax(char_lm.forward(params, batch[:, :-1], heads), axis=-1) == batch[:, 1:])

  def batches(seed):
    rng = np.random.default_rng(seed)
    windows = np.stack([char_lm.windows(train, rng, batch, context) for _ in range(steps)])
    return jnp.asarray(windows.reshape(steps // every, every, batch, context + 1))

  return Task("lm", lambda key: char_lm.init_params(key, vocab, d, layers, context), char_lm.make_loss(heads),
              accuracy, batches, val, test, steps=steps, axis=("step", every), rates=rates)


# ------------------------------------------------------------------ training, selection, timing

def eval_params(state, params):
  """The parameters to evaluate: schedule-free's averaged sequence where present, else the iterate."""
  if hasattr(gx, "schedule_free_eval_params"):
    is_sf = lambda x: type(x).__name__ == "ScheduleFreeState"
    if any(is_sf(x) for x in jax.tree.leaves(state, is_leaf=is_sf)):
      return gx.schedule_free_eval_params(state, params)
  return params


def make_run(population, loss, shared_batch=True):
  """A jitted run of all steps for a whole population: validation losses per evaluation and final params."""
  train = population.train(loss, shared_batch=shared_batch)
  validate = jax.vmap(loss, in_axes=(0, None))

  @jax.jit
  def run(hyperparams, params, states, batches, val):
    def between_evaluations(carry, batches):
      params, states = carry
      params, states, _ = train(hyperparams, params, states, batches)
      return (params, states), validate(jax.vmap(eval_params)(states, params), val)

    (params, states), losses = jax.lax.scan(between_evaluations, (params, states), batches)
    return jax.vmap(eval_params)(states, params), losses  # losses: (evaluations, members)

  return run


def stack(trees, axis=0):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves, axis=axis), *trees)


def time_per_step(optimizers, params, batch, loss, rounds=7, repeats=20):
  """Median wall time of one jitted training step per optimizer, timed interleaved round by round."""
  runs = {}
  for name, opt in optimizers.items():
    @jax.jit
    def step(params, state, batch, opt=opt):
      updates, state = opt.update(jax.grad(loss)(params, batch), state, params)
      return gx.apply_updates(params, updates), state

    runs[name] = [step, jax.block_until_ready(step(params, opt.init(params), batch))]
  times = {name: [] for name in optimizers}
  for _ in range(rounds):
    for name, run in runs.items():
      step, carry = run
      tic = time.perf_counter()
      for _ in range(repeats):
        carry = step(*carry, batch)
      jax.block_until_ready(carry)
      times[name].append((time.perf_counter() - tic) / repeats)
      run[1] = carry
  return {name: float(np.median(t)) for name, t in times.items()}


def compare(task, optimizers, seeds):
  """Sweeps, then seeds, every optimizer on one task; returns the table's rows and the validation curves."""
  rows, curves, best_optimizers = [], {}, {}
  test = jax.jit(lambda params, batch: (jax.vmap(task.loss, in_axes=(0, None))(params, batch),
                                        jax.vmap(task.accuracy, in_axes=(0, None))(params, batch)))
  for name, (factory, bounds) in optimizers.items():
    tic = time.perf_counter()
    lrs = np.logspace(*bounds, task.rates)
    population = gx.Population(factory, {"lr": lrs})
    params, states = population.init(task.init(jax.random.key(0)))
    _, val = make_run(population, task.loss)(population.hyperparams, params, states, task.batches(0), task.val)
    final_val = np.asarray(val[-1])
    best = int(np.nanargmin(np.where(np.isfinite(final_val), final_val, np.nan)))
    # the best rate, with `seeds` seeds: member s starts from init key s and sees the batches of seed s + 1
    seeded = gx.Population(factory, {"lr": np.full(seeds, lrs[best])})
    params, states = seeded.init(stack([task.init(jax.random.key(s)) for s in range(seeds)]), stacked=True)
    batches = stack([task.batches(s + 1) for s in range(seeds)], axis=2)  # (evaluations, steps, members, ...)
    final_params, val = make_run(seeded, task.loss, shared_batch=False)(
        seeded.hyperparams, params, states, batches, task.val)
    test_losses, accuracy = map(np.asarray, test(final_params, task.test))
    accuracy = float(accuracy.mean())
    best_optimizers[name] = factory(float(lrs[best]))
    curves[name] = np.asarray(val).T  # (seeds, evaluations)
    rows.append([name, lrs[best], test_losses.mean(), test_losses.min(), test_losses.max(), accuracy])
    print(f"{task.name}: {name:<20} best lr {lrs[best]:.3g}  test loss {test_losses.mean():.4f} "
          f"[{test_losses.min():.4f}, {test_losses.max():.4f}]  acc {accuracy:.4f}  "
          f"({time.perf_counter() - tic:.1f} s)", flush=True)
  one_batch = jax.tree.map(lambda b: b[0, 0], task.batches(0))
  per_step = time_per_step(best_optimizers, task.init(jax.random.key(0)), one_batch, task.loss)
  for row in rows:
    row.append(per_step[row[0]])
  return rows, curves


def report(task, rows, curves, seeds, out):
  """Prints and writes the table, and draws the curves and the final test losses."""
  suffix = "" if task.name == "digits" else f"_{task.name}"
  header = "| optimizer | best lr | test loss (mean over seeds) | spread (min – max) | test accuracy | µs per step |"
  lines = [header, "|---|---|---|---|---|---|"]
  ordered = sorted(rows, key=lambda r: r[2])
  for name, lr, mean, lo, hi, acc, per_step in ordered:
    lines.append(f"| {name} | {lr:.3g} | {mean:.4f} | {lo:.4f} – {hi:.4f} | {acc:.4f} | {per_step * 1e6:.0f} |")
  table = "\n".join(lines)
  print(f"\n{task.name}: {seeds} seeds, {task.steps} steps, {task.rates} learning rates per optimizer; step times "
        f"are medians of interleaved rounds in this run\n{table}\n")
  with open(os.path.join(out, f"choose_optimizer{suffix}.md"), "w") as f:
    f.write(table + "\n")

  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
  label, every = task.axis
  for name, c in curves.items():
    x = np.arange(1, c.shape[1] + 1) * (1 if label == "epoch" else every)
    line, = left.plot(x, c.mean(axis=0), label=name)
    left.fill_between(x, c.min(axis=0), c.max(axis=0), color=line.get_color(), alpha=0.2)
  left.set(xlabel=label, ylabel="validation loss", yscale="log",
           title=f"{task.name}: at each optimizer's best learning rate")
  left.legend(fontsize=8)
  means = np.asarray([r[2] for r in ordered])
  err = np.asarray([[r[2] - r[3] for r in ordered], [r[4] - r[2] for r in ordered]])
  right.barh([r[0] for r in ordered], means, xerr=err, color="tab:blue", alpha=0.7)
  right.invert_yaxis()
  right.set(xlabel=f"test loss (mean, min-max over {seeds} seeds)", title=f"{task.name}: final test loss")
  if task.name == "lm":
    right.set_xlim(left=0.9 * (means.min() - err[0].max()))  # the differences, not the distance from 0
  fig.tight_layout()
  path = os.path.join(out, f"choose_optimizer{suffix}.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  print(f"figure written to {path}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="4 rates, 2 seeds; 4 optimizers for 3 epochs, 2 for 40 steps of a tiny LM (smoke test)")
  parser.add_argument("--task", choices=("digits", "lm", "both"), default="both")
  parser.add_argument("--out", default="out", help="directory for the figures and tables (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  seeds = 2 if args.quick else 3
  tasks = [make(args.quick) for name, make in (("digits", digits_task), ("lm", lm_task))
           if args.task in (name, "both")]
  for task in tasks:
    optimizers = {k: v for k, v in candidates(task.steps).items() if v[0] is not None}
    if args.quick:  # digits: the first four; the LM: schedule-free AdamW against AdamW with a cosine
      keep = list(optimizers)[:4] if task.name == "digits" else ["adamw + cosine", "schedule-free adamw"]
      optimizers = {k: v for k, v in optimizers.items() if k in keep}
    rows, curves = compare(task, optimizers, seeds)
    report(task, rows, curves, seeds, args.out)


if __name__ == "__main__":
  main()
