"""Rounding to low precision: stochastic rounding (unbiased) for ``apply_updates(..., key=)`` and for state stores."""

from __future__ import annotations

import collections
import contextlib
import contextvars
from typing import Any, Iterator, Optional

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["convert", "final", "round_like", "state_rounding", "stochastic_round", "stochastic_store", "store"]


def round_like(x: Any, dtype: Any) -> jax.Array:
  """``x`` rounded to the values of the narrower floating ``dtype``, kept in ``x``'s dtype.

  ``x.astype(dtype).astype(x.dtype)`` rounds eagerly, but under ``jit`` XLA may elide the round trip
  (excess precision); ``lax.reduce_precision`` is kept, so eager and jit give identical results.
  """
  x = jnp.asarray(x)
  dtype = jnp.dtype(dtype)
  if not (jnp.issubdtype(dtype, jnp.floating) and jnp.issubdtype(x.dtype, jnp.floating)):
    return x
  info, have = jnp.finfo(dtype), jnp.finfo(x.dtype)
  if info.nmant >= have.nmant and info.nexp >= have.nexp:
    return x
  return lax.reduce_precision(x, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def stochastic_round(x: Any, dtype: Any, key: jax.Array) -> jax.Array:
  """Rounds ``x`` to ``dtype`` up or down at random, unbiased: ``E[round(x)] = x``.

  .. math::

     \\operatorname{sr}(x) = \\begin{cases} \\lceil x \\rceil & \\text{with probability }
       \\frac{x - \\lfloor x \\rfloor}{\\lceil x \\rceil - \\lfloor x \\rfloor} \\\\
       \\lfloor x \\rfloor & \\text{otherwise} \\end{cases}

  where ``⌊x⌋`` and ``⌈x⌉`` are the neighbouring values of ``dtype`` around ``x``. Values exactly
  representable (and non-finite ones) are returned as ``x.astype(dtype)``. With bfloat16 parameters and
  no float32 master copy, updates smaller than half a unit in the last place are kept on average instead
  of rounding away (Gupta et al. 2015).

  Args:
    x: a floating array (computed in at least float32).
    dtype: the floating dtype to round to (e.g. ``jnp.bfloat16``).
    key: a PRNG key; the same key gives the same rounding.

  Returns:
    ``x`` rounded to ``dtype``.

  References:
    Gupta et al., 2015, "Deep Learning with Limited Numerical Precision", https://arxiv.org/abs/1502.02551
  """
  x = jnp.asarray(x)
  wide = jnp.promote_types(x.dtype, jnp.float32)
  x = x.astype(wide)
  dtype = jnp.dtype(dtype)
  near = x.astype(dtype)
  back = near.astype(wide)
  toward = jnp.where(back < x, jnp.inf, -jnp.inf).astype(dtype)
  other = jnp.nextafter(near, toward)
  gap = other.astype(wide) - back
  inexact = (back != x) & jnp.isfinite(x) & jnp.isfinite(gap) & (gap != 0)
  prob = jnp.where(inexact, (x - back) / jnp.where(inexact, gap, 1), 0)
  uniform = jax.random.uniform(key, x.shape, wide)
  return jnp.where(uniform < prob, other, near)


class _StateRounding:
  """The key of one ``stochastic_state_rounding`` update and what it rounded (trace-time bookkeeping)."""

  def __init__(self, key: jax.Array):
    self.key = key
    self.draws = 0
    # (shape, dtype) of each state array written with stochastic rounding: wrappers that pass state through
    # lax.cond or jnp.where return other objects than leafwise made, so coverage is matched by kind
    self.rounded: collections.Counter = collections.Counter()

  def next_key(self) -> jax.Array:
    key = jax.random.fold_in(self.key, self.draws)
    self.draws += 1
    return key


_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("gradxform_state_rounding", default=None)


@contextlib.contextmanager
def state_rounding(key: jax.Array) -> Iterator[_StateRounding]:
  """While active, state that :func:`gradxform._core.tree.leafwise` stores in a narrower dtype than it computes in
  is rounded stochastically with keys folded from ``key`` (one per stored array, in trace order)."""
  active = _StateRounding(key)
  token = _ACTIVE.set(active)
  try:
    yield active
  finally:
    _ACTIVE.reset(token)


def narrower(dtype: Any, than: Any) -> bool:
  """Whether floating ``dtype`` holds fewer mantissa bits than floating ``than`` (storing rounds)."""
  dtype, than = jnp.dtype(dtype), jnp.dtype(than)
  return (jnp.issubdtype(dtype, jnp.floating) and jnp.issubdtype(than, jnp.floating)
          and jnp.finfo(dtype).nmant < jnp.finfo(than).nmant)


def stochastic_store(x: jax.Array, dtype: Any) -> Optional[jax.Array]:
  """``x`` rounded stochastically to ``dtype`` (returned in ``dtype``) inside :func:`state_rounding` when ``dtype``
  is narrower than ``x``'s; ``None`` otherwise (the caller stores to nearest)."""
  active: Optional[_StateRounding] = _ACTIVE.get()
  if active is None or not narrower(dtype, x.dtype):
    return None
  return stochastic_round(x, dtype, active.next_key())


def kind(x: Any) -> tuple:
  """``(shape, dtype name)`` of an array: what coverage of stochastic state rounding is matched by."""
  return tuple(jnp.shape(x)), jnp.dtype(x.dtype).name


def mark_rounded(x: Any) -> None:
  """Records that the state array ``x`` was stored with stochastic rounding (for the wrapper's coverage check)."""
  active = _ACTIVE.get()
  if active is not None:
    active.rounded[kind(x)] += 1


def convert(x: jax.Array, dtype: Any) -> jax.Array:
  """``x`` in ``dtype`` (itself when it already is): ``lax.convert_element_type``, which jit keeps as written."""
  return x if x.dtype == dtype else lax.convert_element_type(x, dtype)


def store(value: jax.Array, state_dtype: Any, dtype: Any, exact: set) -> jax.Array:
  """``value`` rounded to ``state_dtype`` (stochastically under ``stochastic_state_rounding``), back in ``dtype``;
  a randomly rounded result is remembered in ``exact`` so that it is not rounded twice (:func:`final`)."""
  rounded = stochastic_store(value, state_dtype)
  if rounded is None:
    return convert(convert(value, state_dtype), dtype)
  rounded = convert(rounded, dtype)
  exact.add(id(rounded))
  return rounded


def final(new: jax.Array, dtype: Any, exact: set) -> jax.Array:
  """A rule's new state value cast to its stored ``dtype``: exact when :func:`store` already rounded it at
  random, else rounded at random under ``stochastic_state_rounding`` (when narrower), else to nearest."""
  if id(new) in exact:
    return convert(new, dtype)
  rounded = stochastic_store(new, dtype)
  return convert(new, dtype) if rounded is None else rounded
