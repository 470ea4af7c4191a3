"""optax's aliases and primitives as gradxform chains with optax's numbers (see the package docstring)."""

from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp

import gradxform as gx
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._transforms.clipping import ClipState

__all__ = ["adadelta", "adagrad", "adam", "adamax", "adamw", "add_decayed_weights", "amsgrad",
           "clip_by_global_norm", "ema", "lbfgs", "lion", "nadam", "nadamw", "radam", "rmsprop",
           "scale_by_adadelta", "scale_by_adam", "scale_by_adamax", "scale_by_learning_rate", "scale_by_lion",
           "scale_by_radam", "scale_by_rms", "scale_by_stddev", "sgd", "trace"]


# the same numbers in both places: the same objects
apply_if_finite = gx.apply_if_finite
apply_updates = gx.apply_updates
chain = gx.chain
clip = gx.clip
identity = gx.identity
masked = gx.masked
scale = gx.scale
scale_by_sign = gx.scale_by_sign
set_to_zero = gx.set_to_zero
schedules = gx.schedules


def _lr(learning_rate: Any) -> GradientTransformation:
  return gx.scale_by_learning_rate(learning_rate)


def _not_yet(name: str, why: str):
  def missing(*args, **kwargs):
    raise NotImplementedError(f"gx.optax_like.{name} is not reproduced yet: {why}. Use gx.{name} "
                              f"(torch's variant) or optax.{name} itself.")
  missing.__name__ = name
  return missing


def amsgrad(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
            mu_dtype: Optional[Any] = None) -> GradientTransformation:
  """``optax.amsgrad``: the maximum of the bias-corrected ``v̂`` (``gx.amsgrad`` follows torch: the raw ``v``)."""
  if not (isinstance(eps_root, (int, float)) and eps_root == 0):
    raise NotImplementedError("gx.optax_like.amsgrad: only eps_root=0.0 (optax's default) is reproduced yet.")
  return gx.amsgrad(learning_rate, b1, b2, eps, debias_before_max=True, mu_dtype=mu_dtype)


def nadam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
          mu_dtype: Optional[Any] = None, *, nesterov: bool = True) -> GradientTransformation:
  """``optax.nadam``: Adam with optax's Nesterov numerator and a constant ``b1``.

  ``u = (β₁ m_t/(1−β₁^{t+1}) + (1−β₁) g_t/(1−β₁^t)) / (√(v̂_t + ε_root) + ε)``, then ``−η u``
  (:func:`gradxform.scale_by_adam` with ``nesterov=True``). ``gx.nadam`` is torch's NAdam, with its
  momentum-decay schedule ``μ_t``.

  References:
    Dozat, 2016, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
  """
  return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)


def nadamw(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
           mu_dtype: Optional[Any] = None, weight_decay: Any = 1e-4, mask: Any = None, *,
           nesterov: bool = True) -> GradientTransformation:
  """``optax.nadamw``: :func:`nadam`'s direction plus decoupled decay ``λp`` (optax's default ``1e-4``).

  ``p ← p − η(u_t + λp)``.

  References:
    Dozat, 2016, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ; Loshchilov & Hutter, 2019,
    https://arxiv.org/abs/1711.05101
  """
  return adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=nesterov)


def scale_by_radam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0, threshold: Any = 5.0,
                   *, nesterov: bool = False) -> GradientTransformation:
  """``optax.scale_by_radam``: rectified when ``ρ_t ≥ threshold``, ``ε`` on ``√(v̂ + ε_root)``.

  :func:`gradxform.scale_by_radam` with ``eps_root`` given (optax's rule; see its formula).

  References:
    Liu et al., 2020, https://arxiv.org/abs/1908.03265
  """
  return gx.scale_by_radam(b1, b2, eps, eps_root=eps_root, threshold=threshold, nesterov=nesterov)


def radam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
          threshold: Any = 5.0, *, nesterov: bool = False) -> GradientTransformation:
  """``optax.radam``: ``chain(scale_by_radam(b1, b2, eps, eps_root, threshold), scale_by_learning_rate)``.

  References:
    Liu et al., 2020, https://arxiv.org/abs/1908.03265
  """
  return gx.chain(scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov), _lr(learning_rate))


lbfgs = _not_yet("lbfgs", "optax's L-BFGS has its own zoom search and initial scaling")


# ---------------------------------------------------------------- primitives


def scale_by_adam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
                  mu_dtype: Optional[Any] = None, *, nesterov: bool = False) -> GradientTransformation:
  """``optax.scale_by_adam``: the same rule as ``gx.scale_by_adam`` (``eps`` outside, ``eps_root`` inside)."""
  return gx.scale_by_adam(b1, b2, eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov)


def scale_by_rms(decay: Any = 0.9, eps: Any = 1e-8, initial_scale: Any = 0.0, eps_in_sqrt: bool = True,
                 bias_correction: bool = False) -> GradientTransformation:
  """``optax.scale_by_rms``: ``g / √(v + ε)`` (``eps_in_sqrt``) or ``g / (√v + ε)``, decay 0.9."""
  if not (isinstance(initial_scale, (int, float)) and initial_scale == 0):
    raise NotImplementedError("gx.optax_like.scale_by_rms: only initial_scale=0.0 (optax's default) is "
                              "reproduced yet.")
  if eps_in_sqrt:
    return gx.scale_by_rms(decay, eps=0.0, eps_root=eps, debias=bias_correction)
  return gx.scale_by_rms(decay, eps=eps, eps_root=0.0, debias=bias_correction)


def scale_by_stddev(decay: Any = 0.9, eps: Any = 1e-8, initial_scale: Any = 0.0, eps_in_sqrt: bool = True,
                    bias_correction: bool = False) -> GradientTransformation:
  """``optax.scale_by_stddev``: centered RMS scaling, ``g / √(v − m² + ε)``."""
  if not (isinstance(initial_scale, (int, float)) and initial_scale == 0):
    raise NotImplementedError("gx.optax_like.scale_by_stddev: only initial_scale=0.0 is reproduced yet.")
  if eps_in_sqrt:
    return gx.scale_by_rms(decay, eps=0.0, eps_root=eps, centered=True, debias=bias_correction)
  return gx.scale_by_rms(decay, eps=eps, eps_root=0.0, centered=True, debias=bias_correction)


def scale_by_adamax(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> GradientTransformation:
  """``optax.scale_by_adamax`` (the same rule as ``gx.scale_by_adamax``)."""
  return gx.scale_by_adamax(b1, b2, eps)


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> GradientTransformation:
  """``optax.scale_by_adadelta`` (the same rule as ``gx.scale_by_adadelta``)."""
  return gx.scale_by_adadelta(rho, eps)


def scale_by_lion(b1: Any = 0.9, b2: Any = 0.99, mu_dtype: Optional[Any] = None) -> GradientTransformation:
  """``optax.scale_by_lion`` (the same rule as ``gx.scale_by_lion``)."""
  return gx.scale_by_lion(b1, b2, mu_dtype=mu_dtype)


def scale_by_learning_rate(learning_rate: Any, *, flip_sign: bool = True) -> GradientTransformation:
  """``optax.scale_by_learning_rate``: ``−η·g`` (``+η·g`` with ``flip_sign=False``)."""
  return gx.scale_by_learning_rate(learning_rate) if flip_sign else gx.scale(learning_rate)


def trace(decay: Any, nesterov: bool = False) -> GradientTransformation:
  """``optax.trace`` (the same rule as ``gx.trace``; ``decay`` has no default, as in optax)."""
  return gx.trace(decay, nesterov=nesterov)


def ema(decay: Any, debias: bool = True) -> GradientTransformation:
  """``optax.ema`` (the same rule as ``gx.ema``)."""
  return gx.ema(decay, debias=debias)


def add_decayed_weights(weight_decay: Any = 0.0, mask: Any = None) -> GradientTransformation:
  """``optax.add_decayed_weights`` (the same rule as ``gx.add_decayed_weights``)."""
  return gx.add_decayed_weights(weight_decay, mask=mask)


class _ClipByGlobalNorm(Transform):
  max_norm: Any
  State = ClipState

  def apply(self, updates, state, params, hp, **extra):
    _tree.check_floating("clip_by_global_norm", updates, "update")
    norm = _tree.global_norm(updates)
    max_norm = hp["max_norm"].astype(norm.dtype)
    factor = jnp.where(norm < max_norm, jnp.ones_like(norm), _tree.divide_or_zero(max_norm, norm))
    updates, = _tree.leafwise("clip_by_global_norm", lambda g, factor: (g * factor,), updates,
                              scalars={"factor": factor})
    return updates, {}


def clip_by_global_norm(max_norm: Any) -> GradientTransformation:
  """``optax.clip_by_global_norm``: ``g · c / ‖g‖`` when ``‖g‖ ≥ c`` (no ``1e-6``, unlike torch's and ``gx``'s)."""
  check_hyperparameter("clip_by_global_norm", "max_norm", max_norm, low=0.0,
                       hint="max_norm is the largest allowed global norm, e.g. 1.0.")
  return _ClipByGlobalNorm(max_norm)


# ---------------------------------------------------------------- optimizers (optax/_src/alias.py)


def sgd(learning_rate: Any, momentum: Optional[Any] = None, nesterov: bool = False,
        accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
  """``optax.sgd``: ``chain(trace(momentum, nesterov), scale_by_learning_rate)``; no weight decay argument."""
  if accumulator_dtype is not None:  # optax returns the unrounded buffer; gx's trace reads the stored one
    raise NotImplementedError("gx.optax_like.sgd: accumulator_dtype is not reproduced yet (optax's update is "
                              "the unrounded buffer); use gx.sgd(..., accumulator_dtype=) (the stored one).")
  if momentum is None:
    return gx.chain(_lr(learning_rate))
  return gx.chain(gx.trace(momentum, nesterov=nesterov), _lr(learning_rate))


def adam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
         mu_dtype: Optional[Any] = None, *, nesterov: bool = False) -> GradientTransformation:
  """``optax.adam``: ``chain(scale_by_adam(b1, b2, eps, eps_root), scale_by_learning_rate)``."""
  return gx.chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov), _lr(learning_rate))


def adamw(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
          mu_dtype: Optional[Any] = None, weight_decay: Any = 1e-4, mask: Any = None, *,
          nesterov: bool = False) -> GradientTransformation:
  """``optax.adamw``: decoupled weight decay with optax's default ``1e-4`` (torch's and ``gx.adamw``'s: 1e-2)."""
  return gx.chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
                  gx.add_decayed_weights(weight_decay, mask=mask), _lr(learning_rate))


def adamax(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> GradientTransformation:
  """``optax.adamax`` (the same as ``gx.adamax``)."""
  return gx.chain(gx.scale_by_adamax(b1, b2, eps), _lr(learning_rate))


def adagrad(learning_rate: Any, initial_accumulator_value: Any = 0.1, eps: Any = 1e-7) -> GradientTransformation:
  """``optax.adagrad``: accumulator from 0.1, ``g / √(G + ε)`` with ``ε = 1e-7`` inside the root."""
  return gx.chain(gx.scale_by_adagrad(initial_accumulator_value, eps=0.0, eps_root=eps), _lr(learning_rate))


def adadelta(learning_rate: Optional[Any] = None, rho: Any = 0.9, eps: Any = 1e-6, weight_decay: Any = 0.0,
             weight_decay_mask: Any = None) -> GradientTransformation:
  """``optax.adadelta``; as in optax, ``learning_rate=None`` leaves the update's sign as is (it ascends)."""
  stages = [gx.add_decayed_weights(weight_decay, mask=weight_decay_mask), gx.scale_by_adadelta(rho, eps)]
  if learning_rate is not None:
    stages.append(_lr(learning_rate))
  return gx.chain(*stages)


def rmsprop(learning_rate: Any, decay: Any = 0.9, eps: Any = 1e-8, initial_scale: Any = 0.0,
            eps_in_sqrt: bool = True, centered: bool = False, momentum: Optional[Any] = None,
            nesterov: bool = False, bias_correction: bool = False) -> GradientTransformation:
  """``optax.rmsprop``: ``ε`` inside the root, decay 0.9, the learning rate *inside* the momentum buffer."""
  scaling = (scale_by_stddev if centered else scale_by_rms)(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
  stages = [scaling, _lr(learning_rate)]
  if momentum is not None:
    stages.append(gx.trace(momentum, nesterov=nesterov))
  return gx.chain(*stages)


def lion(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.99, mu_dtype: Optional[Any] = None,
         weight_decay: Any = 1e-3, mask: Any = None) -> GradientTransformation:
  """``optax.lion``: decoupled weight decay with optax's default ``1e-3`` (``gx.lion``'s: 0)."""
  return gx.chain(gx.scale_by_lion(b1, b2, mu_dtype=mu_dtype), gx.add_decayed_weights(weight_decay, mask=mask),
                  _lr(learning_rate))
