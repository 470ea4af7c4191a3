"""LARS (You et al. 2017): weight decay, each layer's trust ratio, then SGD momentum."""

from __future__ import annotations

import dataclasses
from typing import Any

from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import check_hyperparameter, is_literal_zero, named
from gradxform._transforms.accumulators import trace
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.groups import masked
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.trust_ratio import scale_by_trust_ratio

__all__ = ["lars"]


def _is_false(mask: Any) -> bool:
  return isinstance(mask, bool) and not mask


@named
def lars(learning_rate: Any, weight_decay: Any = 0.0, weight_decay_mask: Any = True,
         trust_coefficient: Any = 0.001, eps: Any = 0.0, trust_ratio_mask: Any = True,
         momentum: Any = 0.9, nesterov: bool = False) -> GradientTransformation:
  """LARS, as ``optax.lars`` (optax's names and defaults; torch.optim has no LARS).

  ``chain(add_decayed_weights(weight_decay, weight_decay_mask),
  masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask),
  scale_by_learning_rate(learning_rate), trace(momentum, nesterov))``:

  .. math::

     d_t = g_t + \\lambda p, \\qquad
     b_t = \\mu\\, b_{t-1} - \\eta\\, \\frac{c\\, \\|p\\|}{\\|d_t\\| + \\epsilon}\\, d_t, \\qquad
     p \\leftarrow p + b_t \\;(\\text{or } p + \\mu b_t - \\eta r_t d_t \\text{ with Nesterov})

  per leaf, the ratio taken as 1 where either norm is 0. The learning rate is
  applied *inside* the momentum buffer, as in the paper and optax. A mask is
  ``True`` (all leaves), ``False`` (none: the stage is left out), a tree of
  booleans, ``fn(path, leaf)`` or ``fn(params)``; the paper and optax's
  examples exclude biases and normalization scales from both. (A literal 0
  weight decay or momentum leaves that stage out.)

  Args:
    learning_rate: ``η ≥ 0`` (float, array or schedule).
    weight_decay: ``λ ≥ 0``, coupled into the gradient before the trust ratio.
    weight_decay_mask: which parameters are decayed.
    trust_coefficient: ``c > 0`` (the paper's ``η``, 1e-3).
    eps: ``ε ≥ 0`` added to the update's norm.
    trust_ratio_mask: which parameters get the trust ratio (the others plain SGD).
    momentum: ``μ`` in [0, 1].
    nesterov: Nesterov's form of the momentum.

  References:
    You, Gitman & Ginsburg, 2017, "Large Batch Training of Convolutional
    Networks", https://arxiv.org/abs/1708.03888
  """
  if nesterov and is_literal_zero(momentum):
    raise ValueError("lars: nesterov=True needs a momentum > 0 (with momentum=0 Nesterov is plain "
                     "LARS). Pass e.g. momentum=0.9.")
  stages = []
  if not (is_literal_zero(weight_decay) or _is_false(weight_decay_mask)):
    stages.append(add_decayed_weights(weight_decay, None if weight_decay_mask is True else weight_decay_mask))
  ratio = scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps)
  if trust_ratio_mask is True:
    stages.append(ratio)
  elif not _is_false(trust_ratio_mask):
    stages.append(masked(ratio, trust_ratio_mask))
  stages.append(scale_by_learning_rate(learning_rate))
  check_hyperparameter("lars", "momentum", momentum, low=0.0, high=1.0,
                       hint="momentum is the coefficient of the momentum buffer; typical values are 0.9 to 0.99.")
  if not is_literal_zero(momentum):
    stages.append(dataclasses.replace(trace(momentum, nesterov=nesterov), public_names=(("decay", "momentum"),)))
  return chain(*stages)
