"""Scalings: by a number (``scale``, ``scale_by_learning_rate``, ``scale_by_schedule``), ``scale_by_sign``,
by the parameters' scale (``scale_by_param_block_rms``) and the relative step cap (``scale_by_relative_step``)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import EmptyState, GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field

__all__ = ["scale", "scale_by_learning_rate", "scale_by_relative_step", "scale_by_schedule",
           "scale_by_sign"]


class ScaleState(NamedTuple):
  """State of the scalings in this module: only the count and the hyperparameters.

  Both are empty (``None``, :class:`~gradxform.NoHyperparams`) unless a hyperparameter is scheduled or
  injected: the scalings do not depend on the step.
  """

  count: Optional[jax.Array]  # int32 scalar
  hyperparams: dict


class _Scale(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  step_size: Any
  name: str = static_field(default="scale")
  State = ScaleState
  counts = False  # the rule does not depend on the step

  def apply(self, updates, state, params, hp, **extra):
    updates, = _tree.leafwise(self.name, lambda g, step_size: (step_size * g,), updates,
                              scalars={"step_size": hp["step_size"]})
    return updates, {}


def scale(step_size: Any) -> GradientTransformation:
  """Multiplies updates by a number: ``u = s · g``.

  Args:
    step_size: ``s`` (float, array, or a schedule ``count -> s``; any sign).

  Returns:
    A transform with state :class:`ScaleState`: ``count`` and, for a scheduled
    ``s``, ``hyperparams['step_size']``, the factor used at the last update
    (a constant keeps neither: ``count`` is ``None``).

  References:
    optax.scale, https://optax.readthedocs.io/en/latest/api/transformations.html
  """
  check_hyperparameter("scale", "step_size", step_size)
  return _Scale(step_size)


def scale_by_schedule(step_size_fn: Any) -> GradientTransformation:
  """Multiplies updates by a scheduled factor: ``u_t = s(t) · g_t``, with ``t = 0`` at the first update.

  Args:
    step_size_fn: a schedule from :mod:`gradxform.schedules`, or any function
      ``count -> factor``.

  Returns:
    A transform with state :class:`ScaleState`.

  References:
    optax.scale_by_schedule, https://optax.readthedocs.io/en/latest/api/transformations.html
  """
  if not callable(step_size_fn):
    raise TypeError(
        "scale_by_schedule: step_size_fn must be a schedule (a function of the "
        f"step count), got {type(step_size_fn).__name__}. For a constant factor use scale()."
    )
  return _Scale(step_size_fn, name="scale_by_schedule")


class _ScaleByLearningRate(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  learning_rate: Any
  State = ScaleState
  counts = False  # the rule does not depend on the step

  def apply(self, updates, state, params, hp, **extra):
    # -η is formed once per dtype (negation is exact, so these are the numbers of -η · g per leaf)
    updates, = _tree.leafwise("scale_by_learning_rate", lambda g, learning_rate, descent: (descent * g,),
                              updates, scalars=hp, derive=lambda s: {"descent": -s["learning_rate"]})
    return updates, {}


def scale_by_learning_rate(learning_rate: Any) -> GradientTransformation:
  """Turns a direction into a descent step: ``u = -η · g``.

  Put it last in a chain: :func:`gradxform.apply_updates` then computes
  ``p ← p − η · g``.

  Args:
    learning_rate: ``η ≥ 0`` (float, array or schedule).

  Returns:
    A transform with state :class:`ScaleState`: ``count`` and, for a scheduled
    ``η``, ``hyperparams['learning_rate']``, the learning rate used at the last
    update (a constant keeps neither: ``count`` is ``None``).

  References:
    Robbins & Monro, 1951, "A Stochastic Approximation Method", https://doi.org/10.1214/aoms/1177729586
  """
  check_hyperparameter(
      "scale_by_learning_rate", "learning_rate", learning_rate, low=0.0,
      hint="The learning rate must be non-negative: the sign is applied for you "
      "(u = -lr·g). To ascend, use scale(+lr).")
  return _ScaleByLearningRate(learning_rate)


class _ScaleBySign(GradientTransformation):

  def init(self, params):
    del params
    return EmptyState()

  def update(self, updates, state, params=None, **extra):
    updates, = _tree.leafwise("scale_by_sign", lambda g: (jnp.sign(g),), updates)
    return updates, state


def scale_by_sign() -> GradientTransformation:
  """Keeps only the sign of each coordinate: ``u = sign(g)`` (signSGD, Bernstein et al. 2018).

  References:
    Bernstein et al., 2018, "signSGD: Compressed Optimisation for Non-Convex
    Problems", https://arxiv.org/abs/1802.04434
  """
  return _ScaleBySign()


class _ScaleByRelativeStep(Transform):
  learning_rate: Any
  State = ScaleState

  def apply(self, updates, state, params, hp, **extra):
    t = (state.count + 1).astype(hp["learning_rate"].dtype)
    # lr = 0 gives min(1, inf) = 1: the learning-rate stage after this one makes the step 0
    factor = jnp.minimum(1, 1 / (hp["learning_rate"] * jnp.sqrt(t)))
    updates, = _tree.leafwise("scale_by_relative_step", lambda g, factor: (g * factor,), updates,
                              scalars={"factor": factor})
    return updates, {}


def scale_by_relative_step(learning_rate: Any) -> GradientTransformation:
  """Caps the step size at ``1/√t``: ``u = g · min(1, 1 / (η √t))``.

  Followed by :func:`scale_by_learning_rate` with the same ``η``, the step size
  is ``min(η, 1/√t)``: the relative step size ``ρ_t`` of Shazeer & Stern
  (2018), capped by the learning rate as ``torch.optim.Adafactor`` does. It is
  written as a factor in front of the learning-rate stage so that decoupled
  weight decay placed between the two is scaled by ``η`` (torch's
  ``p ← p(1 - ηλ)``), not by ``ρ_t``.

  Args:
    learning_rate: ``η ≥ 0`` (float, array or schedule), the same value as the
      learning-rate stage's.

  Returns:
    A transform with state :class:`ScaleState`.

  References:
    Shazeer & Stern, 2018, §8, https://arxiv.org/abs/1804.04235
  """
  check_hyperparameter("scale_by_relative_step", "learning_rate", learning_rate, low=0.0,
                       hint="The learning rate must be non-negative (e.g. 1e-2).")
  return _ScaleByRelativeStep(learning_rate)
