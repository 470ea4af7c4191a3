"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019): RMS scaling with a bias-corrected momentum numerator."""

from __future__ import annotations

from typing import Any, Optional

from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import check_hyperparameter, is_literal_zero, named
from gradxform._optimizers.rmsprop import _ScaleByRms, _check_rms
from gradxform._transforms.accumulators import _Ema
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.options import check_dtype_option, check_flag, gradient_preamble
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["adam", "adamw", "amsgrad", "scale_by_adam"]


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    amsgrad: bool = False,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
    debias_before_max: bool = False,
) -> GradientTransformation:
  """Adam's direction (Kingma & Ba 2015), as ``torch.optim.Adam`` computes it.

  .. math::

     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2, \\quad
     u_t = \\frac{m_t / (1-\\beta_1^t)}{\\sqrt{v_t / (1-\\beta_2^t) + \\epsilon_{root}} + \\epsilon}

  It is built, not re-derived: momentum (:func:`ema` with bias correction) is
  the numerator of RMS scaling (:func:`scale_by_rms` with bias correction), and
  both see the same gradient::

     scale_by_rms(decay=b2, eps=eps, eps_root=eps_root, debias=True, amsgrad=amsgrad,
                  numerator=ema(b1, debias=True))

  ``amsgrad`` takes the maximum of the raw ``v`` and then divides by
  ``1-β₂^t``, as torch; with ``debias_before_max`` it takes the maximum of
  ``v̂_t = v_t/(1-β₂^t)``, as ``optax.amsgrad``. ``nesterov`` replaces the
  numerator by ``β₁ m_t/(1-β₁^{t+1}) + (1-β₁) g_t/(1-β₁^t)``, as
  ``optax.scale_by_adam(nesterov=True)`` (Dozat 2016's NAdam in optax's form;
  torch's NAdam, with its momentum schedule, is :func:`scale_by_nadam`).
  The state is a :class:`ScaleByRmsState`: ``nu`` is ``v``,
  ``numerator.ema`` is ``m``. ``u_t`` is computed from ``m_t`` and ``v_t`` as
  stored (rounded to ``mu_dtype``/``nu_dtype``), as optax and torch do with
  low-precision moments.

  Args:
    b1: first-moment decay ``β₁`` in [0, 1).
    b2: second-moment decay ``β₂`` in [0, 1).
    eps: ``ε ≥ 0`` outside the root (torch and optax default).
    eps_root: ``ε_root ≥ 0`` inside the root (optax's option, used when
      differentiating through the optimizer).
    amsgrad: Reddi et al. (2018)'s variant.
    mu_dtype: dtype of ``m`` (default: the parameters').
    nu_dtype: dtype of ``v`` (default: the parameters').
    nesterov: optax's Nesterov numerator (above).
    debias_before_max: with ``amsgrad``, optax's maximum of ``v̂``.

  References:
    Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization",
    https://arxiv.org/abs/1412.6980
  """
  check_hyperparameter("scale_by_adam", "b1", b1, low=0.0, high=1.0, high_open=True,
                       hint="b1 is the decay of the first moment; use a value in [0, 1) such as 0.9.")
  _check_rms("scale_by_adam", "b2", b2, eps, eps_root)
  first_moment = _Ema(b1, debias=True, dtype=check_dtype_option("scale_by_adam", "mu_dtype", mu_dtype),
                      name="scale_by_adam", nesterov=check_flag("scale_by_adam", "nesterov", nesterov),
                      public_names=(("decay", "b1"),))
  return _ScaleByRms(b2, eps, eps_root, first_moment, debias=True,
                     amsgrad=check_flag("scale_by_adam", "amsgrad", amsgrad),
                     debias_before_max=check_flag("scale_by_adam", "debias_before_max", debias_before_max),
                     dtype=check_dtype_option("scale_by_adam", "nu_dtype", nu_dtype), name="scale_by_adam",
                     public_names=(("decay", "b2"),))


@named
def adam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
         amsgrad: bool = False, *, weight_decay: Any = 0.0, decoupled_weight_decay: bool = False,
         maximize: bool = False, nesterov: bool = False, mu_dtype: Any = None,
         nu_dtype: Any = None) -> GradientTransformation:
  """Adam, as ``torch.optim.Adam``: ``chain([scale(-1)], [add_decayed_weights(λ)], scale_by_adam(...), scale_by_learning_rate(lr))``.

  .. math::

     g \\leftarrow \\pm g + \\lambda p, \\qquad p \\leftarrow p - \\eta\\, u_t
     \\;\\text{(}u_t\\text{ of :func:`scale_by_adam`)}

  With ``decoupled_weight_decay=True`` the decay moves after the Adam
  direction, ``p ← p − η(u_t + λp)``: torch's ``Adam(decoupled_weight_decay=True)``,
  which is :func:`adamw`. Stages whose option is off (or whose coefficient is
  the literal 0) are left out, so ``adam(lr)``'s chain has two stages.

  Args:
    learning_rate: ``η ≥ 0``.
    b1, b2, eps, amsgrad, mu_dtype, nu_dtype: as in :func:`scale_by_adam`.
    weight_decay: ``λ ≥ 0``; L2 coupled into the gradient (torch's default 0).
    decoupled_weight_decay: apply ``λ`` decoupled, as AdamW (torch's option).
    maximize: negate the gradient first, as torch's ``maximize=True``.
    nesterov: ``optax.adam(nesterov=True)``'s numerator (see
      :func:`scale_by_adam`; torch has no such option).

  References:
    Kingma & Ba, 2015, https://arxiv.org/abs/1412.6980; Reddi et al., 2018
    (AMSGrad), https://openreview.net/forum?id=ryQu7f-RZ
  """
  decoupled = check_flag("adam", "decoupled_weight_decay", decoupled_weight_decay)
  stages = gradient_preamble("adam", maximize, 0.0 if decoupled else weight_decay)
  stages.append(scale_by_adam(b1, b2, eps, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
                              nesterov=nesterov))
  if decoupled and not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)


@named
def adamw(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
          weight_decay: Any = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
          nesterov: bool = False, mask: Any = None, mu_dtype: Any = None,
          nu_dtype: Any = None) -> GradientTransformation:
  """AdamW, as ``torch.optim.AdamW`` (default ``weight_decay=1e-2``; optax's is 1e-4).

  ``chain([scale(-1)], scale_by_adam(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))``:
  ``p ← p − η(û + λp)``, which equals torch's ``p ← p(1 − ηλ)`` followed by the Adam step.
  It is ``adam(..., weight_decay=λ, decoupled_weight_decay=True)``.

  Args:
    maximize: negate the gradient first (torch's option; the decay still
      pulls towards 0).
    nesterov: ``optax.adamw(nesterov=True)``'s numerator.
    mask: which leaves to decay (as :func:`add_decayed_weights`; optax's option).

  References:
    Loshchilov & Hutter, 2019, https://arxiv.org/abs/1711.05101
  """
  stages = gradient_preamble("adamw", maximize)
  stages += [scale_by_adam(b1, b2, eps, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype, nesterov=nesterov),
             add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate)]
  return chain(*stages)


@named
def amsgrad(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *,
            debias_before_max: bool = False, weight_decay: Any = 0.0, maximize: bool = False,
            mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """AMSGrad (Reddi et al. 2018) under optax's name, with torch's rule: ``adam(..., amsgrad=True)``.

  .. math::

     \\hat u_t = \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{\\max_{s \\le t} v_s / (1-\\beta_2^t)} + \\epsilon}
     \\;\\text{(torch)}, \\qquad
     \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{\\max_{s \\le t} v_s / (1-\\beta_2^s)} + \\epsilon}
     \\;\\text{(optax, } \\texttt{debias_before_max=True}\\text{)}

  The default reproduces ``torch.optim.Adam(amsgrad=True)``; ``debias_before_max=True``
  reproduces ``optax.amsgrad``. The two differ from the second step on.

  Args:
    learning_rate, b1, b2, eps, mu_dtype, nu_dtype: as in :func:`adam`.
    debias_before_max: take the maximum of the bias-corrected ``v̂`` (optax).
    weight_decay: ``λ ≥ 0``, coupled L2 (torch's).
    maximize: negate the gradient first (torch's option).

  References:
    Reddi, Kale & Kumar, 2018, "On the Convergence of Adam and Beyond",
    https://openreview.net/forum?id=ryQu7f-RZ
  """
  stages = gradient_preamble("amsgrad", maximize, weight_decay)
  stages += [scale_by_adam(b1, b2, eps, amsgrad=True, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
                           debias_before_max=debias_before_max), scale_by_learning_rate(learning_rate)]
  return chain(*stages)
