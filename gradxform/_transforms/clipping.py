"""Clipping: per coordinate (``clip``), by the global norm (``clip_by_global_norm``),
per leaf (``clip_by_block_rms``) and per unit relative to the weights (``adaptive_grad_clip``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field

__all__ = ["adaptive_grad_clip", "clip", "clip_by_block_rms", "clip_by_global_norm", "ClipByGlobalNormState"]


class ClipState(NamedTuple):
  """State of the clipping transforms: only the count and the threshold.

  Both are empty (``None``, :class:`~gradxform.NoHyperparams`) unless the threshold is scheduled or injected.
  """

  count: Optional[jax.Array]  # int32 scalar
  hyperparams: dict


class _Clip(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  max_delta: Any
  State = ClipState
  counts = False  # the rule does not depend on the step

  def apply(self, updates, state, params, hp, **extra):
    rule = lambda g, max_delta: (jnp.clip(g, -max_delta, max_delta),)
    updates, = _tree.leafwise("clip", rule, updates, scalars=hp)
    return updates, {}


def clip(max_delta: Any) -> GradientTransformation:
  """Clips every coordinate to ``[-δ, δ]``: ``u = min(max(g, -δ), δ)``.

  As ``torch.nn.utils.clip_grad_value_``.

  Args:
    max_delta: ``δ ≥ 0`` (float, array or schedule).

  References:
    ``torch.nn.utils.clip_grad_value_``, https://pytorch.org/docs/stable/nn.html#utilities
  """
  check_hyperparameter("clip", "max_delta", max_delta, low=0.0,
                       hint="max_delta is the largest absolute value an update may keep; it must be >= 0.")
  return _Clip(max_delta)


class ClipByGlobalNormState(NamedTuple):
  """State of :func:`clip_by_global_norm`, with what a dashboard logs.

  ``norm`` (float32 scalar) is the global norm of the last update before clipping, ``clipped_norm``
  after; ``clipped_steps`` (int32 scalar) counts the updates that were scaled down.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  norm: jax.Array
  clipped_norm: jax.Array
  clipped_steps: jax.Array

  def diagnostics(self) -> dict:
    """``grad_norm_before_clip``, ``grad_norm_after_clip`` and ``clipped_fraction`` of the updates so far."""
    steps = jnp.maximum(self.count, 1).astype(jnp.float32)
    return {"grad_norm_before_clip": self.norm, "grad_norm_after_clip": self.clipped_norm,
            "clipped_fraction": self.clipped_steps.astype(jnp.float32) / steps}


class _ClipByGlobalNorm(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  max_norm: Any
  State = ClipByGlobalNormState

  def init_fields(self, params):
    zero = lambda: jnp.zeros([], jnp.float32)  # one buffer each: a donated state must not alias itself
    return {"norm": zero(), "clipped_norm": zero(), "clipped_steps": jnp.zeros([], jnp.int32)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.check_floating("clip_by_global_norm", updates, "update", allow_complex=True)
    norm = _tree.global_norm(updates)
    max_norm = hp["max_norm"].astype(norm.dtype)
    denominator = norm + 1e-6
    clip = max_norm < denominator  # the factor min(1, c / (‖g‖ + 1e-6)) is below 1
    # g · (c / d) with d = ‖g‖ + 1e-6, as torch; but for a huge finite norm c / d is subnormal, which XLA
    # flushes to zero: then g · (1 / √d) · (c / √d), whose factors never are. Two scalar factors, so each
    # leaf costs two multiplications (the second by 1 unless that happened: exact).
    coef = max_norm / denominator
    flushed = (coef < jnp.finfo(coef.dtype).tiny) & (max_norm > 0)
    root = jnp.sqrt(denominator)
    first = jnp.where(clip, jnp.where(flushed, 1 / root, coef), 1)
    second = jnp.where(clip & flushed, max_norm / root, 1)
    rule = lambda g, first, second: (g * first * second,)
    updates, = _tree.leafwise("clip_by_global_norm", rule, updates, scalars={"first": first, "second": second})
    clipped_norm = norm * first * second
    return updates, {"norm": norm.astype(jnp.float32), "clipped_norm": clipped_norm.astype(jnp.float32),
                     "clipped_steps": state.clipped_steps + clip.astype(jnp.int32)}


def clip_by_global_norm(max_norm: Any) -> GradientTransformation:
  """Rescales all updates together so that their joint norm is at most ``c``.

  .. math::

     \\|g\\| = \\sqrt{\\textstyle\\sum_{\\text{leaves}} \\sum_i g_i^2}, \\qquad
     u = g \\cdot \\min\\!\\Big(1, \\frac{c}{\\|g\\| + 10^{-6}}\\Big)

  As ``torch.nn.utils.clip_grad_norm_`` (including its ``1e-6``); the norm is
  accumulated in at least float32. The state records the norm before and after
  clipping and how many updates were clipped (:func:`gradxform.diagnostics`).

  Args:
    max_norm: ``c ≥ 0`` (float, array or schedule; 0 zeroes the updates).

  References:
    Pascanu, Mikolov & Bengio, 2013, "On the difficulty of training recurrent
    neural networks", https://arxiv.org/abs/1211.5063
  """
  # max_norm = 0 zeroes every update (optax accepts it too; here without its 0/0 at a zero gradient)
  check_hyperparameter("clip_by_global_norm", "max_norm", max_norm, low=0.0,
                       hint="max_norm is the largest allowed global norm; it must be non-negative, e.g. 1.0.")
  return _ClipByGlobalNorm(max_norm)


def _norm(x: jax.Array, axis: Any) -> jax.Array:
  """The Euclidean norm over ``axis`` (kept as size-1 axes), without overflowing.

  Computed as ``m · ‖x / m‖`` with ``m = max |x|``, so gradients whose squares
  exceed the dtype's range (``|g| > 1.8e19`` in float32) are still measured
  correctly instead of giving an infinite norm.
  """
  scale = jnp.max(jnp.abs(x), axis=axis, keepdims=True, initial=0)
  scaled = x / jnp.where(scale == 0, jnp.ones_like(scale), scale)  # an all-zero unit stays 0
  return scale * jnp.sqrt(jnp.sum(jnp.square(scaled), axis=axis, keepdims=True))


class _ClipByBlockRms(Transform):
  threshold: Any
  State = ClipState
  counts = False  # the rule does not depend on the step

  def apply(self, updates, state, params, hp, **extra):

    def rule(g, threshold):
      rms = _norm(g, None) / jnp.sqrt(jnp.asarray(max(g.size, 1), g.dtype))
      tiny = jnp.asarray(jnp.finfo(g.dtype).tiny, g.dtype)
      return (g * jnp.minimum(1.0, threshold / jnp.maximum(rms, tiny)),)

    updates, = _tree.leafwise("clip_by_block_rms", rule, updates, scalars=hp)
    return updates, {}


def clip_by_block_rms(threshold: Any) -> GradientTransformation:
  """Rescales each leaf ("block") so that its root mean square is at most ``c``.

  .. math::

     \\operatorname{rms}(g) = \\sqrt{\\tfrac{1}{n} \\textstyle\\sum_i g_i^2}, \\qquad
     u = g \\cdot \\min\\!\\Big(1, \\frac{c}{\\max(\\operatorname{rms}(g), \\text{tiny})}\\Big)

  per leaf of ``n`` elements, where ``tiny`` is the smallest normal number of
  the compute dtype (it only guards the division: an all-zero leaf stays
  zero). A block is a whole parameter array (a kernel or a bias), so each
  layer is limited separately, unlike :func:`clip_by_global_norm`. As
  ``optax.clip_by_block_rms`` (``u = g / max(1, rms(g) / c)``), except that
  ``c = 0`` gives zero updates here instead of NaN for all-zero leaves. The
  rms is computed in at least float32, scaled by ``max |g|`` so that it does
  not overflow; a leaf with a NaN or infinite coordinate has no rms and
  becomes all NaN (put :func:`gradxform.zero_nans` or :func:`clip` first).

  Args:
    threshold: ``c ≥ 0``, the largest root mean square a leaf may keep (float,
      array or schedule).

  Returns:
    A transform with state :class:`ClipState` (``hyperparams['threshold']``
    where scheduled or injected).

  References:
    optax, ``clip_by_block_rms``,
    https://optax.readthedocs.io/en/latest/api/transformations.html#optax.clip_by_block_rms
  """
  check_hyperparameter("clip_by_block_rms", "threshold", threshold, low=0.0,
                       hint="threshold is the largest root mean square an update leaf may keep; "
                       "it must be >= 0, e.g. 1.0.")
  return _ClipByBlockRms(threshold)


def _unit_axes(shape: tuple) -> Any:
  """The axes a unit-wise norm reduces: all but the last (output) axis, or all for 0/1-D."""
  ndim = len(shape)
  return tuple(range(ndim - 1)) if ndim >= 2 else None


_AGC = "adaptive_grad_clip"


class _AdaptiveGradClip(Transform):
  clipping: Any
  eps: Any
  unit_axes: Callable[[tuple], Any] = static_field(default=_unit_axes)  # shape -> the axes one unit's norm reduces
  State = ClipState
  counts = False  # the rule does not depend on the step

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params(_AGC, params, "clip each unit's gradient relative to its parameters' norm")
    _check_params_cover_updates(updates, params)

    def rule(g, p, clipping, eps):
      axes = self.unit_axes(g.shape)
      g_norm, p_norm = _norm(g, axes), _norm(p, axes)
      max_norm = clipping * jnp.maximum(p_norm, eps)
      div_eps = jnp.asarray(1e-6, g.dtype)
      return g * jnp.minimum(1.0, max_norm / jnp.maximum(g_norm, div_eps)), p

    updates, _ = _tree.leafwise(_AGC, rule, updates, params, scalars=hp, check_dtype=(False,))
    return updates, {}


def _check_params_cover_updates(updates: Any, params: Any) -> None:
  """Raises a ``ValueError`` naming the first update leaf whose parameter is ``None``."""
  is_none = lambda x: x is None
  flat_u, def_u = jax.tree_util.tree_flatten_with_path(updates, is_leaf=is_none)
  flat_p, def_p = jax.tree.flatten(params, is_leaf=is_none)
  if def_u != def_p:
    return  # leafwise reports the structure mismatch, with the paths
  for (path, u), p in zip(flat_u, flat_p):
    if u is not None and p is None:
      raise ValueError(
          f"{_AGC}: the update at {_tree.keystr(path)} has no parameter (params has "
          "None there). Pass the full parameter tree, or mask out that update as well.")


def adaptive_grad_clip(clipping: Any, eps: Any = 1e-3) -> GradientTransformation:
  """Adaptive gradient clipping (AGC): limits each unit's gradient relative to its weights.

  .. math::

     M = \\lambda \\cdot \\max(\\|p\\|_{\\text{unit}}, \\epsilon), \\qquad
     u = g \\cdot \\min\\!\\Big(1, \\frac{M}{\\max(\\|g\\|_{\\text{unit}}, 10^{-6})}\\Big)

  A unit is one output unit: for a leaf with ``ndim ≥ 2`` the norm is taken
  over all axes except the last, since JAX/Flax kernels are laid out
  ``(..., in, out)`` (Dense ``(in, out)``, Conv ``(H, W, in, out)``); for 0-D
  and 1-D leaves (biases, scales) the whole leaf is one unit. Norms are
  computed in at least float32 (scaled so that they do not overflow) and the
  parameters may have another floating dtype than the updates. A unit with a
  NaN or infinite gradient coordinate becomes all NaN.

  Differences from ``optax.adaptive_grad_clip`` (default ``axis=None``): optax
  reduces only axis 0 for 3-D leaves (it assumes multi-head kernels
  ``(in, heads, head_dim)``), treats any leaf with a single non-trivial axis
  (e.g. ``(1, n)``) as one unit, and rejects leaves of more than 5 axes; here
  every ``ndim ≥ 2`` leaf follows the same rule. For 1-, 2-, 4- and 5-D leaves
  the results agree. Brock et al. recommend not clipping the final classifier
  layer: exclude it with a mask.

  Args:
    clipping: ``λ > 0``, the largest allowed ratio of a unit's gradient norm to
      its parameter norm (float, array or schedule); Brock et al. use 0.01 to
      0.16, smaller for larger batches.
    eps: ``ε > 0``, the smallest parameter norm assumed, so that
      zero-initialized parameters (biases) can still move (float, array or
      schedule).

  Returns:
    A transform with state :class:`ClipState` (``hyperparams['clipping']`` and
    ``hyperparams['eps']`` where scheduled or injected). ``update`` requires
    ``params``.

  References:
    Brock, De, Smith & Simonyan, 2021, "High-Performance Large-Scale Image
    Recognition Without Normalization", https://arxiv.org/abs/2102.06171
  """
  check_hyperparameter(_AGC, "clipping", clipping, low=0.0, low_open=True,
                       hint="clipping is the largest allowed ratio ||g|| / ||p|| per unit; "
                       "it must be positive, e.g. 0.01.")
  check_hyperparameter(_AGC, "eps", eps, low=0.0, low_open=True,
                       hint="eps is the smallest parameter norm assumed (so zero-initialized "
                       "parameters can still move); it must be positive, e.g. 1e-3.")
  return _AdaptiveGradClip(clipping, eps)
