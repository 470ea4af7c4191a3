"""Blockwise 8-bit dynamic quantization of arrays (the codec behind 8-bit optimizer state).

An array is flattened, padded with zeros to a multiple of the block size ``B``
and cut into blocks of ``B`` values. Each block keeps its absolute maximum
``s`` (float32) and one ``uint8`` code per value: the index of the entry of a
256-value *dynamic* map nearest to ``x / s``. Decoding is a table lookup times
``s``. The dynamic map is non-linear: it has about as many values per decade
from 1e-6 to 1, so small values of a block keep a few significant digits.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["Quantized", "dequantize_blockwise", "dynamic_map", "quantize_blockwise"]


def _dynamic_tree_map(signed: bool, exponent_bits: int = 7, total_bits: int = 8) -> np.ndarray:
  """The 256 sorted values of dynamic tree quantization (Dettmers et al. 2022, Appendix F).

  A code is read as: a sign bit (signed map only), then ``e`` zero bits (the
  decimal exponent: the magnitude is ``10^-e`` times the fraction), an
  indicator bit 1, and the remaining bits as a linear fraction in [0.1, 1]
  (the midpoints of that many equal bins). The free codes hold 0 and 1. This
  is bitsandbytes' ``create_dynamic_map``, except that the signed map's
  smallest negative value (-5.5e-7) is replaced by -1, so that the block's
  absolute maximum is exact whatever its sign.
  """
  values = []
  non_sign_bits = total_bits - 1
  for i in range(exponent_bits):
    bins = 2 ** (i + non_sign_bits - exponent_bits + (0 if signed else 1))
    edges = np.linspace(0.1, 1.0, bins + 1)
    means = (edges[:-1] + edges[1:]) / 2 * 10.0 ** (i - (exponent_bits - 1))
    values.extend(means)
    if signed:
      values.extend(-means)
  values.extend([0.0, 1.0])
  values = np.sort(np.asarray(values, np.float64))
  if signed:
    smallest_negative = np.flatnonzero(values < 0)[-1]
    values[smallest_negative] = -1.0
    values = np.sort(values)
  assert values.shape == (2 ** total_bits,) and np.all(np.diff(values) > 0)
  return values.astype(np.float32)


_MAPS = {True: _dynamic_tree_map(signed=True), False: _dynamic_tree_map(signed=False)}
_MIDPOINTS = {s: ((m[1:].astype(np.float64) + m[:-1]) / 2).astype(np.float32) for s, m in _MAPS.items()}
_BUCKET_SHIFT = 15  # a bucket: the 2^15 float32s that share sign, exponent and 8 leading mantissa bits


def _bucket_codes(midpoints: np.ndarray) -> np.ndarray:
  """``uint8 [2^17]``: for each bucket of float32s, the number of midpoints below all of its numbers.

  A bucket holds at most one midpoint (the map's values are at least 0.7%
  apart relative to their size, a bucket spans at most 2^-8), so a number
  ``y`` of bucket ``b`` has code ``c + (midpoints[c] < y)``, ``c = table[b]``.
  (A NaN counts as beyond the infinity of its sign here, which keeps each
  bucket an interval; :func:`_nearest_code` gives NaNs their own code.)
  """
  def count(v):  # the midpoints below each float32 v
    below = np.searchsorted(midpoints, v, side="left")
    return np.where(np.isnan(v), np.where(np.signbit(v), 0, len(midpoints)), below)

  first = np.arange(2**17, dtype=np.uint32) << _BUCKET_SHIFT
  ends = count(first.view(np.float32)), count((first | (2**_BUCKET_SHIFT - 1)).view(np.float32))
  low, high = np.minimum(*ends), np.maximum(*ends)
  assert np.all(high - low <= 1) and not np.any(midpoints == 0)  # so -0 and +0 have the same code
  return low.astype(np.uint8)


_BUCKET_CODES = {s: _bucket_codes(m) for s, m in _MIDPOINTS.items()}
_THRESHOLDS = {s: np.append(m, np.float32(np.inf)) for s, m in _MIDPOINTS.items()}  # midpoint c, or inf for c = 255


def dynamic_map(signed: bool = True) -> np.ndarray:
  """The 256 sorted float32 values that the codes of :func:`quantize_blockwise` index.

  The signed map (for values of either sign, e.g. Adam's first moment) spans
  [-1, 1]; the unsigned one (for ``x ≥ 0``, e.g. the second moment) spans
  [0, 1] with twice the resolution. Both contain 0 exactly.

  References:
    Dettmers et al., 2022, "8-bit Optimizers via Block-wise Quantization",
    https://arxiv.org/abs/2110.02861
  """
  return _MAPS[bool(signed)].copy()


class Quantized(NamedTuple):
  """An array stored as blockwise 8-bit codes: ``x ≈ map[codes] * scales[:, None]``.

  ``codes`` is ``uint8 [n_blocks, block_size]``; ``scales`` is ``float32
  [n_blocks]``, each block's absolute maximum. The original shape is not
  stored: it is the shape of the parameter the state belongs to.
  """

  codes: jax.Array
  scales: jax.Array


def check_block_size(name: str, block_size: object) -> int:
  """Returns ``block_size`` as an int, or raises naming ``name`` if it is not a positive integer."""
  if isinstance(block_size, bool) or not isinstance(block_size, (numbers.Integral, np.integer)):
    raise TypeError(f"{name}: block_size must be a positive Python int (values per quantization block), "
                    f"got {type(block_size).__name__} {block_size!r}. Use e.g. block_size=2048.")
  if block_size < 1:
    raise ValueError(f"{name}: block_size={block_size} must be a positive int (values per quantization "
                     "block). Use e.g. block_size=2048, as bitsandbytes.")
  return int(block_size)


def quantize_blockwise(x: jax.Array, block_size: int = 2048, signed: bool = True) -> Quantized:
  """Encodes ``x`` (any shape, floating) as blockwise 8-bit dynamic codes.

  .. math::

     s_b = \\max_{i \\in b} |x_i|, \\qquad
     c_i = \\arg\\min_k |q_k - x_i / s_b|

  where ``q`` is :func:`dynamic_map` (``signed``) and a block with ``s_b = 0``
  is all zeros. The error of a value is at most half the gap between the two
  map values around ``x_i / s_b``, times ``s_b``; zeros are exact.

  Args:
    x: the array to encode (computed on in float32).
    block_size: values per block; any positive int (the last block is padded
      with zeros). 2048 makes the scales 0.2% of the bytes of the codes.
    signed: use the signed map; pass ``False`` only for ``x ≥ 0`` (negative
      values would be clipped to 0).

  Returns:
    A :class:`Quantized` with ``ceil(x.size / block_size)`` blocks.

  References:
    Dettmers et al., 2022, https://arxiv.org/abs/2110.02861
  """
  block_size = check_block_size("quantize_blockwise", block_size)
  x = jnp.asarray(x)
  flat = jnp.ravel(x).astype(jnp.float32)
  n_blocks = max(1, -(-flat.size // block_size))
  flat = jnp.pad(flat, (0, n_blocks * block_size - flat.size))
  blocks = flat.reshape(n_blocks, block_size)
  scales = jnp.max(jnp.abs(blocks), axis=1)
  safe = jnp.where(scales > 0, scales, jnp.ones_like(scales))
  normalized = blocks / safe[:, None]
  return Quantized(_nearest_code(normalized, bool(signed)), scales)


def _nearest_code(y: jax.Array, signed: bool) -> jax.Array:
  """The number of map midpoints below ``y`` (the nearest map value's code), as ``uint8``.

  Equal to ``jnp.searchsorted(midpoints, y)`` for every float32 ``y`` (NaN:
  255), from two table lookups (see :func:`_bucket_codes`) instead of 8
  binary-search steps.
  """
  bucket = lax.shift_right_logical(lax.bitcast_convert_type(y, jnp.uint32), jnp.uint32(_BUCKET_SHIFT))
  below = jnp.asarray(_BUCKET_CODES[signed]).at[bucket].get(mode="promise_in_bounds")
  above = jnp.asarray(_THRESHOLDS[signed]).at[below].get(mode="promise_in_bounds") < y
  return jnp.where(jnp.isnan(y), jnp.uint8(255), below + above.astype(jnp.uint8))


def dequantize_blockwise(q: Quantized, shape: tuple, signed: bool = True) -> jax.Array:
  """Decodes a :class:`Quantized` to a float32 array of ``shape`` (the inverse of :func:`quantize_blockwise`).

  References:
    Dettmers et al., 2022, "8-bit Optimizers via Block-wise Quantization", https://arxiv.org/abs/2110.02861
  """
  # One lookup in each block's scaled map gives the decoded value, so the codes and scales are read
  # only where it is computed: a jitted step that overwrites them in place (donated state) need not
  # keep a copy of them for later readers.
  scaled = q.scales[:, None] * jnp.asarray(_MAPS[bool(signed)])  # [n_blocks, 256]
  values = jnp.take_along_axis(scaled, q.codes.astype(jnp.int32), axis=1, mode="promise_in_bounds")
  size = int(np.prod(shape, dtype=np.int64))
  return lax.reshape(values.reshape(-1)[:size], tuple(shape))
