"""RAdam (Liu et al. 2020): Adam with a rectified adaptive learning rate, as ``torch.optim.RAdam``."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import (Transform, check_betas, check_hyperparameter, is_literal_zero, named,
                                         step_number)
from gradxform._core.module import static_field
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.options import check_dtype_option, check_flag, gradient_preamble
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["radam", "scale_by_radam"]


class ScaleByRadamState(NamedTuple):
  """State of :func:`scale_by_radam`: the two moments ``mu`` and ``nu``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any


class _ScaleByRadam(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b1: Any
  b2: Any
  eps: Any
  eps_root: Any = None  # None: torch's rule; a number: optax's (eps on √v̂, eps_root inside it, ρ_t ≥ threshold)
  threshold: Any = None
  mu_dtype: Optional[Any] = static_field(default=None)
  nu_dtype: Optional[Any] = static_field(default=None)
  nesterov: bool = static_field(default=False)
  State = ScaleByRadamState

  def init_fields(self, params):
    return {"mu": _tree.zeros_like("scale_by_radam", params, self.mu_dtype),
            "nu": _tree.zeros_like("scale_by_radam", params, self.nu_dtype)}

  def apply(self, updates, state, params, hp, **extra):
    b1, b2 = hp["b1"], hp["b2"].astype(hp["b1"].dtype)
    t = step_number(state, hp, "b1")
    correction2 = 1 - b2 ** t
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2 ** t / correction2
    optax_rule = self.eps_root is not None
    rectify = rho_t >= hp["threshold"].astype(rho_t.dtype) if optax_rule else rho_t > 5
    safe_rho = jnp.where(rectify, rho_t, 6.0)  # keeps the unused branch finite
    rect = jnp.sqrt((safe_rho - 4) * (safe_rho - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * safe_rho))
    scalars = {
        "b1": b1, "b2": hp["b2"], "eps": hp["eps"],
        "correction1": 1 - b1 ** t,
        "correction1_next": 1 - b1 ** (t + 1),
        "adaptive_coef": jnp.where(rectify, rect * (1.0 if optax_rule else jnp.sqrt(correction2)), 0.0),
        "plain_coef": jnp.where(rectify, 0.0, 1.0),
        "correction2": correction2,
        "eps_root": hp["eps_root"] if optax_rule else jnp.zeros((), b1.dtype),
    }
    nesterov = self.nesterov

    def rule(g, mu, nu, b1, b2, eps, correction1, correction1_next, adaptive_coef, plain_coef, correction2,
             eps_root, stored):
      mu, nu = stored(b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g * g)
      m_hat = (b1 * mu / correction1_next + (1 - b1) * g / correction1) if nesterov else mu / correction1
      if optax_rule:  # ε on the corrected √v̂ (and ε_root inside the root), as optax
        adaptive = adaptive_coef * _guards.divide_or_zero(m_hat, jnp.sqrt(nu / correction2 + eps_root) + eps, at_least=eps)
      else:
        adaptive = adaptive_coef * _guards.divide_or_zero(m_hat, jnp.sqrt(nu) + eps, at_least=eps)
      return adaptive + plain_coef * m_hat, mu, nu

    updates, mu, nu = _tree.leafwise("scale_by_radam", rule, updates, state.mu, state.nu, scalars=scalars,
                                     check_dtype=(self.mu_dtype is None, self.nu_dtype is None), stored=True)
    return updates, {"mu": mu, "nu": nu}


def scale_by_radam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *, mu_dtype: Optional[Any] = None,
                   nu_dtype: Optional[Any] = None, eps_root: Any = None, threshold: Any = None,
                   nesterov: bool = False) -> GradientTransformation:
  """Rectified Adam (Liu et al. 2020), as ``torch.optim.RAdam``.

  .. math::

     \\rho_\\infty = \\frac{2}{1-\\beta_2} - 1, \\quad
     \\rho_t = \\rho_\\infty - \\frac{2 t \\beta_2^t}{1-\\beta_2^t}, \\quad
     \\hat m_t = \\frac{m_t}{1-\\beta_1^t}

     u_t = \\hat m_t\\, r_t \\frac{\\sqrt{1-\\beta_2^t}}{\\sqrt{v_t} + \\epsilon}
     \\;\\text{ if } \\rho_t > 5, \\quad\\text{else}\\quad u_t = \\hat m_t, \\qquad
     r_t = \\sqrt{\\frac{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty}{(\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t}}

  with ``m``, ``v`` the moments of :func:`scale_by_adam`. As torch, eps is
  added to ``√v`` (not ``√v̂``) and rectification starts when ``ρ_t > 5``;
  optax uses ``ρ_t ≥ 5`` and eps on ``√v̂``: give ``eps_root`` (a number, 0.0
  for optax's default) to get optax's rule,
  ``u_t = r_t·m̂_t / (√(v̂_t + ε_root) + ε)`` when ``ρ_t ≥ threshold``
  (default 5.0), else ``m̂_t``; ``nesterov`` (optax's option) uses
  ``m̂_t = β₁ m_t/(1−β₁^{t+1}) + (1−β₁) g_t/(1−β₁^t)``.
  ``gx.optax_like.radam`` is this. ``mu_dtype``/``nu_dtype`` set the
  dtypes of ``m`` and ``v`` (default: the parameters'); ``u_t`` is computed
  from them as stored (rounded to these dtypes), as in :func:`scale_by_adam`.

  References:
    Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and
    Beyond", https://arxiv.org/abs/1908.03265
  """
  check_betas("scale_by_radam", b1, b2, eps)
  check_flag("scale_by_radam", "nesterov", nesterov)
  if eps_root is None and (threshold is not None or nesterov):
    raise ValueError("scale_by_radam: threshold and nesterov belong to optax's rule; give eps_root too "
                     "(0.0 is optax's default) to use it, or leave them out for torch's rule.")
  if eps_root is not None:
    threshold = 5.0 if threshold is None else threshold
    check_hyperparameter("scale_by_radam", "eps_root", eps_root, low=0.0,
                         hint="eps_root is added to v̂ inside the square root; optax's default is 0.0.")
    check_hyperparameter("scale_by_radam", "threshold", threshold, low=4.0, low_open=True,
                         hint="threshold is the ρ_t above which the step is rectified; optax's default is 5.0.")
  return _ScaleByRadam(b1, b2, eps, eps_root, threshold,
                       mu_dtype=check_dtype_option("scale_by_radam", "mu_dtype", mu_dtype),
                       nu_dtype=check_dtype_option("scale_by_radam", "nu_dtype", nu_dtype), nesterov=nesterov)


@named
def radam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *,
          weight_decay: Any = 0.0, decoupled_weight_decay: bool = False, maximize: bool = False,
          mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """RAdam, as ``torch.optim.RAdam``: ``chain([scale(-1)], [add_decayed_weights(λ)], scale_by_radam(b1, b2, eps), scale_by_learning_rate(lr))``.

  .. math::

     g \\leftarrow \\pm g + \\lambda p, \\qquad p \\leftarrow p - \\eta\\, u_t
     \\;\\text{(}u_t\\text{ of :func:`scale_by_radam`)}

  With ``decoupled_weight_decay=True`` the decay moves after the RAdam
  direction, ``p ← p − η(u_t + λp)``, as torch's ``RAdam(decoupled_weight_decay=True)``.

  Args:
    learning_rate: ``η ≥ 0``.
    b1, b2, eps, mu_dtype, nu_dtype: as in :func:`scale_by_radam`.
    weight_decay: ``λ ≥ 0``; L2 coupled into the gradient (torch's default 0).
    decoupled_weight_decay: apply ``λ`` decoupled (torch's option).
    maximize: negate the gradient first, as torch's ``maximize=True``.

  References:
    Liu et al., 2020, https://arxiv.org/abs/1908.03265
  """
  decoupled = check_flag("radam", "decoupled_weight_decay", decoupled_weight_decay)
  stages = gradient_preamble("radam", maximize, 0.0 if decoupled else weight_decay)
  stages.append(scale_by_radam(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype))
  if decoupled and not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
