"""RMSProp (Tieleman & Hinton 2012): the RMS scaling primitive, on which Adam is built, and ``rmsprop``."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation, identity
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, named, step_number
from gradxform._core.module import static_field
from gradxform._transforms.accumulators import trace
from gradxform._transforms.options import check_dtype_option, check_flag, gradient_preamble
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["rmsprop", "scale_by_rms"]

_EPS_HINT = "eps must be a non-negative number (it keeps the denominator away from zero)."


class ScaleByRmsState(NamedTuple):
  """State of :func:`scale_by_rms` (and :func:`scale_by_adam`).

  ``nu`` is the running mean of squared gradients; ``grad_avg`` the running
  mean of gradients (``None`` unless centered); ``nu_max`` the running maximum
  of ``nu`` (of ``nu / (1 - ρ^t)`` with ``debias_before_max``; ``None`` unless
  amsgrad); ``numerator`` the state of the
  numerator transform (Adam's first moment lives at ``numerator.ema``). ``count``
  is kept when the bias correction (``debias``) or the numerator reads it, and
  is then the numerator's count too (its own ``count`` is ``None``).
  """

  count: Optional[jax.Array]  # int32 scalar
  hyperparams: dict
  nu: Any
  grad_avg: Any
  nu_max: Any
  numerator: Any


class _ScaleByRms(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  decay: Any
  eps: Any
  eps_root: Any
  numerator: GradientTransformation
  centered: bool = static_field(default=False)
  debias: bool = static_field(default=False)
  amsgrad: bool = static_field(default=False)
  dtype: Optional[Any] = static_field(default=None)
  name: str = static_field(default="scale_by_rms")
  debias_before_max: bool = static_field(default=False)
  initial_scale: Any = None  # None: v_0 = 0 (then not a hyperparameter)
  public_names: tuple = static_field(default=())  # ((internal, public), ...): names for messages
  State = ScaleByRmsState
  nested = ("numerator",)  # updated once per update: it uses this count (Adam's m and v share one)

  @property
  def counts(self) -> bool:  # the step enters only the bias correction
    return self.debias

  def init_fields(self, params):
    zeros = lambda: _tree.zeros_like(self.name, params, self.dtype)
    nu = zeros()
    if self.initial_scale is not None:
      v0 = self.resolve(jnp.zeros([], jnp.int32))["initial_scale"]
      nu = jax.tree.map(lambda z: z + v0.astype(z.dtype), nu)
    return {
        "nu": nu,
        "grad_avg": zeros() if self.centered else None,
        "nu_max": zeros() if self.amsgrad else None,
        "numerator": self.numerator.init(params),
    }

  def apply(self, updates, state, params, hp, **extra):
    numerator, numerator_state = self.numerator.update(updates, state.numerator, params, **extra)
    centered, amsgrad, debias_before_max = self.centered, self.amsgrad, self.debias_before_max
    correction = 1 - hp["decay"] ** step_number(state, hp, "decay") if self.debias else jnp.ones_like(hp["decay"])

    def rule(g, nu, nu_max, grad_avg, num, decay, decay_rest, decay_forget, eps, eps_root, correction, stored):
      nu, = stored(_guards.decayed(decay, nu, decay_forget) + decay_rest * g * g)  # amsgrad's maximum: of stored values
      if amsgrad:  # torch: max of the raw v, then debiased; optax (debias_before_max): max of v / c_t
        nu_max = jnp.maximum(nu_max, nu / correction if debias_before_max else nu)
      if centered:
        grad_avg = _guards.decayed(decay, grad_avg, decay_forget) + decay_rest * g
      nu, nu_max, grad_avg = stored(nu, nu_max, grad_avg)
      v = nu_max if amsgrad and debias_before_max else (nu_max if amsgrad else nu) / correction
      if centered:
        mean_sq = jnp.square(grad_avg / correction)  # an overflowed (inf) v stays inf: never inf - inf
        v = jnp.where(jnp.isfinite(mean_sq), jnp.maximum(v - mean_sq, 0), v)
      u = _guards.divide_or_zero(num, jnp.sqrt(v + eps_root) + eps, at_least=eps)
      return u, nu, nu_max, grad_avg, num

    same = self.dtype is None
    updates, nu, nu_max, grad_avg, _ = _tree.leafwise(
        self.name, rule, updates, state.nu, state.nu_max, state.grad_avg, numerator,
        scalars={"decay": hp["decay"], "eps": hp["eps"], "eps_root": hp["eps_root"], "correction": correction},
        check_dtype=(same, same, same, True), stored=True, derive=_guards.decay_scalars())
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
    *,
    initial_scale: Any = 0.0,
    debias_before_max: bool = False,
) -> GradientTransformation:
  """Divides by the root mean square of past gradients (RMSProp, Tieleman & Hinton 2012).

  .. math::

     v_t = \\rho\\, v_{t-1} + (1-\\rho)\\, g_t^2, \\quad v_0 = v_{init}, \\qquad
     \\hat v_t = v_t / c_t, \\qquad
     u_t = \\frac{n_t}{\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon}

  where ``c_t = 1 - ρ^t`` if ``debias`` else 1, and ``n_t`` is the output of
  the ``numerator`` transform applied to the *same* gradient ``g_t`` (by
  default ``n_t = g_t``). ``centered`` subtracts the squared running mean of
  the gradients, ``\\hat v_t - (\\bar g_t / c_t)^2``; ``amsgrad`` uses the running
  maximum of ``v_t`` (before the division by ``c_t``, as torch; after it with
  ``debias_before_max``, as ``optax.scale_by_amsgrad``).

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
    initial_scale: ``v_init ≥ 0``, the starting value of ``v`` (optax's
      ``initial_scale``; torch starts at 0). A literal 0 keeps it out of the
      hyperparameters.
    debias_before_max: with ``amsgrad``, keep ``max_{s ≤ t} v_s / c_s``
      (optax's AMSGrad) instead of ``max_{s ≤ t} v_s / c_t`` (torch's).

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
  check_hyperparameter("scale_by_rms", "initial_scale", initial_scale, low=0.0,
                       hint="initial_scale is the starting value of the squared-gradient average; torch uses 0.")
  flags = {name: check_flag("scale_by_rms", name, value) for name, value in (
      ("centered", centered), ("debias", debias), ("amsgrad", amsgrad), ("debias_before_max", debias_before_max))}
  return _ScaleByRms(decay, eps, eps_root, numerator, dtype=check_dtype_option("scale_by_rms", "dtype", dtype),
                     initial_scale=None if is_literal_zero(initial_scale) else initial_scale, **flags)


def _check_rms(name: str, decay_name: str, decay: Any, eps: Any, eps_root: Any) -> None:
  check_hyperparameter(name, decay_name, decay, low=0.0, high=1.0, high_open=True,
                       hint=f"{decay_name} is the decay of the squared-gradient average; use a value in [0, 1) such as 0.999.")
  check_hyperparameter(name, "eps", eps, low=0.0, hint=_EPS_HINT)
  check_hyperparameter(name, "eps_root", eps_root, low=0.0, hint=_EPS_HINT)


@named
def rmsprop(learning_rate: Any, decay: Any = 0.99, eps: Any = 1e-8, centered: bool = False,
            momentum: Any = 0.0, *, weight_decay: Any = 0.0, maximize: bool = False, nesterov: bool = False,
            eps_in_sqrt: bool = False, bias_correction: bool = False, initial_scale: Any = 0.0,
            accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
  """RMSProp, as ``torch.optim.RMSprop`` (``decay`` is torch's ``alpha``); optax's variants as options.

  ``chain([scale(-1)], [add_decayed_weights(weight_decay)], scale_by_rms(...), [trace(momentum, nesterov)],
  scale_by_learning_rate(lr))``:

  .. math::

     g \\leftarrow \\pm g + \\lambda p, \\quad
     v_t = \\rho v_{t-1} + (1-\\rho) g^2, \\quad
     d_t = \\frac{g}{\\sqrt{v_t / c_t} + \\epsilon}, \\quad
     b_t = \\mu b_{t-1} + d_t, \\quad p \\leftarrow p - \\eta\\, b_t

  The momentum buffer holds ``d_t`` and the learning rate is applied outside
  it, as torch (optax applies it inside: the same numbers for a constant
  learning rate). A literal 0 momentum or weight decay leaves its stage out.

  Args:
    learning_rate: ``η ≥ 0``.
    decay: ``ρ`` in [0, 1) (torch's ``alpha``, default 0.99; optax's 0.9).
    eps: ``ε ≥ 0``, outside the root (torch) or inside it (``eps_in_sqrt``).
    centered: divide by the centered estimate ``v_t − ḡ_t²`` (Graves 2013).
    momentum: ``μ`` in [0, 1]; 0 keeps no buffer.
    weight_decay: ``λ ≥ 0``, L2 coupled into the gradient (torch's).
    maximize: negate the gradient first, as torch's ``maximize=True``.
    nesterov: Nesterov momentum on ``d_t`` (optax's option; needs momentum).
    eps_in_sqrt: ``d_t = g / √(v_t/c_t + ε)``, optax's default (its
      ``eps_in_sqrt=True``); torch's is ``False``.
    bias_correction: ``c_t = 1 − ρ^t`` (optax's option); else ``c_t = 1``.
    initial_scale: ``v_0`` (optax's option; torch's is 0).
    accumulator_dtype: dtype of the momentum buffer (default: the parameters').

  ``optax.rmsprop(lr, decay, eps, initial_scale, eps_in_sqrt, centered, momentum,
  nesterov, bias_correction)`` is ``rmsprop(lr, decay, eps, centered, momentum,
  eps_in_sqrt=..., ...)`` with optax's defaults ``decay=0.9, eps_in_sqrt=True``.

  References:
    Tieleman & Hinton, 2012; Graves, 2013 (centered), https://arxiv.org/abs/1308.0850
  """
  accumulator_dtype = check_dtype_option("rmsprop", "accumulator_dtype", accumulator_dtype)
  nesterov = check_flag("rmsprop", "nesterov", nesterov)
  if nesterov and is_literal_zero(momentum):
    raise ValueError("rmsprop: nesterov=True needs a momentum > 0. Pass e.g. momentum=0.9.")
  inside = check_flag("rmsprop", "eps_in_sqrt", eps_in_sqrt)
  stages = gradient_preamble("rmsprop", maximize, weight_decay)
  stages.append(scale_by_rms(decay, 0.0 if inside else eps, eps if inside else 0.0, centered=centered,
                             debias=check_flag("rmsprop", "bias_correction", bias_correction),
                             initial_scale=initial_scale))
  check_hyperparameter("rmsprop", "momentum", momentum, low=0.0, high=1.0,
                       hint="momentum is the coefficient of the momentum buffer; typical values are 0.9 to 0.99.")
  if not is_literal_zero(momentum):
    buffer = trace(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    stages.append(dataclasses.replace(buffer, public_names=(("decay", "momentum"),)))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
