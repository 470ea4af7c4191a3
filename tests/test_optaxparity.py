"""The optimizers and transforms that reproduce optax (no torch.optim counterpart), against optax itself.

Compared in float64 over 40 steps (an all-zero gradient at step 5) with
off-default hyperparameters, on a tree with a vector, a matrix and a scalar
leaf: every update to 1e-9 relative. Skipped when optax is not installed.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.helpers import assert_trees_close, cast

optax = pytest.importorskip("optax")

STEPS = 40
ZERO_STEP = 5


def _stream(seed=0):
  rng = np.random.default_rng(seed)
  stream = []
  for t in range(STEPS):
    scale = 0.0 if t == ZERO_STEP else float(10.0 ** rng.uniform(-1, 1))
    stream.append({"b": scale * rng.normal(size=(5,)), "s": scale * rng.normal(size=()),
                   "t": scale * rng.normal(size=(2, 3, 2)), "w": scale * rng.normal(size=(3, 4))})
  return stream


def _params(seed=1):
  rng = np.random.default_rng(seed)
  return {"b": rng.normal(size=(5,)), "s": np.asarray(rng.normal()), "t": rng.normal(size=(2, 3, 2)),
          "w": rng.normal(size=(3, 4))}


def _shaped(tx):
  """optax's DoG keeps a (1,)-shaped sum per leaf, which turns a scalar leaf's update into shape (1,)."""
  def update(updates, state, params=None):
    new, state = tx.update(updates, state, params)
    return jax.tree.map(lambda u, g: jnp.reshape(u, jnp.shape(g)), new, updates), state
  return optax.GradientTransformation(tx.init, update)


# (gradxform factory, optax factory), off-default hyperparameters
PAIRS = {
    "scale_by_trust_ratio": (lambda: gx.scale_by_trust_ratio(min_norm=0.5, trust_coefficient=0.3, eps=0.1),
                             lambda: optax.scale_by_trust_ratio(min_norm=0.5, trust_coefficient=0.3, eps=0.1)),
    "scale_by_trust_ratio_defaults": (gx.scale_by_trust_ratio, optax.scale_by_trust_ratio),
    "scale_by_param_block_norm": (lambda: gx.scale_by_param_block_norm(0.7),
                                  lambda: optax.scale_by_param_block_norm(0.7)),
    "scale_by_param_block_rms": (lambda: gx.scale_by_param_block_rms(0.05),
                                 lambda: optax.scale_by_param_block_rms(0.05)),
    "normalize_by_update_norm": (lambda: gx.normalize_by_update_norm(-0.3, eps=0.1),
                                 lambda: optax.normalize_by_update_norm(-0.3, eps=0.1)),
    "lamb": (lambda: gx.lamb(0.05, b1=0.8, b2=0.9, eps=0.3, eps_root=0.1, weight_decay=0.2),
             lambda: optax.lamb(0.05, b1=0.8, b2=0.9, eps=0.3, eps_root=0.1, weight_decay=0.2)),
    "lamb_defaults": (lambda: gx.lamb(0.05), lambda: optax.lamb(0.05)),
    "lamb_mask": (lambda: gx.lamb(0.05, weight_decay=0.2, mask={"b": False, "s": True, "t": False, "w": True}),
                  lambda: optax.lamb(0.05, weight_decay=0.2, mask={"b": False, "s": True, "t": False, "w": True})),
    "lars": (lambda: gx.lars(0.1, weight_decay=0.2, trust_coefficient=0.05, eps=0.1, momentum=0.7),
             lambda: optax.lars(0.1, weight_decay=0.2, trust_coefficient=0.05, eps=0.1, momentum=0.7)),
    "lars_masks_nesterov": (
        lambda: gx.lars(0.1, weight_decay=0.2, weight_decay_mask={"b": False, "s": True, "t": False, "w": True},
                        trust_coefficient=0.05, trust_ratio_mask={"b": True, "s": False, "t": True, "w": True},
                        momentum=0.7, nesterov=True),
        lambda: optax.lars(0.1, weight_decay=0.2, weight_decay_mask={"b": False, "s": True, "t": False, "w": True},
                           trust_coefficient=0.05, trust_ratio_mask={"b": True, "s": False, "t": True, "w": True},
                           momentum=0.7, nesterov=True)),
    "adabelief": (lambda: gx.adabelief(0.05, b1=0.8, b2=0.9, eps=0.3, eps_root=0.1),
                  lambda: optax.adabelief(0.05, b1=0.8, b2=0.9, eps=0.3, eps_root=0.1)),
    "adabelief_nesterov": (lambda: gx.adabelief(0.05, b1=0.8, b2=0.9, eps=0.01, nesterov=True),
                           lambda: optax.adabelief(0.05, b1=0.8, b2=0.9, eps=0.01, nesterov=True)),
    "yogi": (lambda: gx.yogi(0.05, b1=0.8, b2=0.9, eps=0.3), lambda: optax.yogi(0.05, b1=0.8, b2=0.9, eps=0.3)),
    "scale_by_yogi": (lambda: gx.scale_by_yogi(0.8, 0.9, eps=0.1, eps_root=0.2, initial_accumulator_value=0.5),
                      lambda: optax.scale_by_yogi(0.8, 0.9, eps=0.1, eps_root=0.2, initial_accumulator_value=0.5)),
    # optax 0.2.8 weights Adan's gradient difference by 1 - b2 where the paper has b2 (optax PR 1715)
    "adan": (lambda: gx.adan(0.05, b1=0.8, b2=0.7, b3=0.9, eps=0.3, eps_root=0.1, weight_decay=0.2),
             lambda: optax.adan(0.05, b1=0.8, b2=0.7, b3=0.9, eps=0.3, eps_root=0.1, weight_decay=0.2)),
    "adan_defaults": (lambda: gx.adan(0.05), lambda: optax.adan(0.05)),
    "novograd": (lambda: gx.novograd(0.05, b1=0.8, b2=0.6, eps=0.3, eps_root=0.1, weight_decay=0.2),
                 lambda: optax.novograd(0.05, b1=0.8, b2=0.6, eps=0.3, eps_root=0.1, weight_decay=0.2)),
    "novograd_defaults": (lambda: gx.novograd(0.05), lambda: optax.novograd(0.05)),
    "sign_sgd": (lambda: gx.sign_sgd(0.05), lambda: optax.sign_sgd(0.05)),
    "signum": (lambda: gx.signum(0.05, momentum=0.7), lambda: optax.signum(0.05, beta=0.7)),
    "optimistic_gradient_descent": (lambda: gx.optimistic_gradient_descent(0.05, alpha=0.7, beta=0.4),
                                    lambda: optax.optimistic_gradient_descent(0.05, alpha=0.7, beta=0.4)),
    "optimistic_adam": (lambda: gx.optimistic_adam(0.05, optimism=0.02, b1=0.8, b2=0.9, eps=0.3, eps_root=0.1),
                        lambda: optax.optimistic_adam(0.05, optimism=0.02, b1=0.8, b2=0.9, eps=0.3, eps_root=0.1)),
    "optimistic_adam_no_nesterov": (
        lambda: gx.optimistic_adam(0.05, b1=0.8, b2=0.9, eps=0.3, nesterov=False),
        lambda: optax.optimistic_adam(0.05, b1=0.8, b2=0.9, eps=0.3, nesterov=False)),
    "optimistic_adam_v2": (lambda: gx.optimistic_adam_v2(0.05, alpha=0.7, beta=0.4, b1=0.8, b2=0.9, eps=0.3),
                           lambda: optax.optimistic_adam_v2(0.05, alpha=0.7, beta=0.4, b1=0.8, b2=0.9, eps=0.3)),
    "sm3": (lambda: gx.sm3(0.05, momentum=0.7), lambda: optax.sm3(0.05, momentum=0.7)),
    "scale_by_sm3": (lambda: gx.scale_by_sm3(0.7, b2=0.9, eps=0.1), lambda: optax.scale_by_sm3(0.7, b2=0.9, eps=0.1)),
    "fromage": (lambda: gx.fromage(0.05, min_norm=0.3), lambda: optax.fromage(0.05, min_norm=0.3)),
    "fromage_defaults": (lambda: gx.fromage(0.1), lambda: optax.fromage(0.1)),
    "noisy_sgd": (lambda: gx.noisy_sgd(0.05, eta=0.3, gamma=0.3, seed=7),
                  lambda: optax.noisy_sgd(0.05, eta=0.3, gamma=0.3, key=7)),
    "scale_by_distance_over_gradients": (
        lambda: gx.scale_by_distance_over_gradients(1e-3, eps=1e-4, param_dtype=jnp.float64, global_scale=-0.5),
        lambda: _shaped(optax.scale_by_distance_over_gradients(1e-3, eps=1e-4, param_dtype=jnp.float64,
                                                               global_scale=-0.5))),
}

# optax.scale_by_sm3 raises IndexError on scalar leaves (gradxform gives them a scalar accumulator)
NO_SCALAR_LEAF = {"sm3", "scale_by_sm3"}


def _run_both(ours, theirs, steps=None, drop=()):
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"), warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # optax.optimistic_adam is deprecated
    params_a = params_b = cast({k: v for k, v in _params().items() if k not in drop}, jnp.float64)
    opt_a, opt_b = ours(), theirs()
    state_a, state_b = opt_a.init(params_a), opt_b.init(params_b)
    update_a, update_b = jax.jit(opt_a.update), jax.jit(opt_b.update)
    for step, grads in enumerate(_stream()[:steps]):
      grads = cast({k: v for k, v in grads.items() if k not in drop}, jnp.float64)
      updates_a, state_a = update_a(grads, state_a, params_a)
      updates_b, state_b = update_b(grads, state_b, params_b)
      yield step, updates_a, updates_b
      params_a, params_b = gx.apply_updates(params_a, updates_a), optax.apply_updates(params_b, updates_b)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_reproduces_optax_in_float64(name):
  ours, theirs = PAIRS[name]
  drop = ("s",) if name in NO_SCALAR_LEAF else ()
  for step, updates_a, updates_b in _run_both(ours, theirs, drop=drop):
    for leaf in jax.tree.leaves(updates_a):
      assert leaf.dtype == jnp.float64
    assert_trees_close(updates_a, updates_b, rtol=1e-9, atol=1e-13, what=f"{name} step {step}")


def test_sm3_scalar_leaf_is_a_one_element_vector():
  """optax raises on scalar leaves; gradxform's scalar accumulator equals optax on a (1,)-shaped leaf."""
  stream = [{"s": g["s"]} for g in _stream()]
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    opt_a, opt_b = gx.sm3(0.05, momentum=0.7), optax.sm3(0.05, momentum=0.7)
    p_a, p_b = jnp.asarray(_params()["s"], jnp.float64), jnp.reshape(jnp.asarray(_params()["s"], jnp.float64), (1,))
    s_a, s_b = opt_a.init({"s": p_a}), opt_b.init({"s": p_b})
    for step, grads in enumerate(stream):
      u_a, s_a = opt_a.update({"s": jnp.asarray(grads["s"])}, s_a, {"s": p_a})
      u_b, s_b = opt_b.update({"s": jnp.reshape(jnp.asarray(grads["s"]), (1,))}, s_b, {"s": p_b})
      assert u_a["s"].shape == ()
      np.testing.assert_allclose(u_a["s"], u_b["s"][0], rtol=1e-9, atol=1e-13, err_msg=f"step {step}")
      p_a, p_b = p_a + u_a["s"], p_b + u_b["s"]


def test_noisy_sgd_is_a_pure_function_of_its_state():
  params = {"w": jnp.ones((3, 4))}
  grads = {"w": jnp.full((3, 4), 0.5)}
  opt = gx.noisy_sgd(0.1, eta=0.3, seed=3)
  state = opt.init(params)
  first, state1 = opt.update(grads, state, params)
  again, _ = opt.update(grads, state, params)          # same state: same noise
  jitted, _ = jax.jit(opt.update)(grads, state, params)
  second, _ = opt.update(grads, state1, params)        # next state: new noise
  other, _ = gx.noisy_sgd(0.1, eta=0.3, seed=4).update(grads, gx.noisy_sgd(0.1, eta=0.3, seed=4).init(params),
                                                        params)
  np.testing.assert_array_equal(first["w"], again["w"])
  np.testing.assert_allclose(first["w"], jitted["w"], rtol=1e-6)
  assert not np.allclose(first["w"], second["w"])
  assert not np.allclose(first["w"], other["w"])
  noise = (np.asarray(first["w"]) + 0.1 * 0.5) / -0.1   # u = -lr (g + sigma xi), sigma^2 = eta at the first step
  assert 0.1 < np.std(noise) < 2.0


# construction errors name the optimizer, the transform and the hyperparameter
BAD = [
    (lambda: gx.lamb(0.1, b1=1.5), ["lamb", "scale_by_adam", "b1"]),
    (lambda: gx.lars(0.1, trust_coefficient=0.0), ["lars", "scale_by_trust_ratio", "trust_coefficient"]),
    (lambda: gx.lars(0.1, momentum=0.0, nesterov=True), ["lars", "nesterov", "momentum"]),
    (lambda: gx.adabelief(0.1, eps_root=-1.0), ["adabelief", "scale_by_belief", "eps_root"]),
    (lambda: gx.yogi(0.1, b2=1.0), ["yogi", "scale_by_yogi", "b2"]),
    (lambda: gx.scale_by_yogi(initial_accumulator_value=-1.0), ["scale_by_yogi", "initial_accumulator_value"]),
    (lambda: gx.adan(0.1, b3=1.2), ["adan", "scale_by_adan", "b3"]),
    (lambda: gx.novograd(0.1, weight_decay=-1.0), ["novograd", "scale_by_novograd", "weight_decay"]),
    (lambda: gx.sm3(0.1, momentum=1.0), ["sm3", "momentum"]),
    (lambda: gx.scale_by_sm3(b2=1.5), ["scale_by_sm3", "b2"]),
    (lambda: gx.signum(0.1, momentum=-0.5), ["signum", "momentum"]),
    (lambda: gx.sign_sgd(-0.1), ["sign_sgd", "scale_by_learning_rate", "learning_rate"]),
    (lambda: gx.fromage(-0.1), ["fromage", "learning_rate"]),
    (lambda: gx.noisy_sgd(0.1, eta=-1.0), ["noisy_sgd", "add_noise", "eta"]),
    (lambda: gx.optimistic_gradient_descent(-0.1), ["optimistic_gradient_descent", "learning_rate"]),
    (lambda: gx.optimistic_adam(-0.1), ["optimistic_adam", "learning_rate"]),
    (lambda: gx.scale_by_trust_ratio(min_norm=-1.0), ["scale_by_trust_ratio", "min_norm"]),
    (lambda: gx.scale_by_param_block_norm(-1.0), ["scale_by_param_block_norm", "min_scale"]),
    (lambda: gx.scale_by_param_block_rms(float("nan")), ["scale_by_param_block_rms", "min_scale"]),
    (lambda: gx.normalize_by_update_norm(eps=-1.0), ["normalize_by_update_norm", "eps"]),
    (lambda: gx.scale_by_distance_over_gradients(reps_rel=0.0), ["scale_by_distance_over_gradients", "reps_rel"]),
]


@pytest.mark.parametrize("make,words", BAD, ids=[" ".join(w) for _, w in BAD])
def test_bad_hyperparameters_are_named(make, words):
  with pytest.raises(ValueError) as error:
    make()
  message = str(error.value)
  assert message.startswith(words[0] + ":"), message
  for word in words:
    assert word in message, message


@pytest.mark.parametrize("make", [lambda: gx.lamb(0.1), gx.scale_by_trust_ratio, gx.scale_by_param_block_rms,
                                  lambda: gx.fromage(0.1), lambda: gx.novograd(0.1, weight_decay=0.1)],
                         ids=["lamb", "scale_by_trust_ratio", "scale_by_param_block_rms", "fromage", "novograd"])
def test_params_are_required(make):
  params = {"w": jnp.ones((2, 3))}
  opt = make()
  state = opt.init(params)
  with pytest.raises(ValueError, match="params are required"):
    opt.update(params, state)


@pytest.mark.parametrize("make", [gx.sm3, gx.novograd, gx.adan, gx.optimistic_gradient_descent],
                         ids=["sm3", "novograd", "adan", "optimistic_gradient_descent"])
def test_wrong_update_tree_names_the_transform(make):
  opt = make(0.1)
  params = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
  state = opt.init(params)
  with pytest.raises(ValueError, match=r"scale_by_\w+: the update tree does not match.*missing leaves .*'b'"):
    opt.update({"a": jnp.ones(3)}, state, params)


RECOMPILE = {
    "lamb": lambda lr: gx.lamb(lr, weight_decay=0.1),
    "lars": lambda lr: gx.lars(lr, weight_decay=0.1),
    "adan": lambda lr: gx.adan(lr, weight_decay=0.1),
    "novograd": lambda lr: gx.novograd(lr, b2=lr),
    "sm3": lambda lr: gx.sm3(lr, momentum=lr),
    "fromage": gx.fromage,
    "optimistic_adam": lambda lr: gx.optimistic_adam(lr, optimism=lr / 2),
    "scale_by_distance_over_gradients": lambda lr: gx.scale_by_distance_over_gradients(global_scale=-lr),
}


@pytest.mark.parametrize("name", sorted(RECOMPILE))
def test_changing_a_hyperparameter_does_not_recompile(name):
  traces = []

  @jax.jit
  def step(opt, grads, state, params):
    traces.append(1)
    return opt.update(grads, state, params)

  params = {"b": jnp.ones(3), "w": jnp.ones((2, 3))}
  state = RECOMPILE[name](0.1).init(params)
  seen = []
  for lr in (0.1, 0.2, 0.3):
    updates, state = step(RECOMPILE[name](lr), jax.tree.map(lambda p: 0.5 * p, params), state, params)
    seen.append(updates["w"])
  assert len(traces) == 1
  assert not np.allclose(seen[1], seen[2])


@pytest.mark.parametrize("name", ["lamb", "adan", "sm3", "fromage"])
def test_vmap_over_learning_rates_equals_separate_runs(name):
  make = RECOMPILE[name]
  params = cast({k: v for k, v in _params().items() if k in "bw"}, jnp.float32)
  stream = [cast({k: v for k, v in g.items() if k in "bw"}, jnp.float32) for g in _stream()[:3]]

  def train(lr):
    opt = make(lr)
    p, state = params, opt.init(params)
    for grads in stream:
      updates, state = opt.update(grads, state, p)
      p = gx.apply_updates(p, updates)
    return p

  lrs = jnp.asarray([0.05, 0.2], jnp.float32)
  together = jax.jit(jax.vmap(train))(lrs)
  for i in range(len(lrs)):
    assert_trees_close(jax.tree.map(lambda x: x[i], together), jax.jit(train)(lrs[i]), rtol=1e-5, atol=1e-6,
                       what=f"{name} lr={lrs[i]}")
