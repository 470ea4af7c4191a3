"""LAMB (You et al. 2020): Adam's direction, decoupled weight decay, then each layer's trust ratio."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import is_literal_zero, named
from gradxform._optimizers.adam import scale_by_adam
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.trust_ratio import scale_by_trust_ratio

__all__ = ["lamb"]


@named
def lamb(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-6, eps_root: Any = 0.0,
         weight_decay: Any = 0.0, mask: Optional[Union[Any, Callable[[Any], Any]]] = None,
         ) -> GradientTransformation:
  """LAMB, as ``optax.lamb`` (optax's names and defaults; torch.optim has no LAMB).

  ``chain(scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay, mask),
  scale_by_trust_ratio(), scale_by_learning_rate(learning_rate))``:

  .. math::

     r_t = \\frac{\\hat m_t}{\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon} + \\lambda p, \\qquad
     p \\leftarrow p - \\eta \\frac{\\|p\\|}{\\|r_t\\|} r_t \\quad \\text{(per leaf)}

  with Adam's bias-corrected moments and the ratio taken as 1 where either
  norm is 0. (A literal 0 weight decay leaves that stage out.)

  Args:
    learning_rate: ``η ≥ 0`` (float, array or schedule).
    b1, b2: Adam's moment decays in [0, 1).
    eps: ``ε ≥ 0`` outside the root (optax's default 1e-6).
    eps_root: ``ε_root ≥ 0`` inside the root.
    weight_decay: ``λ ≥ 0``, decoupled, before the trust ratio.
    mask: which parameters are decayed (see :func:`add_decayed_weights`).

  References:
    You et al., 2020, "Large Batch Optimization for Deep Learning: Training
    BERT in 76 minutes", https://arxiv.org/abs/1904.00962
  """
  stages = [scale_by_adam(b1, b2, eps, eps_root)]
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay, mask))
  stages += [scale_by_trust_ratio(), scale_by_learning_rate(learning_rate)]
  return chain(*stages)
