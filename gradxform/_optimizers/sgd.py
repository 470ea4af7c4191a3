"""Stochastic gradient descent with heavy-ball or Nesterov momentum (``torch.optim.SGD``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import check_hyperparameter, is_literal_zero, named
from gradxform._transforms.accumulators import trace
from gradxform._transforms.options import check_flag, gradient_preamble
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.options import check_dtype_option

__all__ = ["sgd"]


@named
def sgd(learning_rate: Any, momentum: Any = 0.0, nesterov: bool = False,
        weight_decay: Any = 0.0, *, dampening: Any = 0.0, maximize: bool = False,
        accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
  """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

  ``chain([scale(-1)], add_decayed_weights(weight_decay), trace(momentum, nesterov, dampening=d),
  scale_by_learning_rate(learning_rate))``:

  .. math::

     g \\leftarrow \\pm g + \\lambda p, \\quad
     b_t = \\mu b_{t-1} + (1 - d) g \\;(b_1 = g), \\quad
     p \\leftarrow p - \\eta\\, b_t \\;\\text{ or, Nesterov, }\\; p - \\eta (g + \\mu b_t)

  A stage whose coefficient is the literal Python number 0 is left out (no
  momentum buffer is allocated, as in torch). To sweep or differentiate the
  momentum or the weight decay, pass a non-zero value or an array. Without
  weight decay, dampening and maximize this is also ``optax.sgd``.

  Args:
    learning_rate: ``η ≥ 0`` (float, array or schedule).
    momentum: ``μ`` in [0, 1].
    nesterov: Nesterov momentum (needs ``momentum > 0`` and no dampening).
    weight_decay: ``λ ≥ 0``, L2 coupled into the gradient (torch's).
    dampening: torch's ``dampening`` ``d`` in [0, 1]; the first buffer is ``g``
      undamped, as torch.
    maximize: ascend the objective: negate the gradient first (before the
      weight decay), as torch's ``maximize=True``.
    accumulator_dtype: dtype of the momentum buffer (optax's name; default:
      the parameters'). With ``momentum=0`` there is no buffer and, as in torch
      and optax, ``dampening`` and ``accumulator_dtype`` have no effect.

  References:
    Robbins & Monro, 1951; Polyak, 1964; Sutskever et al., 2013,
    http://proceedings.mlr.press/v28/sutskever13.html
  """
  accumulator_dtype = check_dtype_option("sgd", "accumulator_dtype", accumulator_dtype)
  nesterov = check_flag("sgd", "nesterov", nesterov)
  if nesterov and is_literal_zero(momentum):
    raise ValueError("sgd: nesterov=True needs a momentum > 0 (with momentum=0 Nesterov is plain SGD). "
                     "Pass e.g. momentum=0.9.")
  check_hyperparameter("sgd", "dampening", dampening, low=0.0, high=1.0,
                       hint="dampening d scales the gradient by (1 - d) in the momentum buffer; torch's default is 0.")
  check_hyperparameter("sgd", "momentum", momentum, low=0.0, high=1.0,
                       hint="momentum is the coefficient of the momentum buffer; typical values are 0.9 to 0.99.")
  stages = gradient_preamble("sgd", maximize, weight_decay)
  if not is_literal_zero(momentum):
    buffer = trace(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype, dampening=dampening)
    stages.append(dataclasses.replace(buffer, public_names=(("decay", "momentum"),)))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
