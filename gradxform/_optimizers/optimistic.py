"""Optimistic gradient methods (Daskalakis et al. 2018; Mokhtari et al. 2019): extrapolate from the last gradient."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, named, step_number
from gradxform._core.module import static_field
from gradxform._optimizers.adam import scale_by_adam
from gradxform._optimizers.rmsprop import _ScaleByRms, _check_rms
from gradxform._transforms.accumulators import EmaState
from gradxform._transforms.scaling import scale, scale_by_learning_rate
from gradxform._transforms.options import check_dtype_option
from gradxform._transforms.options import check_flag

__all__ = ["optimistic_adam", "optimistic_adam_v2", "optimistic_gradient_descent",
           "scale_by_optimistic_gradient"]

_NAME = "scale_by_optimistic_gradient"


def _reads_first(x: jax.Array, one: jax.Array) -> jax.Array:
  """``x / one`` with ``one == 1`` at run time: ``x`` exactly, computed before the state is overwritten.

  A step that reads the previous gradient and stores the new one is two
  loops on XLA:CPU (no multi-output fusion): the update (fused into the
  parameter update) reads the old value, the new state overwrites it. Nothing
  orders the two, so with donated state XLA copies the old value first.
  Written as this division, the value is computed once (XLA does not
  recompute it inside the parameter update), by the only loop that reads the
  old state; the new state is then a select that reads the quotient
  (``first`` is never negative), hence written after it, in place. The cost
  is one division per value, where the copy cost a read and a write of the
  state. Observed with jax 0.10.2 on CPU and checked by ``tests/test_donation.py``.
  """
  return x / one


class ScaleByOptimisticGradientState(NamedTuple):
  """State of :func:`scale_by_optimistic_gradient`: the last update received, ``prev_grad``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  prev_grad: Any


class _ScaleByOptimisticGradient(Transform):
  alpha: Any
  beta: Any
  State = ScaleByOptimisticGradientState

  def init_fields(self, params):
    return {"prev_grad": _tree.zeros_like(_NAME, params)}

  def apply(self, updates, state, params, hp, **extra):

    def rule(g, prev, alpha, beta, first, one):
      u = _reads_first((alpha + beta) * g - beta * jnp.where(first > 0, g, prev), one)
      return u, jnp.where(first < 0, u, g)

    dtype = hp["alpha"].dtype
    first, one = (state.count == 0).astype(dtype), (state.count >= 0).astype(dtype)
    updates, prev = _tree.leafwise(_NAME, rule, updates, state.prev_grad,
                                   scalars={**hp, "first": first, "one": one})
    return updates, {"prev_grad": prev}


def scale_by_optimistic_gradient(alpha: Any = 1.0, beta: Any = 1.0) -> GradientTransformation:
  """Generalized optimistic gradient (Mokhtari et al. 2019), as ``optax.scale_by_optimistic_gradient``.

  .. math::  u_t = (\\alpha + \\beta)\\, g_t - \\beta\\, g_{t-1}, \\qquad g_0 = g_1

  (at the first update the previous gradient is taken as the current one,
  as optax since its issue 1082). ``α = β = 1`` is optimistic gradient
  descent ``2g_t - g_{t-1}``; ``β = 0`` is plain gradient descent.

  Args:
    alpha: ``α``, the weight of the current gradient (float, array or schedule).
    beta: ``β``, the weight of the correction ``g_t - g_{t-1}``.

  Returns:
    A transform with state :class:`ScaleByOptimisticGradientState` (one parameter copy).

  References:
    Mokhtari, Ozdaglar & Pattathil, 2019, "A Unified Analysis of Extra-gradient
    and Optimistic Gradient Methods for Saddle Point Problems: Proximal Point
    Approach", https://arxiv.org/abs/1901.08511
  """
  check_hyperparameter(_NAME, "alpha", alpha, hint="alpha weighs the current gradient, e.g. 1.0.")
  check_hyperparameter(_NAME, "beta", beta, hint="beta weighs the correction g_t - g_{t-1}, e.g. 1.0.")
  return _ScaleByOptimisticGradient(alpha, beta)


@named
def optimistic_gradient_descent(learning_rate: Any, alpha: Any = 1.0, beta: Any = 1.0) -> GradientTransformation:
  """Optimistic gradient descent, as ``optax.optimistic_gradient_descent``.

  ``chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(lr))``:
  ``p ← p − η((α+β) g_t − β g_{t−1})``.

  References:
    Mokhtari et al., 2019, https://arxiv.org/abs/1901.08511
  """
  return chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))


class _NesterovEma(Transform):
  """Adam's first moment with Nesterov's look-ahead (Dozat 2016), as ``optax.scale_by_adam(nesterov=True)``.

  ``m_t = β m_{t-1} + (1-β) g_t``; output ``β m_t / (1-β^{t+1}) + (1-β) g_t / (1-β^t)``.
  The state is an :class:`~gradxform.EmaState`, as :func:`ema`'s.
  """

  decay: Any
  dtype: Optional[Any] = static_field(default=None)
  name: str = static_field(default="scale_by_adam")
  State = EmaState

  def init_fields(self, params):
    return {"ema": _tree.zeros_like(self.name, params, self.dtype)}

  def apply(self, updates, state, params, hp, **extra):
    t = step_number(state, hp, "decay")

    def rule(g, m, decay, c, c_next, stored):
      m, = stored(_guards.decayed(decay, m) + (1 - decay) * g)
      return decay * m / c_next + (1 - decay) * g / c, m

    scalars = {**hp, "c": 1 - hp["decay"] ** t, "c_next": 1 - hp["decay"] ** (t + 1)}
    updates, m = _tree.leafwise(self.name, rule, updates, state.ema, scalars=scalars,
                                check_dtype=(self.dtype is None,), stored=True)
    return updates, {"ema": m}


def _adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov):
  if not nesterov:
    return scale_by_adam(b1, b2, eps, eps_root, mu_dtype=mu_dtype)
  check_hyperparameter("scale_by_adam", "b1", b1, low=0.0, high=1.0, high_open=True,
                       hint="b1 is the decay of the first moment; use a value in [0, 1) such as 0.9.")
  _check_rms("scale_by_adam", "b2", b2, eps, eps_root)
  return _ScaleByRms(b2, eps, eps_root, _NesterovEma(b1, dtype=mu_dtype), debias=True, name="scale_by_adam")


@named
def optimistic_adam(learning_rate: Any, optimism: Any = None, b1: Any = 0.9, b2: Any = 0.999,
                    eps: Any = 1e-8, eps_root: Any = 0.0, mu_dtype: Optional[Any] = None, *,
                    nesterov: bool = True) -> GradientTransformation:
  """Optimistic Adam (Daskalakis et al. 2018), as ``optax.optimistic_adam``.

  ``chain(scale_by_adam(b1, b2, eps, eps_root, nesterov), scale_by_optimistic_gradient(alpha=lr,
  beta=optimism), scale(-1))``:

  .. math::

     r_t = \\frac{\\hat m_t}{\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon}, \\qquad
     p \\leftarrow p - \\eta\\, r_t - o\\, (r_t - r_{t-1})

  with Adam's moments (Nesterov's numerator by default, as optax) and
  ``o = optimism`` (default: the learning rate). optax 0.2.8 deprecates this
  form for :func:`optimistic_adam_v2`; here both are kept, and here
  ``learning_rate`` and ``optimism`` may be schedules or arrays.

  References:
    Daskalakis et al., 2018, "Training GANs with Optimism",
    https://arxiv.org/abs/1711.00141
  """
  nesterov = check_flag("optimistic_adam", "nesterov", nesterov)
  mu_dtype = check_dtype_option("optimistic_adam", "mu_dtype", mu_dtype)
  check_hyperparameter("optimistic_adam", "learning_rate", learning_rate, low=0.0,
                       hint="The learning rate must be non-negative.")
  optimism = learning_rate if optimism is None else optimism
  return chain(_adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov),
               scale_by_optimistic_gradient(alpha=learning_rate, beta=optimism), scale(-1.0))


@named
def optimistic_adam_v2(learning_rate: Any, *, alpha: Any = 1.0, beta: Any = 1.0, b1: Any = 0.9,
                       b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0, mu_dtype: Optional[Any] = None,
                       nesterov: bool = True) -> GradientTransformation:
  """Optimistic Adam, as ``optax.optimistic_adam_v2``: the learning rate outside the optimistic step.

  ``chain(scale_by_adam(b1, b2, eps, eps_root, nesterov), scale_by_optimistic_gradient(alpha, beta),
  scale_by_learning_rate(lr))``: ``p ← p − η((α+β) r_t − β r_{t−1})`` with ``r_t``
  as in :func:`optimistic_adam`.

  References:
    Daskalakis et al., 2018, https://arxiv.org/abs/1711.00141
  """
  nesterov = check_flag("optimistic_adam_v2", "nesterov", nesterov)
  mu_dtype = check_dtype_option("optimistic_adam_v2", "mu_dtype", mu_dtype)
  return chain(_adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov),
               scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))
