"""optax's state layout for Adam's moments: ``state.mu``, ``state.nu`` (and ``state.nu_max``), as optax names them."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from gradxform._core.base import GradientTransformation
from gradxform._core.module import static_field

__all__ = ["ScaleByAdamState", "ScaleByAmsgradState", "with_optax_moments"]


class ScaleByAdamState(NamedTuple):
  """State of ``optax_like.scale_by_adam``: optax's ``count``, ``mu`` (first moment), ``nu`` (second moment).

  ``rest`` is the rest of gradxform's state (the hyperparameters used, read
  by the next update where they are inputs: see :func:`gradxform.inject`).
  """

  count: jax.Array  # int32 scalar, updates applied
  mu: Any
  nu: Any
  rest: Any


class ScaleByAmsgradState(NamedTuple):
  """State of ``optax_like.scale_by_amsgrad``: optax's fields, ``nu_max`` the running maximum of ``v̂``."""

  count: jax.Array  # int32 scalar, updates applied
  mu: Any
  nu: Any
  nu_max: Any
  rest: Any


class _OptaxMoments(GradientTransformation):
  """gradxform's Adam (a ``scale_by_rms`` with an ``ema`` numerator) presenting optax's state fields."""

  inner: GradientTransformation
  amsgrad: bool = static_field(default=False)

  def _outer(self, state: Any) -> Any:
    # the hyperparameters used (inputs under gx.inject), keyed so that optax.tree.get finds mu/nu only once
    rest = {"hyperparams": state.hyperparams, "mu_hyperparams": state.numerator.hyperparams}
    if self.amsgrad:
      return ScaleByAmsgradState(state.count, state.numerator.ema, state.nu, state.nu_max, rest)
    return ScaleByAdamState(state.count, state.numerator.ema, state.nu, rest)

  def _inner_state(self, state: Any) -> Any:
    rest = state.rest
    numerator = self.inner.numerator.State(count=state.count, hyperparams=rest["mu_hyperparams"], ema=state.mu)
    return self.inner.State(count=state.count, hyperparams=rest["hyperparams"], nu=state.nu, grad_avg=None,
                            nu_max=state.nu_max if self.amsgrad else None, numerator=numerator)

  def init(self, params):
    return self._outer(self.inner.init(params))

  def update(self, updates, state, params=None, **extra):
    expected = ScaleByAmsgradState if self.amsgrad else ScaleByAdamState
    if not isinstance(state, expected):
      raise TypeError(f"{'scale_by_amsgrad' if self.amsgrad else 'scale_by_adam'} (optax_like): expected a "
                      f"{expected.__name__} as state, got {type(state).__name__}. Pass the state made by this "
                      "transform's init() (inside a chain, states are positional: one per stage).")
    updates, new = self.inner.update(updates, self._inner_state(state), params, **extra)
    return updates, self._outer(new)


def with_optax_moments(adam: GradientTransformation, amsgrad: bool = False) -> GradientTransformation:
  """``adam`` (a ``gx.scale_by_adam``) with optax's state fields ``mu``, ``nu`` (and ``nu_max``)."""
  return _OptaxMoments(adam, amsgrad=amsgrad)
