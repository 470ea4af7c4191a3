"""Sophia: momentum divided by a diagonal Hessian estimate (Hutchinson), clipped per coordinate."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._transforms.decay import add_decayed_weights
from gradxform._second_order.hvp import hutchinson_diagonal
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field
from gradxform._core.objective import require_value_fn
from gradxform._core.hyperparams import is_literal_zero as _is_literal_zero, named as _named
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["ScaleBySophiaState", "scale_by_sophia", "sophia"]


class ScaleBySophiaState(NamedTuple):
  """State of :func:`scale_by_sophia`.

  ``mu`` is the EMA of the gradients, ``hessian`` the EMA of the diagonal
  Hessian estimates (both like the parameters), and ``key`` the PRNG key of
  the next Hutchinson probe.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  hessian: Any
  key: jax.Array


class _ScaleBySophia(Transform):
  b1: Any
  b2: Any
  rho: Any
  eps: Any
  update_every: int = static_field(default=10)
  seed: int = static_field(default=0)
  State = ScaleBySophiaState

  def init_fields(self, params):
    return {"mu": _tree.zeros_like("scale_by_sophia", params),
            "hessian": _tree.zeros_like("scale_by_sophia", params),
            "key": jax.random.PRNGKey(self.seed)}

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_sophia"
    value_fn = require_value_fn(name, extra, "estimate the Hessian's diagonal with Hessian-vector products")
    _tree.require_params(name, params, "estimate the Hessian's diagonal")

    def refresh():
      key, probe = jax.random.split(state.key)
      estimate = hutchinson_diagonal(value_fn, params, probe)
      rule = lambda h_hat, h, b2: (b2 * h + (1 - b2) * h_hat, None)
      hessian, _ = _tree.leafwise(name, rule, estimate, state.hessian, scalars={"b2": hp["b2"]})
      return hessian, key

    hessian, key = jax.lax.cond(state.count % self.update_every == 0, refresh,
                                lambda: (state.hessian, state.key))

    def rule(g, mu, h, b1, rho, eps, stored):
      mu, = stored(b1 * mu + (1 - b1) * g)
      return jnp.clip(mu / jnp.maximum(rho * h, eps), -1, 1), mu, h

    updates, mu, _ = _tree.leafwise(name, rule, updates, state.mu, hessian,
                                    scalars={k: hp[k] for k in ("b1", "rho", "eps")}, stored=True)
    return updates, {"mu": mu, "hessian": hessian, "key": key}


def scale_by_sophia(b1: Any = 0.965, b2: Any = 0.99, rho: Any = 0.04, eps: Any = 1e-12,
                    update_every: int = 10, seed: int = 0) -> GradientTransformation:
  """Sophia's clipped, Hessian-preconditioned momentum (Sophia-H, Liu et al. 2023).

  .. math::

     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\qquad
     h_t = \\beta_2 h_{t-k} + (1-\\beta_2) \\hat h_t \\ \\text{ if } t \\bmod k = 0
     \\ \\text{ (else } h_t = h_{t-1}), \\qquad
     u_t = \\operatorname{clip}\\Big(\\frac{m_t}{\\max(\\rho\\, h_t, \\epsilon)}, -1, 1\\Big)

  where ``ĥ_t = z ⊙ H z`` is Hutchinson's estimate of the Hessian's diagonal
  with a Rademacher ``z`` (:func:`hutchinson_diagonal`, one Hessian–vector
  product every ``k`` steps, at the first step included). The PRNG key lives
  in the state. Coordinates with non-positive curvature estimates get
  ``m/ε``, clipped: a sign step. The loss function must be passed as the
  extra argument ``value_fn`` (``gx.step`` does it). Follow it with
  ``scale_by_learning_rate(η)``, or use :func:`sophia`.

  Args:
    b1: ``β₁`` in [0, 1), the gradient EMA decay.
    b2: ``β₂`` in [0, 1), the Hessian EMA decay.
    rho: ``ρ > 0``, scales the Hessian estimate (the clipping threshold is ``1``).
    eps: ``ε > 0``, the floor of the denominator.
    update_every: ``k ≥ 1``, the steps between Hessian estimates (static).
    seed: the seed of the probe vectors' PRNG key (static).

  Returns:
    A transform with state :class:`ScaleBySophiaState`.

  References:
    Liu et al., 2023, "Sophia: A Scalable Stochastic Second-order Optimizer
    for Language Model Pre-training", https://arxiv.org/abs/2305.14342
  """
  name = "scale_by_sophia"
  for arg, value in (("b1", b1), ("b2", b2)):
    check_hyperparameter(name, arg, value, low=0.0, high=1.0, high_open=True,
                         hint=f"{arg} is an EMA decay; use a value in [0, 1) (the paper: b1=0.965, b2=0.99).")
  check_hyperparameter(name, "rho", rho, low=0.0, low_open=True,
                       hint="rho scales the Hessian estimate; it must be positive (the paper uses 0.01 to 0.05).")
  check_hyperparameter(name, "eps", eps, low=0.0, low_open=True,
                       hint="eps floors the denominator; it must be positive, e.g. 1e-12.")
  if not isinstance(update_every, int) or isinstance(update_every, bool) or update_every < 1:
    raise ValueError(f"{name}: update_every={update_every!r} must be an integer >= 1 (the number of "
                     "steps between Hessian estimates; the paper uses 10).")
  if not isinstance(seed, int) or isinstance(seed, bool):
    raise TypeError(f"{name}: seed must be an integer (the seed of the probe vectors), got {seed!r}.")
  return _ScaleBySophia(b1, b2, rho, eps, update_every=update_every, seed=seed)


@_named
def sophia(learning_rate: Any, b1: Any = 0.965, b2: Any = 0.99, rho: Any = 0.04, eps: Any = 1e-12,
           weight_decay: Any = 0.0, update_every: int = 10, seed: int = 0) -> GradientTransformation:
  """Sophia-H: ``chain(scale_by_sophia(...), add_decayed_weights(weight_decay), scale_by_learning_rate(lr))``.

  ``x ← x − η (clip(m / max(ρh, ε), 1) + λx)`` with decoupled weight decay as
  in the paper (a literal 0 weight decay leaves that stage out); see
  :func:`scale_by_sophia`. Each step's size is at most ``η`` per coordinate.

  Args:
    learning_rate: ``η ≥ 0``.
    b1, b2, rho, eps, update_every, seed: see :func:`scale_by_sophia`.
    weight_decay: ``λ ≥ 0``, decoupled weight decay.

  Returns:
    A chain; its update needs ``params`` and ``value_fn`` (use ``gx.step``).

  References:
    Liu et al., 2023, https://arxiv.org/abs/2305.14342
  """
  stages = [scale_by_sophia(b1, b2, rho, eps, update_every, seed)]
  if not _is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
