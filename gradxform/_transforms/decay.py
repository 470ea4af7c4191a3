"""Weight decay added to the updates: ``add_decayed_weights``."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._transforms.groups import masked

__all__ = ["add_decayed_weights"]

_NAME = "add_decayed_weights"


class AddDecayedWeightsState(NamedTuple):
  """State of :func:`add_decayed_weights`: only the count and the decay.

  Both are empty (``None``, :class:`~gradxform.NoHyperparams`) unless the decay is scheduled or injected.
  """

  count: Optional[jax.Array]  # int32 scalar
  hyperparams: dict


class _AddDecayedWeights(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  weight_decay: Any
  State = AddDecayedWeightsState
  counts = False  # the rule does not depend on the step

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params(_NAME, params, "add weight decay")
    rule = lambda g, p, weight_decay: (g + weight_decay * p, p)
    updates, _ = _tree.leafwise(_NAME, rule, updates, params, scalars=hp)
    return updates, {}


def add_decayed_weights(
    weight_decay: Any = 0.0, mask: Optional[Union[Any, Callable[[Any], Any]]] = None
) -> GradientTransformation:
  """Adds ``λ p`` to the updates: ``u = g + λ · p``.

  Before the scaling stages this is L2 regularization coupled into the
  gradient (``torch.optim.SGD``'s ``weight_decay``); after them and before
  :func:`scale_by_learning_rate` it is decoupled weight decay (AdamW, Loshchilov
  & Hutter 2019): ``p ← p − η (u + λ p)``.

  Args:
    weight_decay: ``λ ≥ 0`` (float, array or schedule).
    mask: which parameters to decay (True = decay): a tree of booleans (or a
      prefix of the params), ``fn(path, leaf) -> bool``, or ``fn(params) ->
      tree``. With a mask this is ``masked(add_decayed_weights(λ), mask)``.
      Default: all leaves.

  References:
    Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization",
    https://arxiv.org/abs/1711.05101
  """
  check_hyperparameter(_NAME, "weight_decay", weight_decay, low=0.0,
                       hint="weight_decay must be non-negative (e.g. 1e-2).")
  if mask is None:
    return _AddDecayedWeights(weight_decay)
  return masked(_AddDecayedWeights(weight_decay), mask)
