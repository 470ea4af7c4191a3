"""Per-coordinate adaptive scalings: RMS (RMSProp, and Adam built on it), Adagrad, Adadelta."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _tree
from gradxform._accumulators import _Ema
from gradxform._base import GradientTransformation, identity
from gradxform._hyperparams import Transform, check_hyperparameter, step_number
from gradxform._module import static_field

__all__ = ["scale_by_adadelta", "scale_by_adagrad", "scale_by_adam", "scale_by_rms"]

_EPS_HINT = "eps must be a non-negative number (it keeps the denominator away from zero)."


class ScaleByRmsState(NamedTuple):
  """State of :func:`scale_by_rms` (and :func:`scale_by_adam`).

  ``nu`` is the running mean of squared gradients; ``grad_avg`` the running
  mean of gradients (``None`` unless centered); ``nu_max`` the running maximum
  of ``nu`` (``None`` unless amsgrad); ``numerator`` the state of the
  numerator transform (Adam's first moment lives at ``numerator.ema``).
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  nu: Any
  grad_avg: Any
  nu_max: Any
  numerator: Any


class _ScaleByRms(Transform):
  decay: Any
  eps: Any
  eps_root: Any
  numerator: GradientTransformation
  centered: bool = static_field(default=False)
  debias: bool = static_field(default=False)
  amsgrad: bool = static_field(default=False)
  dtype: Optional[Any] = static_field(default=None)
  name: str = static_field(default="scale_by_rms")
  State = ScaleByRmsState

  def init_fields(self, params):
    zeros = lambda: _tree.zeros_like(self.name, params, self.dtype)
    return {
        "nu": zeros(),
        "grad_avg": zeros() if self.centered else None,
        "nu_max": zeros() if self.amsgrad else None,
        "numerator": self.numerator.init(params),
    }

  def apply(self, updates, state, params, hp, **extra):
    numerator, numerator_state = self.numerator.update(updates, state.numerator, params, **extra)
    centered, amsgrad = self.centered, self.amsgrad
    t = step_number(state, hp, "decay")
    correction = 1 - hp["decay"] ** t if self.debias else jnp.ones_like(hp["decay"])

    def rule(g, nu, nu_max, grad_avg, num, decay, eps, eps_root, correction, stored):
      nu, = stored(decay * nu + (1 - decay) * g * g)  # amsgrad's running maximum is of stored values
      if amsgrad:
        nu_max = jnp.maximum(nu_max, nu)
      if centered:
        grad_avg = decay * grad_avg + (1 - decay) * g
      nu, nu_max, grad_avg = stored(nu, nu_max, grad_avg)
      v = (nu_max if amsgrad else nu) / correction
      if centered:
        v = jnp.maximum(v - jnp.square(grad_avg / correction), 0)
      u = _tree.divide_or_zero(num, jnp.sqrt(v + eps_root) + eps)
      return u, nu, nu_max, grad_avg, num

    same = self.dtype is None
    updates, nu, nu_max, grad_avg, _ = _tree.leafwise(
        self.name, rule, updates, state.nu, state.nu_max, state.grad_avg, numerator,
        scalars={**hp, "correction": correction}, check_dtype=(same, same, same, True), stored=True)
    return updates, {"nu": nu, "grad_avg": grad_avg, "nu_max": nu_max, "numerator": numerator_state}


def scale_by_rms(
    decay: Any = 0.99,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    centered: bool = False,
    debias: bool = False,
    amsgrad: bool = False,
    numerator: Optional[GradientTransformation] = None,
    dtype: Optional[Any] = None,
) -> GradientTransformation:
  """Divides by the root mean square of past gradients (RMSProp, Tieleman & Hinton 2012).

  .. math::

     v_t = \\rho\\, v_{t-1} + (1-\\rho)\\, g_t^2, \\qquad
     \\hat v_t = v_t / c_t, \\qquad
     u_t = \\frac{n_t}{\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon}

  where ``c_t = 1 - ρ^t`` if ``debias`` else 1, and ``n_t`` is the output of
  the ``numerator`` transform applied to the *same* gradient ``g_t`` (by
  default ``n_t = g_t``). ``centered`` subtracts the squared running mean of
  the gradients, ``\\hat v_t - (\\bar g_t / c_t)^2``; ``amsgrad`` uses the running
  maximum of ``v_t`` (before the division by ``c_t``, as torch).

  The defaults reproduce ``torch.optim.RMSprop`` (``alpha=0.99``, eps *outside*
  the root). optax's ``scale_by_rms`` puts eps inside the root with decay 0.9:
  ``scale_by_rms(decay=0.9, eps=0.0, eps_root=1e-8)``.

  Because the numerator sees the raw gradient rather than the output of a
  previous stage, Adam is honestly "RMSProp plus momentum":
  ``scale_by_rms(b2, eps, debias=True, numerator=ema(b1, debias=True))``
  (see :func:`scale_by_adam`).

  Args:
    decay: ``ρ`` in [0, 1) (float, array or schedule).
    eps: ``ε ≥ 0`` added outside the square root.
    eps_root: ``ε_root ≥ 0`` added inside the square root.
    centered: divide by an estimate of the standard deviation instead.
    debias: divide ``v`` (and the centered mean) by ``1 - ρ^t``.
    amsgrad: use ``max_{s ≤ t} v_s`` (Reddi et al. 2018).
    numerator: transform whose output is divided (default: identity).
    dtype: dtype of the stored averages (default: the parameters' dtype). The
      update is computed from the averages as stored (rounded to ``dtype``).

  Returns:
    A transform with state :class:`ScaleByRmsState`.

  References:
    Tieleman & Hinton, 2012, Lecture 6.5 of "Neural Networks for Machine
    Learning", https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf
  """
  _check_rms("scale_by_rms", "decay", decay, eps, eps_root)
  numerator = identity() if numerator is None else numerator
  if not isinstance(numerator, GradientTransformation):
    raise TypeError(f"scale_by_rms: numerator must be a gradxform transform, got {type(numerator).__name__}.")
  return _ScaleByRms(decay, eps, eps_root, numerator, centered=bool(centered),
                     debias=bool(debias), amsgrad=bool(amsgrad), dtype=dtype)


def _check_rms(name: str, decay_name: str, decay: Any, eps: Any, eps_root: Any) -> None:
  check_hyperparameter(name, decay_name, decay, low=0.0, high=1.0, high_open=True,
                       hint=f"{decay_name} is the decay of the squared-gradient average; use a value in [0, 1) such as 0.999.")
  check_hyperparameter(name, "eps", eps, low=0.0, hint=_EPS_HINT)
  check_hyperparameter(name, "eps_root", eps_root, low=0.0, hint=_EPS_HINT)


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    amsgrad: bool = False,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
  """Adam's direction (Kingma & Ba 2015), as ``torch.optim.Adam`` computes it.

  .. math::

     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2, \\quad
     u_t = \\frac{m_t / (1-\\beta_1^t)}{\\sqrt{v_t / (1-\\beta_2^t) + \\epsilon_{root}} + \\epsilon}

  It is built, not re-derived: momentum (:func:`ema` with bias correction) is
  the numerator of RMS scaling (:func:`scale_by_rms` with bias correction), and
  both see the same gradient::

     scale_by_rms(decay=b2, eps=eps, eps_root=eps_root, debias=True, amsgrad=amsgrad,
                  numerator=ema(b1, debias=True))

  ``amsgrad`` takes the maximum of the raw ``v`` and then divides by
  ``1-β₂^t``, as torch. The state is a :class:`ScaleByRmsState`: ``nu`` is
  ``v``, ``numerator.ema`` is ``m``. ``u_t`` is computed from ``m_t`` and
  ``v_t`` as stored (rounded to ``mu_dtype``/``nu_dtype``), as optax and torch
  do with low-precision moments.

  Args:
    b1: first-moment decay ``β₁`` in [0, 1).
    b2: second-moment decay ``β₂`` in [0, 1).
    eps: ``ε ≥ 0`` outside the root (torch and optax default).
    eps_root: ``ε_root ≥ 0`` inside the root (optax's option, used when
      differentiating through the optimizer).
    amsgrad: Reddi et al. (2018)'s variant.
    mu_dtype: dtype of ``m`` (default: the parameters').
    nu_dtype: dtype of ``v`` (default: the parameters').

  References:
    Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization",
    https://arxiv.org/abs/1412.6980
  """
  check_hyperparameter("scale_by_adam", "b1", b1, low=0.0, high=1.0, high_open=True,
                       hint="b1 is the decay of the first moment; use a value in [0, 1) such as 0.9.")
  _check_rms("scale_by_adam", "b2", b2, eps, eps_root)
  first_moment = _Ema(b1, debias=True, dtype=mu_dtype, name="scale_by_adam")
  return _ScaleByRms(b2, eps, eps_root, first_moment, debias=True, amsgrad=bool(amsgrad),
                     dtype=nu_dtype, name="scale_by_adam")


class ScaleByAdagradState(NamedTuple):
  """State of :func:`scale_by_adagrad`: ``sum_of_squares`` has the parameters' structure."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  sum_of_squares: Any


class _ScaleByAdagrad(Transform):
  initial_accumulator_value: Any
  eps: Any
  eps_root: Any
  State = ScaleByAdagradState

  def init_fields(self, params):
    zeros = _tree.zeros_like("scale_by_adagrad", params)
    init = self.initial_accumulator_value
    return {"sum_of_squares": jax.tree.map(lambda z: z + jnp.asarray(init).astype(z.dtype), zeros)}

  def apply(self, updates, state, params, hp, **extra):

    def rule(g, total, initial_accumulator_value, eps, eps_root, stored):
      total, = stored(total + g * g)
      return _tree.divide_or_zero(g, jnp.sqrt(total + eps_root) + eps), total

    updates, total = _tree.leafwise("scale_by_adagrad", rule, updates, state.sum_of_squares, scalars=hp,
                                    stored=True)
    return updates, {"sum_of_squares": total}


def scale_by_adagrad(
    initial_accumulator_value: Any = 0.0, eps: Any = 1e-10, eps_root: Any = 0.0
) -> GradientTransformation:
  """Adagrad's scaling (Duchi et al. 2011), as ``torch.optim.Adagrad``.

  .. math::

     G_t = G_{t-1} + g_t^2, \\quad G_0 = G_{init}, \\qquad
     u_t = \\frac{g_t}{\\sqrt{G_t + \\epsilon_{root}} + \\epsilon}

  torch's defaults: ``G_init = 0``, ``ε = 1e-10`` outside the root. optax's
  ``scale_by_rss`` starts at 0.1 with eps inside the root; reproduce it with
  ``scale_by_adagrad(initial_accumulator_value=0.1, eps=0.0, eps_root=1e-7)``.

  Args:
    initial_accumulator_value: ``G_init ≥ 0``.
    eps: ``ε ≥ 0`` outside the root.
    eps_root: ``ε_root ≥ 0`` inside the root.

  References:
    Duchi, Hazan & Singer, 2011, "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization", https://jmlr.org/papers/v12/duchi11a.html
  """
  check_hyperparameter("scale_by_adagrad", "initial_accumulator_value", initial_accumulator_value,
                       low=0.0, hint="The accumulator of squared gradients cannot start negative; torch uses 0, optax 0.1.")
  check_hyperparameter("scale_by_adagrad", "eps", eps, low=0.0, hint=_EPS_HINT)
  check_hyperparameter("scale_by_adagrad", "eps_root", eps_root, low=0.0, hint=_EPS_HINT)
  return _ScaleByAdagrad(initial_accumulator_value, eps, eps_root)


class ScaleByAdadeltaState(NamedTuple):
  """State of :func:`scale_by_adadelta`: running means of ``g²`` and of ``Δx²``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  square_avg: Any
  acc_delta: Any


class _ScaleByAdadelta(Transform):
  rho: Any
  eps: Any
  State = ScaleByAdadeltaState

  def init_fields(self, params):
    return {"square_avg": _tree.zeros_like("scale_by_adadelta", params),
            "acc_delta": _tree.zeros_like("scale_by_adadelta", params)}

  def apply(self, updates, state, params, hp, **extra):

    def rule(g, square_avg, acc_delta, rho, eps, stored):
      square_avg, = stored(rho * square_avg + (1 - rho) * g * g)
      delta = jnp.sqrt(acc_delta + eps) / jnp.sqrt(square_avg + eps) * g
      acc_delta = rho * acc_delta + (1 - rho) * delta * delta
      return delta, square_avg, acc_delta

    updates, square_avg, acc_delta = _tree.leafwise(
        "scale_by_adadelta", rule, updates, state.square_avg, state.acc_delta, scalars=hp, stored=True)
    return updates, {"square_avg": square_avg, "acc_delta": acc_delta}


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> GradientTransformation:
  """Adadelta's unit-correct step (Zeiler 2012, Algorithm 1), as ``torch.optim.Adadelta``.

  .. math::

     E[g^2]_t = \\rho E[g^2]_{t-1} + (1-\\rho) g_t^2, \\qquad
     \\Delta x_t = \\frac{\\sqrt{E[\\Delta x^2]_{t-1} + \\epsilon}}{\\sqrt{E[g^2]_t + \\epsilon}}\\, g_t,
     \\qquad E[\\Delta x^2]_t = \\rho E[\\Delta x^2]_{t-1} + (1-\\rho) \\Delta x_t^2

  The output is ``Δx`` (a descent direction); :func:`gradxform.adadelta`
  follows it with ``scale_by_learning_rate(1.0)``, so ``p ← p − lr·Δx``.

  Args:
    rho: ``ρ`` in [0, 1].
    eps: ``ε > 0`` inside both roots (it also sets the size of the first steps).

  References:
    Zeiler, 2012, "ADADELTA: An Adaptive Learning Rate Method",
    https://arxiv.org/abs/1212.5701
  """
  check_hyperparameter("scale_by_adadelta", "rho", rho, low=0.0, high=1.0,
                       hint="rho is the decay of the running averages; torch uses 0.9.")
  check_hyperparameter("scale_by_adadelta", "eps", eps, low=0.0, low_open=True,
                       hint="eps must be positive: with eps = 0 the first step is 0/0. torch uses 1e-6.")
  return _ScaleByAdadelta(rho, eps)
