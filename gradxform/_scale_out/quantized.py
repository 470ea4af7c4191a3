"""Adam with 8-bit blockwise-quantized moments (Dettmers et al. 2022): a quarter of Adam's state memory."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._optimizers.rmsprop import _check_rms
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._transforms.decay import add_decayed_weights
from gradxform._core.hyperparams import Transform, check_hyperparameter, step_number
from gradxform._core.module import static_field
from gradxform._core.hyperparams import named as _named
from gradxform._scale_out.quantize import Quantized, check_block_size, dequantize_blockwise, quantize_blockwise
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["ScaleByAdam8bitState", "adam_8bit", "adamw_8bit", "scale_by_adam_8bit"]

_NAME = "scale_by_adam_8bit"


class ScaleByAdam8bitState(NamedTuple):
  """State of :func:`scale_by_adam_8bit`.

  ``mu`` (first moment) and ``nu`` (second moment) have one entry per
  parameter leaf, in the parameters' tree structure: a :class:`Quantized`
  (uint8 codes and float32 block scales) for a leaf of at least ``min_size``
  values, else a float32 array of the parameter's shape.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any


def _is_moment_leaf(x: Any) -> bool:
  return x is None or isinstance(x, Quantized)


class _ScaleByAdam8bit(Transform):
  b1: Any
  b2: Any
  eps: Any
  block_size: int = static_field(default=2048)
  min_size: int = static_field(default=4096)
  State = ScaleByAdam8bitState

  def _quantizes(self, size: int) -> bool:
    return size >= self.min_size

  def _encode(self, x, signed):
    return quantize_blockwise(x, self.block_size, signed) if self._quantizes(x.size) else x

  def _decode(self, stored, shape, signed):
    return dequantize_blockwise(stored, shape, signed) if isinstance(stored, Quantized) else stored

  def init_fields(self, params):
    zeros = _tree.zeros_like(_NAME, params, jnp.float32)
    return {"mu": jax.tree.map(lambda z: self._encode(z, True), zeros),
            "nu": jax.tree.map(lambda z: self._encode(z, False), zeros)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.check_floating(_NAME, updates, "update")
    flat, treedef = jax.tree_util.tree_flatten_with_path(updates, is_leaf=lambda x: x is None)
    moments = []
    for tree in (state.mu, state.nu):
      leaves, state_def = jax.tree.flatten(tree, is_leaf=_is_moment_leaf)
      if state_def != treedef:
        raise _tree._structure_error(_NAME, "update", updates, tree)
      moments.append(leaves)
    t = step_number(state, hp, "b1")
    b1, b2, eps = (hp[k].astype(jnp.float32) for k in ("b1", "b2", "eps"))
    c1 = 1 - b1 ** t.astype(jnp.float32)
    c2 = 1 - b2 ** t.astype(jnp.float32)
    out_u, out_mu, out_nu = [], [], []
    for (path, g), mu, nu in zip(flat, *moments):
      if g is None:
        out_u.append(None), out_mu.append(mu), out_nu.append(nu)
        continue
      g = jnp.asarray(g)
      expected = (g.size >= self.min_size)
      if isinstance(mu, Quantized) != expected or (not expected and jnp.shape(mu) != g.shape):
        raise ValueError(
            f"{_NAME}: the update at {_tree.keystr(path)} has shape {g.shape}, which does not match "
            "the optimizer state for it. Gradients must have the shape of the parameters given to init().")
      m = self._decode(mu, g.shape, True)
      v = self._decode(nu, g.shape, False)
      g32 = g.astype(jnp.float32)
      m = b1 * m + (1 - b1) * g32
      v = b2 * v + (1 - b2) * g32 * g32
      u = _guards.divide_or_zero(m / c1, jnp.sqrt(v / c2) + eps, at_least=eps)
      out_u.append(u.astype(g.dtype))
      out_mu.append(self._encode(m, True))
      out_nu.append(self._encode(v, False))
    unflatten = lambda leaves: jax.tree.unflatten(treedef, leaves)
    return unflatten(out_u), {"mu": unflatten(out_mu), "nu": unflatten(out_nu)}


def _check_min_size(name: str, min_size: Any) -> int:
  if isinstance(min_size, bool) or not isinstance(min_size, (numbers.Integral, np.integer)) or min_size < 0:
    raise ValueError(f"{name}: min_size={min_size!r} must be a non-negative int (leaves with fewer "
                     "values keep float32 moments). Use e.g. min_size=4096.")
  return int(min_size)


def scale_by_adam_8bit(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *, block_size: int = 2048,
                       min_size: int = 4096) -> GradientTransformation:
  """Adam's direction with both moments stored in 8 bits, blockwise (Dettmers et al. 2022).

  The rule is :func:`scale_by_adam`'s (torch's Adam, eps outside the root)::

     m_t = β₁ m̃_{t-1} + (1-β₁) g_t,   v_t = β₂ ṽ_{t-1} + (1-β₂) g_t²,
     u_t = (m_t / (1-β₁^t)) / (√(v_t / (1-β₂^t)) + ε)

  computed in float32 from the decoded moments ``m̃``, ``ṽ``; ``u_t`` uses the
  unrounded ``m_t, v_t``, which are then re-encoded with
  :func:`quantize_blockwise` (``m`` on the signed dynamic map, ``v ≥ 0`` on the
  unsigned one). A moment costs 1 byte per value plus 4 bytes per block: with
  the default block of 2048 values, 2 × 1.002 bytes per parameter instead of
  Adam's 8. Leaves with fewer than ``min_size`` values keep float32 moments
  (their bytes do not matter; biases and norms are sensitive to rounding).

  Args:
    b1: first-moment decay ``β₁`` in [0, 1).
    b2: second-moment decay ``β₂`` in [0, 1).
    eps: ``ε ≥ 0`` outside the root.
    block_size: values per quantization block: any positive int (2048 as in
      the paper; smaller blocks are more accurate and cost 4 bytes each).
    min_size: leaves with fewer values than this are not quantized.

  Returns:
    A transform with state :class:`ScaleByAdam8bitState`.

  References:
    Dettmers, Lewis, Shleifer & Zettlemoyer, 2022, "8-bit Optimizers via
    Block-wise Quantization", https://arxiv.org/abs/2110.02861
  """
  check_hyperparameter(_NAME, "b1", b1, low=0.0, high=1.0, high_open=True,
                       hint="b1 is the decay of the first moment; use a value in [0, 1) such as 0.9.")
  _check_rms(_NAME, "b2", b2, eps, 0.0)
  block_size = check_block_size(_NAME, block_size)
  return _ScaleByAdam8bit(b1, b2, eps, block_size=block_size, min_size=_check_min_size(_NAME, min_size))


@_named
def adam_8bit(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *,
              block_size: int = 2048, min_size: int = 4096) -> GradientTransformation:
  """Adam with 8-bit moments: ``chain(scale_by_adam_8bit(...), scale_by_learning_rate(lr))``.

  References:
    Dettmers et al., 2022, https://arxiv.org/abs/2110.02861
  """
  return chain(scale_by_adam_8bit(b1, b2, eps, block_size=block_size, min_size=min_size),
               scale_by_learning_rate(learning_rate))


@_named
def adamw_8bit(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
               weight_decay: Any = 1e-2, *, block_size: int = 2048, min_size: int = 4096) -> GradientTransformation:
  """AdamW with 8-bit moments: ``chain(scale_by_adam_8bit(...), add_decayed_weights(wd), scale_by_learning_rate(lr))``.

  References:
    Dettmers et al., 2022, https://arxiv.org/abs/2110.02861; Loshchilov &
    Hutter, 2019, https://arxiv.org/abs/1711.05101
  """
  return chain(scale_by_adam_8bit(b1, b2, eps, block_size=block_size, min_size=min_size),
               add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate))
