"""SM3 (Anil et al. 2019): Adagrad with one accumulator per row/column/... instead of per coordinate."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, named
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["scale_by_sm3", "sm3"]

_NAME = "scale_by_sm3"


class ScaleBySM3State(NamedTuple):
  """State of :func:`scale_by_sm3`.

  ``mu`` holds, per leaf, a list of accumulators: one vector per axis
  (``mu[i]`` has length ``shape[i]``) for leaves of two or more axes, else one
  accumulator of the leaf's shape (a scalar leaf has a scalar one). ``nu`` is
  the momentum, with the parameters' shape.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any


def _axis_accumulators(p: jax.Array) -> list:
  if p.ndim < 2:
    return [jnp.zeros_like(p)]
  return [jnp.zeros_like(p, shape=(n,)) for n in p.shape]


def _cover(g: Any, accumulators: Any) -> Any:
  """``min_r μ(r)`` over the accumulators covering each coordinate, broadcast to the leaf's shape."""
  if g is None:
    return None
  if jnp.ndim(g) < 2:
    return accumulators[0]  # state of the leaf's shape: the new ν is stored in it
  dtype = _tree.compute_dtype(accumulators[0].dtype)  # a derived value: the new ν in the compute dtype
  expanded = [jnp.reshape(a.astype(dtype), [1] * i + [a.shape[0]] + [1] * (jnp.ndim(g) - i - 1))
              for i, a in enumerate(accumulators)]
  return functools.reduce(jnp.minimum, expanded)


def _new_accumulators(accum: Any, like: Any) -> Any:
  if accum is None:
    return None
  if accum.ndim < 2:
    return [accum.astype(like[0].dtype)]
  return [jnp.max(accum, axis=tuple(j for j in range(accum.ndim) if j != i)).astype(a.dtype)
          for i, a in enumerate(like)]


class _ScaleBySM3(Transform):
  b1: Any
  b2: Any
  eps: Any
  State = ScaleBySM3State

  def init_fields(self, params):
    _tree.check_floating(_NAME, params, "parameter")
    return {"mu": jax.tree.map(_axis_accumulators, params), "nu": _tree.zeros_like(_NAME, params)}

  def apply(self, updates, state, params, hp, **extra):
    if jax.tree.structure(updates, is_leaf=_tree.is_none) != jax.tree.structure(state.nu, is_leaf=_tree.is_none):
      raise _tree._structure_error(_NAME, "update", updates, state.nu)
    cover = jax.tree.map(_cover, updates, state.mu, is_leaf=_tree.is_none)

    def rule(g, nu, v, b1, b2, eps, stored):
      _, accum = stored(None, jnp.where(b2 == 1, 1, 1 - b2) * g * g + b2 * v)
      scaled = g * jnp.where(accum > 0, jax.lax.rsqrt(accum + eps), 0)
      nu, = stored(b1 * nu + (1 - b1) * scaled)
      return nu, nu, accum

    updates, nu, accum = _tree.leafwise(_NAME, rule, updates, state.nu, cover, scalars=hp,
                                        check_dtype=(True, False), stored=True)
    mu = jax.tree.map(_new_accumulators, accum, state.mu, is_leaf=_tree.is_none)
    return updates, {"mu": mu, "nu": nu}


def scale_by_sm3(b1: Any = 0.9, b2: Any = 1.0, eps: Any = 1e-8) -> GradientTransformation:
  """SM3-II's direction (Anil et al. 2019, Algorithm 2) with momentum, as ``optax.scale_by_sm3``.

  For a leaf with axes ``1..k``, each index ``r`` of axis ``i`` has an
  accumulator ``μ_i(r)``; a coordinate is covered by one per axis:

  .. math::

     \\nu_t = c\\, g_t^2 + \\beta_2 \\min_i \\mu_{i,t-1}(\\cdot), \\quad
     \\mu_{i,t}(r) = \\max_{\\text{coords in row } r \\text{ of axis } i} \\nu_t, \\qquad
     m_t = \\beta_1 m_{t-1} + (1-\\beta_1)\\, \\frac{g_t}{\\sqrt{\\nu_t + \\epsilon}}, \\quad u_t = m_t

  with ``c = 1`` if ``β₂ = 1`` (the paper's sum) else ``1 - β₂``, and
  ``u = 0`` where ``ν_t = 0``. Leaves of fewer than two axes keep one
  accumulator per coordinate (there it is Adagrad with momentum); memory is
  ``Σ_i shape[i]`` per matrix instead of ``Π_i shape[i]``. optax raises on
  scalar leaves; here a scalar has a scalar accumulator.

  Args:
    b1: momentum ``β₁`` in [0, 1) (``sm3``'s ``momentum``).
    b2: decay of the accumulators ``β₂`` in [0, 1] (1: the paper's sums).
    eps: ``ε ≥ 0`` inside the root.

  Returns:
    A transform with state :class:`ScaleBySM3State` (one parameter copy plus the accumulators).

  References:
    Anil, Gupta, Koren & Singer, 2019, "Memory-Efficient Adaptive
    Optimization", https://arxiv.org/abs/1901.11150
  """
  check_hyperparameter(_NAME, "b1", b1, low=0.0, high=1.0, high_open=True,
                       hint="b1 is the momentum; use a value in [0, 1) such as 0.9.")
  check_hyperparameter(_NAME, "b2", b2, low=0.0, high=1.0,
                       hint="b2 is the decay of the accumulators; 1.0 (the paper's sums) or a value in [0, 1).")
  check_hyperparameter(_NAME, "eps", eps, low=0.0, hint="eps must be >= 0 (it is added inside the root).")
  return _ScaleBySM3(b1, b2, eps)


@named
def sm3(learning_rate: Any, momentum: Any = 0.9) -> GradientTransformation:
  """SM3, as ``optax.sm3``: ``chain(scale_by_sm3(b1=momentum), scale_by_learning_rate(lr))``.

  References:
    Anil et al., 2019, https://arxiv.org/abs/1901.11150
  """
  check_hyperparameter("sm3", "momentum", momentum, low=0.0, high=1.0, high_open=True,
                       hint="momentum is the decay of the averaged step; use a value in [0, 1) such as 0.9.")
  return chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))
