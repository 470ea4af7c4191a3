"""Optimizers and a tiny training problem shared by the checkpoint test and its subprocess."""

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx

CASES = {
    "adamw_chain": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-2, weight_decay=0.1)),
    "named_chain": lambda: gx.chain(clip=gx.clip(0.5), nadam=gx.nadam(1e-2)),
    "partition": lambda: gx.partition(
        {"decay": gx.adamw(1e-2, weight_decay=0.1), "no_decay": gx.sgd(0.05, momentum=0.9)},
        [(r"bias$", "no_decay"), (r".*", "decay")]),
    "masked_and_frozen": lambda: gx.chain(gx.freeze({"dense": {"kernel": False, "bias": True}, "out": False}),
                                          gx.masked(gx.radam(1e-2), lambda path, leaf: path.startswith("out"))),
    "scheduled": lambda: gx.chain(gx.trace(gx.schedules.linear(0.5, 0.9, 6)),
                                  gx.scale_by_learning_rate(gx.schedules.warmup_cosine_decay(0.0, 0.1, 3, 12))),
    # the checkpoint falls in the middle of an accumulation cycle (steps 0-3 of 3-step cycles)
    "accumulate": lambda: gx.accumulate(gx.adam(1e-2), every_k=3, acc_dtype=jnp.float32),
    "apply_if_finite": lambda: gx.apply_if_finite(gx.chain(gx.clip(1.0), gx.adamw(1e-2)), 3),
    "lookahead_ema": lambda: gx.ema_params(gx.lookahead(gx.sgd(0.05, momentum=0.9), 3, 0.5), decay=0.9),
}


def init_params():
  key = jax.random.PRNGKey(0)
  k1, k2 = jax.random.split(key)
  return {"dense": {"kernel": jax.random.normal(k1, (4, 3)), "bias": jnp.zeros(3)},
          "out": {"kernel": jax.random.normal(k2, (3, 1))}}


def batch(step):
  rng = np.random.default_rng(step)
  x = rng.normal(size=(8, 4)).astype(np.float32)
  return x, np.sin(x.sum(axis=1, keepdims=True)).astype(np.float32)


def loss(params, x, y):
  h = jnp.tanh(x @ params["dense"]["kernel"] + params["dense"]["bias"])
  return jnp.mean((h @ params["out"]["kernel"] - y) ** 2)


def make_step(opt):
  @jax.jit
  def step(params, state, x, y):
    grads = jax.grad(loss)(params, x, y)
    updates, state = opt.update(grads, state, params)
    return gx.apply_updates(params, updates), state
  return step


def train(opt, params, state, start, stop):
  step = make_step(opt)
  for i in range(start, stop):
    params, state = step(params, state, *batch(i))
  return params, state
