"""Elementwise guards of the update rules: a decay of 0 forgets an inf state, a zero denominator gives 0.

Each guard costs a select per element, traced once per leaf. When the value it
guards against is known while tracing (a hyperparameter held as a Python number
or a constant array, as in an optimizer closed over by the jitted step) and
cannot occur, the guard is left out: the jaxpr is then the size of optax's
(``gx.adam``'s update: 14 equations per leaf instead of 26 with the guards;
its step with ``apply_updates`` 19 against optax's 20), which matters for trace
and compile time on trees of thousands of leaves. A hyperparameter passed into
the step as a traced value keeps every guard.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gradxform._core.tree import explicit_sharding

__all__ = ["decay_scalars", "decayed", "divide_or_zero", "known"]


def known(x: Any) -> Optional[np.ndarray]:
  """``x``'s value when it is known while tracing (a Python number or a concrete array), else None."""
  if isinstance(x, jax.core.Tracer):
    return None
  try:
    return np.asarray(x)
  except (TypeError, ValueError, jax.errors.JAXTypeError):
    return None


def _filled(x: jax.Array, value: float) -> jax.Array:
  """An array of ``value`` with ``x``'s shape, dtype and layout, in one primitive where ``x`` has no Explicit
  sharding (``lax.full_like`` costs several times more to trace, which adds up over thousands of leaves)."""
  if explicit_sharding(x) is not None:  # keep the operand's sharding: select refuses mixed layouts there
    return lax.full_like(x, value)
  return lax.broadcast_in_dim(np.asarray(value, x.dtype), np.shape(x), ())


def decayed(decay: jax.Array, x: jax.Array, forget: Any = None) -> jax.Array:
  """``decay · x``, exactly 0 where ``decay == 0`` (so a decay of 0 forgets an old state even if it is inf).

  ``forget`` is ``decay == 0`` when the caller computed it once for many leaves (:func:`decay_scalars`):
  a traced boolean, or a Python bool when the decay is known while tracing (then no select is traced).
  """
  decay, x = jnp.asarray(decay), jnp.asarray(x)
  if decay.ndim != 0 or decay.dtype != x.dtype:
    return jnp.where(decay == 0, jnp.zeros_like(x), decay * x)
  if forget is None:
    forget = _is_zero(decay)
  if isinstance(forget, (bool, np.bool_)):
    return _filled(x, 0) if forget else lax.mul(decay, x)
  # lax primitives with a scalar predicate: the same values as the jnp form, a third of its tracing cost
  return lax.select(forget, _filled(x, 0), lax.mul(decay, x))


def _is_zero(decay: jax.Array) -> Any:
  """``decay == 0``: a Python bool when the (scalar) decay is known while tracing, else a traced boolean."""
  value = known(decay)
  if value is not None and value.ndim == 0:
    return bool(value == 0)
  return lax.eq(decay, np.zeros((), decay.dtype))


def decay_scalars(name: str = "decay") -> Callable[[dict], dict]:
  """A ``leafwise`` ``derive`` for an EMA with decay ``scalars[name]``: ``{name}_rest = 1 − β`` and
  ``{name}_forget = (β == 0)``, each traced once per dtype instead of once per leaf."""
  def derive(scalars):
    decay = scalars[name]
    forget = _is_zero(decay) if jnp.ndim(decay) == 0 else decay == 0
    return {f"{name}_rest": 1 - decay, f"{name}_forget": forget}
  return derive


def divide_or_zero(numerator: jax.Array, denominator: jax.Array, at_least: Any = None) -> jax.Array:
  """``n / d``, and 0 where ``d == 0`` (with a finite gradient there, unlike a plain ``where``).

  Both arguments must have the same shape and dtype (no broadcasting): it is
  written with ``lax`` primitives, which are cheaper to trace per leaf.
  ``at_least`` is a number the denominator cannot be below (Adam's ``ε`` in
  ``√v̂ + ε``, since a rounded sum of a non-negative term and ``ε`` is at least
  ``ε``): when it is known while tracing and positive in the denominator's
  dtype, ``d`` is never 0 and the division is traced without the guard.
  """
  if at_least is not None:
    floor = known(at_least)
    if floor is not None and floor.ndim == 0 and np.asarray(floor, denominator.dtype) > 0:
      return lax.div(numerator, denominator)
  # _filled keeps the operand's sharding (a constant broadcast without it is replicated, and
  # select refuses mixed shardings on a mesh with Explicit axes)
  zero = lax.eq(denominator, np.zeros((), denominator.dtype))
  fill = _filled(denominator, 0)
  safe = lax.select(zero, _filled(denominator, 1), denominator)
  return lax.select(zero, fill, lax.div(numerator, safe))
