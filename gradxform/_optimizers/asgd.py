"""ASGD (Polyak & Juditsky 1992; Bottou 2012): SGD with a decaying step and averaged iterates, as ``torch.optim.ASGD``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, named
from gradxform._transforms.options import gradient_preamble

__all__ = ["asgd", "asgd_averaged_params", "scale_by_asgd"]


class ScaleByAsgdState(NamedTuple):
  """State of :func:`scale_by_asgd`.

  ``eta`` is the step size ``η_t`` of the next update and ``mu`` its averaging
  weight ``μ_t`` (scalars in the learning rate's dtype); ``ax`` the averaged
  parameters ``p̄`` (the parameters' structure and dtypes; read them with
  :func:`asgd_averaged_params`).
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  eta: jax.Array
  mu: jax.Array
  ax: Any


class _ScaleByAsgd(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  learning_rate: Any
  lambd: Any
  alpha: Any
  t0: Any
  State = ScaleByAsgdState

  def init_fields(self, params):
    lr = self.resolve(jnp.zeros([], jnp.int32))["learning_rate"]
    _tree.check_floating("scale_by_asgd", params, "parameter", allow_complex=True)
    return {"eta": lr, "mu": jnp.ones([], lr.dtype), "ax": jax.tree.map(jnp.copy, params)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params("scale_by_asgd", params, "decay them and average them")
    dtype = state.eta.dtype
    lr, lambd = hp["learning_rate"].astype(dtype), hp["lambd"].astype(dtype)

    def rule(g, ax, p, eta, mu, lambd, stored):
      u = -(eta * lambd) * p - eta * g  # p ← p(1 − λη) − ηg
      new_p = p + u
      ax, = stored(jnp.where(mu == 1, new_p, ax + mu * (new_p - ax)))
      # "+ 0 * ax" adds exactly zero but orders the loop that writes the new average before the one that
      # writes the new parameters, so a donated step updates both in place (see lion's _sign_code)
      return u + 0 * ax, ax, p

    scalars = {"eta": state.eta, "mu": state.mu, "lambd": lambd}
    updates, ax, _ = _tree.leafwise("scale_by_asgd", rule, updates, state.ax, params, scalars=scalars,
                                    stored=True)
    t = (state.count + 1).astype(dtype)
    eta = lr / (1 + lambd * lr * t) ** hp["alpha"].astype(dtype)
    mu = 1 / jnp.maximum(jnp.ones([], dtype), t - hp["t0"].astype(dtype))
    return updates, {"eta": eta, "mu": mu, "ax": ax}


def scale_by_asgd(learning_rate: Any = 1e-2, lambd: Any = 1e-4, alpha: Any = 0.75,
                  t0: Any = 1e6) -> GradientTransformation:
  """ASGD's step and its running average of the iterates, as ``torch.optim.ASGD``.

  .. math::

     u_t = -\\eta_t\\,(g_t + \\lambda p_{t-1}), \\quad p_t = p_{t-1} + u_t, \\quad
     \\bar p_t = \\bar p_{t-1} + \\mu_t (p_t - \\bar p_{t-1}) \\;(\\bar p_t = p_t \\text{ while } \\mu_t = 1)

     \\eta_{t+1} = \\frac{\\text{lr}}{(1 + \\lambda\\, \\text{lr}\\, t)^{\\alpha}}, \\quad
     \\mu_{t+1} = \\frac{1}{\\max(1,\\ t - t_0)}, \\quad \\eta_1 = \\text{lr},\\ \\mu_1 = 1

  Unlike most ``scale_by_*`` primitives, the output is the descent step itself
  (the learning rate sits inside ``η_t``, which is not linear in it): put it
  last in a chain. It needs ``params`` in ``update``, to decay and to average
  them; :func:`asgd_averaged_params` reads ``p̄`` from the state (the
  parameters themselves before the first update; averaging starts after
  ``t0`` steps). ``η`` and ``μ`` are updated after each step, in torch's order,
  with the learning rate of that step (a scheduled ``lr`` enters ``η`` one
  step later, as with torch's ``LambdaLR``).

  Args:
    learning_rate: ``lr ≥ 0`` (float, array or schedule).
    lambd: ``λ ≥ 0``, the decay term (torch's ``lambd``).
    alpha: ``α ≥ 0``, the power of the step-size decay.
    t0: ``t₀ ≥ 0``, the step after which averaging starts.

  Returns:
    A transform with state :class:`ScaleByAsgdState`.

  References:
    Polyak & Juditsky, 1992, "Acceleration of Stochastic Approximation by
    Averaging", https://doi.org/10.1137/0330046; Bottou, 2012, "Stochastic
    Gradient Descent Tricks", https://doi.org/10.1007/978-3-642-35289-8_25
  """
  check_hyperparameter("scale_by_asgd", "learning_rate", learning_rate, low=0.0,
                       hint="The learning rate must be non-negative; torch uses 1e-2.")
  check_hyperparameter("scale_by_asgd", "lambd", lambd, low=0.0,
                       hint="lambd is the decay term; torch uses 1e-4.")
  check_hyperparameter("scale_by_asgd", "alpha", alpha, low=0.0,
                       hint="alpha is the power of the step-size decay; torch uses 0.75.")
  check_hyperparameter("scale_by_asgd", "t0", t0, low=0.0,
                       hint="t0 is the step after which averaging starts; torch uses 1e6.")
  return _ScaleByAsgd(learning_rate, lambd, alpha, t0)


@named
def asgd(learning_rate: Any = 1e-2, lambd: Any = 1e-4, alpha: Any = 0.75, t0: Any = 1e6,
         weight_decay: Any = 0.0, *, maximize: bool = False) -> GradientTransformation:
  """Averaged SGD, as ``torch.optim.ASGD``: ``chain([scale(-1)], [add_decayed_weights(wd)], scale_by_asgd(...))``.

  ``g ← ±g + wd·p``; ``p ← p(1 − λη_t) − η_t g``; ``p̄`` averages the iterates
  after ``t0`` steps (see :func:`scale_by_asgd`); evaluate with
  ``gx.asgd_averaged_params(state)``. Needs ``params`` in ``update``.

  Args:
    learning_rate, lambd, alpha, t0: as in :func:`scale_by_asgd` (torch's defaults).
    weight_decay: L2 coupled into the gradient (torch's; default 0).
    maximize: negate the gradient first, as torch's ``maximize=True``.

  References:
    Polyak & Juditsky, 1992, https://doi.org/10.1137/0330046
  """
  stages = gradient_preamble("asgd", maximize, weight_decay)
  stages.append(scale_by_asgd(learning_rate, lambd, alpha, t0))
  return chain(*stages)


def asgd_averaged_params(state: Any) -> Any:
  """The averaged parameters ``p̄_t`` of the one :func:`scale_by_asgd` in ``state`` (torch's ``state['ax']``).

  Args:
    state: an optimizer state (of any nesting: a chain's tuple, a wrapper's
      state) containing exactly one :class:`ScaleByAsgdState`.

  Returns:
    A tree like the parameters (stacked if the state was vmapped).

  References:
    Polyak & Juditsky, 1992, "Acceleration of Stochastic Approximation by Averaging",
    https://doi.org/10.1137/0330046
  """
  is_asgd = lambda x: isinstance(x, ScaleByAsgdState)
  found = [x for x in jax.tree.leaves(state, is_leaf=is_asgd) if is_asgd(x)]
  if len(found) != 1:
    what = "no ScaleByAsgdState" if not found else f"{len(found)} ScaleByAsgdStates"
    raise ValueError(f"asgd_averaged_params: found {what} in the optimizer state; expected exactly one. "
                     + ("Pass the state of gx.asgd(...) (or of a chain holding gx.scale_by_asgd)."
                        if not found else "Pass the part of the state that holds the one you mean."))
  return found[0].ax
