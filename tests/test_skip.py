"""accumulate(should_skip=) with skip_not_finite / skip_large_updates, against optax.MultiSteps.

optax keeps a running mean of the micro-gradients (acc + (g - acc)/n) where gradxform sums and divides
once, and parts of optax's step compute in float32 even under x64: the updates (steps of about 0.05) agree to 1e-6 relative or 1e-8 absolute,
the skip decisions exactly.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx


def stream(steps=30, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for t in range(steps):
    scale = 0.0 if t == 3 else float(10.0 ** rng.uniform(-1, 1.5))
    g = {"b": scale * rng.normal(size=(5,)), "w": scale * rng.normal(size=(3, 4))}
    if t in (6, 13):
      g["w"][1, 2] = np.nan if t == 6 else np.inf
    out.append(g)
  return out


@pytest.mark.parametrize("name", ["not_finite", "large"])
def test_matches_optax_multisteps_with_a_skip_function(name):
  optax = pytest.importorskip("optax")
  with jax.enable_x64(True):
    if name == "not_finite":
      ours_fn, theirs_fn = gx.skip_not_finite, optax.skip_not_finite
    else:
      ours_fn = functools.partial(gx.skip_large_updates, max_squared_norm=400.0)
      theirs_fn = functools.partial(optax.skip_large_updates, max_squared_norm=400.0)
    params = {"b": jnp.ones(5), "w": jnp.zeros((3, 4))}
    ours = gx.accumulate(gx.adam(0.05, b1=0.8), every_k=3, should_skip=ours_fn)
    theirs = optax.MultiSteps(optax.adam(0.05, b1=0.8), every_k_schedule=3, should_skip_update_fn=theirs_fn)
    s1, s2 = ours.init(params), theirs.init(params)
    step, their_step = jax.jit(ours.update), jax.jit(theirs.update)
    skipped = 0
    for t, g in enumerate(stream()):
      g = jax.tree.map(jnp.asarray, g)
      u, s1 = step(g, s1, params)
      with jax.numpy_dtype_promotion("standard"):  # optax's adam mixes int32 counts and floats
        v, s2 = their_step(g, s2, params)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8, err_msg=f"step {t}"), u, v)
      assert bool(s1.skip_state["should_skip"]) == bool(s2.skip_state["should_skip"])
      skipped += int(s1.skip_state["should_skip"])
      params = gx.apply_updates(params, u)
    assert skipped >= 2  # the NaN and inf micro-steps (and, for "large", the big ones)


def test_bad_should_skip():
  with pytest.raises(TypeError, match="accumulate: should_skip"):
    gx.accumulate(gx.sgd(0.1), 2, should_skip=3)
