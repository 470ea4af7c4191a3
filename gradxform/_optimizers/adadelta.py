"""Adadelta (Zeiler 2012): ``scale_by_adadelta`` and ``adadelta``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, named
from gradxform._transforms.options import gradient_preamble
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["adadelta", "scale_by_adadelta"]


class ScaleByAdadeltaState(NamedTuple):
  """State of :func:`scale_by_adadelta`: running means of ``g²`` and of ``Δx²``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  square_avg: Any
  acc_delta: Any


class _ScaleByAdadelta(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  rho: Any
  eps: Any
  State = ScaleByAdadeltaState
  counts = False  # the rule does not depend on the step

  def init_fields(self, params):
    return {"square_avg": _tree.zeros_like("scale_by_adadelta", params),
            "acc_delta": _tree.zeros_like("scale_by_adadelta", params)}

  def apply(self, updates, state, params, hp, **extra):

    def rule(g, square_avg, acc_delta, rho, eps, stored):
      square_avg, = stored(rho * square_avg + (1 - rho) * g * g)
      delta = jnp.sqrt(acc_delta + eps) / jnp.sqrt(square_avg + eps) * g
      acc_delta = rho * acc_delta + (1 - rho) * delta * delta
      return delta, square_avg, acc_delta

    updates, square_avg, acc_delta = _tree.leafwise(
        "scale_by_adadelta", rule, updates, state.square_avg, state.acc_delta, scalars=hp, stored=True)
    return updates, {"square_avg": square_avg, "acc_delta": acc_delta}


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> GradientTransformation:
  """Adadelta's unit-correct step (Zeiler 2012, Algorithm 1), as ``torch.optim.Adadelta``.

  .. math::

     E[g^2]_t = \\rho E[g^2]_{t-1} + (1-\\rho) g_t^2, \\qquad
     \\Delta x_t = \\frac{\\sqrt{E[\\Delta x^2]_{t-1} + \\epsilon}}{\\sqrt{E[g^2]_t + \\epsilon}}\\, g_t,
     \\qquad E[\\Delta x^2]_t = \\rho E[\\Delta x^2]_{t-1} + (1-\\rho) \\Delta x_t^2

  The output is ``Δx`` (a descent direction); :func:`gradxform.adadelta`
  follows it with ``scale_by_learning_rate(1.0)``, so ``p ← p − lr·Δx``.

  Args:
    rho: ``ρ`` in [0, 1].
    eps: ``ε > 0`` inside both roots (it also sets the size of the first steps).

  References:
    Zeiler, 2012, "ADADELTA: An Adaptive Learning Rate Method",
    https://arxiv.org/abs/1212.5701
  """
  check_hyperparameter("scale_by_adadelta", "rho", rho, low=0.0, high=1.0,
                       hint="rho is the decay of the running averages; torch uses 0.9.")
  check_hyperparameter("scale_by_adadelta", "eps", eps, low=0.0, low_open=True,
                       hint="eps must be positive: with eps = 0 the first step is 0/0. torch uses 1e-6.")
  return _ScaleByAdadelta(rho, eps)


@named
def adadelta(learning_rate: Any = 1.0, rho: Any = 0.9, eps: Any = 1e-6, *, weight_decay: Any = 0.0,
             maximize: bool = False) -> GradientTransformation:
  """Adadelta, as ``torch.optim.Adadelta``: ``chain([scale(-1)], [add_decayed_weights(λ)], scale_by_adadelta(rho, eps), scale_by_learning_rate(lr))``.

  .. math::

     g \\leftarrow \\pm g + \\lambda p, \\qquad p \\leftarrow p - \\eta\\, \\Delta x_t
     \\;\\text{(}\\Delta x_t\\text{ of :func:`scale_by_adadelta`)}

  Zeiler's rule is ``lr = 1``. (optax's ``adadelta`` with its default
  ``learning_rate=None`` never negates the direction: it ascends.)

  Args:
    learning_rate: ``η ≥ 0``.
    rho, eps: as in :func:`scale_by_adadelta`.
    weight_decay: ``λ ≥ 0``, L2 coupled into the gradient (torch's; default 0).
    maximize: negate the gradient first, as torch's ``maximize=True``.

  References:
    Zeiler, 2012, https://arxiv.org/abs/1212.5701
  """
  stages = gradient_preamble("adadelta", maximize, weight_decay)
  stages += [scale_by_adadelta(rho, eps), scale_by_learning_rate(learning_rate)]
  return chain(*stages)
