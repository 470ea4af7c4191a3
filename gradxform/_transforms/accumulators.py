"""Momentum-like accumulators: ``trace`` (heavy ball, Nesterov) and ``ema``."""

from __future__ import annotations

import functools

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, step_number
from gradxform._core.module import static_field
from gradxform._transforms.options import check_dtype_option, check_flag

__all__ = ["ema", "trace"]


class TraceState(NamedTuple):
  """State of :func:`trace`: ``trace`` has the parameters' structure (dtype: ``accumulator_dtype``, else theirs)."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  trace: Any


class _Trace(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  decay: Any
  nesterov: bool = static_field(default=False)
  dampening: Any = None  # None: no dampening (then not a hyperparameter)
  dtype: Optional[Any] = static_field(default=None)
  public_names: tuple = static_field(default=())  # ((internal, public), ...): names for messages
  # optax's order: the update is built from b_t before it is rounded to ``dtype`` (torch's: after)
  unrounded_update: bool = static_field(default=False)
  State = TraceState

  @property
  def counts(self) -> bool:  # the step enters only torch's undamped first buffer
    return self.dampening is not None

  def init_fields(self, params):
    return {"trace": _tree.zeros_like("trace", params, self.dtype)}

  def apply(self, updates, state, params, hp, **extra):
    nesterov = self.nesterov
    scalars = {"decay": hp["decay"]}
    if self.dampening is not None:  # torch: the first buffer is g itself, undamped
      scalars["grad_coef"] = jnp.where(state.count == 0, 1.0, 1 - hp["dampening"]).astype(hp["dampening"].dtype)

    def rule(g, buf, decay, decay_rest, decay_forget, stored, grad_coef=None):
      exact = _guards.decayed(decay, buf, decay_forget) + (g if grad_coef is None else grad_coef * g)
      buf, = stored(exact)
      used = exact if self.unrounded_update else buf
      return (g + decay * used if nesterov else used), buf

    updates, buf = _tree.leafwise("trace", rule, updates, state.trace, scalars=scalars,
                                  check_dtype=(self.dtype is None,), stored=True, derive=_guards.decay_scalars())
    return updates, {"trace": buf}


def trace(decay: Any = 0.9, nesterov: bool = False, accumulator_dtype: Optional[Any] = None, *,
          dampening: Any = 0.0) -> GradientTransformation:
  """Heavy-ball momentum (Polyak 1964), or Nesterov momentum, as in ``torch.optim.SGD``.

  .. math::

     b_t = \\mu\\, b_{t-1} + (1 - d_t)\\, g_t, \\quad b_0 = 0, \\quad d_1 = 0,\\ d_{t>1} = d
     \\qquad u_t = b_t \\;\\text{(heavy ball)} \\quad\\text{or}\\quad
     u_t = g_t + \\mu\\, b_t \\;\\text{(Nesterov)}

  With ``b_0 = 0`` the first buffer equals ``g_1`` (undamped), as torch's. The
  learning rate is applied after this transform, so ``b`` holds raw gradients.
  The defaults (``d = 0``) are also ``optax.trace``.

  Args:
    decay: the momentum ``μ`` in [0, 1] (float, array or schedule).
    nesterov: use Nesterov's look-ahead form (Sutskever et al. 2013).
    accumulator_dtype: dtype of the buffer ``b`` (optax's name; default: the
      parameters' dtype). ``u_t`` is computed from ``b_t`` as stored.
    dampening: torch.optim.SGD's ``dampening`` ``d`` in [0, 1] (float, array
      or schedule); not applied to the first step, as torch. A literal 0 (the
      default) leaves it out; torch refuses it with Nesterov, and so does this.

  Returns:
    A transform with state :class:`TraceState`.

  References:
    Sutskever et al., 2013, "On the importance of initialization and momentum
    in deep learning", http://proceedings.mlr.press/v28/sutskever13.html
  """
  check_hyperparameter("trace", "decay", decay, low=0.0, high=1.0,
                       hint="decay is the momentum coefficient; typical values are 0.9 to 0.99.")
  nesterov = check_flag("trace", "nesterov", nesterov)
  dtype = check_dtype_option("trace", "accumulator_dtype", accumulator_dtype)
  if is_literal_zero(dampening):
    dampening = None
  else:
    check_hyperparameter("trace", "dampening", dampening, low=0.0, high=1.0,
                         hint="dampening d scales the gradient by (1 - d) in the buffer; torch's default is 0.")
    if nesterov:
      raise ValueError("trace: nesterov=True needs dampening=0 (as torch.optim.SGD): Nesterov's form "
                       "assumes an undamped buffer. Pass dampening=0 or nesterov=False.")
  return _Trace(decay, nesterov=nesterov, dampening=dampening, dtype=dtype)


class EmaState(NamedTuple):
  """State of :func:`ema`: ``ema`` has the parameters' structure (``mu`` in Adam)."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  ema: Any


class _Ema(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  decay: Any
  debias: bool = static_field(default=True)
  dtype: Optional[Any] = static_field(default=None)
  name: str = static_field(default="ema")
  nesterov: bool = static_field(default=False)
  public_names: tuple = static_field(default=())  # ((internal, public), ...): names for messages
  State = EmaState

  def init_fields(self, params):
    return {"ema": _tree.zeros_like(self.name, params, self.dtype)}

  def apply(self, updates, state, params, hp, **extra):
    t = step_number(state, hp, "decay")
    debias, nesterov = self.debias, self.nesterov

    def rule(g, m, decay, decay_rest, decay_forget, correction, next_correction, stored):
      m, = stored(_guards.decayed(decay, m, decay_forget) + decay_rest * g)
      if nesterov:  # optax's nesterov Adam: β m_t / (1 - β^{t+1}) + (1 - β) g_t / (1 - β^t)
        return (decay * m / next_correction + (1 - decay) * g / correction if debias
                else decay * m + (1 - decay) * g), m
      return (m / correction if debias else m), m

    scalars = {**hp, "correction": 1 - hp["decay"] ** t}
    if nesterov:
      scalars["next_correction"] = 1 - hp["decay"] ** (t + 1)
    else:
      rule = functools.partial(rule, next_correction=None)
    updates, m = _tree.leafwise(
        self.name, rule, updates, state.ema,
        scalars=scalars, check_dtype=(self.dtype is None,), stored=True, derive=_guards.decay_scalars())
    return updates, {"ema": m}


def ema(decay: Any = 0.9, debias: bool = True, dtype: Optional[Any] = None) -> GradientTransformation:
  """Exponential moving average of the updates, optionally bias-corrected.

  .. math::

     m_t = \\beta\\, m_{t-1} + (1 - \\beta)\\, g_t, \\quad m_0 = 0
     \\qquad u_t = m_t / (1 - \\beta^t) \\;\\text{(debias)} \\quad\\text{or}\\quad u_t = m_t

  This is Adam's first moment ``m̂`` (Kingma & Ba 2015, Algorithm 1).

  Args:
    decay: ``β`` in [0, 1) (float, array or schedule).
    debias: divide by ``1 - β^t`` to remove the bias towards the zero start.
    dtype: dtype of the stored average (default: the parameters' dtype). The
      update is computed from the average as stored (rounded to ``dtype``).

  Returns:
    A transform with state :class:`EmaState`.

  References:
    Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization",
    https://arxiv.org/abs/1412.6980
  """
  check_hyperparameter("ema", "decay", decay, low=0.0, high=1.0, high_open=True,
                       hint="decay is the averaging coefficient β; use a value in [0, 1) such as 0.9.")
  return _Ema(decay, debias=check_flag("ema", "debias", debias),
              dtype=check_dtype_option("ema", "dtype", dtype))
