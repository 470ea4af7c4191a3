"""signSGD and Signum (Bernstein et al. 2018): descend along the sign of the gradient or of its momentum."""

from __future__ import annotations

from typing import Any, Optional

from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import check_hyperparameter, named
from gradxform._transforms.accumulators import ema
from gradxform._transforms.scaling import scale_by_learning_rate, scale_by_sign
from gradxform._transforms.options import check_dtype_option

__all__ = ["sign_sgd", "signum"]


@named
def sign_sgd(learning_rate: Any) -> GradientTransformation:
  """signSGD, as ``optax.sign_sgd``: ``chain(scale_by_sign(), scale_by_learning_rate(lr))``.

  .. math::  p \\leftarrow p - \\eta\\, \\operatorname{sign}(g_t)

  (``sign(0) = 0``: a zero gradient coordinate does not move.)

  References:
    Bernstein et al., 2018, "signSGD: Compressed Optimisation for Non-Convex
    Problems", https://arxiv.org/abs/1802.04434
  """
  return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


@named
def signum(learning_rate: Any, momentum: Any = 0.9, *, mu_dtype: Optional[Any] = None) -> GradientTransformation:
  """Signum, as ``optax.signum``: ``chain(ema(momentum, debias=False), scale_by_sign(), scale_by_learning_rate(lr))``.

  .. math::

     m_t = \\beta m_{t-1} + (1-\\beta) g_t, \\quad m_0 = 0, \\qquad
     p \\leftarrow p - \\eta\\, \\operatorname{sign}(m_t)

  optax calls the momentum ``beta`` and its dtype ``accumulator_dtype``;
  gradxform names them ``momentum`` and ``mu_dtype`` as elsewhere. No bias
  correction: it would not change the sign.

  Args:
    learning_rate: ``η ≥ 0`` (float, array or schedule).
    momentum: ``β`` in [0, 1) (optax's default 0.9).
    mu_dtype: dtype of ``m`` (default: the parameters').

  References:
    Bernstein et al., 2018, Algorithm 3, https://arxiv.org/abs/1802.04434
  """
  mu_dtype = check_dtype_option("signum", "mu_dtype", mu_dtype)
  check_hyperparameter("signum", "momentum", momentum, low=0.0, high=1.0, high_open=True,
                       hint="momentum is the decay of the averaged gradient; use a value in [0, 1) such as 0.9.")
  return chain(ema(momentum, debias=False, dtype=mu_dtype), scale_by_sign(), scale_by_learning_rate(learning_rate))
