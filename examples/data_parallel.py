"""Data-parallel training of the digits MLP on a device mesh, with and without ZeRO-1.

The MLP and data of ``examples/digits_mlp.py`` (64 → 64 → 10 tanh, scikit-learn
digits) are trained with AdamW on a 1-D mesh of all devices, axis ``"data"``.
Without accelerators the script asks XLA for 8 simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``, set before jax is
imported unless ``XLA_FLAGS`` already names a device count), so it runs on a
laptop; on a machine with GPUs or TPUs the mesh is made of those.

Three runs see the same batches from the same start:

* ``one device``: the reference;
* ``data parallel``: parameters and optimizer state replicated on every
  device, each mini-batch split over ``"data"``; ``jax.jit`` inserts the
  all-reduce of the gradients;
* ``ZeRO-1``: as above, but the optimizer state is split over ``"data"``
  (``gx.state_shardings(opt, params, mesh, zero_axis="data")``): each device
  stores and updates 1/8 of Adam's moments, and the step's ``out_shardings``
  all-gather the updated parameters.

gradxform does nothing special here: the state is a tree of arrays, and the
shardings given to ``jax.jit`` (or carried by the arrays) place it. The script
prints the shardings of the parameters and of the state, the per-device
memory of the state, the final losses, and the largest difference from the
one-device run (float32 rounding: the gradient sum is split over devices).
Simulated CPU devices share the same cores, so the multi-device runs are not
faster here; the point is the placement, which carries over to real devices.

Writes ``data_parallel_loss.png`` (training loss per epoch, the three runs) to
``--out``. The section "Multiple devices and hosts" of the README
(``docs/multi_device.md``) explains the multi-host case.

Usage: python examples/data_parallel.py [--quick] [--out DIR]
"""

import os

if "device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import time  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import gradxform as gx  # noqa: E402
from digits_mlp import init_params, load_data, loss_fn  # noqa: E402  (the same MLP and data)

BATCH_SIZE = 56  # 25 steps per epoch over 1,400 examples; 7 per device on 8 devices


def make_train_epoch(opt, param_shardings=None):
  """One epoch: a scan of steps over ``(steps, batch, ...)`` arrays.

  With ZeRO-1 the update of a replicated parameter is computed from split
  moments, so ``p + u`` comes out split; ``reshard`` back to the parameters'
  sharding is the all-gather of ZeRO-1. (The mesh has Explicit axes, as
  ``jax.make_mesh`` makes by default; with an Auto-axes ``Mesh`` use
  ``jax.lax.with_sharding_constraint``.)
  """

  def train_epoch(params, state, xs, ys):
    def step(carry, batch):
      params, state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
      updates, state = opt.update(grads, state, params)
      params = gx.apply_updates(params, updates)
      if param_shardings is not None:
        params = jax.sharding.reshard(params, param_shardings)
      return (params, state), loss

    (params, state), losses = jax.lax.scan(step, (params, state), (xs, ys))
    return params, state, jnp.mean(losses)

  return train_epoch


def describe(tree, title):
  print(title)
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    sharding = leaf.sharding
    spec = sharding.spec if isinstance(sharding, NamedSharding) else sharding
    block = sharding.shard_shape(leaf.shape)
    print(f"  {jax.tree_util.keystr(path):<42} {str(leaf.shape):<10} {str(spec):<14} per device {block}")


def state_bytes_per_device(state):
  """Bytes of state held on the first device."""
  device = jax.devices()[0]
  return sum(shard.data.nbytes for leaf in jax.tree.leaves(state)
             for shard in leaf.addressable_shards if shard.device == device)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="3 epochs only (smoke test)")
  parser.add_argument("--out", default="out", help="directory for the figure (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  epochs = 3 if args.quick else 30

  devices = jax.devices()
  mesh = jax.make_mesh((len(devices),), ("data",))
  print(f"{len(devices)} devices ({devices[0].platform}); mesh {dict(mesh.shape)}, axis types {mesh.axis_types}")
  if BATCH_SIZE % len(devices):
    raise SystemExit(f"the batch of {BATCH_SIZE} does not split over {len(devices)} devices")

  x_train, y_train, _, _ = (np.asarray(a) for a in load_data())
  steps = len(y_train) // BATCH_SIZE
  rng = np.random.default_rng(1)
  order = np.stack([rng.permutation(len(y_train))[:steps * BATCH_SIZE] for _ in range(epochs)])
  order = order.reshape(epochs, steps, BATCH_SIZE)

  opt = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(3e-3, weight_decay=1e-2))
  params0 = jax.tree.map(np.asarray, init_params(jax.random.key(0)))

  replicated = NamedSharding(mesh, P())
  batch_split = NamedSharding(mesh, P(None, "data"))  # (steps, batch, ...): the batch axis over "data"
  runs = {}
  for name in ("one device", "data parallel", "ZeRO-1"):
    if name == "one device":
      device = jax.devices()[0]
      params = jax.device_put(params0, device)
      state = opt.init(params)
      step = jax.jit(make_train_epoch(opt), donate_argnums=(0, 1))
      place = lambda a: jax.device_put(a, device)
    else:
      params = jax.device_put(params0, replicated)
      param_shardings = jax.tree.map(lambda p: p.sharding, params)
      state_shardings = gx.state_shardings(opt, params, mesh, zero_axis="data" if name == "ZeRO-1" else None)
      state = jax.jit(opt.init, out_shardings=state_shardings)(params)  # allocated in place, never gathered
      step = jax.jit(make_train_epoch(opt, param_shardings), donate_argnums=(0, 1),
                     out_shardings=(param_shardings, state_shardings, replicated))
      place = lambda a: jax.device_put(a, batch_split)
    losses = []
    tic = time.perf_counter()
    for e in range(epochs):
      params, state, loss = step(params, state, place(x_train[order[e]]), place(y_train[order[e]]))
      losses.append(float(loss))
    elapsed = time.perf_counter() - tic
    runs[name] = (params, state, np.array(losses), elapsed)
    if name == "ZeRO-1":
      describe(params, "parameters (replicated):")
      describe(state, "optimizer state (ZeRO-1: Adam's moments split over 'data'; "
                      "counts and hyperparameters replicated):")

  reference = runs["one device"][0]
  print(f"\n{'run':<14} {'final loss':>10} {'state KiB/device':>16} {'max |Δparams| vs 1 device':>26} "
        f"{'s (incl. compile)':>17}")
  for name, (params, state, losses, elapsed) in runs.items():
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference)))
    kib = state_bytes_per_device(state) / 1024
    print(f"{name:<14} {losses[-1]:>10.4f} {kib:>16.1f} {diff:>26.2e} {elapsed:>17.2f}")

  fig, ax = plt.subplots(figsize=(6.5, 4))
  for (name, (_, _, losses, _)), style in zip(runs.items(), ("-", "--", ":")):
    ax.plot(np.arange(1, epochs + 1), losses, style, lw=2, label=name)
  ax.set_yscale("log")
  ax.set_xlabel(f"epoch ({steps} steps of {BATCH_SIZE} examples)")
  ax.set_ylabel("mean training loss over the epoch")
  ax.set_title(f"digits MLP, AdamW, {len(devices)} devices: the three runs coincide")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "data_parallel_loss.png"), dpi=120)
  plt.close(fig)
  print(f"figure written to {args.out}/")


if __name__ == "__main__":
  start_time = time.perf_counter()
  main()
  print(f"done in {time.perf_counter() - start_time:.1f} s")
