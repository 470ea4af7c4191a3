"""Adam's relatives: Adamax, NAdam, RAdam (as torch.optim computes them) and Lion."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from gradxform import _tree
from gradxform._accumulators import _Ema
from gradxform._base import GradientTransformation
from gradxform._hyperparams import Transform, check_hyperparameter, step_number
from gradxform._module import static_field

__all__ = ["scale_by_adamax", "scale_by_lion", "scale_by_nadam", "scale_by_radam"]


def _check_betas(name: str, b1: Any, b2: Any, eps: Any = 0.0) -> None:
  for beta_name, beta in (("b1", b1), ("b2", b2)):
    check_hyperparameter(name, beta_name, beta, low=0.0, high=1.0, high_open=True,
                         hint=f"{beta_name} is a moment's decay rate; use a value in [0, 1).")
  check_hyperparameter(name, "eps", eps, low=0.0,
                       hint="eps must be a non-negative number (it keeps the denominator away from zero).")


class ScaleByAdamaxState(NamedTuple):
  """State of :func:`scale_by_adamax`: ``inf_norm`` is ``u``, ``numerator.ema`` is ``m``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  inf_norm: Any
  numerator: Any


class _ScaleByAdamax(Transform):
  b2: Any
  eps: Any
  numerator: GradientTransformation
  nu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByAdamaxState

  def init_fields(self, params):
    return {"inf_norm": _tree.zeros_like("scale_by_adamax", params, self.nu_dtype),
            "numerator": self.numerator.init(params)}

  def apply(self, updates, state, params, hp, **extra):
    numerator, numerator_state = self.numerator.update(updates, state.numerator, params, **extra)

    def rule(g, inf_norm, num, b2, eps, stored):
      inf_norm, = stored(jnp.maximum(b2 * inf_norm, jnp.abs(g) + eps))
      return _tree.divide_or_zero(num, inf_norm), inf_norm, num

    updates, inf_norm, _ = _tree.leafwise("scale_by_adamax", rule, updates, state.inf_norm, numerator,
                                          scalars=hp, check_dtype=(self.nu_dtype is None, True),
                                          stored=True)
    return updates, {"inf_norm": inf_norm, "numerator": numerator_state}


def scale_by_adamax(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *, mu_dtype: Optional[Any] = None,
                    nu_dtype: Optional[Any] = None) -> GradientTransformation:
  """Adamax (Kingma & Ba 2015, Algorithm 2), as ``torch.optim.Adamax``.

  .. math::

     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
     u^{\\infty}_t = \\max(\\beta_2 u^{\\infty}_{t-1}, |g_t| + \\epsilon), \\quad
     u_t = \\frac{m_t}{(1-\\beta_1^t)\\, u^{\\infty}_t}

  eps is added to ``|g|`` inside the max, as torch and optax do. Like Adam
  it is a bias-corrected :func:`ema` (the numerator) divided by a per-coordinate
  scale of the same gradient. ``mu_dtype``/``nu_dtype`` set the dtypes of ``m``
  and ``u^∞`` (default: the parameters'); ``u_t`` is computed from them as
  stored (rounded to these dtypes), as in :func:`scale_by_adam`.

  References:
    Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization", Section 7.1,
    https://arxiv.org/abs/1412.6980
  """
  _check_betas("scale_by_adamax", b1, b2, eps)
  return _ScaleByAdamax(b2, eps, _Ema(b1, debias=True, dtype=mu_dtype, name="scale_by_adamax"),
                        nu_dtype=nu_dtype)


class ScaleByNadamState(NamedTuple):
  """State of :func:`scale_by_nadam`: ``mu_product`` is ``∏ μ_i`` (a scalar), ``mu``/``nu`` the moments."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu_product: jax.Array
  mu: Any
  nu: Any


class _ScaleByNadam(Transform):
  b1: Any
  b2: Any
  eps: Any
  momentum_decay: Any
  mu_dtype: Optional[Any] = static_field(default=None)
  nu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByNadamState

  def init_fields(self, params):
    b1 = self.resolve(jnp.zeros([], jnp.int32))["b1"]
    return {"mu_product": jnp.ones([], b1.dtype),
            "mu": _tree.zeros_like("scale_by_nadam", params, self.mu_dtype),
            "nu": _tree.zeros_like("scale_by_nadam", params, self.nu_dtype)}

  def apply(self, updates, state, params, hp, **extra):
    b1, b2, psi = hp["b1"], hp["b2"], hp["momentum_decay"].astype(hp["b1"].dtype)
    t = step_number(state, hp, "b1")
    mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
    mu_product = state.mu_product.astype(b1.dtype) * mu_t
    scalars = {
        "b1": b1, "b2": b2, "eps": hp["eps"],
        "grad_coef": (1 - mu_t) / (1 - mu_product),
        "mom_coef": mu_next / (1 - mu_product * mu_next),
        "correction": 1 - b2.astype(b1.dtype) ** t,
    }

    def rule(g, mu, nu, b1, b2, eps, grad_coef, mom_coef, correction, stored):
      mu, nu = stored(b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g * g)
      denom = jnp.sqrt(nu / correction) + eps
      return _tree.divide_or_zero(grad_coef * g + mom_coef * mu, denom), mu, nu

    updates, mu, nu = _tree.leafwise("scale_by_nadam", rule, updates, state.mu, state.nu, scalars=scalars,
                                     check_dtype=(self.mu_dtype is None, self.nu_dtype is None), stored=True)
    return updates, {"mu_product": mu_product.astype(state.mu_product.dtype), "mu": mu, "nu": nu}


def scale_by_nadam(
    b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, momentum_decay: Any = 4e-3, *,
    mu_dtype: Optional[Any] = None, nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
  """NAdam (Dozat 2016) with torch's momentum-decay schedule, as ``torch.optim.NAdam``.

  .. math::

     \\mu_t = \\beta_1\\,(1 - \\tfrac12\\, 0.96^{t\\psi}), \\quad
     \\Pi_t = \\textstyle\\prod_{i \\le t} \\mu_i, \\quad
     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2

     u_t = \\Big(\\frac{1-\\mu_t}{1-\\Pi_t}\\, g_t + \\frac{\\mu_{t+1}}{1-\\Pi_t\\,\\mu_{t+1}}\\, m_t\\Big)
           \\Big/ \\big(\\sqrt{v_t / (1-\\beta_2^t)} + \\epsilon\\big)

  ``ψ = momentum_decay``. With ``momentum_decay=0`` every ``μ_t = β₁/2``; optax's
  ``nadam`` (constant ``β₁`` in the Nesterov term) is not reproduced by any
  setting of this rule.

  Args:
    b1, b2: moment decays in [0, 1).
    eps: ``ε ≥ 0`` outside the root.
    momentum_decay: ``ψ ≥ 0``.
    mu_dtype, nu_dtype: dtypes of ``m`` and ``v`` (default: the parameters');
      ``u_t`` is computed from them as stored (rounded to these dtypes).

  References:
    Dozat, 2016, "Incorporating Nesterov Momentum into Adam",
    https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
  """
  _check_betas("scale_by_nadam", b1, b2, eps)
  check_hyperparameter("scale_by_nadam", "momentum_decay", momentum_decay, low=0.0,
                       hint="momentum_decay (ψ) must be non-negative; torch uses 4e-3.")
  return _ScaleByNadam(b1, b2, eps, momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype)


class ScaleByRadamState(NamedTuple):
  """State of :func:`scale_by_radam`: the two moments ``mu`` and ``nu``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any


class _ScaleByRadam(Transform):
  b1: Any
  b2: Any
  eps: Any
  mu_dtype: Optional[Any] = static_field(default=None)
  nu_dtype: Optional[Any] = static_field(default=None)
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
    rectify = rho_t > 5
    safe_rho = jnp.where(rectify, rho_t, 6.0)  # keeps the unused branch finite
    rect = jnp.sqrt((safe_rho - 4) * (safe_rho - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * safe_rho))
    scalars = {
        "b1": b1, "b2": hp["b2"], "eps": hp["eps"],
        "correction1": 1 - b1 ** t,
        "adaptive_coef": jnp.where(rectify, rect * jnp.sqrt(correction2), 0.0),
        "plain_coef": jnp.where(rectify, 0.0, 1.0),
    }

    def rule(g, mu, nu, b1, b2, eps, correction1, adaptive_coef, plain_coef, stored):
      mu, nu = stored(b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g * g)
      m_hat = mu / correction1
      adaptive = adaptive_coef * _tree.divide_or_zero(m_hat, jnp.sqrt(nu) + eps)
      return adaptive + plain_coef * m_hat, mu, nu

    updates, mu, nu = _tree.leafwise("scale_by_radam", rule, updates, state.mu, state.nu, scalars=scalars,
                                     check_dtype=(self.mu_dtype is None, self.nu_dtype is None), stored=True)
    return updates, {"mu": mu, "nu": nu}


def scale_by_radam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *, mu_dtype: Optional[Any] = None,
                   nu_dtype: Optional[Any] = None) -> GradientTransformation:
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
  optax uses ``ρ_t ≥ 5`` and eps on ``√v̂``. ``mu_dtype``/``nu_dtype`` set the
  dtypes of ``m`` and ``v`` (default: the parameters'); ``u_t`` is computed
  from them as stored (rounded to these dtypes), as in :func:`scale_by_adam`.

  References:
    Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and
    Beyond", https://arxiv.org/abs/1908.03265
  """
  _check_betas("scale_by_radam", b1, b2, eps)
  return _ScaleByRadam(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype)


def _sign_code(x: jax.Array) -> jax.Array:
  """``sign(x)`` as int8 (-1, 0, 1; 2 for NaN), computed in a loop of its own.

  Lion's update and its new momentum both read the old momentum. XLA:CPU has
  no multi-output fusion, so it compiles them as two loops and, when the
  state is donated, copies the momentum (to a fresh buffer, page faults
  included) so that the update can still read it after the new momentum
  overwrote it; optax.lion has the same copy. Here the sign is materialized
  once, as one byte per value, and the new momentum reads it: the momentum is
  then read before it is written, and nothing is copied. The final
  ``lax.rem(code, 3)`` is the identity on {-1, 0, 1, 2}; a remainder is an
  "expensive" operation that XLA does not duplicate into its consumers, which
  is what keeps the code a loop of its own. Measured against optax.lion on
  one core (``benchmarks/donated_state.py``): with donated state 0.70× its
  time on a 148-leaf transformer (24.8M parameters) and 1.13× on 2,000 leaves
  of 32×32; without donation 1.53× on the transformer (the byte-sized code is a
  fresh temporary on every call, where optax's two loops need none).
  """
  code = jnp.where(x == x, jnp.sign(x), 2).astype(jnp.int8)
  return lax.rem(code, jnp.full_like(code, 3))


class ScaleByLionState(NamedTuple):
  """State of :func:`scale_by_lion`: the momentum ``mu``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any


class _ScaleByLion(Transform):
  b1: Any
  b2: Any
  mu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByLionState

  def init_fields(self, params):
    return {"mu": _tree.zeros_like("scale_by_lion", params, self.mu_dtype)}

  def apply(self, updates, state, params, hp, **extra):

    def rule(g, mu, b1, b2):
      code = _sign_code(b1 * mu + (1 - b1) * g)
      # "+ 0 * code" adds exactly zero, but makes the new momentum read the code, so the loop that
      # overwrites mu runs after the one that read the old mu (see _sign_code).
      new_mu = (b2 * mu + (1 - b2) * g) + 0 * code.astype(g.dtype)
      return jnp.where(code == 2, jnp.nan, code.astype(g.dtype)), new_mu

    updates, mu = _tree.leafwise("scale_by_lion", rule, updates, state.mu, scalars=hp,
                                 check_dtype=(self.mu_dtype is None,))
    return updates, {"mu": mu}


def scale_by_lion(b1: Any = 0.9, b2: Any = 0.99, mu_dtype: Optional[Any] = None) -> GradientTransformation:
  """Lion's direction (Chen et al. 2023, Algorithm 2).

  .. math::

     u_t = \\operatorname{sign}(\\beta_1 m_{t-1} + (1-\\beta_1) g_t), \\qquad
     m_t = \\beta_2 m_{t-1} + (1-\\beta_2) g_t

  Args:
    b1: interpolation weight of the update, in [0, 1).
    b2: decay of the momentum, in [0, 1).
    mu_dtype: dtype of ``m`` (default: the parameters'). ``u_t`` reads
      ``m_{t-1}`` as stored (rounded to this dtype).

  Both outputs read ``m_{t-1}``; the sign is materialized first (one byte
  per value) and the new momentum is ordered after it, so a jitted step that
  donates the state updates ``m`` in place, where ``optax.lion`` makes XLA:CPU
  copy it (``benchmarks/donated_state.py``). The numbers are those of the
  formula (the sign of ``-0.0`` is returned as ``+0.0``).

  References:
    Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms",
    https://arxiv.org/abs/2302.06675
  """
  _check_betas("scale_by_lion", b1, b2)
  return _ScaleByLion(b1, b2, mu_dtype=mu_dtype)
