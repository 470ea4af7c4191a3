"""Parameter groups and checkpoints: the digits MLP with per-group learning rates, resumed halfway.

The MLP of ``digits_mlp.py`` is trained with torch-style parameter groups,
chosen by regular expressions on the parameter paths:

* ``w0`` (hidden layer): AdamW, learning rate 3e-3, weight decay 0.05;
* ``w1`` (output layer): AdamW with a 3× smaller learning rate;
* every bias: Adam without weight decay.

Halfway, parameters and optimizer state are saved with orbax. The run is then
resumed the way a new process would do it: the state is restored into the
*abstract* state (``jax.eval_shape(opt.init, params)``, nothing allocated),
training continues, and the result is compared with an uninterrupted run: it
is bit-identical.

Usage: python examples/finetune_groups.py [--quick] [--out DIR]
"""

import argparse
import os
import tempfile
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

import gradxform as gx
from digits_mlp import accuracy, init_params, load_data, loss_fn

BATCH_SIZE = 50


def make_optimizer():
  return gx.chain(
      clip=gx.clip_by_global_norm(1.0),
      groups=gx.partition(
          {"hidden": gx.adamw(3e-3, weight_decay=0.05),
           "head": gx.adamw(1e-3, weight_decay=0.05),
           "bias": gx.adam(3e-3)},
          [(r"^b\d$", "bias"), (r"^w0$", "hidden"), (r"^w1$", "head")]),
  )


def make_train(opt, data):
  x, y = data[0], data[1]

  @jax.jit
  def train(params, state, batches):
    def step(carry, batch):
      params, state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, x[batch], y[batch])
      updates, state = opt.update(grads, state, params)
      return (gx.apply_updates(params, updates), state), loss
    (params, state), losses = jax.lax.scan(step, (params, state), batches)
    return params, state, losses

  return train


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer steps (smoke test)")
  parser.add_argument("--out", default="out", help="directory for the checkpoint (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  steps = 200 if args.quick else 1400

  data = load_data()
  rng = np.random.default_rng(0)
  batches = jax.numpy.asarray(rng.integers(0, len(data[1]), size=(steps, BATCH_SIZE)), jax.numpy.int32)
  opt = make_optimizer()
  train = make_train(opt, data)
  params = init_params(jax.random.key(0))
  tic = time.perf_counter()

  # the uninterrupted run
  expected, _, losses = train(params, opt.init(params), batches)

  # the first half, then a checkpoint
  half = steps // 2
  halfway, state, _ = train(params, opt.init(params), batches[:half])
  checkpoint_dir = tempfile.mkdtemp(dir=os.path.abspath(args.out))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(checkpoint_dir, "step"), {"params": halfway, "opt_state": state})
  checkpointer.wait_until_finished()

  # resume from the abstract state, as a new process would
  abstract = {"params": jax.eval_shape(lambda: params), "opt_state": jax.eval_shape(opt.init, params)}
  restored = checkpointer.restore(os.path.join(checkpoint_dir, "step"), abstract)
  resumed, final_state, _ = train(restored["params"], restored["opt_state"], batches[half:])

  print("parameter groups (learning rate, weight decay) as recorded in the state:")
  for path, value in sorted(gx.hyperparams(final_state).items()):
    if path.endswith(("learning_rate", "weight_decay")):
      print(f"  {path:<45} {float(value):g}")
  bias_nu = gx.tree_get(final_state, "groups/inner_states/bias/inner_state/0/nu")
  print("the bias group keeps state only for biases:",
        {name: None if leaf is None else leaf.shape for name, leaf in bias_nu.items()})
  diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
           for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(expected))]
  same = all(d == 0.0 for d in diffs)
  print(f"train loss: first batch {float(losses[0]):.3f}, last batch {float(losses[-1]):.4f}; "
        f"test accuracy {float(accuracy(resumed, data[2], data[3])):.4f}")
  print(f"resumed run matches the uninterrupted run bit for bit: {same} (max |diff| = {max(diffs):g})")
  print(f"done in {time.perf_counter() - tic:.1f} s")
  if not same:
    raise SystemExit("resumed run differs from the uninterrupted run")


if __name__ == "__main__":
  main()
