"""Small shared helpers for the tests: running a transform over a gradient stream."""

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx


def cast(tree, dtype):
  return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def run(opt, params, stream, dtype, jit=False, apply=True):
  """Applies ``opt`` to each gradient of ``stream``; returns (updates per step, params, state).

  With ``apply=False`` the parameters stay fixed (the updates are not applied).
  """
  params = cast(params, dtype)
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  updates_seen = []
  for grads in stream:
    updates, state = update(cast(grads, dtype), state, params)
    if apply:
      params = gx.apply_updates(params, updates)
    updates_seen.append(updates)
  return updates_seen, params, state


def run_reference(reference, params, stream):
  """The same loop for a NumPy reference (leaves in sorted-key order, float64)."""
  keys = sorted(params)
  p = [np.asarray(params[k], np.float64) for k in keys]
  updates_seen = []
  for grads in stream:
    u = reference([np.asarray(grads[k], np.float64) for k in keys], p)
    p = [pi + ui for pi, ui in zip(p, u)]
    updates_seen.append(dict(zip(keys, u)))
  return updates_seen, dict(zip(keys, p))


def assert_trees_close(actual, expected, rtol, atol, what=""):
  flat_a, tree_a = jax.tree.flatten(actual)
  flat_e, tree_e = jax.tree.flatten(expected)
  assert tree_a == tree_e, f"{what}: structures differ: {tree_a} vs {tree_e}"
  for a, e in zip(flat_a, flat_e):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64),
                               rtol=rtol, atol=atol, err_msg=what)


def compile_counter():
  """Counts XLA compilations from now on: returns ``(events, stop)``; ``len(events)`` is the count."""
  events = []

  def listener(name, duration, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
      events.append(name)

  jax.monitoring.register_event_duration_secs_listener(listener)
  return events, lambda: jax.monitoring.unregister_event_duration_listener(listener)
