"""Fromage (Bernstein et al. 2020): a step of relative size ``lr`` per layer, then a shrink of the weights."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, named
from gradxform._transforms.scaling import ScaleState
from gradxform._transforms.trust_ratio import scale_by_trust_ratio

__all__ = ["fromage"]


class _FromageStep(Transform):
  """``u = (p - η g) / sqrt(1 + η²) - p``: the step and the shrink of the parameters together."""

  learning_rate: Any
  State = ScaleState

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params("fromage", params, "shrink the parameters by 1/sqrt(1 + lr^2)")
    lr = hp["learning_rate"]
    mult = 1 / jnp.sqrt(1 + lr * lr)

    def rule(g, p, lr, mult):
      return mult * (-lr * g) + (mult - 1) * p, None

    updates, _ = _tree.leafwise("fromage", rule, updates, params, scalars={"lr": lr, "mult": mult},
                                check_dtype=(False,))
    return updates, {}


@named
def fromage(learning_rate: Any, min_norm: Any = 1e-6) -> GradientTransformation:
  """Fromage, as ``optax.fromage``: ``chain(scale_by_trust_ratio(min_norm), <step and shrink>)``.

  .. math::

     p \\leftarrow \\frac{1}{\\sqrt{1 + \\eta^2}} \\Big(p - \\eta\\, \\frac{\\|p\\|}{\\|g\\|}\\, g\\Big)

  per leaf, with the norms floored at ``min_norm`` (the ratio is 1 where a
  norm is 0). optax writes the shrink as ``add_decayed_weights(mult - 1)``
  after the learning rate, a negative decay that :func:`add_decayed_weights`
  refuses; here it is one final stage with the same numbers, and the learning
  rate may be a schedule or an array.

  Args:
    learning_rate: ``η ≥ 0``, the relative size of each layer's step.
    min_norm: floor of both norms (optax's 1e-6).

  References:
    Bernstein, Vahdat, Yue & Liu, 2020, "On the distance between two neural
    networks and the stability of learning", https://arxiv.org/abs/2002.03432
  """
  check_hyperparameter("fromage", "learning_rate", learning_rate, low=0.0,
                       hint="The learning rate is the relative size of each layer's step; it must be >= 0, "
                       "e.g. 0.01.")
  return chain(scale_by_trust_ratio(min_norm), _FromageStep(learning_rate))
