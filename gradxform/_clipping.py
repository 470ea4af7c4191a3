"""Clipping: per coordinate (``clip``) and by the global norm (``clip_by_global_norm``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _tree
from gradxform._base import GradientTransformation
from gradxform._hyperparams import Transform, check_hyperparameter

__all__ = ["clip", "clip_by_global_norm"]


class ClipState(NamedTuple):
  """State of the clipping transforms: only the count and the threshold."""

  count: jax.Array  # int32 scalar
  hyperparams: dict


class _Clip(Transform):
  max_delta: Any
  State = ClipState

  def apply(self, updates, state, params, hp, **extra):
    rule = lambda g, max_delta: (jnp.clip(g, -max_delta, max_delta),)
    updates, = _tree.leafwise("clip", rule, updates, scalars=hp)
    return updates, {}


def clip(max_delta: Any) -> GradientTransformation:
  """Clips every coordinate to ``[-δ, δ]``: ``u = min(max(g, -δ), δ)``.

  As ``torch.nn.utils.clip_grad_value_``.

  Args:
    max_delta: ``δ ≥ 0`` (float, array or schedule).
  """
  check_hyperparameter("clip", "max_delta", max_delta, low=0.0,
                       hint="max_delta is the largest absolute value an update may keep; it must be >= 0.")
  return _Clip(max_delta)


class _ClipByGlobalNorm(Transform):
  max_norm: Any
  State = ClipState

  def apply(self, updates, state, params, hp, **extra):
    _tree.check_floating("clip_by_global_norm", updates, "update")
    norm = _tree.global_norm(updates)
    max_norm = hp["max_norm"].astype(norm.dtype)
    factor = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    rule = lambda g, factor: (g * factor,)
    updates, = _tree.leafwise("clip_by_global_norm", rule, updates, scalars={"factor": factor})
    return updates, {}


def clip_by_global_norm(max_norm: Any) -> GradientTransformation:
  """Rescales all updates together so that their joint norm is at most ``c``.

  .. math::

     \\|g\\| = \\sqrt{\\textstyle\\sum_{\\text{leaves}} \\sum_i g_i^2}, \\qquad
     u = g \\cdot \\min\\!\\Big(1, \\frac{c}{\\|g\\| + 10^{-6}}\\Big)

  As ``torch.nn.utils.clip_grad_norm_`` (including its ``1e-6``); the norm is
  accumulated in at least float32.

  Args:
    max_norm: ``c > 0`` (float, array or schedule).

  References:
    Pascanu, Mikolov & Bengio, 2013, "On the difficulty of training recurrent
    neural networks", https://arxiv.org/abs/1211.5063
  """
  check_hyperparameter("clip_by_global_norm", "max_norm", max_norm, low=0.0, low_open=True,
                       hint="max_norm is the largest allowed global norm; it must be positive, e.g. 1.0.")
  return _ClipByGlobalNorm(max_norm)
