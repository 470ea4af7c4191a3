"""Newton's method for small problems: the exact Hessian, damped and made positive definite."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field
from gradxform._core.objective import ravel, ravel_size, require_value_fn, scalar_dtype, unravel_like
from gradxform._core.hyperparams import named as _named
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["ScaleByNewtonState", "hessian_matrix", "newton", "scale_by_newton"]


class ScaleByNewtonState(NamedTuple):
  """State of :func:`scale_by_newton`: the extreme eigenvalues of the last Hessian.

  ``min_eigenvalue < eigenvalue_floor`` means the Hessian was modified (it was
  indefinite or nearly singular); their ratio shows its conditioning.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  min_eigenvalue: jax.Array
  max_eigenvalue: jax.Array


def hessian_matrix(fn: Any, params: Any) -> jax.Array:
  """The ``n × n`` Hessian of a scalar function of a pytree, over the raveled parameters.

  .. math::

     H_{ij} = \\frac{\\partial^2 f}{\\partial x_i \\partial x_j}, \\qquad
     x = \\operatorname{ravel}(\\text{params})

  The parameters are raveled leaf by leaf in ``jax.tree.leaves`` order (as
  ``jax.flatten_util.ravel_pytree``), in their widest dtype (at least
  float32); ``jax.hessian`` (forward over reverse) does the rest. A complex
  leaf enters as its real view (two entries per element), as torch.optim treats it.

  Args:
    fn: a scalar function of the parameter tree.
    params: the point.

  Returns:
    The symmetric matrix ``H`` of shape ``(n, n)``.

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Section 2.2,
    https://doi.org/10.1007/978-0-387-40065-5
  """
  flat = ravel(params, scalar_dtype(params))
  return jax.hessian(lambda x: fn(unravel_like(x, params)).astype(flat.dtype))(flat)


class _ScaleByNewton(Transform):
  damping: Any
  eigenvalue_floor: Any
  max_parameters: int = static_field(default=10_000)
  State = ScaleByNewtonState
  complex_ok = True  # the Hessian over the real view of complex leaves, as torch.optim treats them

  def init_fields(self, params):
    self._check_size(params)
    dtype = scalar_dtype(params)
    return {"min_eigenvalue": jnp.zeros((), dtype), "max_eigenvalue": jnp.zeros((), dtype)}

  def _check_size(self, params):
    n = ravel_size(params)
    if n > self.max_parameters:
      raise ValueError(
          f"scale_by_newton: the parameters have {n} entries, so the Hessian would have {n}² = "
          f"{n * n:.3g} entries, above max_parameters={self.max_parameters}. Newton's method is for "
          "small problems: use lbfgs or scale_by_curvature_step (Hessian-vector products only), "
          "or raise max_parameters if the Hessian fits in memory.")

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_newton"
    value_fn = require_value_fn(name, extra, "compute the Hessian at params")
    _tree.require_params(name, params, "compute the Hessian")
    _tree.check_floating(name, updates, "update", allow_complex=True)
    self._check_size(params)
    dtype = scalar_dtype((params, updates))
    hessian = hessian_matrix(value_fn, params).astype(dtype)
    hessian = 0.5 * (hessian + hessian.T)
    eigenvalues, vectors = jnp.linalg.eigh(hessian)
    floor = hp["eigenvalue_floor"].astype(dtype)
    modified = jnp.maximum(jnp.abs(eigenvalues), floor) + hp["damping"].astype(dtype)
    g = ravel(updates, dtype)
    direction = vectors @ ((vectors.T @ g) / modified)
    return unravel_like(direction, updates), {
        "min_eigenvalue": eigenvalues[0], "max_eigenvalue": eigenvalues[-1]}


def scale_by_newton(damping: Any = 0.0, eigenvalue_floor: Any = 1e-8,
                    max_parameters: int = 10_000) -> GradientTransformation:
  """Newton's direction with the exact Hessian, damped and modified to be positive definite.

  With the Hessian's eigendecomposition ``H = Q diag(λ) Qᵀ`` at ``params``:

  .. math::

     d = Q\\, \\operatorname{diag}\\!\\big(\\max(|\\lambda_i|, \\delta) + \\mu\\big)^{-1} Q^\\top g

  where ``g`` is the incoming update (the gradient). Where ``H`` is positive
  definite with eigenvalues ``≥ δ`` this is exactly the Levenberg–Marquardt
  step ``(H + μI)⁻¹ g``, and with ``μ = 0`` the Newton step ``H⁻¹g``: one step
  solves a quadratic, and convergence near a minimum is quadratic.
  Indefinite Hessians are handled by **eigenvalue modification** (Nocedal &
  Wright §3.4): a negative eigenvalue is replaced by its absolute value (so
  the step runs downhill along negative-curvature directions and escapes
  saddles, as in saddle-free Newton) and eigenvalues below ``δ`` are raised
  to ``δ``, so the step stays a descent direction of bounded length
  ``‖d‖ ≤ ‖g‖ / (δ + μ)``. The damping ``μ`` is fixed (a hyperparameter, so it
  can be scheduled); chain a line search after it for global convergence
  from far away.

  The Hessian is formed explicitly (``jax.hessian`` over the raveled
  parameters, ``n`` Hessian-vector products) and decomposed (``O(n³)``), so
  this is for problems with up to a few thousand parameters. The loss
  function must be passed as the extra argument ``value_fn`` (``gx.step``
  does it). Complex parameters follow torch's convention, as their real view.

  Args:
    damping: ``μ ≥ 0``, Levenberg–Marquardt damping added to every eigenvalue.
    eigenvalue_floor: ``δ > 0``, the smallest eigenvalue magnitude used.
    max_parameters: refuse problems with more parameters than this (static).

  Returns:
    A transform with state :class:`ScaleByNewtonState`.

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Sections 3.3–3.4,
    https://doi.org/10.1007/978-0-387-40065-5; Dauphin et al., 2014,
    "Identifying and attacking the saddle point problem",
    https://arxiv.org/abs/1406.2572
  """
  check_hyperparameter("scale_by_newton", "damping", damping, low=0.0,
                       hint="damping is the Levenberg-Marquardt term mu added to the Hessian; use 0 for pure Newton.")
  check_hyperparameter("scale_by_newton", "eigenvalue_floor", eigenvalue_floor, low=0.0, low_open=True,
                       hint="eigenvalue_floor bounds the step where the Hessian is (nearly) singular; e.g. 1e-8.")
  if not isinstance(max_parameters, int) or max_parameters < 1:
    raise ValueError(f"scale_by_newton: max_parameters={max_parameters!r} must be a positive integer.")
  return _ScaleByNewton(damping, eigenvalue_floor, max_parameters=max_parameters)


@_named
def newton(learning_rate: Any = 1.0, damping: Any = 0.0, eigenvalue_floor: Any = 1e-8,
           max_parameters: int = 10_000) -> GradientTransformation:
  """Newton's method: ``x ← x − η (H + μI)⁻¹ g``, with the Hessian made positive definite.

  ``chain(scale_by_newton(damping, eigenvalue_floor), scale_by_learning_rate(η))``
  (see :func:`scale_by_newton`). With ``η = 1`` and ``μ = 0`` it solves a
  quadratic in one step. For a globally convergent variant, replace the
  learning rate by a line search: ``chain(scale_by_newton(), scale_by_backtracking_linesearch())``.

  Args:
    learning_rate: ``η ≥ 0`` (1.0: the full Newton step).
    damping: ``μ ≥ 0``, Levenberg–Marquardt damping.
    eigenvalue_floor: ``δ > 0``, the smallest eigenvalue magnitude used.
    max_parameters: refuse problems with more parameters than this.

  Returns:
    A chain; its update needs ``params`` and ``value_fn`` (use ``gx.step``).

  References:
    Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Chapter 3,
    https://doi.org/10.1007/978-0-387-40065-5
  """
  return chain(scale_by_newton(damping, eigenvalue_floor, max_parameters),
               scale_by_learning_rate(learning_rate))
