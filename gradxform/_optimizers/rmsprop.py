"""RMSProp (Tieleman & Hinton 2012): the RMS scaling primitive, on which Adam is built, and ``rmsprop``."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation, identity
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, named, step_number
from gradxform._core.module import static_field
from gradxform._transforms.accumulators import trace
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["rmsprop", "scale_by_rms"]

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


@named
def rmsprop(learning_rate: Any, decay: Any = 0.99, eps: Any = 1e-8, centered: bool = False,
            momentum: Any = 0.0) -> GradientTransformation:
  """RMSProp, as ``torch.optim.RMSprop`` (``decay`` is torch's ``alpha``).

  ``chain(scale_by_rms(decay, eps, centered=centered), trace(momentum),
  scale_by_learning_rate(lr))``: the momentum buffer holds ``g/(√v + ε)`` and
  the learning rate is applied outside it, as torch. (A literal 0 momentum
  leaves the trace out.) optax's default rmsprop (eps inside the root, decay
  0.9) is ``chain(scale_by_rms(0.9, eps=0.0, eps_root=1e-8), scale_by_learning_rate(lr))``.

  References:
    Tieleman & Hinton, 2012; Graves, 2013 (centered), https://arxiv.org/abs/1308.0850
  """
  stages = [scale_by_rms(decay, eps, centered=centered)]
  if not is_literal_zero(momentum):
    stages.append(trace(momentum))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
