"""The matrix view of a leaf and Newton-Schulz orthogonalization (Muon's core), shared by matrix-aware optimizers.

A leaf is read as a batch of matrices by :class:`MuonDimensionNumbers` (which
axes are the rows ``fan_in``, which the columns ``fan_out``; the rest are batch
axes, vmapped). :func:`newton_schulz` approximately orthogonalizes one matrix.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax

from gradxform._core import tree as _tree
from gradxform._transforms.kronecker import with_auto_axes

__all__ = ["MuonDimensionNumbers", "newton_schulz"]

_NAME = "scale_by_muon"


class MuonDimensionNumbers(NamedTuple):
  """Which axes of a leaf are the matrix's rows (``fan_in``) and columns (``fan_out``); the others are batch.

  A leaf ``x`` is read as ``x @ W = y``: ``reduction_axis`` is summed over
  (fan_in), ``output_axis`` is kept (fan_out), every other axis is a batch axis
  whose matrices are orthogonalized independently (``jax.vmap``). A Flax
  ``Dense`` kernel ``(in, out)`` is ``(0, 1)``; stacked layers ``(L, in, out)``
  are ``(1, 2)``; a Flax conv kernel ``(h, w, in, out)`` flattened as Keller
  Jordan's Muon does (torch's ``weight.view(out, -1)``) is ``((0, 1, 2), 3)``.
  Same names and meaning as ``optax.contrib.MuonDimensionNumbers``.
  """

  reduction_axis: Union[int, Sequence[int]] = 0
  output_axis: Union[int, Sequence[int]] = 1


def _default_dims(leaf: Any) -> Optional[MuonDimensionNumbers]:
  """The default rule: the last two axes are ``(fan_in, fan_out)``, leading axes are batch; <2-D: none."""
  ndim = jnp.ndim(leaf)
  return None if ndim < 2 else MuonDimensionNumbers(ndim - 2, ndim - 1)


def _user_dims(spec: Any, path: str, leaf: Any, fallback: Callable = _default_dims):
  """Dimension numbers for one leaf from ``spec`` (None, MuonDimensionNumbers, fn(path, leaf), or rules)."""
  if spec is None:
    return fallback(leaf)
  if isinstance(spec, MuonDimensionNumbers):
    return spec if jnp.ndim(leaf) >= 2 else fallback(leaf)
  if callable(spec):
    return spec(path, leaf)
  for pattern, dims in spec:
    if re.search(pattern, path):
      return dims
  return fallback(leaf)


def _freeze_dims(spec: Any) -> Any:
  """Rules become a tuple of pairs (hashable static field); other forms stay as they are."""
  if spec is None or callable(spec) or isinstance(spec, MuonDimensionNumbers):
    return spec
  try:
    rules = tuple((str(pattern), dims) for pattern, dims in spec)
  except (TypeError, ValueError):
    raise TypeError(
        f"{_NAME}: dimension_numbers must be None, a MuonDimensionNumbers, a function fn(path, leaf) "
        "-> MuonDimensionNumbers | None, or a list of (regex, MuonDimensionNumbers | None) rules; got "
        f"{type(spec).__name__}.") from None
  for _, dims in rules:
    if dims is not None and not isinstance(dims, MuonDimensionNumbers):
      raise TypeError(f"{_NAME}: each rule maps a regex to a MuonDimensionNumbers or None, got {dims!r}.")
  return rules


def _axes(where: str, dims: MuonDimensionNumbers, shape: tuple) -> tuple[tuple, tuple, tuple]:
  """(batch, reduction, output) axes, checked against the leaf's shape."""
  ndim = len(shape)
  as_tuple = lambda a: (a,) if isinstance(a, int) else tuple(a)
  red, out = as_tuple(dims.reduction_axis), as_tuple(dims.output_axis)
  if not red or not out or any(not -ndim <= a < ndim for a in red + out):
    raise ValueError(f"{_NAME}: the parameter at {where} of shape {shape} does not fit {dims}. Give "
                     "non-empty reduction and output axes within the leaf's dimensions.")
  red, out = tuple(a % ndim for a in red), tuple(a % ndim for a in out)
  if set(red) & set(out) or len(set(red)) < len(red) or len(set(out)) < len(out):
    raise ValueError(f"{_NAME}: for the parameter at {where} of shape {shape}, {dims} names an axis twice; "
                     "reduction and output axes must be distinct.")
  batch = tuple(a for a in range(ndim) if a not in red + out)
  return batch, red, out


def newton_schulz(x: jax.Array, coefficients: Sequence[tuple], eps: Any, eps_mode: str = "clamp",
                  dtype: Optional[Any] = None) -> jax.Array:
  """Approximately orthogonalizes the matrix ``x`` (``U S Vᵀ -> U S' Vᵀ``, ``S' ≈ 1``) by quintic Newton-Schulz.

  .. math::

     X_0 = G / \\max(\\|G\\|_F, \\epsilon), \\qquad
     A_k = X_k X_k^\\top, \\quad X_{k+1} = a_k X_k + (b_k A_k + c_k A_k^2) X_k

  computed on the orientation with fewer rows (``x`` is transposed when it has
  more rows than columns, as torch). ``coefficients`` is one ``(a, b, c)`` per
  iteration. ``eps_mode="add"`` divides by ``‖G‖_F + ε`` instead (optax).
  The iterates are stored in ``dtype`` (default: ``x``'s); products and sums
  accumulate in at least float32. ``dtype=jnp.bfloat16`` is torch.optim.Muon's
  precision.

  References:
    Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural networks",
    https://kellerjordan.github.io/posts/muon/
  """
  dtype = jnp.dtype(dtype or x.dtype)
  acc = _tree.compute_dtype(dtype)
  out_dtype = x.dtype
  transpose = x.shape[0] > x.shape[1]
  x = (x.T if transpose else x).astype(dtype)

  def mm(a, b, contract_b=0):  # a @ b (or a @ b.T when contract_b=1), accumulated in `acc`
    return lax.dot_general(a, b, (((1,), (contract_b,)), ((), ())), preferred_element_type=acc)

  norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(acc)))).astype(dtype).astype(acc)
  eps = jnp.asarray(eps, acc)
  denominator = jnp.maximum(norm, eps) if eps_mode == "clamp" else norm + eps
  x = (x.astype(acc) / denominator).astype(dtype)
  for a, b, c in coefficients:
    gram = mm(x, x, contract_b=1).astype(dtype)
    poly = (b * gram.astype(acc) + c * mm(gram, gram)).astype(dtype)
    x = (a * x.astype(acc) + mm(poly, x)).astype(dtype)
  return (x.T if transpose else x).astype(out_dtype)


def _orthogonalize(g: jax.Array, axes: tuple, coefficients, eps, eps_mode, dtype) -> jax.Array:
  """Newton-Schulz on every matrix of ``g``: batch axes vmapped, reduction/output axes flattened.

  On a mesh with ``Explicit`` axes the iteration runs with them as ``Auto`` (a Gram matrix contracts a
  sharded axis: XLA reduces it) and the result comes back sharded as ``g``; ``eps`` goes in as an
  argument, as :func:`~gradxform._transforms.kronecker.with_auto_axes` requires.
  """
  return with_auto_axes(lambda g, eps: _orthogonalize_matrices(g, axes, coefficients, eps, eps_mode, dtype),
                        (g, jnp.asarray(eps)), g)


def _orthogonalize_matrices(g: jax.Array, axes: tuple, coefficients, eps, eps_mode, dtype) -> jax.Array:
  batch, red, out = axes
  order = batch + red + out
  sizes = lambda ax: tuple(g.shape[a] for a in ax)
  matrices = jnp.transpose(g, order).reshape(math.prod(sizes(batch)), math.prod(sizes(red)),
                                             math.prod(sizes(out)))
  ns = lambda m: newton_schulz(m, coefficients, eps, eps_mode, dtype)
  result = jax.vmap(ns)(matrices).reshape(sizes(batch) + sizes(red) + sizes(out))
  return jnp.transpose(result, tuple(order.index(a) for a in range(g.ndim)))
