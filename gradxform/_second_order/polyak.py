"""The Polyak step size: how far the loss is above its minimum, over the squared gradient norm."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field
from gradxform._core.objective import data_arguments, scalar_dtype, vdot
from gradxform._core.hyperparams import named as _named
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["ScaleByPolyakState", "polyak_sgd", "scale_by_polyak"]


class ScaleByPolyakState(NamedTuple):
  """State of :func:`scale_by_polyak`: the step size used at the last update."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  step_size: jax.Array


class _ScaleByPolyak(Transform):
  f_min: Any
  max_learning_rate: Any
  eps: Any
  variant: str = static_field(default="sps+")
  State = ScaleByPolyakState

  def init_fields(self, params):
    return {"step_size": jnp.zeros((), scalar_dtype(params))}

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_polyak"
    _tree.check_floating(name, updates, "update")
    value = extra.get("value")
    if value is None:
      value_fn = extra.get("value_fn")
      if value_fn is None:
        raise TypeError(
            f"{name}: needs the loss at params as the extra argument value (the Polyak step is "
            "(value - f_min) / |g|^2), but update() got none. gx.step(opt, loss_fn, params, state) "
            "passes it; by hand, call opt.update(grads, state, params, value=loss).")
      _tree.require_params(name, params, "evaluate value_fn(params)")
      value = value_fn(params, **data_arguments(value_fn, extra))
    dtype = scalar_dtype(updates)
    gap = jnp.asarray(value).astype(dtype) - hp["f_min"].astype(dtype)
    if self.variant == "sps+":
      gap = jnp.maximum(gap, 0)
    step = _guards.divide_or_zero(gap, vdot(updates, updates, dtype) + hp["eps"].astype(dtype))
    step = jnp.minimum(step, hp["max_learning_rate"].astype(dtype))
    updates, = _tree.leafwise(name, lambda g, step: (step * g,), updates, scalars={"step": step})
    return updates, {"step_size": step.astype(state.step_size.dtype)}


def scale_by_polyak(f_min: Any = 0.0, max_learning_rate: Any = 1.0, eps: Any = 0.0, *,
                    variant: str = "sps+") -> GradientTransformation:
  """Scales the gradient by the Polyak step size, capped: ``u = min((f(x) − f*)/(‖g‖² + ε), η_max) · g``.

  .. math::

     \\gamma = \\min\\Big(\\frac{\\max(f(x) - f^*, 0)}{\\|g\\|^2 + \\epsilon},\\ \\eta_{max}\\Big),
     \\qquad u = \\gamma\\, g

  (``γ = 0`` where the denominator is 0.) ``variant="sps"`` drops the
  ``max(·, 0)`` (optax's default: below ``f*`` the step ascends); the default
  ``"sps+"`` is Loizou et al.'s SPS⁺ and ``optax``'s ``variant="sps+"``. On a convex function with the
  exact minimum value ``f*`` this is the step that minimizes the worst-case
  distance to the minimizer; with an estimate, ``f_min`` should be a lower
  bound (0 for non-negative losses, e.g. interpolating least squares,
  Loizou et al. 2021), and it may be a schedule (an improving estimate).
  The incoming updates must be the gradient (put it first). The loss at
  ``params`` comes from the extra argument ``value`` (or ``value_fn(params)``);
  ``gx.step`` passes it. Follow it with ``scale_by_learning_rate(1.0)``, or
  use :func:`polyak_sgd`.

  Args:
    f_min: ``f*``, the minimum value of the loss or a lower bound on it.
    max_learning_rate: ``η_max > 0``, the cap on the step size.
    eps: ``ε ≥ 0`` added to ``‖g‖²``.
    variant: ``"sps+"`` (the gap clipped at 0) or ``"sps"`` (not clipped).

  Returns:
    A transform with state :class:`ScaleByPolyakState` (``step_size`` holds ``γ``).

  References:
    Polyak, 1987, "Introduction to Optimization", Section 5.3; Loizou et al.,
    2021, "Stochastic Polyak Step-size for SGD", https://arxiv.org/abs/2002.10542
  """
  check_hyperparameter("scale_by_polyak", "f_min", f_min,
                       hint="f_min is the minimum value of the loss (or a lower bound on it), e.g. 0.0.")
  check_hyperparameter("scale_by_polyak", "max_learning_rate", max_learning_rate, low=0.0,
                       hint="max_learning_rate caps the Polyak step size; it must be non-negative, e.g. 1.0.")
  check_hyperparameter("scale_by_polyak", "eps", eps, low=0.0,
                       hint="eps is added to the squared gradient norm; it must be >= 0.")
  if variant not in ("sps", "sps+"):
    raise ValueError(f"scale_by_polyak: variant={variant!r} is not one of 'sps+' (the gap max(f - f_min, 0), "
                     "the default) or 'sps' (the gap f - f_min, optax's default).")
  return _ScaleByPolyak(f_min, max_learning_rate, eps, variant=variant)


@_named
def polyak_sgd(max_learning_rate: Any = 1.0, f_min: Any = 0.0, eps: Any = 0.0) -> GradientTransformation:
  """Gradient descent with the Polyak step size: ``x ← x − min((f(x) − f*)/(‖g‖² + ε), η_max) · g``.

  ``chain(scale_by_polyak(f_min, max_learning_rate, eps), scale_by_learning_rate(1.0))``
  (see :func:`scale_by_polyak`); its update needs the extra argument
  ``value`` (use ``gx.step``).

  Args:
    max_learning_rate: ``η_max > 0``, the largest step size.
    f_min: ``f*``, the minimum value of the loss or a lower bound.
    eps: ``ε ≥ 0`` added to ``‖g‖²``.

  Returns:
    A chain.

  References:
    Loizou et al., 2021, "Stochastic Polyak Step-size for SGD",
    https://arxiv.org/abs/2002.10542
  """
  return chain(scale_by_polyak(f_min, max_learning_rate, eps), scale_by_learning_rate(1.0))
