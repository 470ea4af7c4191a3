"""COCOB-Backprop (Orabona & Tommasi 2017): per-coordinate coin betting in place of a learning rate."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, named
from gradxform._optimizers.dog import copy_params
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale

__all__ = ["ScaleByCocobState", "cocob", "scale_by_cocob"]


class ScaleByCocobState(NamedTuple):
  """State of :func:`scale_by_cocob` (every field has the parameters' structure and dtypes).

  ``init_particles`` is ``x_0``; ``cumulative_gradients`` is ``θ = −Σg``,
  ``scale`` is ``L`` (the largest ``|g|`` so far, from ``eps``),
  ``subgradients`` is ``G = Σ|g|`` and ``reward`` is ``R``. The effective
  per-coordinate step is ``(L + R)/(L·max(G + L, αL))``.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  init_particles: Any
  cumulative_gradients: Any
  scale: Any
  subgradients: Any
  reward: Any


class _ScaleByCocob(Transform):
  alpha: Any
  eps: Any
  State = ScaleByCocobState

  def init_fields(self, params):
    name = "scale_by_cocob"
    eps = self.resolve(jnp.zeros([], jnp.int32))["eps"]
    return {"init_particles": copy_params(name, params), "cumulative_gradients": _tree.zeros_like(name, params),
            "scale": jax.tree.map(lambda p: jnp.full_like(p, eps.astype(jnp.result_type(p))), params),
            "subgradients": _tree.zeros_like(name, params), "reward": _tree.zeros_like(name, params)}

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_cocob"
    _tree.require_params(name, params, "measure each coordinate's gain since x_0")

    def rule(g, big_l, big_g, reward, theta, x0, x, alpha, eps, stored):
      big_l = jnp.maximum(big_l, jnp.abs(g))
      big_g = big_g + jnp.abs(g)
      # materialized in a loop of its own (rem(r, inf) = r for finite r >= 0): the update then reads the new
      # reward instead of recomputing it from the old one, so a donated step updates every buffer in place
      reward = lax.rem(jnp.maximum(reward - g * (x - x0), 0), jnp.full_like(reward, jnp.inf))
      theta = theta - g
      big_l, big_g, reward, theta = stored(big_l, big_g, reward, theta)
      new_x = x0 + theta / (big_l * jnp.maximum(big_g + big_l, alpha * big_l)) * (big_l + reward)
      return new_x - x, big_l, big_g, reward, theta, x0, x

    updates, big_l, big_g, reward, theta, _, _ = _tree.leafwise(
        name, rule, updates, state.scale, state.subgradients, state.reward, state.cumulative_gradients,
        state.init_particles, params, check_dtype=(True, True, True, True, True, False), stored=True,
        scalars=hp)
    return updates, {"cumulative_gradients": theta, "scale": big_l, "subgradients": big_g, "reward": reward}


def scale_by_cocob(alpha: Any = 100.0, eps: Any = 1e-8) -> GradientTransformation:
  """COCOB-Backprop (Orabona & Tommasi 2017, Algorithm 2), as ``optax.contrib.scale_by_cocob``.

  Per coordinate, from ``L_0 = ε`` and ``θ_0 = G_0 = R_0 = 0``:

  .. math::

     L_t = \\max(L_{t-1}, |g_t|), \\quad G_t = G_{t-1} + |g_t|, \\quad
     R_t = \\max(R_{t-1} - g_t (x_t - x_0), 0), \\quad \\theta_t = \\theta_{t-1} - g_t, \\\\
     x_{t+1} = x_0 + \\frac{\\theta_t}{L_t \\max(G_t + L_t, \\alpha L_t)} (L_t + R_t),
     \\qquad u_t = x_{t+1} - x_t

  The output is the step itself (already signed: add it to the parameters),
  as optax's; nothing follows it in :func:`cocob`.

  Args:
    alpha: ``α > 0``, bounds the fraction of the wealth bet early on.
    eps: ``ε > 0``, the initial ``L`` (keeps the first step finite).

  Returns:
    A transform with state :class:`ScaleByCocobState` (5 parameter copies).

  References:
    Orabona & Tommasi, 2017, "Training Deep Networks without Learning Rates
    Through Coin Betting", https://arxiv.org/abs/1705.07795
  """
  check_hyperparameter("scale_by_cocob", "alpha", alpha, low=0.0, low_open=True,
                       hint="alpha bounds the early bets; use a positive number (e.g. 100).")
  check_hyperparameter("scale_by_cocob", "eps", eps, low=0.0, low_open=True,
                       hint="eps is the initial gradient-size estimate L_0; use a small positive number (e.g. 1e-8).")
  return _ScaleByCocob(alpha, eps)


@named
def cocob(learning_rate: Any = 1.0, alpha: Any = 100.0, eps: Any = 1e-8, weight_decay: Any = 0.0,
          mask: Optional[Any] = None) -> GradientTransformation:
  """COCOB, as ``optax.contrib.cocob``: ``chain([add_decayed_weights(λ, mask)], scale(lr), scale_by_cocob(alpha, eps))``.

  The (possibly decayed) gradient, multiplied by ``learning_rate`` (1.0: a
  multiplier, not a step size), feeds the coin-betting step of
  :func:`scale_by_cocob`. A literal 0 ``weight_decay`` leaves that stage out.

  References:
    Orabona & Tommasi, 2017, https://arxiv.org/abs/1705.07795
  """
  check_hyperparameter("cocob", "learning_rate", learning_rate, low=0.0,
                       hint="learning_rate multiplies the gradient fed to the bets; e.g. 1.0.")
  stages = [] if is_literal_zero(weight_decay) else [add_decayed_weights(weight_decay, mask)]
  return chain(*stages, scale(learning_rate), scale_by_cocob(alpha, eps))
