"""A training dashboard: clipping, AdamW, reduce-on-plateau and SWA on the digits MLP, logged with gx.diagnostics.

The 64 → 64 → 10 tanh network of ``digits_mlp.py`` is trained on scikit-learn's bundled digits (1,400 for
training, 397 for validation) with one optimizer built from parts::

    gx.swa(gx.monitor(gx.chain(gx.clip_by_global_norm(0.3), gx.adamw(3e-3, weight_decay=1e-2),
                               gx.reduce_on_plateau(factor=0.5, patience=2 epochs, cooldown=1 epoch))),
           start_step=(first SWA epoch's last step), update_every=steps per epoch)

``reduce_on_plateau`` takes one decision per ``update`` (one ``scheduler.step(value)`` of torch), so the
validation loss is fed at *every step*: the validation set is one 397 × 64 matmul, cheap next to the
gradient, and a per-step value lets the plateau react within an epoch; its ``patience`` and ``cooldown``
are therefore given in steps (whole epochs of them). SWA averages the parameters at the end of each of the
last epochs (torch's ``swa_model.update_parameters`` once per epoch).

The whole run is one jitted ``lax.scan``; at every step it returns ``gx.diagnostics(state)`` (gradient norm
before and after clipping, clipped fraction, update and parameter norms, the plateau's scale, the number
of averaged parameter sets; a scheduled or injected hyperparameter too, none here: the constants are the
optimizer's, e.g. ``LEARNING_RATE``) with the minibatch loss, the validation loss of the
current parameters and of the SWA average. They are written to ``training_dashboard.csv`` (one row per
step) and drawn in ``training_dashboard.png``; a short table per epoch is printed.

Usage: python examples/training_dashboard.py [--quick] [--out DIR]
"""

import argparse
import csv
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import gradxform as gx  # noqa: E402

from digits_mlp import BATCH_SIZE, accuracy, init_params, load_data, loss_fn  # noqa: E402  (the same MLP and data)

MAX_NORM = 0.3  # clips the first few epochs' steps
LEARNING_RATE = 3e-3


def make_optimizer(steps_per_epoch, swa_start_epoch):
  core = gx.chain(gx.clip_by_global_norm(MAX_NORM), gx.adamw(LEARNING_RATE, weight_decay=1e-2),
                  gx.reduce_on_plateau(factor=0.5, patience=2 * steps_per_epoch, cooldown=steps_per_epoch))
  # Average once per epoch, after its last step, from swa_start_epoch on.
  return gx.swa(gx.monitor(core), start_step=(swa_start_epoch + 1) * steps_per_epoch - 1,
                update_every=steps_per_epoch)


@jax.jit
def train(opt, params, data, batches):
  """All epochs in one scan; returns the final state and a dict of per-step scalars (each ``(steps,)``)."""
  x_train, y_train, x_val, y_val = data

  def step(carry, batch):
    params, state = carry
    train_loss, grads = jax.value_and_grad(loss_fn)(params, x_train[batch], y_train[batch])
    val_loss = loss_fn(params, x_val, y_val)  # the plateau's monitored value, before this update
    updates, state = opt.update(grads, state, params, value=val_loss)
    params = gx.apply_updates(params, updates)
    swa_val = jnp.where(gx.diagnostics(state)["n_averaged"] > 0, loss_fn(gx.swa_params(state), x_val, y_val),
                        jnp.nan)
    logged = {"train_loss": train_loss, "val_loss": val_loss, "swa_val_loss": swa_val, **gx.diagnostics(state)}
    return (params, state), logged

  (params, state), logged = jax.lax.scan(step, (params, opt.init(params)), batches)
  return params, state, logged


def short(name):
  """A column name without the state path: ``inner_state/inner_state/0/grad_norm_before_clip`` → the last part
  (a scheduled hyperparameter keeps its stage: ``hyperparams/.../1/learning_rate`` → ``learning_rate``)."""
  return name.rsplit("/", 1)[-1]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="a few epochs only (smoke test)")
  parser.add_argument("--out", default="out", help="directory for the CSV and the figure (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  epochs = 30 if args.quick else 60  # the first reduction comes after about 20 epochs
  swa_start = epochs * 3 // 4

  data = load_data()
  steps = len(data[1]) // BATCH_SIZE
  rng = np.random.default_rng(1)
  batches = np.stack([rng.permutation(len(data[1]))[:steps * BATCH_SIZE] for _ in range(epochs)])
  batches = jnp.asarray(batches.reshape(epochs * steps, BATCH_SIZE), jnp.int32)
  opt = make_optimizer(steps, swa_start)

  tic = time.perf_counter()
  params, state, logged = jax.block_until_ready(train(opt, init_params(jax.random.key(0)), data, batches))
  print(f"trained {epochs} epochs x {steps} steps in {time.perf_counter() - tic:.1f} s (compile included)")
  logged = {name: np.asarray(value, np.float64) for name, value in logged.items()}

  # The CSV: one row per step, every logged scalar, keyed by its short name where that is unique.
  names = list(logged)
  shorts = [short(n) for n in names]
  columns = [s if shorts.count(s) == 1 else n for s, n in zip(shorts, names)]
  path_csv = os.path.join(args.out, "training_dashboard.csv")
  with open(path_csv, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["step", "epoch"] + columns)
    for t in range(epochs * steps):
      writer.writerow([t, t // steps] + [f"{logged[n][t]:.6g}" for n in names])
  col = {c: logged[n] for c, n in zip(columns, names)}

  # A short table: the epoch-end values.
  print(f"{'epoch':>5} {'train':>8} {'val':>8} {'swa val':>8} {'|g| pre':>8} {'|g| post':>8} {'lr scale':>8} "
        f"{'clipped':>7}")
  for e in sorted(set(np.linspace(0, epochs - 1, 7).astype(int))):
    rows = slice(e * steps, (e + 1) * steps)
    last = (e + 1) * steps - 1
    print(f"{e + 1:>5} {col['train_loss'][rows].mean():>8.4f} {col['val_loss'][last]:>8.4f} "
          f"{col['swa_val_loss'][last]:>8.4f} {col['grad_norm_before_clip'][rows].mean():>8.3f} "
          f"{col['grad_norm_after_clip'][rows].mean():>8.3f} {col['plateau_scale'][last]:>8.4f} "
          f"{col['clipped_fraction'][last]:>7.3f}")
  x_train, y_train, x_val, y_val = data
  swa_model = gx.swa_params(state)
  print(f"final model: val loss {float(loss_fn(params, x_val, y_val)):.4f}, "
        f"val accuracy {float(accuracy(params, x_val, y_val)):.4f}")
  print(f"SWA model ({int(col['n_averaged'][-1])} epochs averaged): val loss "
        f"{float(loss_fn(swa_model, x_val, y_val)):.4f}, val accuracy {float(accuracy(swa_model, x_val, y_val)):.4f}")
  print(f"learning-rate scale reductions: {int(np.sum(np.diff(col['plateau_scale']) < 0))}")

  # The dashboard.
  t = np.arange(epochs * steps) / steps  # in epochs
  fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
  ax = axes[0, 0]
  ax.plot(t, col["train_loss"], lw=0.5, alpha=0.5, label="train (minibatch)")
  ax.plot(t, col["val_loss"], lw=1.2, label="validation")
  ax.plot(t, col["swa_val_loss"], lw=1.5, label="validation, SWA average")
  ax.axvline(swa_start + 1, color="gray", ls=":", lw=1)
  ax.set_yscale("log")
  ax.set_ylabel("loss")
  ax.set_title("loss")
  ax = axes[0, 1]
  ax.plot(t, col["grad_norm_before_clip"], lw=0.6, label="before clipping")
  ax.plot(t, col["grad_norm_after_clip"], lw=0.6, label="after clipping")
  ax.axhline(MAX_NORM, color="gray", ls=":", lw=1, label="max_norm")
  ax.set_yscale("log")
  ax.set_title("gradient norm")
  ax = axes[1, 0]
  ax.plot(t, col["plateau_scale"] * LEARNING_RATE, lw=1.5, label="learning rate × plateau scale")
  ax.set_yscale("log")
  ax.set_title("learning rate (reduce_on_plateau)")
  ax = axes[1, 1]
  ax.plot(t, col["clipped_fraction"], lw=1.5, label="fraction of steps clipped so far")
  ax.set_ylim(0, 1)
  ax.set_title("clipped fraction")
  for ax in axes.flat:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  for ax in axes[1]:
    ax.set_xlabel(f"epoch ({steps} steps of {BATCH_SIZE})")
  fig.suptitle("digits MLP: clip_by_global_norm → adamw → reduce_on_plateau, SWA over the last epochs")
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "training_dashboard.png"), dpi=110)
  plt.close(fig)
  print(f"wrote {path_csv} and {os.path.join(args.out, 'training_dashboard.png')}")


if __name__ == "__main__":
  start_time = time.perf_counter()
  main()
  print(f"done in {time.perf_counter() - start_time:.1f} s")
