"""Per-block scalings by norms: ``scale_by_trust_ratio`` (LARS/LAMB/Fromage), ``scale_by_param_block_norm``,
``scale_by_param_block_rms`` and ``normalize_by_update_norm``.

A *block* is one leaf of the tree (a kernel, a bias): each is rescaled by one
number computed from its own parameters and update.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._transforms.clipping import _norm

__all__ = ["normalize_by_update_norm", "scale_by_param_block_norm", "scale_by_param_block_rms",
           "scale_by_trust_ratio"]


def _block_norm(x: jax.Array) -> jax.Array:
  """The Euclidean (Frobenius) norm of a whole leaf, a scalar, computed without overflow."""
  return jnp.reshape(_norm(x, None), ())


def _check_params_cover_updates(name: str, updates: Any, params: Any) -> None:
  """Raises a ``ValueError`` naming the first update leaf whose parameter is ``None``."""
  flat_u, def_u = jax.tree_util.tree_flatten_with_path(updates, is_leaf=_tree.is_none)
  flat_p, def_p = jax.tree.flatten(params, is_leaf=_tree.is_none)
  if def_u != def_p:
    return  # leafwise reports the structure mismatch, with the paths
  for (path, u), p in zip(flat_u, flat_p):
    if u is not None and p is None:
      raise ValueError(
          f"{name}: the update at {_tree.keystr(path)} has no parameter (params has None "
          "there). Pass the full parameter tree, or mask out that update as well.")


class BlockScaleState(NamedTuple):
  """State of the block scalings of this module: only the count and the hyperparameters."""

  count: jax.Array  # int32 scalar
  hyperparams: dict


class _BlockScale(Transform):
  """Shared ``apply``: ``u = g · factor(g, p)`` per leaf, with the parameters required."""

  State = BlockScaleState
  counts = False  # the rule does not depend on the step

  def apply(self, updates, state, params, hp, **extra):
    name = self.transform_name()
    _tree.require_params(name, params, "scale each block by its parameters' norm")
    _check_params_cover_updates(name, updates, params)
    factor = self.factor

    def rule(g, p, **hp):
      return g * factor(g, p, **hp).astype(g.dtype), None

    updates, _ = _tree.leafwise(name, rule, updates, params, scalars=hp, check_dtype=(False,))
    return updates, {}


class _ScaleByTrustRatio(_BlockScale):
  min_norm: Any
  trust_coefficient: Any
  eps: Any

  @staticmethod
  def factor(g, p, min_norm, trust_coefficient, eps):
    p_norm = jnp.maximum(_block_norm(p), min_norm)
    g_norm = jnp.maximum(_block_norm(g), min_norm)
    ratio = trust_coefficient * p_norm / (g_norm + eps)
    return jnp.where((p_norm == 0) | (g_norm == 0), jnp.ones_like(ratio), ratio)


def scale_by_trust_ratio(min_norm: Any = 0.0, trust_coefficient: Any = 1.0,
                         eps: Any = 0.0) -> GradientTransformation:
  """Rescales each leaf by its trust ratio ``‖p‖ / ‖u‖`` (You et al. 2017), as ``optax.scale_by_trust_ratio``.

  .. math::

     r = \\frac{c \\cdot \\max(\\|p\\|, m)}{\\max(\\|g\\|, m) + \\epsilon}, \\qquad
     u = \\begin{cases} g & \\text{if } \\max(\\|p\\|, m) = 0 \\text{ or } \\max(\\|g\\|, m) = 0 \\\\
                        r\\, g & \\text{otherwise} \\end{cases}

  per leaf, with Frobenius norms over the whole leaf. Used by :func:`lamb`,
  :func:`lars` and :func:`fromage`. Norms are computed in at least float32
  (scaled by the largest magnitude, so they do not overflow); the parameters
  may have another floating dtype than the updates.

  Args:
    min_norm: ``m ≥ 0``, a floor for both norms (0: no floor).
    trust_coefficient: ``c > 0``, a multiplier of the ratio (LARS's ``η``).
    eps: ``ε ≥ 0`` added to the update's norm.

  Returns:
    A transform with state :class:`BlockScaleState`; ``update`` requires ``params``.

  References:
    You, Gitman & Ginsburg, 2017, "Large Batch Training of Convolutional
    Networks", https://arxiv.org/abs/1708.03888
  """
  name = "scale_by_trust_ratio"
  check_hyperparameter(name, "min_norm", min_norm, low=0.0,
                       hint="min_norm is a floor for the parameter and update norms; use 0 (no floor) or e.g. 1e-6.")
  check_hyperparameter(name, "trust_coefficient", trust_coefficient, low=0.0, low_open=True,
                       hint="trust_coefficient multiplies the ratio ||p||/||u||; it must be positive "
                       "(1.0 for LAMB, 1e-3 for LARS).")
  check_hyperparameter(name, "eps", eps, low=0.0,
                       hint="eps is added to the update norm; it must be >= 0.")
  return _ScaleByTrustRatio(min_norm, trust_coefficient, eps)


def _rms(x: jax.Array) -> jax.Array:
  return _block_norm(x) / jnp.sqrt(jnp.asarray(max(x.size, 1), x.dtype))


class _ScaleByParamBlockNorm(_BlockScale):
  min_scale: Any

  @staticmethod
  def factor(g, p, min_scale):
    return jnp.maximum(_block_norm(p), min_scale)


class _ScaleByParamBlockRms(_BlockScale):
  min_scale: Any

  @staticmethod
  def factor(g, p, min_scale):
    return jnp.maximum(_rms(p), min_scale)


def _check_min_scale(name: str, min_scale: Any) -> None:
  check_hyperparameter(name, "min_scale", min_scale, low=0.0,
                       hint="min_scale is the smallest factor applied (so zero-initialized "
                       "parameters still move); it must be >= 0, e.g. 1e-3.")


def scale_by_param_block_norm(min_scale: Any = 1e-3) -> GradientTransformation:
  """Multiplies each leaf's update by its parameters' norm, as ``optax.scale_by_param_block_norm``.

  .. math::  u = g \\cdot \\max(\\|p\\|, s)

  with the Frobenius norm of the whole leaf (computed in at least float32).

  Args:
    min_scale: ``s ≥ 0``, the smallest factor.

  Returns:
    A transform with state :class:`BlockScaleState`; ``update`` requires ``params``.

  References:
    optax, ``scale_by_param_block_norm``,
    https://optax.readthedocs.io/en/latest/api/transformations.html#optax.scale_by_param_block_norm
  """
  _check_min_scale("scale_by_param_block_norm", min_scale)
  return _ScaleByParamBlockNorm(min_scale)


def scale_by_param_block_rms(min_scale: Any = 1e-3) -> GradientTransformation:
  """Multiplies each leaf's update by its parameters' root mean square, as ``optax.scale_by_param_block_rms``.

  .. math::  u = g \\cdot \\max\\big(\\sqrt{\\tfrac{1}{n}\\textstyle\\sum_i p_i^2},\\; s\\big)

  per leaf of ``n`` elements (computed in at least float32).

  Args:
    min_scale: ``s ≥ 0``, the smallest factor.

  Returns:
    A transform with state :class:`BlockScaleState`; ``update`` requires ``params``.

  References:
    optax, ``scale_by_param_block_rms``,
    https://optax.readthedocs.io/en/latest/api/transformations.html#optax.scale_by_param_block_rms
  """
  _check_min_scale("scale_by_param_block_rms", min_scale)
  return _ScaleByParamBlockRms(min_scale)


class _NormalizeByUpdateNorm(Transform):
  scale_factor: Any
  eps: Any
  State = BlockScaleState
  counts = False  # the rule does not depend on the step

  def apply(self, updates, state, params, hp, **extra):
    name = "normalize_by_update_norm"
    _tree.check_floating(name, updates, "update")
    norm = _tree.global_norm(updates)
    factor = hp["scale_factor"].astype(norm.dtype) / (norm + hp["eps"].astype(norm.dtype))
    updates, = _tree.leafwise(name, lambda g, factor: (g * factor,), updates, scalars={"factor": factor})
    return updates, {}


def normalize_by_update_norm(scale_factor: Any = 1.0, eps: Any = 1e-6) -> GradientTransformation:
  """Divides all updates by their joint norm, as ``optax.normalize_by_update_norm``.

  .. math::

     u = \\frac{s}{\\|g\\| + \\epsilon}\\, g, \\qquad
     \\|g\\| = \\sqrt{\\textstyle\\sum_{\\text{leaves}} \\sum_i g_i^2}

  The norm is over the whole tree (not per leaf), accumulated in at least
  float32. ``scale_factor=-lr`` makes it normalized gradient descent.

  Args:
    scale_factor: ``s``, the norm of the result (any sign; float, array or schedule).
    eps: ``ε ≥ 0``, keeps an all-zero update at zero instead of NaN.

  Returns:
    A transform with state :class:`BlockScaleState`.

  References:
    optax, ``normalize_by_update_norm``,
    https://optax.readthedocs.io/en/latest/api/transformations.html#optax.normalize_by_update_norm
  """
  check_hyperparameter("normalize_by_update_norm", "scale_factor", scale_factor,
                       hint="scale_factor is the norm of the result, e.g. 1.0 (or -lr to descend).")
  check_hyperparameter("normalize_by_update_norm", "eps", eps, low=0.0,
                       hint="eps keeps the division finite for an all-zero update; it must be >= 0, e.g. 1e-6.")
  return _NormalizeByUpdateNorm(scale_factor, eps)
