"""Kahan-compensated updates: low-precision parameters that keep the updates rounding would lose."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import as_transform
from gradxform._core.module import static_field

__all__ = ["kahan_summation"]

_NAME = "kahan_summation"


class KahanSummationState(NamedTuple):
  """State of :func:`kahan_summation`: ``compensation`` (the parameters' structure, in ``dtype`` or the
  parameters' dtype) holds what rounding ``p + u`` lost so far; ``inner_state`` the wrapped optimizer's."""

  compensation: Any
  inner_state: Any


def _round(x: jax.Array, dtype: Any) -> jax.Array:
  """``x`` rounded to ``dtype``'s precision, kept in ``x``'s dtype (a rounding jit cannot elide)."""
  info = jnp.finfo(dtype)
  return lax.reduce_precision(x, exponent_bits=info.nexp, mantissa_bits=info.nmant)


class _KahanSummation(GradientTransformation):
  inner: GradientTransformation
  dtype: Optional[Any] = static_field(default=None)

  def init(self, params):
    _tree.require_params(_NAME, params, "keep a compensation buffer like the parameters", "init")
    return KahanSummationState(_tree.zeros_like(_NAME, params, self.dtype), self.inner.init(params))

  def update(self, updates, state, params=None, **extra):
    if not isinstance(state, KahanSummationState):
      raise TypeError(f"{_NAME}: expected a KahanSummationState as state, got {type(state).__name__}. Pass the "
                      "state returned by this transform's init() or update().")
    _tree.require_params(_NAME, params, "know what apply_updates will round", "update")
    updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)

    def rule(u, c, p):
      wide = _tree.compute_dtype(_tree.wider(p.dtype, jnp.float32))
      y = u.astype(wide) + c.astype(wide)             # the update plus what earlier roundings lost
      sent = _round(y, p.dtype)                          # the update apply_updates receives (p's dtype)
      new = _round(p.astype(wide) + sent, p.dtype)       # the parameter apply_updates will produce
      lost = y - (new - p.astype(wide))                  # exact in float32 for these magnitudes
      return sent.astype(p.dtype), lost.astype(c.dtype)

    pairs = jax.tree.map(rule, updates, state.compensation, params)
    is_pair = lambda x: isinstance(x, tuple) and len(x) == 2
    sent = jax.tree.map(lambda pair: pair[0], pairs, is_leaf=is_pair)
    lost = jax.tree.map(lambda pair: pair[1], pairs, is_leaf=is_pair)
    return sent, KahanSummationState(lost, inner_state)


def kahan_summation(inner: Any, dtype: Optional[Any] = None) -> GradientTransformation:
  """Kahan-compensated updates for low-precision parameters (no float32 master copy).

  With ``c_0 = 0`` and ``u_t`` the update of ``inner``:

  .. math::

     y_t = u_t + c_{t-1}, \\qquad p_t = \\operatorname{rn}(p_{t-1} + \\operatorname{rn}(y_t)), \\qquad
     c_t = y_t - (p_t - p_{t-1})

  where ``rn`` rounds to the parameters' dtype as :func:`gradxform.apply_updates` does: the update it
  returns is ``rn(y_t)``, and ``c_t`` keeps exactly what the rounding of the parameter lost, to add back at
  the next step. So bfloat16 parameters plus a bfloat16 compensation buffer (the default ``dtype``) follow a
  float32 master copy closely with the same number of bytes. Wrap the whole optimizer and apply the updates
  with plain ``gx.apply_updates`` (no ``key=``).

  Args:
    inner: the optimizer (gradxform or optax).
    dtype: dtype of the compensation buffer (default: the parameters').

  Returns:
    A transform with state :class:`KahanSummationState`; ``init`` and ``update`` need the parameters.

  References:
    Kahan, 1965, "Further remarks on reducing truncation errors", https://doi.org/10.1145/363707.363723;
    Zamirai et al., 2020, "Revisiting BFloat16 Training", https://arxiv.org/abs/2010.06192
  """
  if dtype is not None and not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise TypeError(f"{_NAME}: dtype must be a floating dtype such as jnp.bfloat16, got {dtype!r}.")
  return _KahanSummation(as_transform(inner, _NAME), None if dtype is None else jnp.dtype(dtype))
