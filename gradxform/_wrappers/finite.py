"""A policy for non-finite values: ``apply_if_finite`` skips steps with NaN or Inf updates."""

from __future__ import annotations

import logging
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import as_transform

__all__ = ["ApplyIfFiniteState", "apply_if_finite"]

_NAME = "apply_if_finite"
logger = logging.getLogger("gradxform")



def _all_finite(*trees: Any) -> jax.Array:
  """A boolean scalar: whether every element of every (floating) leaf is finite."""
  leaves = [jnp.asarray(x) for tree in trees for x in jax.tree.leaves(tree)]
  flags = [jnp.all(jnp.isfinite(x)) for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)]
  if not flags:
    return jnp.ones([], jnp.bool_)
  return jnp.stack(flags).all()


def _newly_nonfinite(new: Any, old: Any) -> jax.Array:
  """Whether an element of a floating leaf of ``new`` is non-finite where ``old``'s was finite.

  (A state may legitimately start at ±inf, e.g. a running best loss.)
  """
  flags = []

  def check(n, o):
    if n is None or o is None:
      return None
    n, o = jnp.asarray(n), jnp.asarray(o)
    if jnp.issubdtype(n.dtype, jnp.inexact) and n.shape == o.shape:
      flags.append(jnp.any(~jnp.isfinite(n) & jnp.isfinite(o)))
    return None

  jax.tree.map(check, new, old, is_leaf=_tree.is_none)
  if not flags:
    return jnp.zeros([], jnp.bool_)
  return jnp.stack(flags).any()


def _select_tree(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
  """``on_true`` where the scalar ``pred`` holds, else ``on_false``, leaf by leaf (``None`` stays)."""

  def select(a, b):
    if a is None or b is None:
      return a
    a, b = jnp.asarray(a), jnp.asarray(b)
    return jnp.where(pred, a, b.astype(a.dtype))

  return jax.tree.map(select, on_true, on_false, is_leaf=_tree.is_none)



def _log_give_up(give_up, notfinite_count, total_notfinite, limit) -> None:
  """Host callback: logs an error for every (vmapped) instance that gave up."""
  give_up = np.asarray(give_up)
  if not give_up.any():
    return
  pick = lambda x: np.broadcast_to(np.asarray(x), give_up.shape)[give_up].tolist()
  one = lambda x: x[0] if len(x) == 1 else x
  logger.error(
      "%s: %s non-finite steps in a row (%s in all), more than max_consecutive_errors=%s. "
      "Giving up: this step's non-finite updates are returned, so the parameters "
      "become NaN/Inf. Lower the learning rate, clip the gradients, or find where "
      "the loss stops being finite.",
      _NAME, one(pick(notfinite_count)), one(pick(total_notfinite)), one(pick(limit)))


class ApplyIfFiniteState(NamedTuple):
  """State of :func:`apply_if_finite`.

  ``notfinite_count`` counts the current run of consecutive non-finite steps
  (0 after a finite one); ``last_finite`` says whether the last step was
  finite; ``total_notfinite`` counts all non-finite steps so far (skipped or
  not); ``inner_state`` is the wrapped transform's state, which skipped steps
  leave untouched.
  """

  notfinite_count: jax.Array  # int32 scalar
  last_finite: jax.Array  # bool scalar
  total_notfinite: jax.Array  # int32 scalar
  inner_state: Any

  def diagnostics(self) -> dict:
    """``nonfinite_steps`` (all so far) and ``last_finite``, for :func:`gradxform.diagnostics`."""
    return {"nonfinite_steps": self.total_notfinite, "last_finite": self.last_finite}


class _ApplyIfFinite(GradientTransformation):
  inner: GradientTransformation
  max_consecutive_errors: Any

  def init(self, params):
    return ApplyIfFiniteState(
        notfinite_count=jnp.zeros([], jnp.int32),
        last_finite=jnp.ones([], jnp.bool_),
        total_notfinite=jnp.zeros([], jnp.int32),
        inner_state=self.inner.init(params),
    )

  def update(self, updates, state, params=None, **extra):
    if not isinstance(state, ApplyIfFiniteState):
      raise TypeError(
          f"{_NAME}: expected an ApplyIfFiniteState as state, got {type(state).__name__}. "
          "Pass the state returned by this transform's init() or update().")
    new_updates, new_inner = self.inner.update(updates, state.inner_state, params, **extra)
    finite = _all_finite(updates, new_updates) & ~_newly_nonfinite(new_inner, state.inner_state)
    notfinite_count = jnp.where(finite, jnp.zeros([], jnp.int32), _tree.increment(state.notfinite_count))
    limit = jnp.asarray(self.max_consecutive_errors, jnp.int32)
    give_up = notfinite_count > limit
    accept = finite | give_up
    total = jnp.where(finite, state.total_notfinite, _tree.increment(state.total_notfinite))
    # the host callback only runs when giving up (under vmap both branches run,
    # and the callback itself looks at which members gave up)
    jax.lax.cond(give_up, lambda: jax.debug.callback(
        _log_give_up, give_up, notfinite_count, total, limit), lambda: None)
    zeros = jax.tree.map(lambda u: None if u is None else jnp.zeros_like(u), new_updates,
                         is_leaf=_tree.is_none)
    new_state = ApplyIfFiniteState(
        notfinite_count=notfinite_count,
        last_finite=finite,
        total_notfinite=total,
        inner_state=_select_tree(accept, new_inner, state.inner_state),
    )
    return _select_tree(accept, new_updates, zeros), new_state


def apply_if_finite(inner: Any, max_consecutive_errors: Any) -> GradientTransformation:
  """Skips steps whose updates are not finite (NaN or Inf), up to a limit.

  A step is *bad* when an incoming gradient or an update returned by
  ``inner`` has a non-finite element, or when the step would make a finite
  element of the inner state non-finite (a huge but finite gradient can
  overflow in Adam's ``g²`` and poison ``v`` while the update stays finite).
  With ``n_t`` the number of consecutive bad steps ending at step ``t`` and
  ``M = max_consecutive_errors``:

  .. math::

     (u_t, s_t) = \\begin{cases}
       \\mathrm{inner}(g_t, s_{t-1}) & \\text{if step } t \\text{ is finite, or } n_t > M \\\\
       (0,\\; s_{t-1})               & \\text{otherwise}
     \\end{cases}

  A skipped step leaves the parameters (zero update) and the inner state
  (including its step count, so schedules and bias corrections do not
  advance) exactly as they were; the run then continues as if the bad
  gradient had never arrived. After more than ``M`` bad steps in a row the
  transform gives up: it returns the inner updates (NaN/Inf) and the new inner
  state, and logs an error through the ``gradxform`` logger (from a
  ``jax.debug.callback``, so also under ``jit``; with no logging configured
  Python prints it to stderr) at every such step.

  Args:
    inner: the transform to protect (gradxform or optax).
    max_consecutive_errors: ``M ≥ 0``, how many bad steps in a row are skipped
      before giving up (an int; a leaf of the pytree, so changing it does not
      recompile).

  Returns:
    A transform with state :class:`ApplyIfFiniteState`.

  References:
    Micikevicius et al., 2018, "Mixed Precision Training" (skipping steps with
    overflowed gradients), https://arxiv.org/abs/1710.03740
  """
  inner = as_transform(inner, _NAME)
  _check_max_errors(max_consecutive_errors)
  return _ApplyIfFinite(inner, max_consecutive_errors)


def _check_max_errors(value: Any) -> None:
  """Raises unless ``value`` is an integer >= 0 (a traced value passes unchecked)."""
  if isinstance(value, jax.core.Tracer):
    return
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{_NAME}: max_consecutive_errors must be an integer >= 0, not a boolean.")
  dtype = getattr(value, "dtype", None)
  integer_array = dtype is not None and jnp.issubdtype(dtype, jnp.integer)
  if not (isinstance(value, numbers.Integral) or integer_array):
    raise TypeError(
        f"{_NAME}: max_consecutive_errors must be an integer >= 0 (how many non-finite "
        f"steps in a row to skip before giving up), got {type(value).__name__} {value!r}.")
  if np.any(np.asarray(value) < 0):
    raise ValueError(
        f"{_NAME}: max_consecutive_errors={value} is negative. Use the number of "
        "non-finite steps in a row to skip before giving up, e.g. 5 (0 skips none).")
