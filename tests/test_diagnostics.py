"""gx.diagnostics: every dashboard scalar from the state in one call, checked against direct computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx


def norm(tree):
  return float(np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree))))


def test_norms_before_and_after_clipping_update_and_params():
  params = {"w": jnp.full((3, 4), 0.5), "b": jnp.arange(5.0)}
  opt = gx.monitor(gx.chain(gx.clip_by_global_norm(2.0), gx.adamw(gx.schedules.linear(0.1, 0.01, 4))))
  state = opt.init(params)
  step = jax.jit(opt.update)
  scales = [10.0, 0.1, 5.0, 0.3]  # norms 41, 0.4, 21, 1.2 against 2: clipped, not, clipped, not
  for scale in scales:
    grads = jax.tree.map(lambda p: scale * jnp.ones_like(p), params)
    updates, state = step(grads, state, params)
    d = gx.diagnostics(state)
    assert float(d["grad_norm"]) == pytest.approx(norm(grads), rel=1e-6)
    assert float(d["inner_state/0/grad_norm_before_clip"]) == pytest.approx(norm(grads), rel=1e-6)
    assert float(d["inner_state/0/grad_norm_after_clip"]) == pytest.approx(min(norm(grads), 2.0), rel=1e-5)
    assert float(d["update_norm"]) == pytest.approx(norm(updates), rel=1e-6)
    assert float(d["param_norm"]) == pytest.approx(norm(params), rel=1e-6)
    params = gx.apply_updates(params, updates)
  assert float(d["inner_state/0/clipped_fraction"]) == 0.5
  # the schedule's current value (used at the 4th update, count 3)
  assert float(d["hyperparams/inner_state/1/2/learning_rate"]) == pytest.approx(0.1 + (0.01 - 0.1) * 3 / 4)
  assert all(jnp.ndim(v) == 0 for v in d.values()), "diagnostics are scalars only"


def test_per_partition_group_and_skipped_nonfinite_steps():
  params = {"enc": jnp.ones(3), "dec": jnp.ones(2)}
  opt = gx.apply_if_finite(gx.partition({"enc": gx.chain(gx.clip_by_global_norm(1.0), gx.sgd(0.1)),
                                         "dec": gx.chain(gx.clip_by_global_norm(5.0), gx.adam(0.01))},
                                        {"enc": "enc", "dec": "dec"}), max_consecutive_errors=3)
  state = opt.init(params)
  for grads in ({"enc": jnp.full(3, 2.0), "dec": jnp.full(2, 1.0)},
                {"enc": jnp.full(3, jnp.nan), "dec": jnp.full(2, 1.0)}):
    _, state = opt.update(grads, state, params)
  d = gx.diagnostics(state)
  assert int(d["nonfinite_steps"]) == 1 and not bool(d["last_finite"])
  enc = [k for k in d if k.endswith("grad_norm_before_clip") and "enc" in k]
  dec = [k for k in d if k.endswith("grad_norm_before_clip") and "dec" in k]
  assert len(enc) == len(dec) == 1, sorted(d)
  assert float(d[enc[0]]) == pytest.approx(np.sqrt(12.0), rel=1e-6)  # the finite step's norm (skipped kept)
  assert float(d[dec[0]]) == pytest.approx(np.sqrt(2.0), rel=1e-6)
  assert not any(k.startswith("hyperparams/") for k in d)  # constants: not in the state


def test_diagnostics_under_vmap_and_jit_are_stacked_scalars():
  params = {"w": jnp.ones(4)}
  opt = gx.monitor(gx.sgd(jnp.asarray([0.1, 0.2, 0.3])))
  state = jax.vmap(lambda o: o.init(params))(opt)
  updates, state = jax.vmap(lambda o, s: o.update({"w": jnp.ones(4)}, s, params))(opt, state)
  d = jax.jit(gx.diagnostics)(state)
  np.testing.assert_allclose(d["update_norm"], [0.2, 0.4, 0.6], rtol=1e-6)
