"""Cautious optimizers (Liang et al. 2024): keep only the coordinates where the update agrees with the gradient."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import as_transform
from gradxform._core.hyperparams import Transform
from gradxform._core.module import static_field

__all__ = ["CautiousState", "cautious"]


class CautiousState(NamedTuple):
  """State of :func:`cautious`: the wrapped optimizer's state."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  inner_state: Any


class _Cautious(Transform):
  inner: GradientTransformation
  negated: bool = static_field(default=True)
  State = CautiousState

  def init_fields(self, params):
    return {"inner_state": self.inner.init(params)}

  def apply(self, updates, state, params, hp, **extra):
    inner_updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)
    sign = -1 if self.negated else 1

    def rule(u, g):
      if u is None or g is None:
        return u
      u, g = jnp.asarray(u), jnp.asarray(g)
      dtype = _tree.compute_dtype(_tree.wider(u.dtype, g.dtype))
      u32 = u.astype(dtype)
      keep = (sign * u32 * g.astype(dtype) > 0).astype(dtype)
      # rescaled by numel / (kept + 1) per leaf, as the paper's code (the +1 avoids a 0/0)
      return (u32 * keep * (keep.size / (jnp.sum(keep) + 1))).astype(u.dtype)

    try:
      new_updates = jax.tree.map(rule, inner_updates, updates, is_leaf=_tree.is_none)
    except ValueError:
      raise _tree._structure_error("cautious", "inner optimizer's update", inner_updates, updates) from None
    return new_updates, {"inner_state": inner_state}


def cautious(inner: Any, negated: bool = True) -> GradientTransformation:
  """Cautious masking of any optimizer (Liang et al. 2024): zero the update where it disagrees with the gradient.

  With ``u_t`` the update of ``inner`` and ``g_t`` the gradient, per leaf of
  ``n`` entries:

  .. math::

     \\phi_t = \\mathbb{1}[-u_t \\odot g_t > 0], \\qquad
     u'_t = u_t \\odot \\phi_t \\cdot \\frac{n}{\\sum \\phi_t + 1}

  ``u`` descends where it has the sign of ``−g``: a named optimizer's updates
  are already negated by :func:`scale_by_learning_rate`, so ``-u·g > 0`` is
  the paper's ``u_{paper}·g > 0`` for its ``p ← p − η u_{paper}``. For an
  inner transform that returns a direction (``scale_by_adam``, before the
  learning rate) pass ``negated=False``: then ``u·g > 0`` keeps a coordinate.
  The rescaling (the paper code's ``n / (kept + 1)``) keeps the update's
  average size when most coordinates are kept.

  Wrapping a whole named optimizer masks its weight decay too. The paper's
  C-AdamW masks the Adam direction only::

      gx.chain(gx.cautious(gx.scale_by_adam(), negated=False),
               gx.add_decayed_weights(wd), gx.scale_by_learning_rate(lr))

  which reproduces its code with torch's AdamW conventions (``ε`` on
  ``√v̂``, decay ``p(1 − ηλ)`` before the step; the code uses Transformers'
  ``ε`` on ``√v`` and decays the stepped ``p``, which differ at order ``ε``
  and ``η²λ``).

  Args:
    inner: the optimizer (gradxform or optax).
    negated: whether ``inner``'s updates are negated steps (the default, true
      for every named optimizer); ``False`` for a direction.

  Returns:
    A transform with state :class:`CautiousState`.

  References:
    Liang, Chen, Liu & Liu, 2024, "Cautious Optimizers: Improving Training
    with One Line of Code", https://arxiv.org/abs/2411.16085
  """
  inner = as_transform(inner, "cautious")
  if not isinstance(negated, bool):
    raise TypeError(f"cautious: negated must be True or False, got {type(negated).__name__} {negated!r}.")
  return _Cautious(inner, negated=negated)
