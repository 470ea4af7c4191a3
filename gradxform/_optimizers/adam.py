"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019): RMS scaling with a bias-corrected momentum numerator."""

from __future__ import annotations

from typing import Any, Optional

from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import check_hyperparameter, named
from gradxform._optimizers.rmsprop import _ScaleByRms, _check_rms
from gradxform._transforms.accumulators import _Ema
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["adam", "adamw", "scale_by_adam"]


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    amsgrad: bool = False,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
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
  ``1-β₂^t``, as torch. The state is a :class:`ScaleByRmsState`: ``nu`` is
  ``v``, ``numerator.ema`` is ``m``. ``u_t`` is computed from ``m_t`` and
  ``v_t`` as stored (rounded to ``mu_dtype``/``nu_dtype``), as optax and torch
  do with low-precision moments.

  Args:
    b1: first-moment decay ``β₁`` in [0, 1).
    b2: second-moment decay ``β₂`` in [0, 1).
    eps: ``ε ≥ 0`` outside the root (torch and optax default).
    eps_root: ``ε_root ≥ 0`` inside the root (optax's option, used when
      differentiating through the optimizer).
    amsgrad: Reddi et al. (2018)'s variant.
    mu_dtype: dtype of ``m`` (default: the parameters').
    nu_dtype: dtype of ``v`` (default: the parameters').

  References:
    Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization",
    https://arxiv.org/abs/1412.6980
  """
  check_hyperparameter("scale_by_adam", "b1", b1, low=0.0, high=1.0, high_open=True,
                       hint="b1 is the decay of the first moment; use a value in [0, 1) such as 0.9.")
  _check_rms("scale_by_adam", "b2", b2, eps, eps_root)
  first_moment = _Ema(b1, debias=True, dtype=mu_dtype, name="scale_by_adam")
  return _ScaleByRms(b2, eps, eps_root, first_moment, debias=True, amsgrad=bool(amsgrad),
                     dtype=nu_dtype, name="scale_by_adam")


@named
def adam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
         amsgrad: bool = False, *, mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """Adam, as ``torch.optim.Adam``: ``chain(scale_by_adam(b1, b2, eps, amsgrad=amsgrad), scale_by_learning_rate(lr))``.

  References:
    Kingma & Ba, 2015, https://arxiv.org/abs/1412.6980; Reddi et al., 2018
    (AMSGrad), https://openreview.net/forum?id=ryQu7f-RZ
  """
  return chain(scale_by_adam(b1, b2, eps, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
               scale_by_learning_rate(learning_rate))


@named
def adamw(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
          weight_decay: Any = 1e-2, amsgrad: bool = False, *, mu_dtype: Any = None,
          nu_dtype: Any = None) -> GradientTransformation:
  """AdamW, as ``torch.optim.AdamW`` (default ``weight_decay=1e-2``; optax's is 1e-4).

  ``chain(scale_by_adam(...), add_decayed_weights(weight_decay), scale_by_learning_rate(lr))``:
  ``p ← p − η(û + λp)``, which equals torch's ``p ← p(1 − ηλ)`` followed by the Adam step.

  References:
    Loshchilov & Hutter, 2019, https://arxiv.org/abs/1711.05101
  """
  return chain(scale_by_adam(b1, b2, eps, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
               add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate))
