"""Learning the learning rate and the momentum by gradient descent on them (hypergradients).

The MLP and data of ``examples/digits_mlp.py`` are trained with
``gx.sgd(learning_rate, momentum)``. A gradxform optimizer is a pytree whose
hyperparameters are leaves, so ``jax.grad`` differentiates *through* the
training steps with respect to them. Each meta-iteration:

1. unrolls ``K`` training steps from the current parameters and optimizer
   state, with ``η = exp(a)`` and ``μ = sigmoid(b)``;
2. computes the loss on a held-out validation set after those steps, and its
   gradient with respect to ``(a, b)`` (reverse-mode through the ``K`` steps:
   the hypergradient; the log / logit parametrization keeps ``η > 0`` and
   ``0 < μ < 1`` and makes the steps relative);
3. updates ``(a, b)`` with Adam (a gradxform optimizer on the
   hyperparameters), and keeps the parameters and state reached in 1.

So training continues from meta-iteration to meta-iteration (online, with
truncated unrolls: Baydin et al. 2018, https://arxiv.org/abs/1703.04782, and
Maclaurin et al. 2015, https://arxiv.org/abs/1502.03492, for the idea of
differentiating through training). A short horizon ``K`` is greedy: it favours
what lowers the validation loss within ``K`` steps, so it is a tuning signal,
not the optimum of the whole run.

The meta-step is one jitted function, compiled once: the new learning rate
and momentum are arguments. The run starts from a deliberately poor setting
(``η = 0.003``, ``μ = 0.5``), and a baseline trains as many steps with that
setting fixed. The script prints the learning rate, momentum, hypergradients
and validation loss along the way, and writes ``hypergradient.png`` (η, μ and
the validation loss against meta-iterations) to ``--out``.

Usage: python examples/hypergradient.py [--quick] [--out DIR]
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

UNROLL = 10  # K: training steps differentiated through per meta-iteration
VALIDATION = 300  # the last 300 of the 1,400 training digits; the other 1,100 are trained on
META_LR = 0.05  # Adam on (log η, logit μ)
START = {"learning_rate": 0.003, "momentum": 0.5}


META_OPT = gx.adam(META_LR)


def start_theta():
  """``(log η, logit μ)`` of the starting setting."""
  lr, mu = START["learning_rate"], START["momentum"]
  return jnp.array([np.log(lr), np.log(mu / (1 - mu))], jnp.float32)


def to_hyperparams(theta):
  """``(η, μ) = (exp a, sigmoid b)``."""
  return jnp.exp(theta[0]), jax.nn.sigmoid(theta[1])


def unroll(theta, params, state, x, y, batches):
  """``K`` SGD steps with the hyperparameters ``theta``; returns the final params and state."""
  learning_rate, momentum = to_hyperparams(theta)
  opt = gx.sgd(learning_rate, momentum=momentum)

  def step(carry, indices):
    params, state = carry
    grads = jax.grad(loss_fn)(params, x[indices], y[indices])
    updates, state = opt.update(grads, state, params)
    return (gx.apply_updates(params, updates), state), None

  (params, state), _ = jax.lax.scan(step, (params, state), batches)
  return params, state


def validation_loss(theta, params, state, data, batches):
  x, y, x_val, y_val = data
  params, state = unroll(theta, params, state, x, y, batches)
  return loss_fn(params, x_val, y_val), (params, state)


@jax.jit
def meta_step(theta, meta_state, params, state, data, batches):
  """One meta-iteration: unroll, differentiate the validation loss, update (log η, logit μ)."""
  (val_loss, (params, state)), hypergrad = jax.value_and_grad(validation_loss, has_aux=True)(
      theta, params, state, data, batches)
  updates, meta_state = META_OPT.update(hypergrad, meta_state, theta)
  return gx.apply_updates(theta, updates), meta_state, params, state, val_loss, hypergrad


@jax.jit
def fixed_run(theta, params, data, batches):
  """The baseline: the same steps with the starting hyperparameters, never changed."""
  x, y, x_val, y_val = data
  learning_rate, momentum = to_hyperparams(theta)
  state = gx.sgd(learning_rate, momentum=momentum).init(params)
  params, _ = unroll(theta, params, state, x, y, batches.reshape(-1, batches.shape[-1]))
  return params


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="15 meta-iterations (smoke test)")
  parser.add_argument("--out", default="out", help="directory for the figure (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  meta_iterations = 15 if args.quick else 150

  x_all, y_all, x_test, y_test = load_data()
  data = (x_all[:-VALIDATION], y_all[:-VALIDATION], x_all[-VALIDATION:], y_all[-VALIDATION:])
  num_train = len(data[1])
  rng = np.random.default_rng(1)
  per_epoch = num_train // BATCH_SIZE
  epochs = -(-meta_iterations * UNROLL // per_epoch)
  order = np.concatenate([rng.permutation(num_train)[:per_epoch * BATCH_SIZE] for _ in range(epochs)])
  batches = jnp.asarray(order[:meta_iterations * UNROLL * BATCH_SIZE].reshape(meta_iterations, UNROLL, BATCH_SIZE),
                        jnp.int32)

  theta = start_theta()
  params = init_params(jax.random.key(0))
  state = gx.sgd(*to_hyperparams(theta)).init(params)  # sgd(lr, momentum): a trace buffer and a step count
  meta_state = META_OPT.init(theta)

  print(f"{UNROLL} steps per meta-iteration, {meta_iterations} meta-iterations ({meta_iterations * UNROLL} "
        f"steps of {BATCH_SIZE}; {num_train} training and {VALIDATION} validation digits)")
  print(f"{'iter':>5} {'lr':>9} {'momentum':>9} {'val loss':>9} {'dL/dlog lr':>11} {'dL/dlogit mu':>12}")
  history = []
  tic = time.perf_counter()
  for k in range(meta_iterations):
    learning_rate, momentum = (float(v) for v in to_hyperparams(theta))
    theta, meta_state, params, state, val_loss, hypergrad = meta_step(
        theta, meta_state, params, state, data, batches[k])
    history.append((learning_rate, momentum, float(val_loss)))
    if k % max(1, meta_iterations // 15) == 0 or k == meta_iterations - 1:
      print(f"{k:>5} {learning_rate:>9.4f} {momentum:>9.4f} {float(val_loss):>9.4f} "
            f"{float(hypergrad[0]):>11.2e} {float(hypergrad[1]):>12.2e}")
  elapsed = time.perf_counter() - tic
  print(f"meta-training: {elapsed:.2f} s including one compilation ({meta_step._cache_size()} compiled "
        "meta-step for all hyperparameter values)")

  learning_rate, momentum = (float(v) for v in to_hyperparams(theta))
  baseline = fixed_run(start_theta(), init_params(jax.random.key(0)), data, batches)
  x_val, y_val = data[2], data[3]
  print(f"\nlearned: lr = {learning_rate:.4f}, momentum = {momentum:.4f} "
        f"(from lr = {START['learning_rate']}, momentum = {START['momentum']})")
  print(f"{'after ' + str(meta_iterations * UNROLL) + ' steps':<26} {'val loss':>9} {'test acc':>9}")
  for name, p in (("tuned by hypergradients", params), ("fixed at the start values", baseline)):
    print(f"{name:<26} {float(loss_fn(p, x_val, y_val)):>9.4f} {float(accuracy(p, x_test, y_test)):>9.4f}")

  lrs, mus, losses = np.array(history).T
  iterations = np.arange(meta_iterations)
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
  axes[0].plot(iterations, lrs, color="C0")
  axes[0].set_yscale("log")
  axes[0].set_ylabel("learning rate η")
  axes[1].plot(iterations, mus, color="C1")
  axes[1].set_ylabel("momentum μ")
  axes[2].plot(iterations, losses, color="C2")
  axes[2].set_yscale("log")
  axes[2].set_ylabel(f"validation loss after the {UNROLL} steps")
  for ax in axes:
    ax.set_xlabel(f"meta-iteration ({UNROLL} SGD steps each)")
    ax.grid(alpha=0.3, which="both")
  fig.suptitle("hypergradient descent on the learning rate and momentum of SGD (digits MLP)")
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "hypergradient.png"), dpi=120)
  plt.close(fig)
  print(f"figure written to {args.out}/hypergradient.png")


if __name__ == "__main__":
  start_time = time.perf_counter()
  main()
  print(f"done in {time.perf_counter() - start_time:.1f} s")
