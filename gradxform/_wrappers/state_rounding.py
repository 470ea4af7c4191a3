"""Stochastic rounding of optimizer state: low-precision moments that keep the increments rounding would lose."""

from __future__ import annotations

import collections
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import rounding as _rounding
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import as_transform
from gradxform._core.module import static_field
from gradxform._transforms.options import check_seed

__all__ = ["stochastic_state_rounding"]

_NAME = "stochastic_state_rounding"


class StochasticStateRoundingState(NamedTuple):
  """State of :func:`stochastic_state_rounding`: ``rng_key`` is a raw ``uint32`` key (split once per update, so
  any checkpointer saves it and a resumed run draws the same roundings); ``inner_state`` the wrapped optimizer's."""

  rng_key: jax.Array
  inner_state: Any


def _narrow_leaves(state: Any) -> list:
  """``(path, leaf)`` of the non-scalar floating state arrays narrower than float32 (bfloat16, float16)."""
  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or jnp.ndim(leaf) == 0:
      continue
    real = _tree.real_dtype(dtype) if jnp.issubdtype(dtype, jnp.complexfloating) else dtype
    if _rounding.narrower(real, jnp.float32):
      found.append((path, leaf))
  return found


class _StochasticStateRounding(GradientTransformation):
  inner: GradientTransformation
  seed: int = static_field(default=0)

  def init(self, params):
    return StochasticStateRoundingState(jax.random.PRNGKey(self.seed), self.inner.init(params))

  def update(self, updates, state, params=None, **extra):
    if not isinstance(state, StochasticStateRoundingState):
      raise TypeError(f"{_NAME}: expected a StochasticStateRoundingState as state, got {type(state).__name__}. "
                      "Pass the state returned by this transform's init() or update().")
    rng_key, step_key = jax.random.split(state.rng_key)
    with _rounding.state_rounding(step_key) as active:
      updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)
    narrow = _narrow_leaves(inner_state)
    if not narrow:
      warnings.warn(f"{_NAME}: the wrapped optimizer keeps no state narrower than float32, so this wrapper changes "
                    "nothing. It acts on bfloat16/float16 state (the parameters' dtype by default, or mu_dtype=/"
                    "nu_dtype=); for float32 state, remove it.", stacklevel=2)
    left = collections.Counter(active.rounded)
    missed = []
    for path, leaf in narrow:  # each stochastically rounded store covers one state array of its shape and dtype
      if left[_rounding.kind(leaf)] > 0:
        left[_rounding.kind(leaf)] -= 1
      else:
        missed.append(path)
    if narrow and len(missed) == len(narrow):
      raise ValueError(
          f"{_NAME}: the wrapped optimizer stores low-precision state (e.g. at inner_state"
          f"{_tree.keystr(missed[0])}), but none of it is written by gradxform's elementwise rules, so no rounding "
          "would be stochastic. It covers the state of elementwise optimizers (the Adam family, SGD momentum, "
          "Lion, RMSProp, Adagrad, ...); keep other state (Muon's or Shampoo's matrices, Adafactor's factors, "
          "optax transforms, 8-bit state) in float32, or do not wrap it.")
    if missed:
      shown = ", ".join("inner_state" + _tree.keystr(path) for path in missed[:3])
      warnings.warn(
          f"{_NAME}: {len(missed)} of the {len(narrow)} low-precision state arrays are not written by "
          f"gradxform's elementwise rules and are rounded to nearest ({shown}{', ...' if len(missed) > 3 else ''}).",
          stacklevel=2)
    return updates, StochasticStateRoundingState(rng_key, inner_state)


def stochastic_state_rounding(inner: Any, seed: int = 0) -> GradientTransformation:
  """Stores the optimizer's low-precision state with unbiased stochastic rounding instead of to nearest.

  Every state array that ``inner`` keeps in a dtype narrower than the one it computes in (bfloat16 or
  float16 moments, computed in float32) is stored as

  .. math::

     s_t = \\operatorname{sr}(\\tilde s_t), \\qquad \\mathbb{E}[s_t] = \\tilde s_t

  where ``s̃_t`` is the new value computed in float32 and ``sr`` rounds up or down to a neighbouring
  bfloat16 value with probabilities proportional to proximity (:func:`gradxform.stochastic_round`). Adam's
  second moment with ``β₂ = 0.999`` gains ``(1 − β₂)g² ≈ 10⁻³ v`` per step, below half a bfloat16 ulp
  (``2⁻⁹ ≈ 2·10⁻³``) of ``v``, so round-to-nearest leaves it stuck; stochastic rounding keeps it right on
  average. Combined with ``gx.apply_updates(params, updates, key=...)`` for the parameters, a pure bfloat16
  model (parameters and moments in bfloat16, no float32 copy) trains like a float32 one at half the bytes
  (``benchmarks/bf16_training.py``). The update itself is computed from the stored (rounded) moments, as
  with round-to-nearest. float32 state is unchanged, bit for bit.

  Which state: everything written through gradxform's elementwise rules (the Adam family, SGD momentum,
  Lion, RMSProp, Adagrad, Adan, AdEMAMix, ..., inside chains, parameter groups and ``gx.packed``). State kept
  by other code (matrix optimizers' statistics, 8-bit state, optax transforms) is refused when it is all the
  low-precision state there is, and named in a warning when it is part of it (the check counts the arrays
  rounded stochastically against the state's low-precision arrays by shape and dtype, so wrappers that pass
  state through ``lax.cond`` or ``jnp.where`` are covered).

  Each update splits the state's key once; the same key gives the same roundings (a resumed checkpoint
  continues the same stream). With ``gx.Population``, give members different seeds by writing their keys.

  Args:
    inner: the optimizer (a gradxform transform).
    seed: an integer in ``[0, 2**32)`` for ``jax.random.PRNGKey``, made by ``init``.

  Returns:
    A transform with state :class:`StochasticStateRoundingState` (``rng_key``, ``inner_state``).

  References:
    Gupta et al., 2015, "Deep Learning with Limited Numerical Precision", https://arxiv.org/abs/1502.02551;
    Zamirai et al., 2020, "Revisiting BFloat16 Training", https://arxiv.org/abs/2010.06192
  """
  return _StochasticStateRounding(as_transform(inner, _NAME), seed=check_seed(_NAME, seed, "the roundings"))
