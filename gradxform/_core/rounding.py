"""Rounding to low precision: stochastic rounding (unbiased) for ``apply_updates(..., key=)``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["round_like", "stochastic_round"]


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
