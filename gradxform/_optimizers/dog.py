"""DoG (Ivgi et al. 2023): a learning-rate-free step size, distance travelled over root-summed squared gradients."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field

__all__ = ["scale_by_distance_over_gradients"]

_NAME = "scale_by_distance_over_gradients"


class ScaleByDistanceOverGradientsState(NamedTuple):
  """State of :func:`scale_by_distance_over_gradients`.

  Per leaf: ``max_dist`` (scalar, the parameters' dtype), ``grad_sum_of_squares``
  (scalar, at least float32) and ``init_params`` (the starting point, in ``param_dtype``).
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  max_dist: Any
  grad_sum_of_squares: Any
  init_params: Any


def _distance(x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
  dtype = _tree.compute_dtype(jnp.result_type(x))
  x = jnp.asarray(x, dtype)
  d = x if y is None else x - jnp.asarray(y, dtype)
  return jnp.sqrt(jnp.sum(jnp.square(d)))


class _ScaleByDistanceOverGradients(Transform):
  reps_rel: Any
  eps: Any
  global_scale: Any
  param_dtype: Optional[Any] = static_field(default=jnp.float32)
  State = ScaleByDistanceOverGradientsState

  def init_fields(self, params):
    _tree.require_params(_NAME, params, "measure the distance travelled from them", where="init")
    _tree.check_floating(_NAME, params, "parameter")
    reps_rel = self.reps_rel
    first = lambda p: (jnp.asarray(reps_rel) * (1 + _distance(p))).astype(jnp.result_type(p))
    sums = lambda p: jnp.zeros([], _tree.compute_dtype(jnp.result_type(p)))
    return {"max_dist": jax.tree.map(first, params), "grad_sum_of_squares": jax.tree.map(sums, params),
            "init_params": jax.tree.map(lambda p: jnp.asarray(p, self.param_dtype or jnp.result_type(p)), params)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params(_NAME, params, "measure the distance travelled from init")
    _tree.check_floating(_NAME, updates, "update")
    is_none = _tree.is_none
    if jax.tree.structure(updates, is_leaf=is_none) != jax.tree.structure(state.init_params, is_leaf=is_none):
      raise _tree._structure_error(_NAME, "update", updates, state.init_params)
    max_dist = jax.tree.map(lambda d, p, p0: jnp.maximum(d, _distance(p, p0).astype(d.dtype)),
                            state.max_dist, params, state.init_params)
    sums = jax.tree.map(lambda s, g: s + jnp.sum(jnp.square(jnp.asarray(g, s.dtype))),
                        state.grad_sum_of_squares, updates)
    step = jax.tree.map(lambda d, s: None if d is None else hp["global_scale"].astype(s.dtype) * d.astype(s.dtype)
                        / jnp.sqrt(s + hp["eps"].astype(s.dtype)), max_dist, sums)
    step_like_g = jax.tree.map(lambda g, e: jnp.broadcast_to(e, jnp.shape(g)), updates, step, is_leaf=is_none)
    updates, _ = _tree.leafwise(_NAME, lambda g, eta: (eta * g, None), updates, step_like_g, check_dtype=(False,))
    return updates, {"max_dist": max_dist, "grad_sum_of_squares": sums}


def scale_by_distance_over_gradients(reps_rel: Any = 1e-6, eps: Any = 1e-8, param_dtype: Any = jnp.float32,
                                     global_scale: Any = 1.0) -> GradientTransformation:
  """Layer-wise DoG (Ivgi et al. 2023, LDoG), as ``optax.scale_by_distance_over_gradients``.

  .. math::

     \\bar r_t = \\max\\big(\\bar r_{t-1}, \\|p_t - p_0\\|\\big), \\quad
     \\bar r_0 = r_\\epsilon (1 + \\|p_0\\|), \\qquad
     G_t = G_{t-1} + \\|g_t\\|^2, \\qquad
     u_t = s\\, \\frac{\\bar r_t}{\\sqrt{G_t + \\epsilon}}\\, g_t

  per leaf. A step size, not a descent direction: chain it with
  ``scale(-1.0)`` (or pass ``global_scale=-1.0``). The starting point is
  stored in ``param_dtype`` (float32 as optax; ``None``: the parameters'
  dtype). optax keeps ``G`` with shape ``(1,)``, which turns scalar
  leaves' updates into shape ``(1,)``; here it is a scalar.

  Args:
    reps_rel: ``r_ε > 0``, the initial movement relative to ``1 + ‖p₀‖``
      (1e-6; the authors suggest 1e-4 with batch norm).
    eps: ``ε ≥ 0`` inside the root.
    param_dtype: dtype of the stored starting point.
    global_scale: ``s``, a factor (typically 1 or -1).

  Returns:
    A transform with state :class:`ScaleByDistanceOverGradientsState`
    (one parameter copy); ``init`` and ``update`` require ``params``.

  References:
    Ivgi, Hinder & Carmon, 2023, "DoG is SGD's Best Friend: A Parameter-Free
    Dynamic Step Size Schedule", https://arxiv.org/abs/2302.12022
  """
  check_hyperparameter(_NAME, "reps_rel", reps_rel, low=0.0, low_open=True,
                       hint="reps_rel sets the first step (relative to 1 + ||p0||); it must be > 0, e.g. 1e-6.")
  check_hyperparameter(_NAME, "eps", eps, low=0.0, hint="eps must be >= 0 (it is added inside the root).")
  check_hyperparameter(_NAME, "global_scale", global_scale, hint="global_scale is a factor, typically 1.0 or -1.0.")
  return _ScaleByDistanceOverGradients(reps_rel, eps, global_scale, param_dtype=param_dtype)
