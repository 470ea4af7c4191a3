"""AdaBelief (Zhuang et al. 2020): Adam whose denominator tracks the gradient's deviation from its momentum."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, named, step_number
from gradxform._core.module import static_field
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.options import check_dtype_option
from gradxform._transforms.options import check_flag

__all__ = ["adabelief", "scale_by_belief"]


class ScaleByBeliefState(NamedTuple):
  """State of :func:`scale_by_belief`: the momentum ``mu`` (``m``) and the belief ``nu`` (``s``)."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any


class _ScaleByBelief(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b1: Any
  b2: Any
  eps: Any
  eps_root: Any
  nesterov: bool = static_field(default=False)
  mu_dtype: Optional[Any] = static_field(default=None)
  nu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByBeliefState

  def init_fields(self, params):
    return {"mu": _tree.zeros_like("scale_by_belief", params, self.mu_dtype),
            "nu": _tree.zeros_like("scale_by_belief", params, self.nu_dtype)}

  def apply(self, updates, state, params, hp, **extra):
    t = step_number(state, hp, "b1")
    nesterov = self.nesterov

    def rule(g, m, s, b1, b2, eps, eps_root, c1, c1_next, c2, stored):
      m, = stored(b1 * m + (1 - b1) * g)
      # eps_root added to the decayed s first: so written, XLA:CPU computes s_t once (instead of again
      # inside the parameter update), and a donated s is updated in place (tests/test_donation.py)
      m, s = stored(m, (b2 * s + eps_root) + (1 - b2) * ((g - m) * (g - m)))
      m_hat = b1 * m / c1_next + (1 - b1) * g / c1 if nesterov else m / c1
      return m_hat / (jnp.sqrt(s / c2) + eps), m, s

    b1, b2 = hp["b1"], hp["b2"].astype(t.dtype)
    scalars = {**hp, "c1": 1 - b1 ** t, "c1_next": 1 - b1 ** (t + 1), "c2": 1 - b2 ** t}
    updates, mu, nu = _tree.leafwise("scale_by_belief", rule, updates, state.mu, state.nu, scalars=scalars,
                                     check_dtype=(self.mu_dtype is None, self.nu_dtype is None), stored=True)
    return updates, {"mu": mu, "nu": nu}


def scale_by_belief(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-16, eps_root: Any = 1e-16, *,
                    nesterov: bool = False, mu_dtype: Optional[Any] = None,
                    nu_dtype: Optional[Any] = None) -> GradientTransformation:
  """AdaBelief's direction (Zhuang et al. 2020, Algorithm 2), as ``optax.scale_by_belief``.

  .. math::

     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
     s_t = \\beta_2 s_{t-1} + (1-\\beta_2) (g_t - m_t)^2 + \\epsilon_{root}, \\quad
     u_t = \\frac{m_t / (1-\\beta_1^t)}{\\sqrt{s_t / (1-\\beta_2^t)} + \\epsilon}

  With ``nesterov`` the numerator is
  ``β₁ m_t / (1-β₁^{t+1}) + (1-β₁) g_t / (1-β₁^t)`` (Dozat 2016), as optax.
  optax's defaults (``eps = eps_root = 1e-16``); the paper's are ``eps=1e-8,
  eps_root=0``. ``u_t`` is computed from ``m_t`` and ``s_t`` as stored: with
  float16 moments and these tiny eps, ``s_t`` can underflow to 0 and the
  update overflow, so keep ``nu_dtype=jnp.float32`` (or a larger eps) there.

  Args:
    b1: decay of the momentum ``β₁`` in [0, 1).
    b2: decay of the belief ``β₂`` in [0, 1).
    eps: ``ε ≥ 0`` outside the root.
    eps_root: ``ε_root ≥ 0`` added to ``s_t`` at every step (stored with it).
    nesterov: Nesterov's numerator.
    mu_dtype, nu_dtype: dtypes of ``m`` and ``s`` (default: the parameters').

  Returns:
    A transform with state :class:`ScaleByBeliefState`.

  References:
    Zhuang et al., 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief
    in Observed Gradients", https://arxiv.org/abs/2010.07468
  """
  nesterov = check_flag("scale_by_belief", "nesterov", nesterov)
  mu_dtype = check_dtype_option("scale_by_belief", "mu_dtype", mu_dtype)
  nu_dtype = check_dtype_option("scale_by_belief", "nu_dtype", nu_dtype)
  check_betas("scale_by_belief", b1, b2, eps)
  check_hyperparameter("scale_by_belief", "eps_root", eps_root, low=0.0,
                       hint="eps_root is added to the belief s_t at each step; it must be >= 0, e.g. 1e-16.")
  return _ScaleByBelief(b1, b2, eps, eps_root, nesterov=bool(nesterov), mu_dtype=mu_dtype, nu_dtype=nu_dtype)


@named
def adabelief(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-16, eps_root: Any = 1e-16, *,
              nesterov: bool = False, mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """AdaBelief, as ``optax.adabelief``: ``chain(scale_by_belief(b1, b2, eps, eps_root), scale_by_learning_rate(lr))``.

  torch.optim has no AdaBelief; the defaults are optax's (``eps=eps_root=1e-16``;
  the paper's reference code uses ``eps=1e-16`` too, its algorithm box 1e-8).

  References:
    Zhuang et al., 2020, https://arxiv.org/abs/2010.07468
  """
  nesterov = check_flag("adabelief", "nesterov", nesterov)
  mu_dtype = check_dtype_option("adabelief", "mu_dtype", mu_dtype)
  nu_dtype = check_dtype_option("adabelief", "nu_dtype", nu_dtype)
  return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
               scale_by_learning_rate(learning_rate))
