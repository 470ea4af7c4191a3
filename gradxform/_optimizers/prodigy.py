"""Prodigy (Mishchenko & Defazio 2023): Adam whose step size ``d`` is estimated on the fly."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, named, step_number
from gradxform._core.module import static_field
from gradxform._core.objective import scalar_dtype, vdot
from gradxform._optimizers.dog import copy_params
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["ScaleByProdigyState", "prodigy", "scale_by_prodigy"]


def l1_norm(tree: Any, dtype: Any) -> jax.Array:
  """``Σ |x_i|`` over all leaves, in ``dtype``."""
  return _tree.sum_of([jnp.sum(jnp.abs(jnp.asarray(x).astype(dtype))) for x in jax.tree.leaves(tree)], dtype)


def check_d_options(name: str, learning_rate: Any, eps: Any, estim_lr0: Any, weight_decay: Any) -> None:
  """Checks the hyperparameters Prodigy and D-Adaptation share."""
  check_hyperparameter(name, "learning_rate", learning_rate, low=0.0,
                       hint="learning_rate multiplies the estimated step size d (a schedule's shape); e.g. 1.0.")
  check_hyperparameter(name, "eps", eps, low=0.0, hint="eps keeps Adam's denominator away from zero; e.g. 1e-8.")
  check_hyperparameter(name, "estim_lr0", estim_lr0, low=0.0, low_open=True,
                       hint="estim_lr0 is the initial under-estimate d_0 of the step size; e.g. 1e-6.")
  check_hyperparameter(name, "weight_decay", weight_decay, low=0.0,
                       hint="weight_decay must be non-negative (decoupled, scaled by the step size).")


class ScaleByProdigyState(NamedTuple):
  """State of :func:`scale_by_prodigy`.

  ``d`` is the estimated step size ``d_t`` (optax's ``estim_lr``) and
  ``numerator_weighted`` the running numerator ``r_t`` of its estimate (scalars
  in the parameters' widest dtype, at least float32); ``exp_avg``,
  ``exp_avg_sq`` and ``grad_sum`` are ``m``, ``v`` and ``s``; ``params0`` is ``x_0``.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  exp_avg: Any
  exp_avg_sq: Any
  grad_sum: Any
  params0: Any
  d: jax.Array
  numerator_weighted: jax.Array

  def diagnostics(self) -> dict:
    """``d``: the estimated step size (for :func:`gradxform.diagnostics`)."""
    return {"d": self.d}


class _ScaleByProdigy(Transform):
  learning_rate: Any
  b1: Any
  b2: Any
  b3: Any
  eps: Any
  estim_lr0: Any
  estim_lr_coef: Any
  weight_decay: Any
  safeguard_warmup: bool = static_field(default=False)
  State = ScaleByProdigyState

  def init_fields(self, params):
    name = "scale_by_prodigy"
    dtype = scalar_dtype(params)
    return {"exp_avg": _tree.zeros_like(name, params), "exp_avg_sq": _tree.zeros_like(name, params),
            "grad_sum": _tree.zeros_like(name, params), "params0": copy_params(name, params),
            "d": self.resolve(jnp.zeros([], jnp.int32))["estim_lr0"].astype(dtype),
            "numerator_weighted": jnp.zeros([], dtype)}

  def apply(self, updates, state, params, hp, **extra):
    name = "scale_by_prodigy"
    _tree.require_params(name, params, "measure the distance travelled from x_0")
    dtype = state.d.dtype
    hp = {k: v.astype(dtype) for k, v in hp.items()}
    b1, b2 = hp["b1"], hp["b2"]
    b3 = jnp.sqrt(b2) if self.b3 is None else hp["b3"]
    t = step_number(state, hp, "b1")
    d, d0 = state.d, hp["estim_lr0"]
    dlr = d * hp["learning_rate"] * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    travelled = jax.tree.map(lambda x0, x: x0 - x, state.params0, params)
    numerator = b3 * state.numerator_weighted + (d / d0) * dlr * vdot(updates, travelled, dtype)
    sum_weight = d if self.safeguard_warmup else dlr

    def moments(g, m, v, s, d, b1, b2, b3, sum_weight, d0, stored):
      dg = d * g
      m, v, s = stored(b1 * m + (1 - b1) * dg, b2 * v + (1 - b2) * dg * dg, b3 * s + sum_weight * dg / d0)
      return g, m, v, s

    scalars = {"d": d, "b1": b1, "b2": b2, "b3": b3, "sum_weight": sum_weight, "d0": d0}
    _, m, v, s = _tree.leafwise(name, moments, updates, state.exp_avg, state.exp_avg_sq, state.grad_sum,
                                scalars=scalars, stored=True)
    denominator = l1_norm(s, dtype)
    # optax's estimate is 0/0 = NaN while every gradient so far was zero; d then stays as it was
    estimate = hp["estim_lr_coef"] * numerator / jnp.where(denominator > 0, denominator, 1)
    new_d = jnp.where(denominator > 0, jnp.maximum(d, estimate), d)

    def step(g, m, v, p, dlr, new_d, eps, weight_decay):
      return dlr * (m / (jnp.sqrt(v) + new_d * eps) + weight_decay * p), m, v, p

    updates, _, _, _ = _tree.leafwise(name, step, updates, m, v, params, check_dtype=(False, False, False),
                                      scalars={"dlr": dlr, "new_d": new_d, "eps": hp["eps"],
                                               "weight_decay": hp["weight_decay"]})
    return updates, {"exp_avg": m, "exp_avg_sq": v, "grad_sum": s, "d": new_d, "numerator_weighted": numerator}


def scale_by_prodigy(learning_rate: Any = 1.0, b1: Any = 0.9, b2: Any = 0.999, b3: Any = None, eps: Any = 1e-8,
                     estim_lr0: Any = 1e-6, estim_lr_coef: Any = 1.0, weight_decay: Any = 0.0,
                     safeguard_warmup: bool = False) -> GradientTransformation:
  """Prodigy's step (Mishchenko & Defazio 2023, Algorithm 4), as ``optax.contrib.prodigy``.

  With ``η_t`` the learning rate (a multiplier, 1 by default) and
  ``d̂_t = d_t η_t √(1−β₂ᵗ)/(1−β₁ᵗ)``:

  .. math::

     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) d_t g_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) d_t^2 g_t^2, \\\\
     r_t = \\beta_3 r_{t-1} + \\frac{d_t}{d_0} \\hat d_t \\langle g_t, x_0 - x_t \\rangle, \\quad
     s_t = \\beta_3 s_{t-1} + \\frac{\\hat d_t}{d_0} d_t g_t, \\\\
     d_{t+1} = \\max\\Big(d_t, c\\,\\frac{r_t}{\\|s_t\\|_1}\\Big), \\quad
     u_t = \\hat d_t \\Big(\\frac{m_t}{\\sqrt{v_t} + d_{t+1}\\epsilon} + \\lambda x_t\\Big)

  (``safeguard_warmup`` puts ``d_t`` in place of ``d̂_t`` in ``s_t``.) The
  output is the step to subtract: follow it with ``scale_by_learning_rate(1.0)``
  (the learning rate is already in ``d̂_t``, and also enters ``d``'s estimate,
  so it is not a separate stage), or use :func:`prodigy`. While every gradient
  so far is zero optax's ``d`` becomes NaN; here it keeps its value.

  Args:
    learning_rate: ``η ≥ 0``, a multiplier of the estimated step size (its
      schedule's shape, e.g. a cosine decay from 1.0).
    b1, b2: Adam's decay rates (optax's ``betas``).
    b3: ``β₃``, the decay of ``d``'s estimate (optax's ``beta3``; default ``√β₂``).
    eps: ``ε`` of Adam's denominator, scaled by ``d``.
    estim_lr0: ``d_0 > 0``, the initial under-estimate of the step size.
    estim_lr_coef: ``c``, multiplies each estimate of ``d``.
    weight_decay: ``λ ≥ 0``, decoupled weight decay scaled by ``d̂_t``.
    safeguard_warmup: leave the learning rate out of ``s_t`` (for warmup).

  Returns:
    A transform with state :class:`ScaleByProdigyState`; ``d`` is the estimated step size.

  References:
    Mishchenko & Defazio, 2023, "Prodigy: An Expeditiously Adaptive
    Parameter-Free Learner", https://arxiv.org/abs/2306.06101
  """
  name = "scale_by_prodigy"
  check_betas(name, b1, b2)
  if b3 is not None:
    check_hyperparameter(name, "b3", b3, low=0.0, high=1.0, high_open=True,
                         hint="b3 is the decay of the step-size estimate; use a value in [0, 1) or None (√b2).")
  check_d_options(name, learning_rate, eps, estim_lr0, weight_decay)
  check_hyperparameter(name, "estim_lr_coef", estim_lr_coef, low=0.0, low_open=True,
                       hint="estim_lr_coef multiplies each estimate of d; e.g. 1.0.")
  if not isinstance(safeguard_warmup, bool):
    raise TypeError(f"{name}: safeguard_warmup must be True or False, got {safeguard_warmup!r}.")
  return _ScaleByProdigy(learning_rate, b1, b2, b3, eps, estim_lr0, estim_lr_coef, weight_decay,
                         safeguard_warmup=safeguard_warmup)


@named
def prodigy(learning_rate: Any = 1.0, b1: Any = 0.9, b2: Any = 0.999, b3: Optional[Any] = None, eps: Any = 1e-8,
            estim_lr0: Any = 1e-6, estim_lr_coef: Any = 1.0, weight_decay: Any = 0.0,
            safeguard_warmup: bool = False) -> GradientTransformation:
  """Prodigy, as ``optax.contrib.prodigy``: ``chain(scale_by_prodigy(...), scale_by_learning_rate(1.0))``.

  Learning-rate-free AdamW: ``x ← x − d̂_t (m_t/(√v_t + d ε) + λ x)`` with
  the step size ``d`` estimated from the distance travelled (see
  :func:`scale_by_prodigy`; ``state[0].d`` holds it). ``learning_rate`` is a
  multiplier of ``d`` (1.0; the paper recommends a cosine or linear decay from 1).

  References:
    Mishchenko & Defazio, 2023, https://arxiv.org/abs/2306.06101
  """
  return chain(scale_by_prodigy(learning_rate, b1, b2, b3, eps, estim_lr0, estim_lr_coef, weight_decay,
                                safeguard_warmup), scale_by_learning_rate(1.0))
