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

__all__ = ["Quantized", "dequantize_4bit", "dequantize_blockwise", "dynamic_map", "map_4bit", "quantize_4bit",
           "quantize_blockwise"]


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


# --- 4-bit codes (Li et al. 2023) -------------------------------------------------------------------------

_MAPS_4BIT = {
    # signed: the dynamic-exponent map with 3 exponent bits, 16 values in [-1, 1] (0 and ±1 exact)
    True: _dynamic_tree_map(signed=True, exponent_bits=3, total_bits=4),
    # unsigned: the linear map without zero, (k + 1) / 16 (the paper's fix of the zero-point problem)
    False: (np.arange(1, 17, dtype=np.float64) / 16).astype(np.float32),
}
_MIDPOINTS_4BIT = {s: ((m[1:].astype(np.float64) + m[:-1]) / 2).astype(np.float32) for s, m in _MAPS_4BIT.items()}


def map_4bit(signed: bool = True) -> np.ndarray:
  """The 16 sorted float32 values that 4-bit codes index (Li et al. 2023).

  The signed map (first moments) is the dynamic-exponent map with 3 exponent
  bits: ``{0, ±1, ±0.8875, ±0.6625, ±0.4375, ±0.2125, ±0.0775, ±0.0325,
  0.0055}``. The unsigned map (second moments) is linear and *excludes zero*:
  ``(k + 1) / 16``, ``k = 0..15``, so no non-zero second moment decodes to 0
  (which would make ``1/√v`` explode: the paper's zero-point problem).

  References:
    Li, Chen & Zhu, 2023, "Memory Efficient Optimizers with 4-bit States",
    https://arxiv.org/abs/2309.01507
  """
  return _MAPS_4BIT[bool(signed)].copy()


def _nearest_code_4bit(y: jax.Array, signed: bool) -> jax.Array:
  """The number of the 15 map midpoints below ``y`` (the nearest value's code, ties to the lower), ``uint8``."""
  code = jnp.zeros(y.shape, jnp.uint8)
  for m in _MIDPOINTS_4BIT[signed]:  # 15 compares, fused into one loop by XLA
    code = code + (y > m).astype(jnp.uint8)
  return code


def _pack(codes: jax.Array) -> jax.Array:
  """Two 4-bit codes per byte (an even number of codes, flat): ``low | high << 4``."""
  pairs = codes.reshape(-1, 2)
  return pairs[:, 0] | (pairs[:, 1] << 4)


def _unpack(packed: jax.Array) -> jax.Array:
  return jnp.stack([packed & 15, packed >> 4], axis=-1).reshape(-1)


def _rank1_scales(x: jax.Array) -> list:
  """For each axis ``d``, the maximum of ``|x|`` over all other axes (a vector of length ``x.shape[d]``)."""
  a = jnp.abs(x)
  return [jnp.max(a, axis=tuple(k for k in range(x.ndim) if k != d)) for d in range(x.ndim)]


def _rank1_scale(parts: list, shape: tuple) -> jax.Array:
  """The element-wise scale of rank-1 normalization: ``min_d M_d[i_d]`` broadcast to ``shape``."""
  scale = None
  for d, m in enumerate(parts):
    m = lax.broadcast_in_dim(m, shape, (d,))
    scale = m if scale is None else jnp.minimum(scale, m)
  return scale


def quantize_4bit(x: jax.Array, block_size: int = 128, signed: bool = True, rank1: bool = False) -> Quantized:
  """Encodes ``x`` in 4 bits per value, two codes per byte (Li et al. 2023).

  .. math::

     c_i = \\arg\\min_k |q_k - x_i / s_i|

  with ``q`` = :func:`map_4bit` (``signed``) and the scale ``s_i`` either
  the absolute maximum of ``x_i``'s block of ``block_size`` values
  (blockwise), or, with ``rank1`` and ``x.ndim ≥ 2``, rank-1 normalization:
  ``s_i = min_d M_d[i_d]`` where ``M_d`` is the maximum of ``|x|`` over all
  axes but ``d`` (for a matrix: the smaller of the row and the column
  maximum), which adapts to outlier rows and columns at ``sum(shape)`` floats.
  A scale of 0 decodes to 0.

  Returns:
    A :class:`Quantized`: ``codes`` ``uint8 [n_blocks, block_size // 2]`` and
    ``scales`` ``float32 [n_blocks]`` (blockwise), or ``codes`` ``uint8
    [ceil(x.size / 2)]`` and ``scales`` ``float32 [sum(x.shape)]`` (rank-1).

  References:
    Li, Chen & Zhu, 2023, https://arxiv.org/abs/2309.01507
  """
  block_size = check_block_size("quantize_4bit", block_size)
  if block_size % 2:
    raise ValueError(f"quantize_4bit: block_size={block_size} must be even (two 4-bit codes per byte). "
                     "Use e.g. block_size=128, as the paper.")
  x = jnp.asarray(x).astype(jnp.float32)
  signed = bool(signed)
  if rank1 and x.ndim >= 2:
    parts = _rank1_scales(x)
    scale = _rank1_scale(parts, x.shape)
    y = x / jnp.where(scale > 0, scale, jnp.ones_like(scale))
    codes = _nearest_code_4bit(jnp.ravel(y), signed)
    codes = jnp.pad(codes, (0, codes.size % 2))
    return Quantized(_pack(codes), jnp.concatenate(parts))
  flat = jnp.ravel(x)
  n_blocks = max(1, -(-flat.size // block_size))
  blocks = jnp.pad(flat, (0, n_blocks * block_size - flat.size)).reshape(n_blocks, block_size)
  scales = jnp.max(jnp.abs(blocks), axis=1)
  y = blocks / jnp.where(scales > 0, scales, jnp.ones_like(scales))[:, None]
  return Quantized(_pack(_nearest_code_4bit(y, signed)).reshape(n_blocks, block_size // 2), scales)


def dequantize_4bit(q: Quantized, shape: tuple, signed: bool = True) -> jax.Array:
  """Decodes a :class:`Quantized` of :func:`quantize_4bit` to a float32 array of ``shape``.

  Whether it is rank-1 normalized is read from its codes' rank (1: rank-1).

  References:
    Li, Chen & Zhu, 2023, https://arxiv.org/abs/2309.01507
  """
  shape = tuple(shape)
  size = int(np.prod(shape, dtype=np.int64))
  table = jnp.asarray(_MAPS_4BIT[bool(signed)])
  codes = _unpack(q.codes).astype(jnp.int32)
  if q.codes.ndim == 1:  # rank-1
    offsets = np.cumsum((0,) + shape)
    parts = [q.scales[offsets[d]:offsets[d + 1]] for d in range(len(shape))]
    return table[codes][:size].reshape(shape) * _rank1_scale(parts, shape)
  # one lookup in each block's scaled map (as dequantize_blockwise): the scales are read where the value is
  # computed, so a donated step can overwrite them in place
  scaled = q.scales[:, None] * table  # [n_blocks, 16]
  values = jnp.take_along_axis(scaled, codes.reshape(q.codes.shape[0], -1), axis=1, mode="promise_in_bounds")
  return lax.reshape(values.reshape(-1)[:size], shape)
