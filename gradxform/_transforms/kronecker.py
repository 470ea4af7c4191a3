"""Kronecker-factor statistics shared by Shampoo and SOAP: dimension merging, blocking, factors.

A leaf of shape ``(d_0, ..., d_{k-1})`` is seen as a tensor ``G`` with one
factor per axis: ``F_a = Σ G_(a) G_(a)ᵀ``, the Gram matrix of the mode-``a``
unfolding (``G Gᵀ`` and ``Gᵀ G`` for a matrix). A :class:`Layout` says how a
leaf is seen:

* ``merge_dims`` (SOAP's reference option) first reshapes the leaf, merging
  consecutive axes while their product stays ``<= max_dim``;
* ``block_size`` (Shampoo, Anil et al. 2020) splits every axis longer than the
  block size into blocks (the last one zero-padded), each block with its own
  factors. A blocked tensor is stored as ``(*counts, *sizes)``: block indices
  first, then the axes of one block, so all blocks are processed as one batch
  (``eigh`` and ``qr`` are batched). Zero padding is exact: a padded factor is
  block-diagonal with a zero block, and a matrix function of it acts on the
  real rows alone;
* axes longer than ``max_dim`` (SOAP) have no factor (identity).

Factors of axis ``a`` have shape ``(*counts, sizes[a], sizes[a])``; ``counts``
is ``()`` when no axis is split, so an unblocked matrix has plain ``(m, m)``
and ``(n, n)`` factors.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["Layout", "layout", "to_blocks", "from_blocks", "gram", "multiply", "zero_factors",
           "block_norms", "symmetric_eigh", "merged_shape"]

_HIGHEST = lax.Precision.HIGHEST
_BATCH, _DATA = "abcdefgh", "ijklmnopqrstuvw"


class Layout(NamedTuple):
  """How one leaf is seen as a (blocked) tensor with one Kronecker factor per axis."""

  shape: tuple            # the leaf's shape
  merged: tuple           # after merging axes (== shape when not merged)
  counts: tuple           # blocks per merged axis; () when no axis is split
  sizes: tuple            # the size of one block along each merged axis
  preconditioned: tuple   # per merged axis: whether it has a factor

  @property
  def any(self) -> bool:
    return any(self.preconditioned)


def merged_shape(shape: Sequence[int], max_dim: int) -> tuple:
  """SOAP's ``merge_dims``: merges consecutive axes while their product is ``<= max_dim``.

  The rule of the reference implementation, size-1 axes included (they merge away).
  """
  merged, current = [], 1
  for size in shape:
    if current * size > max_dim:
      if current > 1:
        merged.append(current)
        current = size
      else:
        merged.append(size)
        current = 1
    else:
      current *= size
  if current > 1 or not merged:
    merged.append(current)
  return tuple(merged)


def layout(shape: Sequence[int], *, min_ndim: int, merge_dims: bool = False, max_dim: Optional[int] = None,
           block_size: Optional[int] = None) -> Layout:
  """The layout of a leaf of ``shape``.

  Args:
    shape: the leaf's shape.
    min_ndim: leaves with fewer axes have no factor (1: vectors are preconditioned).
    merge_dims: merge consecutive axes (leaves of 2 or more axes only) as SOAP's reference does.
    max_dim: axes longer than this have no factor (and bound ``merge_dims``).
    block_size: split axes longer than this into blocks of this size.
  """
  shape = tuple(int(d) for d in shape)
  merged = merged_shape(shape, max_dim if max_dim is not None else math.inf) if (
      merge_dims and len(shape) >= 2) else shape
  if len(shape) < min_ndim or not merged:
    return Layout(shape, merged, (), merged, (False,) * len(merged))
  preconditioned = tuple(max_dim is None or d <= max_dim for d in merged)
  if block_size is not None and any(d > block_size for d in merged):
    counts = tuple(-(-d // block_size) for d in merged)
    sizes = tuple(min(d, block_size) for d in merged)
    return Layout(shape, merged, counts, sizes, preconditioned)
  return Layout(shape, merged, (), merged, preconditioned)


def to_blocks(x: jax.Array, lay: Layout) -> jax.Array:
  """``x`` (of the leaf's shape) as ``(*counts, *sizes)`` (zero-padded), or merged when unblocked."""
  x = x.reshape(lay.merged)
  if not lay.counts:
    return x
  k = len(lay.merged)
  padded = tuple(c * s for c, s in zip(lay.counts, lay.sizes))
  x = jnp.pad(x, [(0, p - d) for p, d in zip(padded, lay.merged)])
  x = x.reshape(tuple(v for c, s in zip(lay.counts, lay.sizes) for v in (c, s)))
  return x.transpose(tuple(range(0, 2 * k, 2)) + tuple(range(1, 2 * k, 2)))


def from_blocks(x: jax.Array, lay: Layout) -> jax.Array:
  """The inverse of :func:`to_blocks`: back to the leaf's shape (padding dropped)."""
  if lay.counts:
    k = len(lay.merged)
    order = tuple(v for a in range(k) for v in (a, k + a))
    x = x.transpose(order).reshape(tuple(c * s for c, s in zip(lay.counts, lay.sizes)))
    x = x[tuple(slice(0, d) for d in lay.merged)]
  return x.reshape(lay.shape)


def _letters(lay: Layout) -> tuple[str, str]:
  return _BATCH[:len(lay.counts)], _DATA[:len(lay.merged)]


def gram(xb: jax.Array, lay: Layout, axis: int) -> jax.Array:
  """``G_(a) G_(a)ᵀ`` per block: contracts every axis of a block but ``axis``; shape ``(*counts, s, s)``."""
  batch, data = _letters(lay)
  left, right = data.replace(data[axis], "y"), data.replace(data[axis], "z")
  return jnp.einsum(f"{batch}{left},{batch}{right}->{batch}yz", xb, xb, precision=_HIGHEST)


def multiply(xb: jax.Array, matrix: jax.Array, lay: Layout, axis: int, transpose: bool) -> jax.Array:
  """Multiplies axis ``axis`` of every block by ``matrix`` (``Mᵀ x`` if ``transpose`` else ``M x``)."""
  batch, data = _letters(lay)
  source, target = data.replace(data[axis], "y"), data.replace(data[axis], "z")
  mat = f"{batch}yz" if transpose else f"{batch}zy"
  return jnp.einsum(f"{batch}{source},{mat}->{batch}{target}", xb, matrix, precision=_HIGHEST)


def zero_factors(lay: Layout, dtype: Any) -> tuple:
  """One zero factor ``(*counts, s, s)`` per preconditioned axis, ``None`` for the others (``()`` if none)."""
  if not lay.any:
    return ()
  return tuple(jnp.zeros(lay.counts + (s, s), dtype) if p else None
               for s, p in zip(lay.sizes, lay.preconditioned))


def block_norms(xb: jax.Array, lay: Layout) -> jax.Array:
  """The Euclidean norm of each block, shaped to broadcast against ``xb``."""
  axes = tuple(range(len(lay.counts), xb.ndim))
  return jnp.sqrt(jnp.sum(jnp.square(xb), axis=axes, keepdims=True))


def symmetric_eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Eigenvalues (ascending) and eigenvectors of a batch of symmetric matrices (symmetrized first)."""
  matrix = 0.5 * (matrix + jnp.swapaxes(matrix, -1, -2))
  return jnp.linalg.eigh(matrix, symmetrize_input=False)


def _mesh_and_spec(x: Any):
  sharding = getattr(x, "sharding", None) if not isinstance(x, jax.core.Tracer) else None
  if isinstance(sharding, jax.sharding.NamedSharding):
    return sharding.mesh, tuple(sharding.spec) + (None,) * (jnp.ndim(x) - len(sharding.spec))
  return None, None


def place_like(factors: tuple, lay: Layout, param: Any) -> tuple:
  """Puts new factors on the mesh of a sharded (concrete) parameter: each block axis split as the
  parameter's axis when the block count divides, the ``(s, s)`` matrices whole (replicated)."""
  mesh, spec = _mesh_and_spec(param)
  if mesh is None or not factors:
    return factors

  def axis_size(entry):
    names = entry if isinstance(entry, tuple) else (entry,)
    return math.prod(mesh.shape[n] for n in names if n is not None)

  block_spec = tuple(s if s is not None and c % axis_size(s) == 0 else None
                     for c, s in zip(lay.counts, spec)) if lay.counts and len(lay.merged) == len(spec) else (
                         (None,) * len(lay.counts))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*block_spec, None, None))
  return tuple(None if f is None else jax.device_put(f, sharding) for f in factors)


def _explicit_mesh(tree: Any):
  for x in jax.tree.leaves(tree):
    sharding = getattr(jax.typeof(x), "sharding", None) if hasattr(x, "shape") else None
    mesh = getattr(sharding, "mesh", None)
    if mesh is not None and not mesh.empty and jax.sharding.AxisType.Explicit in mesh.axis_types:
      return mesh
  return None


def with_auto_axes(fn: Any, args: tuple, out_like: Any) -> Any:
  """``fn(*args)``; on a mesh with ``Explicit`` axes, run with them as ``Auto`` (XLA propagates the
  shardings of the reshapes, einsums and gathers) and the outputs sharded as ``out_like``.

  Every array ``fn`` reads must come in ``args``, hyperparameters included: one closed over keeps its
  ``Explicit`` typing (a known hyperparameter is a concrete array on the caller's mesh), and the ``Auto``
  region refuses to mix it with its own values."""
  mesh = _explicit_mesh((args, out_like))
  if mesh is None:
    return fn(*args)
  out_sharding = jax.tree.map(lambda x: jax.sharding.NamedSharding(mesh, jax.typeof(x).sharding.spec), out_like)
  return jax.sharding.auto_axes(fn, out_sharding=out_sharding)(*args)
