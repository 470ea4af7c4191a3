"""Adagrad (Duchi et al. 2011): ``scale_by_adagrad`` and ``adagrad``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, named
from gradxform._optimizers.rmsprop import _EPS_HINT
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["adagrad", "scale_by_adagrad"]


class ScaleByAdagradState(NamedTuple):
  """State of :func:`scale_by_adagrad`: ``sum_of_squares`` has the parameters' structure."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  sum_of_squares: Any


class _ScaleByAdagrad(Transform):
  initial_accumulator_value: Any
  eps: Any
  eps_root: Any
  State = ScaleByAdagradState

  def init_fields(self, params):
    zeros = _tree.zeros_like("scale_by_adagrad", params)
    init = self.initial_accumulator_value
    return {"sum_of_squares": jax.tree.map(lambda z: z + jnp.asarray(init).astype(z.dtype), zeros)}

  def apply(self, updates, state, params, hp, **extra):

    def rule(g, total, initial_accumulator_value, eps, eps_root, stored):
      total, = stored(total + g * g)
      return _tree.divide_or_zero(g, jnp.sqrt(total + eps_root) + eps), total

    updates, total = _tree.leafwise("scale_by_adagrad", rule, updates, state.sum_of_squares, scalars=hp,
                                    stored=True)
    return updates, {"sum_of_squares": total}


def scale_by_adagrad(
    initial_accumulator_value: Any = 0.0, eps: Any = 1e-10, eps_root: Any = 0.0
) -> GradientTransformation:
  """Adagrad's scaling (Duchi et al. 2011), as ``torch.optim.Adagrad``.

  .. math::

     G_t = G_{t-1} + g_t^2, \\quad G_0 = G_{init}, \\qquad
     u_t = \\frac{g_t}{\\sqrt{G_t + \\epsilon_{root}} + \\epsilon}

  torch's defaults: ``G_init = 0``, ``ε = 1e-10`` outside the root. optax's
  ``scale_by_rss`` starts at 0.1 with eps inside the root; reproduce it with
  ``scale_by_adagrad(initial_accumulator_value=0.1, eps=0.0, eps_root=1e-7)``.

  Args:
    initial_accumulator_value: ``G_init ≥ 0``.
    eps: ``ε ≥ 0`` outside the root.
    eps_root: ``ε_root ≥ 0`` inside the root.

  References:
    Duchi, Hazan & Singer, 2011, "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization", https://jmlr.org/papers/v12/duchi11a.html
  """
  check_hyperparameter("scale_by_adagrad", "initial_accumulator_value", initial_accumulator_value,
                       low=0.0, hint="The accumulator of squared gradients cannot start negative; torch uses 0, optax 0.1.")
  check_hyperparameter("scale_by_adagrad", "eps", eps, low=0.0, hint=_EPS_HINT)
  check_hyperparameter("scale_by_adagrad", "eps_root", eps_root, low=0.0, hint=_EPS_HINT)
  return _ScaleByAdagrad(initial_accumulator_value, eps, eps_root)


@named
def adagrad(learning_rate: Any, initial_accumulator_value: Any = 0.0,
            eps: Any = 1e-10) -> GradientTransformation:
  """Adagrad, as ``torch.optim.Adagrad``: ``chain(scale_by_adagrad(...), scale_by_learning_rate(lr))``.

  optax's variant (accumulator starting at 0.1, eps 1e-7 inside the root) is
  ``chain(scale_by_adagrad(0.1, eps=0.0, eps_root=1e-7), scale_by_learning_rate(lr))``.

  References:
    Duchi, Hazan & Singer, 2011, https://jmlr.org/papers/v12/duchi11a.html
  """
  return chain(scale_by_adagrad(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))
