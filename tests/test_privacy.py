"""DP-SGD and per-example clipping against optax, in float64."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx


def per_example_grads(steps, batch=6, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for t in range(steps):
    scale = 0.0 if t == 3 else float(10.0 ** rng.uniform(-1, 1))
    out.append({"b": scale * rng.normal(size=(batch, 5)), "w": scale * rng.normal(size=(batch, 3, 4)),
                "s": scale * rng.normal(size=(batch,))})
  return out


def test_per_example_clips_match_optax():
  optax = pytest.importorskip("optax")
  with jax.enable_x64(True):
    grads = jax.tree.map(jnp.asarray, per_example_grads(1)[0])
    ours, clipped = gx.per_example_global_norm_clip(grads, 2.5)
    theirs, their_clipped = optax.per_example_global_norm_clip(grads, 2.5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), ours, theirs)
    assert int(clipped) == int(their_clipped) > 0
    for uniform in (True, False):
      ours, ours_n = gx.per_example_layer_norm_clip(grads, 1.5, uniform=uniform)
      theirs, theirs_n = optax.per_example_layer_norm_clip(grads, 1.5, uniform=uniform)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), ours, theirs)
      jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), ours_n, theirs_n)


@pytest.mark.parametrize("momentum, nesterov", [(None, False), (0.8, False), (0.7, True)])
def test_dpsgd_matches_optax_step_by_step(momentum, nesterov):
  optax = pytest.importorskip("optax")
  with jax.enable_x64(True):
    params = {"b": jnp.zeros(5), "w": jnp.ones((3, 4)), "s": jnp.asarray(0.5)}
    ours = gx.dpsgd(0.05, l2_norm_clip=1.3, noise_multiplier=0.7, seed=11, momentum=momentum, nesterov=nesterov)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DeprecationWarning)  # optax 0.2.8 deprecates seed= in favour of key=
      theirs = optax.contrib.dpsgd(0.05, 1.3, 0.7, seed=11, momentum=momentum, nesterov=nesterov)
    our_state, their_state = ours.init(params), theirs.init(params)
    step = jax.jit(ours.update)
    for t, grads in enumerate(per_example_grads(30)):
      grads = jax.tree.map(jnp.asarray, grads)
      u, our_state = step(grads, our_state, params)
      v, their_state = theirs.update(grads, their_state, params)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"step {t}"), u, v)
      assert jax.tree.map(jnp.shape, u) == jax.tree.map(jnp.shape, params)


def test_noise_has_the_stated_scale():
  """With σ > 0 and zero gradients, the update is noise of standard deviation σC/B per coordinate."""
  agg = gx.differentially_private_aggregate(2.0, 1.5, seed=3)
  params = {"w": jnp.zeros(20000)}
  state = agg.init(params)
  u, state = agg.update({"w": jnp.zeros((4, 20000))}, state, params)
  assert float(jnp.std(u["w"])) == pytest.approx(2.0 * 1.5 / 4, rel=0.03)
  u2, _ = agg.update({"w": jnp.zeros((4, 20000))}, state, params)
  assert not np.allclose(u["w"], u2["w"]), "the key advances between steps"


@pytest.mark.parametrize("make, message", [
    (lambda: gx.differentially_private_aggregate(0.0, 1.0), "l2_norm_clip"),
    (lambda: gx.differentially_private_aggregate(1.0, -1.0), "noise_multiplier"),
    (lambda: gx.differentially_private_aggregate(1.0, 1.0, seed=-1), "seed"),
    (lambda: gx.dpsgd(0.1, 1.0, 1.0, seed=1.5), "seed"),
])
def test_bad_arguments(make, message):
  with pytest.raises((TypeError, ValueError)) as error:
    make()
  assert message in str(error.value) and "differentially_private_aggregate" in str(error.value)


def test_gradients_without_a_batch_axis_are_refused_clearly():
  agg = gx.differentially_private_aggregate(1.0, 1.0)
  params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
  with pytest.raises(ValueError, match="per-example gradients"):
    agg.update(params, agg.init(params), params)
