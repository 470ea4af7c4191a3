"""Lion (Chen et al. 2023): the sign of an interpolated momentum."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, is_literal_zero, named
from gradxform._core.module import static_field
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.options import check_dtype_option
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["lion", "scale_by_lion"]


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
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  b1: Any
  b2: Any
  smooth_beta: Any = None  # the tanh's scale, mode "smooth" only (else not a hyperparameter)
  mu_dtype: Optional[Any] = static_field(default=None)
  mode: str = static_field(default="hard")
  State = ScaleByLionState

  def init_fields(self, params):
    return {"mu": _tree.zeros_like("scale_by_lion", params, self.mu_dtype)}

  def apply(self, updates, state, params, hp, **extra):
    if self.mode != "hard":
      def soft_rule(g, mu, b1, b2, smooth_beta=None):
        x = b1 * mu + (1 - b1) * g
        u = jnp.tanh(smooth_beta * x) if self.mode == "smooth" else jnp.where(jnp.abs(x) < 1, x, jnp.sign(x))
        return u, b2 * mu + (1 - b2) * g

      updates, mu = _tree.leafwise("scale_by_lion", soft_rule, updates, state.mu, scalars=hp,
                                   check_dtype=(self.mu_dtype is None,))
      return updates, {"mu": mu}

    def rule(g, mu, b1, b2):
      code = _sign_code(b1 * mu + (1 - b1) * g)
      # "+ 0 * code" adds exactly zero, but makes the new momentum read the code, so the loop that
      # overwrites mu runs after the one that read the old mu (see _sign_code).
      new_mu = (b2 * mu + (1 - b2) * g) + 0 * code.astype(g.dtype)
      return jnp.where(code == 2, jnp.nan, code.astype(g.dtype)), new_mu

    updates, mu = _tree.leafwise("scale_by_lion", rule, updates, state.mu, scalars=hp,
                                 check_dtype=(self.mu_dtype is None,))
    return updates, {"mu": mu}


def scale_by_lion(b1: Any = 0.9, b2: Any = 0.99, mu_dtype: Optional[Any] = None, *, mode: str = "hard",
                  smooth_beta: Any = 1.0) -> GradientTransformation:
  """Lion's direction (Chen et al. 2023, Algorithm 2).

  .. math::

     u_t = \\operatorname{sign}(\\beta_1 m_{t-1} + (1-\\beta_1) g_t), \\qquad
     m_t = \\beta_2 m_{t-1} + (1-\\beta_2) g_t

  ``mode`` replaces the sign as ``optax.scale_by_lion`` does: ``"smooth"``
  uses ``tanh(s·x)`` (``s = smooth_beta``), ``"refined"`` keeps ``x`` where
  ``|x| < 1`` and its sign elsewhere; ``"hard"`` (the default) is the sign.

  Args:
    b1: interpolation weight of the update, in [0, 1).
    b2: decay of the momentum, in [0, 1).
    mu_dtype: dtype of ``m`` (default: the parameters'). ``u_t`` reads
      ``m_{t-1}`` as stored (rounded to this dtype).
    mode: ``"hard"``, ``"smooth"`` or ``"refined"`` (above).
    smooth_beta: ``s > 0``, the tanh's scale in mode ``"smooth"`` (float,
      array or schedule).

  Both outputs read ``m_{t-1}``; the sign is materialized first (one byte
  per value) and the new momentum is ordered after it, so a jitted step that
  donates the state updates ``m`` in place, where ``optax.lion`` makes XLA:CPU
  copy it (``benchmarks/donated_state.py``). The numbers are those of the
  formula (the sign of ``-0.0`` is returned as ``+0.0``).

  References:
    Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms",
    https://arxiv.org/abs/2302.06675
  """
  check_betas("scale_by_lion", b1, b2)
  if mode not in ("hard", "smooth", "refined"):
    raise ValueError(f"scale_by_lion: mode={mode!r} is not one of 'hard' (the sign, Lion's rule), 'smooth' "
                     "(tanh(smooth_beta * x)) or 'refined' (x where |x| < 1, else its sign).")
  if mode == "smooth":
    check_hyperparameter("scale_by_lion", "smooth_beta", smooth_beta, low=0.0,
                         hint="smooth_beta scales the argument of tanh; use a positive value such as 1.0.")
  return _ScaleByLion(b1, b2, smooth_beta if mode == "smooth" else None,
                      mu_dtype=check_dtype_option("scale_by_lion", "mu_dtype", mu_dtype), mode=mode)


@named
def lion(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.99, weight_decay: Any = 0.0, *,
         mask: Any = None, mu_dtype: Any = None) -> GradientTransformation:
  """Lion (Chen et al. 2023): ``chain(scale_by_lion(b1, b2), add_decayed_weights(wd), scale_by_learning_rate(lr))``.

  ``p ← p − η(sign(β₁m + (1−β₁)g) + λp)``, decoupled weight decay as in the
  paper. (A literal 0 weight decay leaves that stage out.) ``mask`` chooses
  the leaves to decay, as :func:`add_decayed_weights` and ``optax.lion``. This is
  ``optax.lion``'s rule; its default weight decay is 1e-3, this one's 0.

  References:
    Chen et al., 2023, https://arxiv.org/abs/2302.06675
  """
  stages = [scale_by_lion(b1, b2, mu_dtype=mu_dtype)]
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay, mask))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
