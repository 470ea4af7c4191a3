"""Low-bit state for any optimizer: ``quantized_state`` keeps its momenta in 8 or 4 bits between steps."""

from __future__ import annotations

import numbers
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import as_transform
from gradxform._core.hyperparams import named as _named
from gradxform._core.module import static_field
from gradxform._optimizers.adam import adam, adamw
from gradxform._scale_out.quantize import (Quantized, check_block_size, dequantize_4bit, dequantize_blockwise,
                                           quantize_4bit, quantize_blockwise)
from gradxform._scale_out.quantized import _check_min_size

__all__ = ["adam_4bit", "adamw_4bit", "quantized_state"]

_NAME = "quantized_state"

# State fields that hold non-negative per-parameter statistics (second moments, running maxima): they are
# stored on the unsigned map (twice the resolution; 4 bits: the linear map without zero, rank-1 scales).
# Every other quantized field (momenta, EMAs, traces) is stored on the signed map.
SECOND_MOMENT_FIELDS = frozenset({"nu", "v", "exp_avg_sq", "sum_of_squares", "square_avg", "acc_delta", "inf_norm",
                                  "nu_max"})

_KEEP, _SIGNED, _UNSIGNED = "keep", "signed", "unsigned"


def _key_name(key: Any) -> Any:
  for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey, SequenceKey
    if hasattr(key, attr):
      return getattr(key, attr)
  return None


class _QuantizedState(GradientTransformation):
  inner: GradientTransformation
  bits: int = static_field(default=8)
  block_size: int = static_field(default=2048)
  min_size: int = static_field(default=4096)
  which: Optional[Callable] = static_field(default=None)
  unsigned: frozenset = static_field(default=SECOND_MOMENT_FIELDS)
  rank1: bool = static_field(default=True)

  def _kinds(self, state: Any, params: Any) -> list:
    """One entry per leaf of ``state`` (``jax.tree.leaves`` order): keep, signed or unsigned."""
    reference = jax.tree.structure(params, is_leaf=_tree.is_none)
    shapes = [None if p is None else np.shape(p) for p in jax.tree.leaves(params, is_leaf=_tree.is_none)]

    def params_like(x):  # a subtree with the parameters' structure and shapes (None where masked)
      if x is None or jax.tree.structure(x, is_leaf=_tree.is_none) != reference:
        return False
      leaves = jax.tree.leaves(x, is_leaf=_tree.is_none)
      return any(v is not None for v in leaves) and all(
          v is None or (hasattr(v, "shape") and tuple(v.shape) == s) for v, s in zip(leaves, shapes))

    kinds = []
    for path, piece in jax.tree_util.tree_flatten_with_path(state, is_leaf=params_like)[0]:
      if not params_like(piece):
        kinds.append(_KEEP)
        continue
      field = _key_name(path[-1]) if path else None
      kind = _UNSIGNED if field in self.unsigned else _SIGNED
      for sub_path, leaf in jax.tree_util.tree_flatten_with_path(piece)[0]:
        chosen = (jnp.issubdtype(leaf.dtype, jnp.floating) and int(np.prod(leaf.shape)) >= self.min_size
                  and (self.which is None or self.which(_tree.keystr(tuple(path) + tuple(sub_path)), leaf)))
        kinds.append(kind if chosen else _KEEP)
    return kinds

  def _encode(self, x, kind):
    if kind == _KEEP:
      return x
    signed = kind == _SIGNED
    if self.bits == 8:
      return quantize_blockwise(x, self.block_size, signed)
    return quantize_4bit(x, self.block_size, signed, rank1=self.rank1 and not signed)

  def _decode(self, q, like, kind):
    signed = kind == _SIGNED
    decode = dequantize_blockwise if self.bits == 8 else dequantize_4bit
    return decode(q, like.shape, signed).astype(like.dtype)

  def init(self, params):
    state = self.inner.init(params)
    leaves, treedef = jax.tree.flatten(state)
    kinds = self._kinds(state, params)
    return treedef.unflatten([self._encode(x, k) for x, k in zip(leaves, kinds)])

  def update(self, updates, state, params=None, **extra):
    like = updates if params is None else params
    abstract = jax.eval_shape(self.inner.init, like)
    kinds = self._kinds(abstract, like)
    shapes, treedef = jax.tree.flatten(abstract)
    stored, stored_def = jax.tree.flatten(state, is_leaf=lambda x: isinstance(x, Quantized))
    quantized = [isinstance(x, Quantized) for x in stored]
    if stored_def != treedef or quantized != [k != _KEEP for k in kinds]:
      raise ValueError(
          f"{_NAME}: the state does not match the one init() makes for these "
          f"{'params' if params is not None else 'updates'} (expected {treedef}, with "
          f"{sum(k != _KEEP for k in kinds)} quantized leaves; got {stored_def}, with {sum(quantized)}). "
          "Pass the state returned by this wrapper's init() or update(), for parameters of the same "
          "structure and shapes.")
    inner_state = treedef.unflatten([self._decode(x, s, k) if k != _KEEP else x
                                     for x, s, k in zip(stored, shapes, kinds)])
    updates, inner_state = self.inner.update(updates, inner_state, params, **extra)
    leaves, new_def = jax.tree.flatten(inner_state)
    if new_def != treedef:
      raise ValueError(f"{_NAME}: the inner optimizer's update() returned a state of another structure "
                       f"than its init() ({new_def} vs {treedef}); it cannot be stored quantized.")
    return updates, treedef.unflatten([self._encode(x, k) for x, k in zip(leaves, kinds)])


def quantized_state(inner: Any, bits: int = 8, block_size: Optional[int] = None, min_size: int = 4096, *,
                    which: Optional[Callable[[str, Any], bool]] = None,
                    unsigned: Any = SECOND_MOMENT_FIELDS, rank1: bool = True) -> GradientTransformation:
  """Stores an optimizer's per-parameter state in 8 or 4 bits between steps; the math runs in float.

  Each update decodes the stored state, runs ``inner.update`` on it, and
  re-encodes the new state::

     s̃ ← decode(stored);  (u, s) ← inner.update(g, s̃);  stored ← encode(s)

  so ``u`` is computed from the unrounded new state, as :func:`adam_8bit`.
  Which leaves: every subtree of the inner state with the parameters'
  structure and shapes (``None`` where a group or mask leaves a parameter
  out) holds per-parameter state (Adam's ``mu``/``nu``, SGD's ``trace``,
  Lion's, Muon's and Adafactor's momentum, AdEMAMix's ``m1``/``m2``/``nu``);
  its real floating leaves with at least ``min_size`` values are quantized
  (and ``which(path, leaf)`` is true). Counts, hyperparameters, factored or
  per-leaf statistics (Adafactor's ``v_row``/``v_col``) stay as they are.
  Leaves under a field named in ``unsigned`` (default: the second moments
  and maxima ``nu``, ``v``, ``nu_max``, ``exp_avg_sq``, ``sum_of_squares``,
  ``square_avg``, ``acc_delta``, ``inf_norm``) use the unsigned map, all
  others (momenta, EMAs, traces) the signed one. Parameter copies (an averaging wrapper's) have the parameters' shape
  too: leave them out with ``which``.

  * ``bits=8``: :func:`quantize_blockwise` (Dettmers et al. 2022, dynamic
    map, block 2048): 1 byte per value + 4 per block.
  * ``bits=4``: :func:`quantize_4bit` (Li et al. 2023): signed leaves
    blockwise on the 4-bit dynamic-exponent map (block 128); unsigned
    leaves on the linear map *without zero* with rank-1 normalization
    (``rank1``; blockwise for vectors): ½ byte per value + the scales.

  Args:
    inner: the optimizer (any transform; ``chain``, ``partition``, optax's).
    bits: 8 or 4.
    block_size: values per block; default 2048 (8 bits) or 128 (4 bits,
      must be even).
    min_size: leaves with fewer values keep their dtype.
    which: optional ``(path, leaf) -> bool`` to quantize only some leaves.
    unsigned: the state field names stored on the unsigned map.
    rank1: 4 bits only: rank-1 scales for unsigned leaves of rank ≥ 2.

  Returns:
    A transform whose state is ``inner``'s with :class:`Quantized` leaves.

  References:
    Dettmers et al., 2022, https://arxiv.org/abs/2110.02861; Li, Chen &
    Zhu, 2023, https://arxiv.org/abs/2309.01507
  """
  inner = as_transform(inner, _NAME)
  if isinstance(bits, bool) or not isinstance(bits, (numbers.Integral, np.integer)) or bits not in (4, 8):
    raise ValueError(f"{_NAME}: bits={bits!r} is not supported; use bits=8 (Dettmers et al. 2022) or bits=4 "
                     "(Li et al. 2023).")
  block_size = check_block_size(_NAME, (2048 if bits == 8 else 128) if block_size is None else block_size)
  if bits == 4 and block_size % 2:
    raise ValueError(f"{_NAME}: block_size={block_size} must be even with bits=4 (two codes per byte). "
                     "Use e.g. block_size=128.")
  if which is not None and not callable(which):
    raise TypeError(f"{_NAME}: which must be None or a function (path, leaf) -> bool, got "
                    f"{type(which).__name__}.")
  if isinstance(unsigned, str) or not all(isinstance(u, (str, int)) for u in unsigned):
    raise TypeError(f"{_NAME}: unsigned must be a collection of state field names such as {{'nu'}}, "
                    f"got {unsigned!r}.")
  return _QuantizedState(inner, bits=int(bits), block_size=block_size, min_size=_check_min_size(_NAME, min_size),
                         which=which, unsigned=frozenset(unsigned), rank1=bool(rank1))


@_named
def adam_4bit(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *,
              block_size: int = 128, min_size: int = 4096) -> GradientTransformation:
  """Adam with 4-bit moments (Li et al. 2023): ``quantized_state(adam(...), bits=4)``.

  ``mu``: blockwise (128) on the signed dynamic-exponent map; ``nu``: rank-1
  normalization on the linear map without zero. An eighth of Adam's state.

  References:
    Li, Chen & Zhu, 2023, https://arxiv.org/abs/2309.01507
  """
  return quantized_state(adam(learning_rate, b1, b2, eps), bits=4, block_size=block_size, min_size=min_size)


@_named
def adamw_4bit(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, weight_decay: Any = 1e-2, *,
               block_size: int = 128, min_size: int = 4096) -> GradientTransformation:
  """AdamW with 4-bit moments (the paper's "4-bit AdamW"): ``quantized_state(adamw(...), bits=4)``.

  References:
    Li, Chen & Zhu, 2023, https://arxiv.org/abs/2309.01507
  """
  return quantized_state(adamw(learning_rate, b1, b2, eps, weight_decay), bits=4, block_size=block_size,
                         min_size=min_size)
