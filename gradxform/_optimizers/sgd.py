"""Stochastic gradient descent with heavy-ball or Nesterov momentum (``torch.optim.SGD``)."""

from __future__ import annotations

from typing import Any

from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import is_literal_zero, named
from gradxform._transforms.accumulators import trace
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["sgd"]


@named
def sgd(learning_rate: Any, momentum: Any = 0.0, nesterov: bool = False,
        weight_decay: Any = 0.0) -> GradientTransformation:
  """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

  ``chain(add_decayed_weights(weight_decay), trace(momentum, nesterov),
  scale_by_learning_rate(learning_rate))``: ``g ← g + λp``; ``b ← μb + g``;
  ``p ← p − η·b`` (or ``p ← p − η(g + μb)`` with Nesterov).

  A stage whose coefficient is the literal Python number 0 is left out (no
  momentum buffer is allocated, as in torch). To sweep or differentiate the
  momentum or the weight decay, pass a non-zero value or an array.

  References:
    Robbins & Monro, 1951; Polyak, 1964; Sutskever et al., 2013,
    http://proceedings.mlr.press/v28/sutskever13.html
  """
  if nesterov and is_literal_zero(momentum):
    raise ValueError("sgd: nesterov=True needs a momentum > 0 (with momentum=0 Nesterov is plain SGD). "
                     "Pass e.g. momentum=0.9.")
  stages = []
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  if not is_literal_zero(momentum):
    stages.append(trace(momentum, nesterov=nesterov))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
