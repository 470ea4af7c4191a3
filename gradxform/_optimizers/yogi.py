"""Yogi (Zaheer et al. 2018): Adam with an additive, sign-controlled second-moment update."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, named, step_number
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["scale_by_yogi", "yogi"]


class ScaleByYogiState(NamedTuple):
  """State of :func:`scale_by_yogi`: first moment ``mu`` (``m``), second moment ``nu`` (``v``)."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any


class _ScaleByYogi(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b1: Any
  b2: Any
  eps: Any
  eps_root: Any
  initial_accumulator_value: Any
  State = ScaleByYogiState

  def init_fields(self, params):
    zeros = _tree.zeros_like("scale_by_yogi", params)
    init = self.initial_accumulator_value
    # a complex leaf's state is its real view's: the initial value in both the real and the imaginary part
    fill = lambda z: jnp.asarray(init).astype(z.dtype) * (1 + 1j if jnp.iscomplexobj(z) else 1)
    full = lambda: jax.tree.map(lambda z: z + fill(z).astype(z.dtype), zeros)
    return {"mu": full(), "nu": full()}

  def apply(self, updates, state, params, hp, **extra):
    t = step_number(state, hp, "b1")

    def rule(g, m, v, b1, b2, eps, eps_root, c1, c2, initial_accumulator_value, stored):
      g2 = g * g
      m, v = stored(b1 * m + (1 - b1) * g, v - (1 - b2) * jnp.sign(v - g2) * g2)
      return (m / c1) / (jnp.sqrt(v / c2 + eps_root) + eps), m, v

    scalars = {**hp, "c1": 1 - hp["b1"] ** t, "c2": 1 - hp["b2"].astype(t.dtype) ** t}
    updates, mu, nu = _tree.leafwise("scale_by_yogi", rule, updates, state.mu, state.nu, scalars=scalars,
                                     stored=True)
    return updates, {"mu": mu, "nu": nu}


def scale_by_yogi(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-3, eps_root: Any = 0.0,
                  initial_accumulator_value: Any = 1e-6) -> GradientTransformation:
  """Yogi's direction (Zaheer et al. 2018, Algorithm 2), as ``optax.scale_by_yogi``.

  .. math::

     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
     v_t = v_{t-1} - (1-\\beta_2)\\, \\operatorname{sign}(v_{t-1} - g_t^2)\\, g_t^2, \\quad
     u_t = \\frac{m_t / (1-\\beta_1^t)}{\\sqrt{v_t / (1-\\beta_2^t) + \\epsilon_{root}} + \\epsilon}

  with ``m_0 = v_0 = v_init`` (``initial_accumulator_value``). The bias
  corrections are optax's (the paper has none; with ``v_init`` tiny they
  matter only in the first steps).

  Args:
    b1: first-moment decay ``β₁`` in [0, 1).
    b2: second-moment rate ``β₂`` in [0, 1).
    eps: ``ε ≥ 0`` outside the root (the paper's 1e-3).
    eps_root: ``ε_root ≥ 0`` inside the root.
    initial_accumulator_value: ``v_init ≥ 0``, the start of both moments.

  Returns:
    A transform with state :class:`ScaleByYogiState`.

  References:
    Zaheer et al., 2018, "Adaptive Methods for Nonconvex Optimization",
    https://papers.nips.cc/paper/8186-adaptive-methods-for-nonconvex-optimization
  """
  check_betas("scale_by_yogi", b1, b2, eps)
  check_hyperparameter("scale_by_yogi", "eps_root", eps_root, low=0.0,
                       hint="eps_root is added inside the square root; it must be >= 0.")
  check_hyperparameter("scale_by_yogi", "initial_accumulator_value", initial_accumulator_value, low=0.0,
                       hint="the moments start at this value; it must be >= 0 (optax: 1e-6).")
  return _ScaleByYogi(b1, b2, eps, eps_root, initial_accumulator_value)


@named
def yogi(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-3) -> GradientTransformation:
  """Yogi, as ``optax.yogi``: ``chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(lr))``.

  torch.optim has no Yogi; names and defaults are optax's.

  References:
    Zaheer et al., 2018, https://papers.nips.cc/paper/8186-adaptive-methods-for-nonconvex-optimization
  """
  return chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))
