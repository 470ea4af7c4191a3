"""Adagrad (Duchi et al. 2011): ``scale_by_adagrad`` and ``adagrad``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, named
from gradxform._optimizers.rmsprop import _EPS_HINT
from gradxform._transforms.options import gradient_preamble
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["adagrad", "scale_by_adagrad"]


class ScaleByAdagradState(NamedTuple):
  """State of :func:`scale_by_adagrad`: ``sum_of_squares`` has the parameters' structure."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  sum_of_squares: Any


class _ScaleByAdagrad(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  initial_accumulator_value: Any
  eps: Any
  eps_root: Any
  lr_decay: Any = None  # None: no decay (then not a hyperparameter)
  State = ScaleByAdagradState

  @property
  def counts(self) -> bool:  # the step enters only torch's learning-rate decay
    return self.lr_decay is not None

  def init_fields(self, params):
    zeros = _tree.zeros_like("scale_by_adagrad", params)
    init = self.initial_accumulator_value  # a complex leaf's components both start at it, as torch
    return {"sum_of_squares": jax.tree.map(lambda z: _tree.full_like(z, init), zeros)}

  def apply(self, updates, state, params, hp, **extra):
    scalars = {"eps": hp["eps"], "eps_root": hp["eps_root"]}
    if self.lr_decay is not None:  # torch: lr / (1 + (t - 1) · lr_decay)
      scalars["decay_factor"] = 1 / (1 + state.count.astype(hp["lr_decay"].dtype) * hp["lr_decay"])

    def rule(g, total, eps, eps_root, stored, decay_factor=None):
      total, = stored(total + g * g)
      u = _guards.divide_or_zero(g, jnp.sqrt(total + eps_root) + eps, at_least=eps)
      return (u if decay_factor is None else decay_factor * u), total

    updates, total = _tree.leafwise("scale_by_adagrad", rule, updates, state.sum_of_squares, scalars=scalars,
                                    stored=True)
    return updates, {"sum_of_squares": total}


def scale_by_adagrad(
    initial_accumulator_value: Any = 0.0, eps: Any = 1e-10, eps_root: Any = 0.0, *, lr_decay: Any = 0.0
) -> GradientTransformation:
  """Adagrad's scaling (Duchi et al. 2011), as ``torch.optim.Adagrad``.

  .. math::

     G_t = G_{t-1} + g_t^2, \\quad G_0 = G_{init}, \\qquad
     u_t = \\frac{1}{1 + (t-1)\\,\\delta} \\cdot \\frac{g_t}{\\sqrt{G_t + \\epsilon_{root}} + \\epsilon}

  torch's defaults: ``G_init = 0``, ``ε = 1e-10`` outside the root. optax's
  ``scale_by_rss`` starts at 0.1 with eps inside the root; reproduce it with
  ``scale_by_adagrad(initial_accumulator_value=0.1, eps=0.0, eps_root=1e-7)``.

  Args:
    initial_accumulator_value: ``G_init ≥ 0``.
    eps: ``ε ≥ 0`` outside the root.
    eps_root: ``ε_root ≥ 0`` inside the root.
    lr_decay: ``δ ≥ 0``, torch's ``lr_decay``: the step ``t`` is divided by
      ``1 + (t−1)δ`` (torch divides its learning rate). A literal 0 (the
      default) leaves it out.

  References:
    Duchi, Hazan & Singer, 2011, "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization", https://jmlr.org/papers/v12/duchi11a.html
  """
  check_hyperparameter("scale_by_adagrad", "initial_accumulator_value", initial_accumulator_value,
                       low=0.0, hint="The accumulator of squared gradients cannot start negative; torch uses 0, optax 0.1.")
  check_hyperparameter("scale_by_adagrad", "eps", eps, low=0.0, hint=_EPS_HINT)
  check_hyperparameter("scale_by_adagrad", "eps_root", eps_root, low=0.0, hint=_EPS_HINT)
  check_hyperparameter("scale_by_adagrad", "lr_decay", lr_decay, low=0.0,
                       hint="lr_decay divides step t by 1 + (t - 1)·lr_decay; torch's default is 0.")
  return _ScaleByAdagrad(initial_accumulator_value, eps, eps_root,
                         lr_decay=None if is_literal_zero(lr_decay) else lr_decay)


@named
def adagrad(learning_rate: Any, initial_accumulator_value: Any = 0.0, eps: Any = 1e-10, *,
            lr_decay: Any = 0.0, weight_decay: Any = 0.0, maximize: bool = False) -> GradientTransformation:
  """Adagrad, as ``torch.optim.Adagrad``: ``chain([scale(-1)], [add_decayed_weights(λ)], scale_by_adagrad(...), scale_by_learning_rate(lr))``.

  .. math::

     g \\leftarrow \\pm g + \\lambda p, \\qquad
     p \\leftarrow p - \\frac{\\eta}{1 + (t-1)\\delta} \\cdot \\frac{g_t}{\\sqrt{G_t} + \\epsilon}

  Args:
    learning_rate: ``η ≥ 0``.
    initial_accumulator_value, eps, lr_decay: as in :func:`scale_by_adagrad`.
    weight_decay: ``λ ≥ 0``, L2 coupled into the gradient (torch's; default 0).
    maximize: negate the gradient first, as torch's ``maximize=True``.

  optax's variant (accumulator starting at 0.1, eps 1e-7 inside the root) is
  ``chain(scale_by_adagrad(0.1, eps=0.0, eps_root=1e-7), scale_by_learning_rate(lr))``.

  References:
    Duchi, Hazan & Singer, 2011, https://jmlr.org/papers/v12/duchi11a.html
  """
  stages = gradient_preamble("adagrad", maximize, weight_decay)
  stages += [scale_by_adagrad(initial_accumulator_value, eps, lr_decay=lr_decay),
             scale_by_learning_rate(learning_rate)]
  return chain(*stages)
