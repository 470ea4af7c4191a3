"""The curvature step: the step length that minimizes the local quadratic model along a direction."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._second_order.hvp import grad_and_hvp
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.objective import require_value_fn, scalar_dtype, torch_grad, vdot
from gradxform._core.hyperparams import named as _named
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["ScaleByCurvatureStepState", "curvature_descent", "scale_by_curvature_step"]


class ScaleByCurvatureStepState(NamedTuple):
  """State of :func:`scale_by_curvature_step`.

  ``step_size`` is the step ``ε`` taken at the last update and ``curvature``
  the curvature ``dᵀHd`` along its direction (``≤ 0`` means the fallback step
  was used).
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  step_size: jax.Array
  curvature: jax.Array


class _ScaleByCurvatureStep(Transform):
  fallback_step: Any
  max_step: Any
  State = ScaleByCurvatureStepState
  complex_ok = True  # gᵀd and dᵀHd on a complex leaf's real view, as torch.optim treats it

  def init_fields(self, params):
    dtype = scalar_dtype(params)
    return {"step_size": jnp.zeros((), dtype), "curvature": jnp.zeros((), dtype)}

  def apply(self, updates, state, params, hp, **extra):
    name = self.transform_name()
    value_fn = require_value_fn(name, extra, "compute the Hessian-vector product Hd at params")
    _tree.require_params(name, params, "compute the Hessian-vector product Hd")
    _tree.check_floating(name, updates, "update", allow_complex=True)
    dtype = scalar_dtype(params)
    # complex leaves: jax.grad's gradient (and its derivative Hd) is the conjugate of torch's
    grad, hd = map(torch_grad, grad_and_hvp(value_fn, params, updates))
    slope = vdot(grad, updates, dtype)       # gᵀd
    curvature = vdot(updates, hd, dtype)     # dᵀHd
    max_step = hp["max_step"].astype(dtype)
    fallback = hp["fallback_step"].astype(dtype)
    positive = curvature > 0
    model_step = jnp.clip(slope / jnp.where(positive, curvature, 1), -max_step, max_step)
    step = jnp.where(positive, model_step, jnp.where(slope < 0, -fallback, fallback))
    updates, = _tree.leafwise(name, lambda d, step: (step * d,), updates, scalars={"step": step})
    return updates, {"step_size": step, "curvature": curvature}


def scale_by_curvature_step(fallback_step: Any = 1e-2, max_step: Any = 1e2) -> GradientTransformation:
  """Scales the direction by the step that minimizes the local quadratic model along it.

  For the incoming direction ``d`` (the gradient, or any preconditioned
  direction from earlier stages) and the gradient ``g`` and Hessian ``H`` of
  the loss at ``params``, the second-order model
  ``f(x − εd) ≈ f(x) − ε gᵀd + ½ ε² dᵀHd`` is minimized by

  .. math::

     \\epsilon^* = \\frac{g^\\top d}{d^\\top H d}
     \\quad\\Big(= \\frac{g^\\top g}{g^\\top H g} \\text{ along the gradient}\\Big),
     \\qquad u = \\epsilon\\, d, \\quad
     \\epsilon = \\begin{cases}
       \\operatorname{clip}(\\epsilon^*, -\\epsilon_{max}, \\epsilon_{max}) & d^\\top H d > 0 \\\\
       \\operatorname{sign}(g^\\top d)\\, \\epsilon_{fb} & d^\\top H d \\le 0
     \\end{cases}

  Where the curvature along ``d`` is zero or negative the model has no
  minimum; the step is then the fixed ``fallback_step`` in the downhill
  sense (``sign(0)`` counts as +). ``max_step`` caps the step where the
  curvature is tiny. On a quadratic loss the step is the exact line search
  along ``d``. Each update costs one Hessian–vector product (forward over
  reverse), which also yields ``g``: the loss function must be passed as the
  extra argument ``value_fn`` (``gx.step`` does it). Follow it with
  ``scale_by_learning_rate(1.0)``, or use :func:`curvature_descent`. Complex
  parameters follow torch's convention, as their real view.

  Args:
    fallback_step: ``ε_fb ≥ 0``, the step where ``dᵀHd ≤ 0``.
    max_step: ``ε_max > 0``, the largest step magnitude.

  Returns:
    A transform with state :class:`ScaleByCurvatureStepState`; its update
    needs ``params`` and ``value_fn``.

  References:
    Goodfellow, Bengio & Courville, 2016, "Deep Learning", Section 4.3.1
    (Eq. 4.10), https://www.deeplearningbook.org/contents/numerical.html
  """
  check_hyperparameter("scale_by_curvature_step", "fallback_step", fallback_step, low=0.0,
                       hint="fallback_step is the step used where the curvature is not positive; e.g. 1e-2.")
  check_hyperparameter("scale_by_curvature_step", "max_step", max_step, low=0.0, low_open=True,
                       hint="max_step caps the step where the curvature is tiny; it must be positive, e.g. 100.")
  return _ScaleByCurvatureStep(fallback_step, max_step)


@_named
def curvature_descent(learning_rate: Any = 1.0, fallback_step: Any = 1e-2,
                      max_step: Any = 1e2) -> GradientTransformation:
  """Gradient descent with the curvature step: ``x ← x − η · (gᵀg / gᵀHg) · g``.

  ``chain(scale_by_curvature_step(fallback_step, max_step), scale_by_learning_rate(η))``;
  with ``η = 1`` each step minimizes the quadratic model along the gradient
  (see :func:`scale_by_curvature_step` for the fallback where ``gᵀHg ≤ 0``).

  Args:
    learning_rate: ``η ≥ 0``, a multiplier on the model-optimal step (1.0 by default).
    fallback_step: the step where the curvature is not positive.
    max_step: the largest step.

  Returns:
    A chain; its update needs ``params`` and ``value_fn`` (use ``gx.step``).

  References:
    Goodfellow, Bengio & Courville, 2016, "Deep Learning", Section 4.3.1,
    https://www.deeplearningbook.org/contents/numerical.html
  """
  return chain(scale_by_curvature_step(fallback_step, max_step), scale_by_learning_rate(learning_rate))
