"""``optax.contrib``'s names and signatures: ``optax_like.contrib.muon``, ``.prodigy``, ``.schedule_free_adamw``, ...

Each reproduces optax.contrib's numbers (tested against optax 0.2.8 in
float64). Most are gradxform's own function (these optimizers follow optax's
conventions in ``gx`` already); the others map optax's argument names (``betas``,
``beta``, ``key``, ``weight_decay=None``) or add what optax's signature has
(``mask``, ``mu_dtype`` positions). Not reproduced: ``muon(preconditioning=...)``
other than 'frobenius' and ``muon(weight_decay_mask=...)``, ``sophia``
(optax's variant has its own Hessian estimator and clipping; ``gx.sophia`` is
the paper's), ``reduce_on_plateau`` (``gx.reduce_on_plateau`` is torch's
``ReduceLROnPlateau``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import gradxform as gx
from gradxform._core.base import GradientTransformation
from gradxform._optimizers.adopt import _StepPower
from gradxform.optax_like._transforms import seed_of

__all__ = ["ademamix", "adopt", "cocob", "dadapt_adamw", "differentially_private_aggregate", "dog", "dowg",
           "dpsgd", "mechanize", "momo", "momo_adam", "muon", "normalize", "prodigy", "sam", "scale_by_ademamix",
           "scale_by_adopt", "scale_by_cocob", "scale_by_muon", "scale_by_simplified_ademamix", "schedule_free",
           "schedule_free_adamw", "schedule_free_eval_params", "schedule_free_sgd", "simplified_ademamix"]

# the same numbers and signatures in both places: the same objects
cocob = gx.cocob
dpsgd = gx.dpsgd
mechanize = gx.mechanize
momo_adam = gx.momo_adam
normalize = gx.normalize
sam = gx.sam
scale_by_cocob = gx.scale_by_cocob
scale_by_simplified_ademamix = gx.scale_by_simplified_ademamix
schedule_free = gx.schedule_free
schedule_free_adamw = gx.schedule_free_adamw
schedule_free_eval_params = gx.schedule_free_eval_params


def _lr(learning_rate: Any) -> GradientTransformation:
  return gx.scale_by_learning_rate(learning_rate)


def scale_by_ademamix(b1: Any = 0.9, b2: Any = 0.999, b3: Any = 0.9999, alpha: Any = 6.0, eps: Any = 1e-8,
                      eps_root: Any = 0.0, mu_dtype: Optional[Any] = None) -> GradientTransformation:
  """``optax.contrib.scale_by_ademamix`` (:func:`gradxform.scale_by_ademamix`; ``b3``, ``alpha`` may be schedules)."""
  return gx.scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype=mu_dtype)


def ademamix(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, b3: Any = 0.9999, alpha: Any = 5.0,
             eps: Any = 1e-8, eps_root: Any = 0.0, mu_dtype: Optional[Any] = None, weight_decay: Any = 0.0,
             mask: Any = None) -> GradientTransformation:
  """``optax.contrib.ademamix``: ``chain(scale_by_ademamix, add_decayed_weights(wd, mask), scale_by_learning_rate)``.

  References:
    Pagliardini et al., 2024, https://arxiv.org/abs/2409.03137
  """
  return gx.chain(scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
                  gx.add_decayed_weights(weight_decay, mask=mask), _lr(learning_rate))


def simplified_ademamix(learning_rate: Any, b1: Any = 0.99, b2: Any = 0.95, alpha: Any = 0.0, eps: Any = 1e-8,
                        eps_root: Any = 0.0, weight_decay: Any = 0.0, mask: Any = None) -> GradientTransformation:
  """``optax.contrib.simplified_ademamix``: its chain with a weight-decay ``mask``.

  References:
    Morwani et al., 2025, https://arxiv.org/abs/2502.02431
  """
  return gx.chain(gx.scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
                  gx.add_decayed_weights(weight_decay, mask=mask), _lr(learning_rate))


def _adopt_clip(use_clipping: bool, clip_value_fn: Optional[Callable]) -> Any:
  if not use_clipping:
    return None
  return _StepPower(0.25) if clip_value_fn is None else clip_value_fn  # optax's default: count ** 0.25


def scale_by_adopt(b1: Any = 0.9, b2: Any = 0.9999, eps: Any = 1e-6, mu_dtype: Optional[Any] = None, *,
                   nesterov: bool = False, use_clipping: bool = True,
                   clip_value_fn: Optional[Callable] = None) -> GradientTransformation:
  """``optax.contrib.scale_by_adopt``: ``clip_value_fn`` (default ``t^{1/4}``) of the update count, or no clipping."""
  return gx.scale_by_adopt(b1, b2, eps, nesterov=nesterov, clip_value=_adopt_clip(use_clipping, clip_value_fn),
                           mu_dtype=mu_dtype)


def adopt(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.9999, eps: Any = 1e-6, mu_dtype: Optional[Any] = None,
          *, nesterov: bool = False, use_clipping: bool = True,
          clip_value_fn: Optional[Callable] = None) -> GradientTransformation:
  """``optax.contrib.adopt``: ``chain(scale_by_adopt(...), scale_by_learning_rate)``.

  References:
    Taniguchi et al., 2024, https://arxiv.org/abs/2411.02853
  """
  return gx.adopt(learning_rate, b1, b2, eps, nesterov=nesterov,
                  clip_value=_adopt_clip(use_clipping, clip_value_fn), mu_dtype=mu_dtype)


def dadapt_adamw(learning_rate: Any = 1.0, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, estim_lr0: Any = 1e-6,
                 weight_decay: Any = 0.0) -> GradientTransformation:
  """``optax.contrib.dadapt_adamw`` (:func:`gradxform.dadapt_adamw`; ``betas = (b1, b2)``)."""
  b1, b2 = betas
  return gx.dadapt_adamw(learning_rate, b1, b2, eps, estim_lr0, weight_decay)


def prodigy(learning_rate: Any = 1.0, betas: tuple = (0.9, 0.999), beta3: Optional[Any] = None, eps: Any = 1e-8,
            estim_lr0: Any = 1e-6, estim_lr_coef: Any = 1.0, weight_decay: Any = 0.0,
            safeguard_warmup: bool = False) -> GradientTransformation:
  """``optax.contrib.prodigy`` (:func:`gradxform.prodigy`; ``betas = (b1, b2)``, ``beta3`` is ``b3``)."""
  b1, b2 = betas
  return gx.prodigy(learning_rate, b1, b2, beta3, eps, estim_lr0, estim_lr_coef, weight_decay, safeguard_warmup)


def dog(learning_rate: Any = 1.0, init_step: tuple = ("heuristic", 1e-6), eps: Any = 1e-8,
        weight_decay: Optional[Any] = None, mask: Any = None) -> GradientTransformation:
  """``optax.contrib.dog`` (:func:`gradxform.dog`; ``weight_decay=None`` is none)."""
  return gx.dog(learning_rate, init_step, eps, 0.0 if weight_decay is None else weight_decay, mask)


def dowg(learning_rate: Any = 1.0, init_estim_sq_dist: Optional[Any] = None, eps: Any = 1e-4,
         weight_decay: Optional[Any] = None, mask: Any = None) -> GradientTransformation:
  """``optax.contrib.dowg`` (:func:`gradxform.dowg`; ``weight_decay=None`` is none)."""
  return gx.dowg(learning_rate, init_estim_sq_dist, eps, 0.0 if weight_decay is None else weight_decay, mask)


def momo(learning_rate: Any = 1.0, beta: Any = 0.9, lower_bound: Any = 0.0, weight_decay: Any = 0.0,
         adapt_lower_bound: bool = False) -> GradientTransformation:
  """``optax.contrib.momo`` (:func:`gradxform.momo`; ``beta`` is ``b1``)."""
  return gx.momo(learning_rate, beta, lower_bound, weight_decay, adapt_lower_bound)


def schedule_free_sgd(learning_rate: Any = 1.0, warmup_steps: Optional[int] = None, b1: Any = 0.9,
                      weight_decay: Optional[Any] = None, weight_lr_power: Any = 2.0,
                      state_dtype: Optional[Any] = None) -> GradientTransformation:
  """``optax.contrib.schedule_free_sgd`` (:func:`gradxform.schedule_free_sgd`; ``weight_decay=None`` is none)."""
  return gx.schedule_free_sgd(learning_rate, warmup_steps, b1, 0.0 if weight_decay is None else weight_decay,
                              weight_lr_power, state_dtype)


def differentially_private_aggregate(l2_norm_clip: Any, noise_multiplier: Any, key: Any = None, *,
                                     seed: Optional[int] = None) -> GradientTransformation:
  """``optax.contrib.differentially_private_aggregate`` with optax's ``key`` (an integer here)."""
  return gx.differentially_private_aggregate(l2_norm_clip, noise_multiplier,
                                             seed_of("differentially_private_aggregate", key, seed))


def _muon_options(ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov, adaptive, preconditioning,
                  weight_dimension_numbers, consistent_rms) -> dict:
  if preconditioning != "frobenius":
    raise NotImplementedError(f"muon: preconditioning={preconditioning!r} is not reproduced; only optax's "
                              "default 'frobenius' (the Frobenius-normalized Newton-Schulz input) is.")
  options = dict(momentum=beta, nesterov=nesterov, ns_coefficients=ns_coeffs, ns_steps=ns_steps, eps=eps,
                 eps_mode="add", debias=True, adaptive=adaptive, mu_dtype=mu_dtype,
                 dimension_numbers=weight_dimension_numbers, adjust_lr="original")
  if consistent_rms is not None:
    options.update(adjust_lr="match_rms_adamw", consistent_rms=consistent_rms)
  return options


def scale_by_muon(ns_coeffs: Any = (3.4445, -4.775, 2.0315), ns_steps: int = 5, beta: Any = 0.95,
                  eps: Any = 1e-8, mu_dtype: Optional[Any] = None, *, nesterov: bool = True, adaptive: bool = False,
                  preconditioning: str = "frobenius", weight_dimension_numbers: Any = None,
                  consistent_rms: Optional[Any] = None) -> GradientTransformation:
  """``optax.contrib.scale_by_muon``: :func:`gradxform.scale_by_muon` with optax's options.

  Debiased momentum, ``ε`` added to the Frobenius norm, the update scaled by
  ``√max(1, m/n)`` (or to ``consistent_rms·√max(m, n)``).

  References:
    Jordan et al., 2024, https://kellerjordan.github.io/posts/muon/
  """
  return gx.scale_by_muon(**_muon_options(ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov, adaptive,
                                          preconditioning, weight_dimension_numbers, consistent_rms))


def muon(learning_rate: Any, ns_coeffs: Any = (3.4445, -4.775, 2.0315), ns_steps: int = 5, beta: Any = 0.95,
         eps: Any = 1e-8, weight_decay: Any = 0.0, weight_decay_mask: Any = None, mu_dtype: Optional[Any] = None,
         *, nesterov: bool = True, adaptive: bool = False, preconditioning: str = "frobenius", adam_b1: Any = 0.9,
         adam_b2: Any = 0.999, adam_eps_root: Any = 0.0, adam_weight_decay: Any = 0.0,
         adam_learning_rate: Any = None, muon_weight_dimension_numbers: Any = None,
         consistent_rms: Optional[Any] = None) -> GradientTransformation:
  """``optax.contrib.muon``: Muon on 2-D leaves (or those ``muon_weight_dimension_numbers`` names), AdamW on the rest.

  :func:`gradxform.muon` with optax's options (see :func:`scale_by_muon`):
  routing by shape only, AdamW with ``eps`` and optax's Nesterov.

  References:
    Jordan et al., 2024, https://kellerjordan.github.io/posts/muon/
  """
  if weight_decay_mask is not None:
    raise NotImplementedError("muon: weight_decay_mask is not reproduced; route leaves with "
                              "muon_weight_dimension_numbers, or use gx.partition around gx.muon.")
  options = _muon_options(ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov, adaptive, preconditioning,
                          muon_weight_dimension_numbers, consistent_rms)
  return gx.muon(learning_rate, weight_decay=weight_decay, adam_paths=None, adam_learning_rate=adam_learning_rate,
                 adam_b1=adam_b1, adam_b2=adam_b2, adam_eps=eps, adam_eps_root=adam_eps_root,
                 adam_weight_decay=adam_weight_decay, adam_nesterov=nesterov, **options)
