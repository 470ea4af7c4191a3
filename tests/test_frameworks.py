"""gradxform inside real Flax (linen, NNX) and Equinox programs, written the way their docs write them.

Each test trains a small model of that framework for a few steps with an
injected gradxform optimizer (``gx.inject``), changing the learning rate before
every step with ``gx.set_hyperparams`` (a manual decay), and checks:

* the jitted step is traced once (0 retraces when the learning rate changes);
* the parameters equal those of the same program with optax's equivalent
  optimizer and optax's own idiom for a changing learning rate
  (``optax.inject_hyperparams``), to float32 rounding;
* a checkpoint written and read through the framework's own path (orbax for
  a linen ``TrainState``, ``nnx.state`` + orbax for NNX,
  ``eqx.tree_serialise_leaves`` for Equinox) resumes bit-exactly, with the
  learning rate still an input.

optax code runs under standard dtype promotion (see tests/test_interop.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

LRS = (3e-3, 1e-3, 3e-4, 1e-4)  # one learning rate per step: a decay on plateau, by hand
RTOL, ATOL = 1e-5, 1e-6


def standard_promotion():
  return jax.numpy_dtype_promotion("standard")


def assert_close(actual, expected):
  a_leaves, a_def = jax.tree_util.tree_flatten_with_path(actual)
  e_leaves, e_def = jax.tree.flatten(expected)
  assert a_def == e_def
  for (path, a), e in zip(a_leaves, e_leaves):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=RTOL, atol=ATOL,
                               err_msg=jax.tree_util.keystr(path))


def assert_moved(after, before):
  diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)))
  assert diff > 1e-4, f"training did not move the parameters (max |diff| {diff})"


def assert_equal(a, b):
  a_leaves, a_def = jax.tree_util.tree_flatten_with_path(a)
  b_leaves, b_def = jax.tree.flatten(b)
  assert a_def == b_def
  for (path, x), y in zip(a_leaves, b_leaves):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def learning_rate_of(tree):
  """The injected learning rate(s) found in a state (or a tree holding one)."""
  found = [v for k, v in gx.hyperparams(tree).items() if k.endswith("learning_rate")]
  assert found
  return [float(v) for v in found]


# --------------------------------------------------------------------------- Flax linen: a transformer LM


def _linen_lm():
  nn = pytest.importorskip("flax.linen")

  class Block(nn.Module):

    @nn.compact
    def __call__(self, x):
      mask = nn.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32))
      h = nn.LayerNorm()(x)
      x = x + nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=16, use_bias=False)(h, h, mask=mask)
      return x + nn.Dense(16)(jax.nn.relu(nn.Dense(32)(x)))

  class LM(nn.Module):
    vocab: int = 11

    @nn.compact
    def __call__(self, tokens):
      pos = self.param("pos", nn.initializers.normal(0.02), (tokens.shape[1], 16))
      return nn.Dense(self.vocab)(Block()(nn.Embed(self.vocab, 16)(tokens) + pos))

  return LM()


def _next_token_loss(logits, tokens):
  logp = jax.nn.log_softmax(logits[:, :-1])
  return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1))


def test_flax_linen_transformer_train_state(tmp_path):
  train_state = pytest.importorskip("flax.training.train_state")
  optax = pytest.importorskip("optax")
  ocp = pytest.importorskip("orbax.checkpoint")

  model = _linen_lm()
  tokens = jax.random.randint(jax.random.PRNGKey(3), (4, 8), 0, 11)
  params0 = jax.jit(model.init)(jax.random.PRNGKey(0), tokens)["params"]  # jitted: eager init is slow

  def make_train_step(traces):

    @jax.jit
    def train_step(state, tokens):
      traces.append(1)  # runs once per trace
      grads = jax.grad(lambda p: _next_token_loss(state.apply_fn({"params": p}, tokens), tokens))(state.params)
      return state.apply_gradients(grads=grads)

    return train_step

  # gradxform: the one changed line is tx=...; a new learning rate is one more line.
  traces = []
  train_step = make_train_step(traces)
  state = train_state.TrainState.create(
      apply_fn=model.apply, params=params0, tx=gx.inject(gx.adamw(LRS[0], weight_decay=0.1)))
  for lr in LRS[:2]:
    state = gx.set_hyperparams(state, learning_rate=lr)
    state = train_step(state, tokens)

  # checkpoint with orbax, restore from the abstract state
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "lm", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(tmp_path / "lm", jax.eval_shape(lambda: state))
  assert_equal(restored, state)
  # the optimizer state comes back with its types (so the learning rate is still an input)
  assert jax.tree.structure(restored.opt_state) == jax.tree.structure(state.opt_state)
  assert jax.tree.map(jax.typeof, restored.opt_state) == jax.tree.map(jax.typeof, state.opt_state)

  for lr in LRS[2:]:
    state = gx.set_hyperparams(state, learning_rate=lr)
    state = train_step(state, tokens)
  assert len(traces) == 1, f"{len(traces)} traces: a learning-rate change recompiled the step"
  assert learning_rate_of(state.opt_state) == [pytest.approx(LRS[-1])]

  for lr in LRS[2:]:
    restored = gx.set_hyperparams(restored, learning_rate=lr)
    restored = train_step(restored, tokens)
  assert_equal(restored.params, state.params)  # resumed bit-exactly
  assert_equal(restored.opt_state, state.opt_state)
  # orbax restores TrainState.step (a weak-typed Python int after create) as a strong int32:
  # one retrace, from Flax's step counter, not from the optimizer state (checked above).
  assert len(traces) == 2

  # optax's AdamW and optax's idiom (inject_hyperparams, then write into the state)
  optax_traces = []
  optax_step = make_train_step(optax_traces)
  with standard_promotion():
    ostate = train_state.TrainState.create(
        apply_fn=model.apply, params=params0,
        tx=optax.inject_hyperparams(optax.adamw)(learning_rate=LRS[0], weight_decay=0.1))
    for lr in LRS:
      ostate.opt_state.hyperparams["learning_rate"] = lr
      ostate = optax_step(ostate, tokens)
  assert_moved(state.params, params0)
  assert_close(state.params, ostate.params)


# --------------------------------------------------------------------------- Flax NNX


@functools.cache
def _nnx_mlp_class():
  nnx = pytest.importorskip("flax.nnx")

  class MLP(nnx.Module):  # one class for every instance: NNX's jit cache keys on it

    def __init__(self, rngs):
      self.hidden = nnx.Linear(4, 16, rngs=rngs)
      self.norm = nnx.LayerNorm(16, rngs=rngs)
      self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
      return self.out(jax.nn.gelu(self.norm(self.hidden(x))))

  return MLP


def _nnx_mlp(seed):
  nnx = pytest.importorskip("flax.nnx")
  return _nnx_mlp_class()(nnx.Rngs(seed))


def _regression_data():
  x = jax.random.normal(jax.random.PRNGKey(1), (16, 4), jnp.float32)
  y = jax.random.normal(jax.random.PRNGKey(2), (16, 3), jnp.float32)
  return x, y


def test_flax_nnx_optimizer_with_array_learning_rate():
  nnx = pytest.importorskip("flax.nnx")
  optax = pytest.importorskip("optax")
  x, y = _regression_data()

  def make_train_step(traces):

    @nnx.jit
    def train_step(model, optimizer, x, y):
      traces.append(1)
      grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
      optimizer.update(model, grads)

    return train_step

  # An array learning rate, as NNX users write it: accepted (nnx.Optimizer keeps tx static).
  model = _nnx_mlp(0)
  params0 = nnx.to_pure_dict(nnx.clone(nnx.state(model, nnx.Param)))
  optimizer = nnx.Optimizer(model, gx.inject(gx.adamw(jnp.asarray(LRS[0]), weight_decay=0.1)), wrt=nnx.Param)
  traces = []
  train_step = make_train_step(traces)
  for lr in LRS:
    assert gx.set_hyperparams(optimizer, learning_rate=lr) is optimizer  # in place, as NNX is
    train_step(model, optimizer, x, y)
  assert len(traces) == 1, f"{len(traces)} traces: a learning-rate change recompiled the step"
  assert learning_rate_of(optimizer.opt_state) == [pytest.approx(LRS[-1])]

  # optax's AdamW with its own idiom in NNX: the injected value is an OptState variable
  omodel = _nnx_mlp(0)
  with standard_promotion():
    ooptimizer = nnx.Optimizer(omodel, optax.inject_hyperparams(optax.adamw)(
        learning_rate=LRS[0], weight_decay=0.1), wrt=nnx.Param)
    optax_step = make_train_step([])
    for lr in LRS:
      ooptimizer.opt_state.hyperparams["learning_rate"][...] = lr
      optax_step(omodel, ooptimizer, x, y)
  trained = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert_moved(trained, params0)
  assert_close(trained, nnx.to_pure_dict(nnx.state(omodel, nnx.Param)))

  # Without inject, an array hyperparameter is data in a static attribute: NNX refuses it.
  with pytest.raises(Exception, match="static"):
    nnx.Optimizer(_nnx_mlp(0), gx.adamw(jnp.asarray(1e-3)), wrt=nnx.Param)


def test_flax_nnx_model_and_optimizer_checkpoint(tmp_path):
  nnx = pytest.importorskip("flax.nnx")
  ocp = pytest.importorskip("orbax.checkpoint")
  x, y = _regression_data()
  traces = []

  @nnx.jit
  def train_step(trainer, x, y):
    traces.append(1)
    grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(trainer.model)
    trainer.update(grads)

  make = lambda seed: nnx.ModelAndOptimizer(
      _nnx_mlp(seed), gx.inject(gx.chain(gx.clip_by_global_norm(1.0), gx.adam(LRS[0]))))
  trainer = make(0)
  for lr in LRS[:2]:
    gx.set_hyperparams(trainer, learning_rate=lr)
    train_step(trainer, x, y)

  # NNX's checkpoint path: nnx.state(...) through orbax, into a fresh (differently initialized) trainer
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "nnx", nnx.state(trainer))
  checkpointer.wait_until_finished()
  resumed = make(5)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.state(resumed))
  nnx.update(resumed, checkpointer.restore(tmp_path / "nnx", abstract))
  assert_equal(nnx.state(resumed), nnx.state(trainer))
  assert learning_rate_of(resumed.opt_state) == [pytest.approx(LRS[1])]

  for lr in LRS[2:]:
    for t in (trainer, resumed):
      gx.set_hyperparams(t, learning_rate=lr)
      train_step(t, x, y)
  assert_equal(nnx.state(resumed), nnx.state(trainer))  # resumed bit-exactly
  assert len(traces) == 1, f"{len(traces)} traces (learning-rate changes, a restored trainer)"

  # the numbers are those of the same optimizer driven by a plain jax.jit loop
  graphdef, p0 = nnx.split(_nnx_mlp(0), nnx.Param)
  tx = gx.chain(gx.clip_by_global_norm(1.0), gx.adam(LRS[0]))
  params, state = nnx.to_pure_dict(p0), tx.init(nnx.to_pure_dict(p0))

  def loss(pure):
    p = jax.tree.map(lambda v: v, p0)
    nnx.replace_by_pure_dict(p, pure)
    return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

  for lr in LRS:
    tx = gx.chain(gx.clip_by_global_norm(1.0), gx.adam(lr))
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = gx.apply_updates(params, updates)
  assert_close(nnx.to_pure_dict(nnx.state(trainer.model, nnx.Param)), params)


# --------------------------------------------------------------------------- Equinox: a CNN


def _eqx_cnn(key):
  eqx = pytest.importorskip("equinox")
  k1, k2 = jax.random.split(key)
  return eqx.nn.Sequential([
      eqx.nn.Conv2d(1, 4, kernel_size=3, stride=2, key=k1),
      eqx.nn.Lambda(jax.nn.relu),
      eqx.nn.Lambda(jnp.ravel),
      eqx.nn.Linear(4 * 3 * 3, 10, key=k2),
  ])


def _images():
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 1, 8, 8), jnp.float32)
  y = jax.random.randint(jax.random.PRNGKey(2), (8,), 0, 10)
  return x, y


def _cross_entropy(model, x, y):
  logits = jax.vmap(model)(x)
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def test_equinox_cnn_filter_jit(tmp_path):
  eqx = pytest.importorskip("equinox")
  optax = pytest.importorskip("optax")
  x, y = _images()
  model0 = _eqx_cnn(jax.random.PRNGKey(0))

  def make_step(optim, traces):

    @eqx.filter_jit
    def make_step(model, opt_state, x, y):
      traces.append(1)
      grads = eqx.filter_grad(_cross_entropy)(model, x, y)
      updates, opt_state = optim.update(grads, opt_state, eqx.filter(model, eqx.is_array))
      return eqx.apply_updates(model, updates), opt_state

    return make_step

  optim = gx.inject(gx.adamw(LRS[0], weight_decay=0.1))
  traces = []
  step = make_step(optim, traces)
  model, opt_state = model0, optim.init(eqx.filter(model0, eqx.is_inexact_array))
  for lr in LRS[:2]:
    opt_state = gx.set_hyperparams(opt_state, learning_rate=lr)
    model, opt_state = step(model, opt_state, x, y)

  # Equinox's checkpoint path: serialise the leaves, read them into a tree of the same structure
  eqx.tree_serialise_leaves(tmp_path / "cnn.eqx", (model, opt_state))
  like = (_eqx_cnn(jax.random.PRNGKey(7)), optim.init(eqx.filter(model0, eqx.is_inexact_array)))
  resumed, resumed_state = eqx.tree_deserialise_leaves(tmp_path / "cnn.eqx", like)
  assert learning_rate_of(resumed_state) == [pytest.approx(LRS[1])]

  for lr in LRS[2:]:
    opt_state = gx.set_hyperparams(opt_state, learning_rate=lr)
    model, opt_state = step(model, opt_state, x, y)
    resumed_state = gx.set_hyperparams(resumed_state, learning_rate=lr)
    resumed, resumed_state = step(resumed, resumed_state, x, y)
  assert len(traces) == 1, f"{len(traces)} traces: a learning-rate change recompiled the step"
  assert_equal(eqx.filter(resumed, eqx.is_array), eqx.filter(model, eqx.is_array))  # bit-exact
  assert_equal(resumed_state, opt_state)

  # optax's AdamW with optax's idiom, in the same Equinox program
  with standard_promotion():
    ooptim = optax.inject_hyperparams(optax.adamw)(learning_rate=LRS[0], weight_decay=0.1)
    ostep = make_step(ooptim, [])
    omodel, ostate = model0, ooptim.init(eqx.filter(model0, eqx.is_inexact_array))
    for lr in LRS:
      ostate.hyperparams["learning_rate"] = lr
      omodel, ostate = ostep(omodel, ostate, x, y)
  assert_moved(eqx.filter(model, eqx.is_array), eqx.filter(model0, eqx.is_array))
  assert_close(eqx.filter(model, eqx.is_array), eqx.filter(omodel, eqx.is_array))


def test_equinox_python_float_optimizer_argument_retraces_and_the_idioms_do_not():
  """Under eqx.filter_jit, Python floats are static: a new gx.adam(lr) argument is a new trace.

  This pins down the pitfall (so the trace counter is known to see retraces)
  and the two idioms that avoid it: an injected optimizer (no leaves at all)
  with the learning rate in the state, or array hyperparameters.
  """
  eqx = pytest.importorskip("equinox")
  x, y = _images()
  x = x.reshape(8, 64)[:, :6]
  model0 = eqx.nn.MLP(6, 10, 8, 1, key=jax.random.PRNGKey(0))  # small: this test compiles 5 times
  params0 = eqx.filter(model0, eqx.is_inexact_array)
  traces = []

  @eqx.filter_jit
  def step(model, optim, opt_state, x, y):
    traces.append(1)
    grads = eqx.filter_grad(_cross_entropy)(model, x, y)
    updates, opt_state = optim.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state

  def run(make_optim, set_lr=None):
    del traces[:]
    model, opt_state = model0, make_optim(LRS[0]).init(params0)
    optim = make_optim(LRS[0])
    for lr in LRS[:2]:
      if set_lr is None:
        optim = make_optim(lr)
      else:
        opt_state = set_lr(opt_state, lr)
      model, opt_state = step(model, optim, opt_state, x, y)
    return len(traces), eqx.filter(model, eqx.is_array)

  n_float, with_floats = run(gx.adam)
  assert n_float == 2  # the pitfall: one compilation per learning rate
  n_array, with_arrays = run(lambda lr: gx.adam(jnp.asarray(lr, jnp.float32)))
  assert n_array == 1
  n_inject, injected = run(lambda lr: gx.inject(gx.adam(lr)),
                           set_lr=lambda s, lr: gx.set_hyperparams(s, learning_rate=lr))
  assert n_inject == 1
  assert_close(with_arrays, with_floats)
  assert_close(injected, with_floats)
