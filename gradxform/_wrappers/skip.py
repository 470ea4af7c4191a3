"""Predicates that skip a micro-step of ``accumulate``: non-finite or too large gradients (optax's)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree

__all__ = ["skip_large_updates", "skip_not_finite"]


def skip_not_finite(updates: Any, gradient_step: Any, params: Any) -> tuple[jax.Array, dict]:
  """Skip when any gradient entry is NaN or infinite, as ``optax.skip_not_finite``.

  .. math::

     \\text{skip} = \\big|\\{i : g_i \\notin \\mathbb{R}\\}\\big| > 0

  For ``gx.accumulate(..., should_skip=gx.skip_not_finite)``.

  Args:
    updates: the micro-step's gradients.
    gradient_step: the micro-step's index (unused).
    params: the parameters (unused).

  Returns:
    ``(should_skip, {"should_skip": ..., "num_not_finite": ...})``.

  References:
    optax's ``skip_not_finite``, https://optax.readthedocs.io/en/latest/api/optimizer_wrappers.html
  """
  del gradient_step, params
  counts = [jnp.sum(~jnp.isfinite(_tree.as_real(jnp.asarray(g)))).astype(jnp.int32) for g in jax.tree.leaves(updates)]
  num = sum(counts, jnp.zeros([], jnp.int32))
  skip = num > 0
  return skip, {"should_skip": skip, "num_not_finite": num}


def skip_large_updates(updates: Any, gradient_step: Any, params: Any,
                       max_squared_norm: Any) -> tuple[jax.Array, dict]:
  """Skip when the gradients' squared norm reaches ``max_squared_norm`` (or is NaN), as optax's.

  .. math::

     \\text{skip} = \\neg\\big(\\|g\\|^2 < c\\big)

  Bind the threshold first: ``should_skip=functools.partial(gx.skip_large_updates, max_squared_norm=c)``.

  Args:
    updates: the micro-step's gradients.
    gradient_step: the micro-step's index (unused).
    params: the parameters (unused).
    max_squared_norm: ``c``.

  Returns:
    ``(should_skip, {"should_skip": ..., "norm_squared": ...})``.

  References:
    optax's ``skip_large_updates``, https://optax.readthedocs.io/en/latest/api/optimizer_wrappers.html
  """
  del gradient_step, params
  norm_sq = jnp.square(_tree.global_norm(updates))
  skip = jnp.logical_not(norm_sq < max_squared_norm)
  return skip, {"should_skip": skip, "norm_squared": norm_sq}
