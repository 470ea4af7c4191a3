"""NovoGrad (Ginsburg et al. 2019): one second moment per layer, momentum on normalized gradients."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, is_literal_zero, named
from gradxform._core.module import static_field
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.options import check_dtype_option

__all__ = ["novograd", "scale_by_novograd"]

_NAME = "scale_by_novograd"


class ScaleByNovogradState(NamedTuple):
  """State of :func:`scale_by_novograd`: momentum ``mu`` (parameter-shaped), ``nu`` one scalar per leaf."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any  # one scalar per leaf, in the parameter's dtype


class _ScaleByNovograd(Transform):
  b1: Any
  b2: Any
  eps: Any
  eps_root: Any
  weight_decay: Any
  mu_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByNovogradState

  def init_fields(self, params):
    _tree.check_floating(_NAME, params, "parameter")
    nu = jax.tree.map(lambda p: jnp.zeros([], jnp.result_type(p)), params)
    return {"mu": _tree.zeros_like(_NAME, params, self.mu_dtype), "nu": nu}

  def apply(self, updates, state, params, hp, **extra):
    decays = not is_literal_zero(self.weight_decay)
    if decays:
      _tree.require_params(_NAME, params, "add weight decay")
    _tree.check_floating(_NAME, updates, "update")
    if jax.tree.structure(updates, is_leaf=_tree.is_none) != jax.tree.structure(state.mu, is_leaf=_tree.is_none):
      raise _tree._structure_error(_NAME, "update", updates, state.mu)
    first = state.count == 0

    def layer_moment(g, nu):  # nu_t = ‖g‖² at the first step, then an EMA of ‖g‖²
      if g is None:
        return nu
      dtype = _tree.compute_dtype(jnp.result_type(g))
      sq = jnp.sum(jnp.square(jnp.asarray(g, dtype)))
      b2 = hp["b2"].astype(dtype)
      return jnp.where(first, sq, b2 * nu.astype(dtype) + (1 - b2) * sq).astype(nu.dtype)

    nu = jax.tree.map(layer_moment, updates, state.nu, is_leaf=_tree.is_none)
    nu_like_g = jax.tree.map(lambda g, n: None if g is None else jnp.broadcast_to(n, jnp.shape(g)),
                             updates, nu, is_leaf=_tree.is_none)

    def rule(g, m, n, p, b1, b2, eps, eps_root, weight_decay, stored):
      step = g / (jnp.sqrt(n + eps_root) + eps)
      if p is not None:
        step = step + weight_decay * p
      m, = stored(b1 * m + step)  # m starts at 0, so m_1 is the first step itself
      return m, m, None, None

    updates, mu, _, _ = _tree.leafwise(_NAME, rule, updates, state.mu, nu_like_g, params if decays else None,
                                       scalars=hp, check_dtype=(self.mu_dtype is None, False, False),
                                       stored=True)
    return updates, {"mu": mu, "nu": nu}


def scale_by_novograd(b1: Any = 0.9, b2: Any = 0.25, eps: Any = 1e-8, eps_root: Any = 0.0,
                      weight_decay: Any = 0.0, mu_dtype: Optional[Any] = None) -> GradientTransformation:
  """NovoGrad's direction (Ginsburg et al. 2019, Algorithm 1), as ``optax.scale_by_novograd``.

  .. math::

     v_1 = \\|g_1\\|^2, \\quad v_t = \\beta_2 v_{t-1} + (1-\\beta_2) \\|g_t\\|^2, \\qquad
     m_t = \\beta_1 m_{t-1} + \\frac{g_t}{\\sqrt{v_t + \\epsilon_{root}} + \\epsilon} + \\lambda p, \\quad
     u_t = m_t

  per leaf ("layer"): ``v`` is one number per leaf, ``m`` has the
  parameter's shape (``m_0 = 0``). No bias correction, as in the paper.

  Args:
    b1: momentum ``β₁`` in [0, 1).
    b2: decay of the layer's squared norm ``β₂`` in [0, 1) (0.25, optax's default).
    eps: ``ε ≥ 0`` outside the root.
    eps_root: ``ε_root ≥ 0`` inside the root.
    weight_decay: ``λ ≥ 0``, added inside the momentum (needs ``params``;
      a literal 0 does not).
    mu_dtype: dtype of ``m`` (default: the parameters').

  Returns:
    A transform with state :class:`ScaleByNovogradState` (one parameter copy).

  References:
    Ginsburg et al., 2019, "Stochastic Gradient Methods with Layer-wise
    Adaptive Moments for Training of Deep Networks", https://arxiv.org/abs/1905.11286
  """
  mu_dtype = check_dtype_option("scale_by_novograd", "mu_dtype", mu_dtype)
  check_betas(_NAME, b1, b2, eps)
  check_hyperparameter(_NAME, "eps_root", eps_root, low=0.0, hint="eps_root must be >= 0.")
  check_hyperparameter(_NAME, "weight_decay", weight_decay, low=0.0,
                       hint="weight_decay must be non-negative (e.g. 1e-3).")
  return _ScaleByNovograd(b1, b2, eps, eps_root, weight_decay, mu_dtype=mu_dtype)


@named
def novograd(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.25, eps: Any = 1e-6, eps_root: Any = 0.0,
             weight_decay: Any = 0.0) -> GradientTransformation:
  """NovoGrad, as ``optax.novograd``.

  ``chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay), scale_by_learning_rate(lr))``.

  torch.optim has no NovoGrad; names and defaults are optax's (``eps=1e-6``).

  References:
    Ginsburg et al., 2019, https://arxiv.org/abs/1905.11286
  """
  return chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay), scale_by_learning_rate(learning_rate))
