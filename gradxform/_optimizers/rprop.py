"""Rprop (Riedmiller & Braun 1993): per-coordinate step sizes adapted from the gradient's sign, as ``torch.optim.Rprop``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, named
from gradxform._optimizers.lion import _sign_code
from gradxform._transforms.options import gradient_preamble
from gradxform._transforms.scaling import scale

__all__ = ["rprop", "scale_by_rprop"]


class ScaleByRpropState(NamedTuple):
  """State of :func:`scale_by_rprop`: the step sizes ``Δ`` and the previous (masked) gradient, per coordinate."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  step_sizes: Any
  prev_grad: Any


class _ScaleByRprop(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  learning_rate: Any
  eta_minus: Any
  eta_plus: Any
  min_step_size: Any
  max_step_size: Any
  State = ScaleByRpropState

  def init_fields(self, params):
    initial = self.resolve(jnp.zeros([], jnp.int32))["learning_rate"]
    zeros = _tree.zeros_like("scale_by_rprop", params)
    return {"step_sizes": jax.tree.map(lambda z: _tree.full_like(z, initial), zeros),
            "prev_grad": _tree.zeros_like("scale_by_rprop", params)}

  def apply(self, updates, state, params, hp, **extra):

    def rule(g, step_size, prev, eta_minus, eta_plus, min_step_size, max_step_size, stored):
      # sign(g·prev) as int8 (2 for NaN), in a loop of its own: the new step sizes, the new prev and
      # the update read it instead of the old prev, so a donated prev is overwritten in place
      # (without it XLA:CPU copies prev; see lion's _sign_code)
      code = _sign_code(g * prev)
      factor = jnp.where(code == 1, eta_plus, jnp.where(code == -1, eta_minus, jnp.where(
          code == 0, jnp.ones_like(g), jnp.full_like(g, jnp.nan))))
      step_size = jnp.clip(step_size * factor, min_step_size, max_step_size)
      # rem(x, inf) = x, but XLA does not duplicate a remainder into its consumers: the new step sizes
      # are computed once, in place, and the update reads them (else a donated step_sizes is copied)
      step_size, = stored(lax.rem(step_size, jnp.full_like(step_size, jnp.inf)))
      g = jnp.where(code == -1, jnp.zeros_like(g), g)  # a sign change: no step, and forget this gradient
      return jnp.sign(g) * step_size, step_size, g

    scalars = {name: hp[name] for name in ("eta_minus", "eta_plus", "min_step_size", "max_step_size")}
    updates, step_sizes, prev = _tree.leafwise("scale_by_rprop", rule, updates, state.step_sizes,
                                               state.prev_grad, scalars=scalars, stored=True)
    return updates, {"step_sizes": step_sizes, "prev_grad": prev}


def scale_by_rprop(learning_rate: Any, eta_minus: Any = 0.5, eta_plus: Any = 1.2,
                   min_step_size: Any = 1e-6, max_step_size: Any = 50.0) -> GradientTransformation:
  """Rprop's step (Riedmiller & Braun 1993; the iRprop− form of ``torch.optim.Rprop``).

  .. math::

     s_t = \\operatorname{sign}(g_t\\, \\tilde g_{t-1}), \\quad
     \\Delta_t = \\operatorname{clip}\\big(\\Delta_{t-1} \\cdot
       \\{\\eta_+ \\text{ if } s_t > 0;\\ \\eta_- \\text{ if } s_t < 0;\\ 1\\},\\
       \\Delta_{min}, \\Delta_{max}\\big), \\quad \\Delta_0 = \\text{learning\\_rate}

     \\tilde g_t = 0 \\text{ where } s_t < 0 \\text{, else } g_t, \\qquad
     u_t = \\operatorname{sign}(\\tilde g_t)\\, \\Delta_t

  Where the gradient changed sign the step size shrinks and no step is taken
  (the gradient is forgotten, so the next step only grows or keeps ``Δ``). The
  output is a step *along* the gradient: :func:`rprop` follows it with
  ``scale(-1)``, as ``optax.rprop``. Reproduces ``torch.optim.Rprop`` (which
  also clamps ``Δ`` when ``s_t = 0``). ``optax.scale_by_rprop`` 0.2.8 emits
  each step one update late (zeros first; optax pull request #1725), so it is
  not reproduced.

  Args:
    learning_rate: ``Δ_0 > 0``, the initial step size of every coordinate
      (read once, at ``init``).
    eta_minus: ``η₋`` in (0, 1), the factor on a sign change.
    eta_plus: ``η₊ > 1``, the factor when the sign is kept.
    min_step_size: ``Δ_min ≥ 0``.
    max_step_size: ``Δ_max ≥ Δ_min``.

  Returns:
    A transform with state :class:`ScaleByRpropState`.

  References:
    Riedmiller & Braun, 1993, "A Direct Adaptive Method for Faster
    Backpropagation Learning: The RPROP Algorithm", https://doi.org/10.1109/ICNN.1993.298623
  """
  check_hyperparameter("scale_by_rprop", "learning_rate", learning_rate, low=0.0,
                       hint="learning_rate is the initial step size of every coordinate; torch uses 1e-2.")
  check_hyperparameter("scale_by_rprop", "eta_minus", eta_minus, low=0.0, high=1.0, low_open=True,
                       high_open=True, hint="eta_minus shrinks the step on a sign change; torch uses 0.5.")
  check_hyperparameter("scale_by_rprop", "eta_plus", eta_plus, low=1.0, low_open=True,
                       hint="eta_plus grows the step while the sign is kept; torch uses 1.2.")
  check_hyperparameter("scale_by_rprop", "min_step_size", min_step_size, low=0.0,
                       hint="min_step_size bounds the step sizes from below; torch uses 1e-6.")
  check_hyperparameter("scale_by_rprop", "max_step_size", max_step_size, low=0.0,
                       hint="max_step_size bounds the step sizes from above; torch uses 50.")
  bounds = (min_step_size, max_step_size)
  if not any(callable(v) or isinstance(v, jax.core.Tracer) for v in bounds):
    if np.any(np.asarray(min_step_size, np.float64) > np.asarray(max_step_size, np.float64)):
      raise ValueError(f"scale_by_rprop: min_step_size={min_step_size} is above max_step_size={max_step_size}. "
                       "Pass bounds with min_step_size <= max_step_size (torch: 1e-6 and 50).")
  return _ScaleByRprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)


@named
def rprop(learning_rate: Any, eta_minus: Any = 0.5, eta_plus: Any = 1.2, min_step_size: Any = 1e-6,
          max_step_size: Any = 50.0, *, maximize: bool = False) -> GradientTransformation:
  """Rprop, as ``torch.optim.Rprop``: ``chain([scale(-1)], scale_by_rprop(...), scale(-1))``.

  ``p ← p − sign(g̃_t) Δ_t`` (see :func:`scale_by_rprop`). torch's
  ``etas=(η₋, η₊)`` and ``step_sizes=(Δ_min, Δ_max)`` are spelt as
  ``optax.rprop``'s ``eta_minus``, ``eta_plus``, ``min_step_size``,
  ``max_step_size``; torch's default ``lr`` is 1e-2. Meant for full-batch
  gradients: with noisy gradients signs flip at random.

  Args:
    learning_rate: the initial step size ``Δ_0``.
    eta_minus, eta_plus, min_step_size, max_step_size: as in :func:`scale_by_rprop`.
    maximize: negate the gradient first, as torch's ``maximize=True``.

  References:
    Riedmiller & Braun, 1993, https://doi.org/10.1109/ICNN.1993.298623
  """
  stages = gradient_preamble("rprop", maximize)
  stages += [scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size), scale(-1.0)]
  return chain(*stages)
