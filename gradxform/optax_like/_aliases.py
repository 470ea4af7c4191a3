"""optax's aliases and primitives as gradxform chains with optax's numbers (see the package docstring)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional

import jax.numpy as jnp

import gradxform as gx
from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._transforms.clipping import ClipState
from gradxform.optax_like._states import with_optax_moments
from gradxform.optax_like._lbfgs import lbfgs as lbfgs  # optax's L-BFGS: its own file
from gradxform.optax_like._transforms import (add_noise, refuse_masked_extra_args, scale_by_amsgrad,
                                              scale_by_factored_rms, scale_by_polyak)

__all__ = ["adadelta", "adafactor", "adagrad", "adam", "adamax", "adamw", "add_decayed_weights", "amsgrad",
           "clip_by_global_norm", "ema", "lbfgs", "lion", "masked", "nadam", "nadamw", "noisy_sgd",
           "optimistic_adam", "polyak_sgd", "radam", "rmsprop", "scale_by_adadelta", "scale_by_adam",
           "scale_by_adamax", "scale_by_learning_rate", "scale_by_lion", "scale_by_radam", "scale_by_rms",
           "scale_by_stddev", "sgd", "signum", "trace"]


def _lr(learning_rate: Any) -> GradientTransformation:
  return gx.scale_by_learning_rate(learning_rate)


def amsgrad(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
            mu_dtype: Optional[Any] = None, bias_correction_mu: bool = True,
            bias_correction_nu: bool = True) -> GradientTransformation:
  """``optax.amsgrad``: the maximum of the bias-corrected ``v̂`` (``gx.amsgrad`` follows torch: the raw ``v``)."""
  return gx.chain(scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu),
                  _lr(learning_rate))


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


# ---------------------------------------------------------------- primitives


def scale_by_adam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
                  mu_dtype: Optional[Any] = None, *, nesterov: bool = False) -> GradientTransformation:
  """``optax.scale_by_adam``: ``gx.scale_by_adam``'s rule (``eps`` outside, ``eps_root`` inside) in optax's state.

  The state is a :class:`ScaleByAdamState` with optax's fields ``count``, ``mu``, ``nu``.
  """
  return with_optax_moments(gx.scale_by_adam(b1, b2, eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov))


def _rms(decay: Any, eps: Any, initial_scale: Any, eps_in_sqrt: bool, bias_correction: bool,
         centered: bool) -> GradientTransformation:
  """optax's ``eps_in_sqrt`` as gradxform's ``eps_root`` (inside the root) or ``eps`` (outside)."""
  eps, eps_root = (0.0, eps) if eps_in_sqrt else (eps, 0.0)
  return gx.scale_by_rms(decay, eps=eps, eps_root=eps_root, centered=centered, debias=bias_correction,
                         initial_scale=initial_scale)


def scale_by_rms(decay: Any = 0.9, eps: Any = 1e-8, initial_scale: Any = 0.0, eps_in_sqrt: bool = True,
                 bias_correction: bool = False) -> GradientTransformation:
  """``optax.scale_by_rms``: ``g / √(v + ε)`` (``eps_in_sqrt``) or ``g / (√v + ε)``, decay 0.9, ``v₀ = initial_scale``."""
  return _rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered=False)


def scale_by_stddev(decay: Any = 0.9, eps: Any = 1e-8, initial_scale: Any = 0.0, eps_in_sqrt: bool = True,
                    bias_correction: bool = False) -> GradientTransformation:
  """``optax.scale_by_stddev``: centered RMS scaling, ``g / √(v − m² + ε)``, ``v₀ = initial_scale``."""
  return _rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered=True)


def scale_by_adamax(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> GradientTransformation:
  """``optax.scale_by_adamax`` (the same rule as ``gx.scale_by_adamax``)."""
  return gx.scale_by_adamax(b1, b2, eps)


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> GradientTransformation:
  """``optax.scale_by_adadelta`` (the same rule as ``gx.scale_by_adadelta``)."""
  return gx.scale_by_adadelta(rho, eps)


def scale_by_lion(b1: Any = 0.9, b2: Any = 0.99, mu_dtype: Optional[Any] = None, *, mode: str = "hard",
                  smooth_beta: Any = 1.0) -> GradientTransformation:
  """``optax.scale_by_lion`` (the same rule as ``gx.scale_by_lion``, ``mode`` included)."""
  return gx.scale_by_lion(b1, b2, mu_dtype=mu_dtype, mode=mode, smooth_beta=smooth_beta)


def scale_by_learning_rate(learning_rate: Any, *, flip_sign: bool = True) -> GradientTransformation:
  """``optax.scale_by_learning_rate``: ``−η·g`` (``+η·g`` with ``flip_sign=False``)."""
  return gx.scale_by_learning_rate(learning_rate) if flip_sign else gx.scale(learning_rate)


def trace(decay: Any, nesterov: bool = False, accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
  """``optax.trace``: ``gx.trace``'s rule; with ``accumulator_dtype`` the update uses ``b_t`` before rounding."""
  return dataclasses.replace(gx.trace(decay, nesterov=nesterov, accumulator_dtype=accumulator_dtype),
                             unrounded_update=True)


def ema(decay: Any, debias: bool = True, accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
  """``optax.ema`` (the same rule as ``gx.ema``; ``accumulator_dtype`` is its ``dtype``)."""
  return gx.ema(decay, debias=debias, dtype=accumulator_dtype)


def masked(inner: Any, mask: Any, *, mask_compatible_extra_args: bool = False) -> GradientTransformation:
  """``optax.masked``: :func:`gradxform.masked` (``inner`` on the leaves where ``mask`` is True)."""
  refuse_masked_extra_args("masked", mask_compatible_extra_args)
  return gx.masked(inner, mask)


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
    factor = jnp.where(norm < max_norm, jnp.ones_like(norm), _guards.divide_or_zero(max_norm, norm))
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
  """``optax.sgd``: ``chain(trace(momentum, nesterov, accumulator_dtype), scale_by_learning_rate)``; no weight decay."""
  if momentum is None:
    return gx.chain(_lr(learning_rate))
  return gx.chain(trace(momentum, nesterov, accumulator_dtype), _lr(learning_rate))


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
  scaling = _rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered)
  stages = [scaling, _lr(learning_rate)]
  if momentum is not None:
    stages.append(gx.trace(momentum, nesterov=nesterov))
  return gx.chain(*stages)


def lion(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.99, mu_dtype: Optional[Any] = None,
         weight_decay: Any = 1e-3, mask: Any = None) -> GradientTransformation:
  """``optax.lion``: decoupled weight decay with optax's default ``1e-3`` (``gx.lion``'s: 0)."""
  return gx.chain(gx.scale_by_lion(b1, b2, mu_dtype=mu_dtype), gx.add_decayed_weights(weight_decay, mask=mask),
                  _lr(learning_rate))


def noisy_sgd(learning_rate: Any, eta: Any = 0.01, gamma: Any = 0.55, key: Any = None, *,
              seed: Optional[int] = None) -> GradientTransformation:
  """``optax.noisy_sgd``: ``chain(add_noise(eta, gamma, key), scale_by_learning_rate)`` (:func:`gradxform.noisy_sgd`).

  ``key`` is an integer or a threefry ``jax.random`` key, as in optax.

  References:
    Neelakantan et al., 2015, https://arxiv.org/abs/1511.06807
  """
  return gx.chain(add_noise(eta, gamma, key, seed=seed), _lr(learning_rate))


def polyak_sgd(max_learning_rate: Any = 1.0, scaling: Any = 1.0, f_min: Any = 0.0, eps: Any = 0.0,
               variant: str = "sps") -> GradientTransformation:
  """``optax.polyak_sgd``: ``chain(sgd(scaling), scale_by_polyak(f_min, max_learning_rate, eps, variant))``.

  optax's default ``variant="sps"`` does not clip the gap ``f − f*`` at 0
  (``gx.polyak_sgd`` does: SPS⁺). The update needs ``value=``.

  References:
    Loizou et al., 2021, https://arxiv.org/abs/2002.10542
  """
  return gx.chain(_lr(scaling), scale_by_polyak(f_min, max_learning_rate, eps, variant))


def signum(learning_rate: Any, beta: Any = 0.9, accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
  """``optax.signum``: :func:`gradxform.signum` with optax's argument names."""
  return gx.signum(learning_rate, beta, mu_dtype=accumulator_dtype)


def adafactor(learning_rate: Any = None, min_dim_size_to_factor: int = 128, decay_rate: Any = 0.8,
              decay_offset: int = 0, multiply_by_parameter_scale: bool = True, clipping_threshold: Any = 1.0,
              momentum: Any = None, dtype_momentum: Any = jnp.float32, weight_decay_rate: Any = None,
              eps: Any = 1e-30, factored: bool = True, weight_decay_mask: Any = None) -> GradientTransformation:
  """``optax.adafactor``: optax's chain of gradxform's primitives (``gx.adafactor`` is torch's rule).

  ``chain(scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps),
  [clip_by_block_rms(clipping_threshold)], [scale(learning_rate)], [scale_by_param_block_rms()],
  [ema(momentum, debias=False)], [add_decayed_weights(weight_decay_rate, weight_decay_mask)], scale(−1))``:
  with ``Û`` the factored-RMS update clipped to block RMS ``≤ d``,
  ``p ← p − (η·max(ε₂, rms(p))·Û (through momentum) + λp)``.

  References:
    Shazeer & Stern, 2018, https://arxiv.org/abs/1804.04235
  """
  stages = [scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)]
  if clipping_threshold is not None:
    stages.append(gx.clip_by_block_rms(clipping_threshold))
  if learning_rate is not None:
    stages.append(gx.scale(learning_rate))
  if multiply_by_parameter_scale:
    stages.append(gx.scale_by_param_block_rms())
  if momentum is not None:
    stages.append(gx.ema(momentum, debias=False, dtype=dtype_momentum))
  if weight_decay_rate is not None:
    stages.append(gx.add_decayed_weights(weight_decay_rate, mask=weight_decay_mask))
  stages.append(gx.scale(-1.0))
  return gx.chain(*stages)


def optimistic_adam(learning_rate: Any, optimism: Optional[Any] = None, b1: Any = 0.9, b2: Any = 0.999,
                    eps: Any = 1e-8, eps_root: Any = 0.0, mu_dtype: Optional[Any] = None, *,
                    nesterov: bool = True) -> GradientTransformation:
  """``optax.optimistic_adam`` (:func:`gradxform.optimistic_adam`), with optax's ``DeprecationWarning``.

  References:
    Daskalakis et al., 2018, https://arxiv.org/abs/1711.00141
  """
  warnings.warn("optax_like.optimistic_adam is deprecated in optax, please use `optimistic_adam_v2` instead.",
                DeprecationWarning, stacklevel=2)
  return gx.optimistic_adam(learning_rate, optimism, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)
