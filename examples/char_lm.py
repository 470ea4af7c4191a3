"""A character-level transformer LM trained with AdamW, Muon, Adafactor, Shampoo and SOAP at tuned rates.

Nothing is downloaded.

The text is the source code of Python's own ``argparse`` module (``inspect.getsource``), 90 % for training
and the last 10 % for validation. The model is a small GPT in plain JAX (pre-RMSNorm, causal attention,
GELU MLP, learned positions); its parameters are named as in Flax (``embed/...``, ``layer0/attn/qkv/kernel``
in the ``(fan_in, fan_out)`` layout, ``lm_head/kernel``), so ``gx.muon`` sends the 2-D kernels of the
layers to Muon and the embeddings, output head, norm scales and biases to AdamW.

1. Sweep: for each optimizer in ``OPTIMIZERS``, a ``gx.Population`` trains one member per learning rate in a
   single compiled program (same start, same batches) and the validation loss of every member is measured
   every ``--eval-every`` steps. AdamW is swept first; Muon's AdamW part uses the best AdamW rate.
2. Timing: the best learning rate of each optimizer is trained again alone (one jitted chunk of steps per
   call, compiled ahead of time), to plot validation loss against wall time.

Writes ``char_lm.png`` (validation loss against steps and against wall time) and prints a table.

Usage: python examples/char_lm.py [--quick] [--out DIR] [--steps N]
"""

import argparse
import inspect
import os
import time

# XLA's CPU scheduler can deadlock a vmapped SOAP/Shampoo population (all threads idle, the program never
# returns; jax 0.10, seen on 2 cores); its plain scheduler does not. Set before jax starts its CPU backend.
if "concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_cpu_enable_concurrency_optimized_scheduler=false").strip()

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import gradxform as gx  # noqa: E402

# name: (factory(lr, tuned) -> optimizer, learning rates swept). `tuned` holds the best rates found so far.
OPTIMIZERS = {
    "adamw": (lambda lr, tuned: gx.adamw(lr, weight_decay=0.0), np.logspace(-3.0, -1.5, 4)),
    "muon": (lambda lr, tuned: gx.muon(lr, weight_decay=0.0, adam_learning_rate=tuned["adamw"]),
             np.logspace(-2.5, -1.0, 4)),
}
OPTIMIZERS.update({
    "adafactor": (lambda lr, tuned: gx.adafactor(lr), np.logspace(-3.0, -1.0, 4)),
    "shampoo": (lambda lr, tuned: gx.shampoo(lr), np.logspace(-3.0, -1.0, 4)),
    "soap": (lambda lr, tuned: gx.soap(lr), np.logspace(-3.0, -1.5, 4)),
})


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="a tiny model, 40 steps, 2 rates per optimizer")
  parser.add_argument("--out", default="out")
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--eval-every", type=int, default=None)
  args = parser.parse_args()
  if args.quick:
    args.steps, args.eval_every = args.steps or 40, args.eval_every or 10
    args.d, args.layers, args.heads, args.context, args.batch, args.rates = 32, 1, 2, 32, 8, 2
  else:
    args.steps, args.eval_every = args.steps or 600, args.eval_every or 50
    args.d, args.layers, args.heads, args.context, args.batch, args.rates = 64, 2, 4, 64, 16, 4
  return args


# ------------------------------------------------------------------ data and model

def load_text():
  text = inspect.getsource(argparse)
  chars = sorted(set(text))
  data = np.array([chars.index(c) for c in text], np.int32)
  split = int(0.9 * len(data))
  return data[:split], data[split:], len(chars)


def windows(data, rng, count, context):
  starts = rng.integers(0, len(data) - context - 1, size=count)
  return np.stack([data[s:s + context + 1] for s in starts])


def init_params(key, vocab, d, layers, context):
  keys = iter(jax.random.split(key, 3 + 4 * layers))
  normal = lambda shape, scale: jax.random.normal(next(keys), shape, jnp.float32) * scale
  params = {"embed": {"tokens": normal((vocab, d), 0.1), "positions": normal((context, d), 0.02)}}
  for i in range(layers):
    params[f"layer{i}"] = {
        "ln1": {"scale": jnp.ones(d)},
        "attn": {"qkv": {"kernel": normal((d, 3 * d), d ** -0.5)},
                 "out": {"kernel": normal((d, d), (2 * layers * d) ** -0.5)}},
        "ln2": {"scale": jnp.ones(d)},
        "mlp": {"fc1": {"kernel": normal((d, 4 * d), d ** -0.5), "bias": jnp.zeros(4 * d)},
                "fc2": {"kernel": normal((4 * d, d), (8 * layers * d) ** -0.5), "bias": jnp.zeros(d)}},
    }
  params["final_ln"] = {"scale": jnp.ones(d)}
  params["lm_head"] = {"kernel": normal((d, vocab), d ** -0.5)}
  return params


def rms_norm(x, scale):
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6) * scale


def forward(params, tokens, heads):
  t = tokens.shape[-1]
  x = params["embed"]["tokens"][tokens] + params["embed"]["positions"][:t]
  mask = jnp.tril(jnp.ones((t, t), bool))
  layers = sorted(k for k in params if k.startswith("layer"))
  for name in layers:
    layer = params[name]
    q, k, v = jnp.split(rms_norm(x, layer["ln1"]["scale"]) @ layer["attn"]["qkv"]["kernel"], 3, axis=-1)
    split = lambda a: a.reshape(a.shape[:-1] + (heads, -1)).swapaxes(-2, -3)  # (..., heads, t, dh)
    q, k, v = split(q), split(k), split(v)
    scores = jnp.where(mask, q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1]), -1e9)
    attended = (jax.nn.softmax(scores, axis=-1) @ v).swapaxes(-2, -3).reshape(x.shape)
    x = x + attended @ layer["attn"]["out"]["kernel"]
    h = jax.nn.gelu(rms_norm(x, layer["ln2"]["scale"]) @ layer["mlp"]["fc1"]["kernel"] + layer["mlp"]["fc1"]["bias"])
    x = x + h @ layer["mlp"]["fc2"]["kernel"] + layer["mlp"]["fc2"]["bias"]
  return rms_norm(x, params["final_ln"]["scale"]) @ params["lm_head"]["kernel"]


def make_loss(heads):
  def loss(params, batch):
    logits = forward(params, batch[..., :-1], heads)
    targets = batch[..., 1:]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1))
  return loss


# ------------------------------------------------------------------ sweep and timing

def sweep(name, factory, rates, tuned, params, batches, val, loss, eval_every):
  """Trains one member per rate (a population); returns the validation-loss curves, shape (evals, rates)."""
  population = gx.Population(lambda lr: factory(lr, tuned), {"lr": rates})
  pop_params, pop_state = population.init(params)
  train = population.train(loss)
  evaluate = jax.jit(jax.vmap(loss, in_axes=(0, None)))
  curves = [np.asarray(evaluate(pop_params, val))]
  for start in range(0, len(batches), eval_every):
    pop_params, pop_state, _ = train(population.hyperparams, pop_params, pop_state,
                                     jnp.asarray(batches[start:start + eval_every]))
    curves.append(np.asarray(evaluate(pop_params, val)))
  curves = np.array(curves)
  return np.where(np.isfinite(curves), curves, np.inf)


def timed_run(opt, params, batches, val, loss, eval_every):
  """The best rate alone: validation loss and cumulative wall time (compilation excluded) per evaluation."""
  def chunk(params, state, batches):
    def step(carry, batch):
      params, state = carry
      value, grads = jax.value_and_grad(loss)(params, batch)
      updates, state = opt.update(grads, state, params)
      return (gx.apply_updates(params, updates), state), value
    (params, state), _ = jax.lax.scan(step, (params, state), batches)
    return params, state

  state = opt.init(params)
  first = jnp.asarray(batches[:eval_every])
  compiled = jax.jit(chunk).lower(params, state, first).compile()
  evaluate = jax.jit(loss)
  losses, seconds, elapsed = [float(evaluate(params, val))], [0.0], 0.0
  for start in range(0, len(batches), eval_every):
    chunk_batches = jnp.asarray(batches[start:start + eval_every])
    t0 = time.perf_counter()
    params, state = jax.block_until_ready(compiled(params, state, chunk_batches))
    elapsed += time.perf_counter() - t0
    losses.append(float(evaluate(params, val)))
    seconds.append(elapsed)
  return np.array(losses), np.array(seconds)


def main():
  args = parse_args()
  os.makedirs(args.out, exist_ok=True)
  train_data, val_data, vocab = load_text()
  rng = np.random.default_rng(0)
  batches = np.stack([windows(train_data, rng, args.batch, args.context) for _ in range(args.steps)])
  val = jnp.asarray(windows(val_data, np.random.default_rng(1), 64, args.context))
  params = init_params(jax.random.key(0), vocab, args.d, args.layers, args.context)
  loss = make_loss(args.heads)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  print(f"text: argparse source, {len(train_data):,} training / {len(val_data):,} validation characters, "
        f"vocabulary {vocab}; model: {args.layers} layers, d={args.d}, {n_params:,} parameters; "
        f"{args.steps} steps of {args.batch} x {args.context} characters")

  tuned, results = {}, {}
  for name, (factory, grid) in OPTIMIZERS.items():
    rates = np.asarray(grid if args.rates == len(grid) else grid[1:1 + args.rates], np.float32)
    curves = sweep(name, factory, rates, tuned, params, batches, val, loss, args.eval_every)
    best = int(np.argmin(curves[-1]))
    tuned[name] = float(rates[best])
    timed, seconds = timed_run(factory(tuned[name], tuned), params, batches, val, loss, args.eval_every)
    results[name] = dict(rates=rates, finals=curves[-1], curve=curves[:, best], timed=timed, seconds=seconds)
    print(f"{name}: best lr {tuned[name]:.3g} of {len(rates)}, validation loss {curves[-1, best]:.3f}", flush=True)

  steps = np.arange(0, args.steps + 1, args.eval_every)[:len(next(iter(results.values()))["curve"])]
  steps[-1] = args.steps
  fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(11, 4))
  for name, r in results.items():
    by_step.plot(steps, r["curve"], label=f"{name} (lr {tuned[name]:.3g})")
    by_time.plot(r["seconds"], r["timed"], label=name)
  by_step.set(xlabel="step", ylabel="validation loss (nats/char)", title="character LM on argparse's source")
  by_time.set(xlabel="wall time, s (compilation excluded)", ylabel="validation loss (nats/char)",
              title=f"best rate of each, trained alone on {jax.default_backend()}")
  for ax in (by_step, by_time):
    ax.legend()
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "char_lm.png"), dpi=120)

  print(f"\n{'optimizer':10s} {'best lr':>8s} {'val loss':>9s} {'ms/step':>8s}   val loss per swept lr")
  for name, r in results.items():
    per_rate = ", ".join(f"{lr:.3g}: {v:.3f}" for lr, v in zip(r["rates"], r["finals"]))
    ms = 1e3 * r["seconds"][-1] / args.steps
    print(f"{name:10s} {tuned[name]:8.3g} {r['curve'][-1]:9.3f} {ms:8.2f}   {per_rate}")


if __name__ == "__main__":
  main()
