"""Adan (Xie et al. 2022): adaptive Nesterov momentum from gradient differences, without extrapolated gradients."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, named, step_number
from gradxform._core.module import static_field
from gradxform._optimizers.optimistic import _reads_first
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.options import check_flag

__all__ = ["adan", "scale_by_adan"]


class ScaleByAdanState(NamedTuple):
  """State of :func:`scale_by_adan`: ``m``, ``v`` (of differences), ``n`` and the previous gradient ``prev_grad``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  m: Any
  v: Any
  n: Any
  prev_grad: Any


class _ScaleByAdan(Transform):
  b1: Any
  b2: Any
  b3: Any
  eps: Any
  eps_root: Any
  paper_weighting: bool = static_field(default=False)
  State = ScaleByAdanState

  def init_fields(self, params):
    zeros = lambda: _tree.zeros_like("scale_by_adan", params)
    return {"m": zeros(), "v": zeros(), "n": zeros(), "prev_grad": zeros()}

  def apply(self, updates, state, params, hp, **extra):
    t = step_number(state, hp, "b1")
    paper = self.paper_weighting

    def rule(g, m, v, n, prev, b1, b2, b3, eps, eps_root, first, one, c1, c2, c3, stored):
      diff = _reads_first(jnp.where(first > 0, jnp.zeros_like(g), g - prev), one)  # donated prev: no copy
      w = b2 if paper else 1 - b2  # optax 0.2.8 weighs by 1 - b2; the paper's 1 - β₂ is b2 (β₂ = 1 - b2)
      m, v = stored(b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * diff)
      m, v, n = stored(m, v, b3 * n + (1 - b3) * jnp.square(g + w * diff))
      u = (m / c1 + w * (v / c2)) / (jnp.sqrt(n / c3 + eps_root) + eps)
      return u, m, v, n, jnp.where(first < 0, diff, g)  # g, written after diff has read the old one

    power = lambda b: 1 - hp[b].astype(t.dtype) ** t
    scalars = {**hp, "first": (state.count == 0).astype(t.dtype), "one": (state.count >= 0).astype(t.dtype),
               "c1": power("b1"), "c2": power("b2"),
               "c3": power("b3")}
    updates, m, v, n, prev = _tree.leafwise("scale_by_adan", rule, updates, state.m, state.v, state.n,
                                            state.prev_grad, scalars=scalars, stored=True)
    return updates, {"m": m, "v": v, "n": n, "prev_grad": prev}


def scale_by_adan(b1: Any = 0.98, b2: Any = 0.92, b3: Any = 0.99, eps: Any = 1e-8,
                  eps_root: Any = 0.0, *, paper_weighting: bool = False) -> GradientTransformation:
  """Adan's direction (Xie et al. 2022, Algorithm 1), as ``optax.scale_by_adan``.

  .. math::

     \\Delta_t = g_t - g_{t-1} \\;(\\Delta_1 = 0), \\quad
     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) \\Delta_t,

     n_t = \\beta_3 n_{t-1} + (1-\\beta_3) \\big(g_t + w\\Delta_t\\big)^2, \\quad
     u_t = \\frac{\\hat m_t + w\\, \\hat v_t}{\\sqrt{\\hat n_t + \\epsilon_{root}} + \\epsilon}

  with ``x̂_t = x_t / (1-β^t)`` and all moments starting at 0 (as optax and
  the authors' code; the paper's box starts ``m`` and ``n`` at the first
  gradient). The ``β`` are decays (the weight of the past), as in Adam and
  the authors' code: the paper's ``β₁ = 0.02`` is ``b1 = 0.98``.

  The weight ``w`` of the difference is ``1 - b2`` by default, as optax 0.2.8
  computes it (gradxform's default is optax's where torch has no such
  optimizer). The paper and the authors' code use ``w = b2`` (0.92 rather than
  0.08 by default; optax PR 1715 changes optax to it): ``paper_weighting=True``.

  Args:
    b1: decay of the gradient average ``m`` in [0, 1).
    b2: decay of the gradient-difference average ``v`` in [0, 1).
    b3: decay of the squared term ``n`` in [0, 1).
    eps: ``ε ≥ 0`` outside the root.
    eps_root: ``ε_root ≥ 0`` inside the root.
    paper_weighting: weight the difference by ``b2`` (the paper's) instead of ``1 - b2`` (optax 0.2.8's).

  Returns:
    A transform with state :class:`ScaleByAdanState` (four parameter copies).

  References:
    Xie et al., 2022, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
    Optimizing Deep Models", https://arxiv.org/abs/2208.06677
  """
  paper_weighting = check_flag("scale_by_adan", "paper_weighting", paper_weighting)
  for name, beta in (("b1", b1), ("b2", b2), ("b3", b3)):
    check_hyperparameter("scale_by_adan", name, beta, low=0.0, high=1.0, high_open=True,
                         hint=f"{name} is a moment's decay rate; use a value in [0, 1) (optax: 0.98, 0.92, 0.99).")
  for name, value in (("eps", eps), ("eps_root", eps_root)):
    check_hyperparameter("scale_by_adan", name, value, low=0.0,
                         hint=f"{name} keeps the denominator away from zero; it must be >= 0.")
  return _ScaleByAdan(b1, b2, b3, eps, eps_root, paper_weighting=bool(paper_weighting))


@named
def adan(learning_rate: Any, b1: Any = 0.98, b2: Any = 0.92, b3: Any = 0.99, eps: Any = 1e-8,
         eps_root: Any = 1e-8, weight_decay: Any = 0.0,
         mask: Optional[Union[Any, Callable[[Any], Any]]] = None, *,
         paper_weighting: bool = False) -> GradientTransformation:
  """Adan with optax's interface and defaults.

  ``chain(scale_by_adan(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))``.

  ``p ← p − η(u_t + λp)``: decoupled weight decay added to the direction, as
  optax (the paper divides by ``1 + λη`` instead; equal to first order).
  torch.optim has no Adan; names and defaults are optax's (note
  ``eps_root=1e-8`` here, 0 in :func:`scale_by_adan`). It reproduces
  ``optax.adan`` 0.2.8 step for step; ``paper_weighting=True`` gives the
  paper's weighting of the gradient difference (see :func:`scale_by_adan`). (A literal 0 weight decay leaves that stage out.)

  References:
    Xie et al., 2022, https://arxiv.org/abs/2208.06677
  """
  paper_weighting = check_flag("adan", "paper_weighting", paper_weighting)
  stages = [scale_by_adan(b1, b2, b3, eps, eps_root, paper_weighting=paper_weighting)]
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay, mask))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
