"""Momentum-like accumulators: ``trace`` (heavy ball, Nesterov) and ``ema``."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter, step_number
from gradxform._core.module import static_field

__all__ = ["ema", "trace"]


class TraceState(NamedTuple):
  """State of :func:`trace`: ``trace`` has the parameters' structure and dtypes."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  trace: Any


class _Trace(Transform):
  decay: Any
  nesterov: bool = static_field(default=False)
  State = TraceState

  def init_fields(self, params):
    return {"trace": _tree.zeros_like("trace", params)}

  def apply(self, updates, state, params, hp, **extra):
    nesterov = self.nesterov

    def rule(g, buf, decay, stored):
      buf, = stored(decay * buf + g)
      return (g + decay * buf if nesterov else buf), buf

    updates, buf = _tree.leafwise("trace", rule, updates, state.trace, scalars=hp, stored=True)
    return updates, {"trace": buf}


def trace(decay: Any = 0.9, nesterov: bool = False) -> GradientTransformation:
  """Heavy-ball momentum (Polyak 1964), or Nesterov momentum, as in ``torch.optim.SGD``.

  .. math::

     b_t = \\mu\\, b_{t-1} + g_t, \\quad b_0 = 0
     \\qquad u_t = b_t \\;\\text{(heavy ball)} \\quad\\text{or}\\quad
     u_t = g_t + \\mu\\, b_t \\;\\text{(Nesterov)}

  With ``b_0 = 0`` the first buffer equals ``g_1``, as torch's. The learning
  rate is applied after this transform, so ``b`` holds raw gradients.

  Args:
    decay: the momentum ``μ`` in [0, 1] (float, array or schedule).
    nesterov: use Nesterov's look-ahead form (Sutskever et al. 2013).

  Returns:
    A transform with state :class:`TraceState`.

  References:
    Sutskever et al., 2013, "On the importance of initialization and momentum
    in deep learning", http://proceedings.mlr.press/v28/sutskever13.html
  """
  check_hyperparameter("trace", "decay", decay, low=0.0, high=1.0,
                       hint="decay is the momentum coefficient; typical values are 0.9 to 0.99.")
  return _Trace(decay, nesterov=bool(nesterov))


class EmaState(NamedTuple):
  """State of :func:`ema`: ``ema`` has the parameters' structure (``mu`` in Adam)."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  ema: Any


class _Ema(Transform):
  decay: Any
  debias: bool = static_field(default=True)
  dtype: Optional[Any] = static_field(default=None)
  name: str = static_field(default="ema")
  State = EmaState

  def init_fields(self, params):
    return {"ema": _tree.zeros_like(self.name, params, self.dtype)}

  def apply(self, updates, state, params, hp, **extra):
    t = step_number(state, hp, "decay")
    debias = self.debias

    def rule(g, m, decay, correction, stored):
      m, = stored(decay * m + (1 - decay) * g)
      return (m / correction if debias else m), m

    correction = 1 - hp["decay"] ** t
    updates, m = _tree.leafwise(
        self.name, rule, updates, state.ema,
        scalars={**hp, "correction": correction}, check_dtype=(self.dtype is None,), stored=True)
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
  return _Ema(decay, debias=bool(debias), dtype=dtype)
