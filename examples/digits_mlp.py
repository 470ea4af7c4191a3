"""Comparing optimizers on a small MLP: scikit-learn's 8×8 handwritten digits.

A 64 → 64 → 10 tanh network, written with plain ``jax.numpy`` (the parameters
are a dict of arrays), is trained with mini-batches on the 1,797 digits bundled
with scikit-learn (no download): 1,400 for training and 397 for testing, split
by a fixed permutation, features standardized with the training statistics.
Every optimizer starts from the same initial weights and sees the same batches.

All epochs of one run are a single jitted function, ``train(opt, params, ...)``,
that takes the optimizer as an argument and returns the parameters after each
epoch (a second jitted function, compiled once, evaluates them). A gradxform
optimizer is a pytree whose numbers (learning rate, betas, ...) are leaves, so
only a different kind of optimizer compiles again: the learning-rate sweep for
Adam at the end re-uses Adam's compiled code. The table shows the compile and
run times separately.

Writes ``digits_loss.png`` (training loss per epoch) and
``digits_accuracy.png`` (test accuracy per epoch) to ``--out`` and prints the
final training loss, test accuracy and times of each optimizer.

Usage: python examples/digits_mlp.py [--quick] [--out DIR]
"""

import argparse
import functools
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import gradxform as gx  # noqa: E402

# The learning rates are common defaults, not tuned. Momentum 0.9 makes SGD's
# steps up to 10× longer, so "momentum" takes half of "sgd"'s rate (and is
# still faster). AdamW's weight decay is 10× torch's default so that its
# (decoupled) effect is visible next to Adam's curve.
OPTIMIZERS = {
    "sgd": gx.sgd(0.1),
    "momentum": gx.sgd(0.05, momentum=0.9),
    "adam": gx.adam(1e-3),
    "adamw": gx.adamw(1e-3, weight_decay=0.1),
    "rmsprop": gx.rmsprop(1e-3),
    "adagrad": gx.adagrad(0.05),
    "lion": gx.lion(1e-4),
}
BATCH_SIZE = 50  # 28 steps per epoch


def load_data():
  digits = load_digits()
  order = np.random.default_rng(0).permutation(len(digits.target))
  x, y = digits.data[order].astype(np.float32), digits.target[order].astype(np.int32)
  x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
  mean, std = x_train.mean(0), x_train.std(0)
  std[std == 0] = 1.0  # some corner pixels are always blank
  return tuple(jnp.asarray(a) for a in ((x_train - mean) / std, y_train, (x_test - mean) / std, y_test))


def init_params(key, sizes=(64, 64, 10)):
  params = {}
  for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    key, sub = jax.random.split(key)
    params[f"w{i}"] = jax.random.normal(sub, (fan_in, fan_out), jnp.float32) * fan_in**-0.5
    params[f"b{i}"] = jnp.zeros(fan_out, jnp.float32)
  return params


def predict(params, x):
  h = jnp.tanh(x @ params["w0"] + params["b0"])
  return h @ params["w1"] + params["b1"]  # logits


def loss_fn(params, x, y):
  log_probs = jax.nn.log_softmax(predict(params, x))
  return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))


def accuracy(params, x, y):
  return jnp.mean(jnp.argmax(predict(params, x), axis=1) == y)


@jax.jit
def train(opt, params, x, y, batches):
  """Runs ``opt`` over ``batches`` (epochs × steps × example indices); returns the params after each epoch."""

  def step(carry, batch):
    params, state = carry
    grads = jax.grad(loss_fn)(params, x[batch], y[batch])
    updates, state = opt.update(grads, state, params)
    return (gx.apply_updates(params, updates), state), None

  def epoch(carry, epoch_batches):
    carry, _ = jax.lax.scan(step, carry, epoch_batches)
    return carry, carry[0]

  _, params_per_epoch = jax.lax.scan(epoch, (params, opt.init(params)), batches)
  return params_per_epoch


@jax.jit
@functools.partial(jax.vmap, in_axes=(0, None))
def evaluate(params, data):
  """Training loss and test accuracy of each of a stack of params (compiled once for all optimizers)."""
  x_train, y_train, x_test, y_test = data
  return loss_fn(params, x_train, y_train), accuracy(params, x_test, y_test)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="a few epochs only (smoke test)")
  parser.add_argument("--out", default="out", help="directory for the figures (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  epochs = 10 if args.quick else 100

  data = load_data()
  params = init_params(jax.random.key(0))  # the same start for every optimizer
  rng = np.random.default_rng(1)  # the same mini-batches for every optimizer
  num_train, steps = len(data[1]), len(data[1]) // BATCH_SIZE
  batches = np.stack([rng.permutation(num_train)[:steps * BATCH_SIZE] for _ in range(epochs)])
  batches = jnp.asarray(batches.reshape(epochs, steps, BATCH_SIZE), jnp.int32)

  history = {}
  print(f"{'optimizer':<10} {'train loss':>10} {'test acc':>8} {'compile s':>9} {'run s':>6}")
  for name, opt in OPTIMIZERS.items():
    tic = time.perf_counter()
    compiled = train.lower(opt, params, data[0], data[1], batches).compile()
    compile_time = time.perf_counter() - tic
    tic = time.perf_counter()
    params_per_epoch = jax.block_until_ready(compiled(opt, params, data[0], data[1], batches))
    run_time = time.perf_counter() - tic
    train_loss, test_acc = history[name] = jax.tree.map(np.asarray, evaluate(params_per_epoch, data))
    print(f"{name:<10} {train_loss[-1]:>10.2e} {test_acc[-1]:>8.4f} {compile_time:>9.2f} {run_time:>6.2f}")

  print("learning-rate sweep for adam (the learning rate is a pytree leaf: same compiled train()):")
  for lr in (3e-4, 3e-3):
    tic = time.perf_counter()
    train_loss, test_acc = np.asarray(evaluate(train(gx.adam(lr), params, data[0], data[1], batches), data))
    print(f"  lr={lr:g}: train loss {train_loss[-1]:.2e}, test acc {test_acc[-1]:.4f}, "
          f"{time.perf_counter() - tic:.2f} s with no new compilation")

  for metric, ylabel, filename in ((0, "training loss (full training set)", "digits_loss.png"),
                                   (1, "test accuracy", "digits_accuracy.png")):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curves in history.items():
      ax.plot(np.arange(1, epochs + 1), curves[metric], label=name, lw=1.5)
    if metric == 0:
      ax.set_yscale("log")
    else:
      ax.set_ylim(0.8, 1.0)
    ax.set_xlabel(f"epoch ({steps} steps of {BATCH_SIZE} examples)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"MLP 64-64-10 on sklearn digits: {ylabel}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, filename), dpi=120)
    plt.close(fig)
  print(f"figures written to {args.out}/")


if __name__ == "__main__":
  start_time = time.perf_counter()
  main()
  print(f"done in {time.perf_counter() - start_time:.1f} s")
