"""Shampoo (Gupta et al. 2018; Anil et al. 2020): Kronecker-factored preconditioning, blocked and grafted."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from gradxform._core import guards as _guards
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, named
from gradxform._core.module import static_field
from gradxform._transforms import kronecker as kr
from gradxform._transforms.accumulators import trace
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["scale_by_shampoo", "shampoo", "ScaleByShampooState"]

GRAFTS = ("adam", "rmsprop", "adagrad", "sgd")


class ScaleByShampooState(NamedTuple):
  """State of :func:`scale_by_shampoo`.

  ``graft`` is the graft's second moment ``v`` (like the parameters; ``None``
  leaves for ``graft_type='sgd'``). ``factors`` and ``roots`` hold, for each
  parameter of two or more axes, a tuple with one array per axis of shape
  ``(*blocks, s, s)`` (``blocks`` is empty when no axis is longer than
  ``block_size``): the statistics ``F_a`` and their inverse roots. Vectors and
  scalars have empty tuples: their update is the graft's.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  graft: Any
  factors: Any
  roots: Any


def _inverse_root(factor, power, matrix_eps):
  """``(F + ε I)^(-1/p)`` by ``eigh`` (eigenvalues clipped at 0 first)."""
  values, vectors = kr.symmetric_eigh(factor)
  scaled = vectors * (jnp.maximum(values, 0) + matrix_eps)[..., None, :] ** (-1.0 / power)
  return jnp.matmul(scaled, jnp.swapaxes(vectors, -1, -2), precision=lax.Precision.HIGHEST)


class _ScaleByShampoo(Transform):
  b2: Any
  eps: Any
  matrix_eps: Any
  block_size: Optional[int] = static_field(default=1024)
  precondition_frequency: int = static_field(default=10)
  start_preconditioning_step: int = static_field(default=1)
  graft_type: str = static_field(default="adam")
  exponent: Optional[int] = static_field(default=None)
  merge_dims: bool = static_field(default=False)
  nu_dtype: Optional[Any] = static_field(default=None)
  factor_dtype: Optional[Any] = static_field(default=None)
  State = ScaleByShampooState

  def _layout(self, shape):
    return kr.layout(shape, min_ndim=2, merge_dims=self.merge_dims, block_size=self.block_size)

  def init_fields(self, params):
    name = self.transform_name()

    def factors(p):
      if p is None:
        return None
      dtype = self.factor_dtype or _tree.compute_dtype(jnp.result_type(p))
      lay = self._layout(jnp.shape(p))
      return kr.place_like(kr.zero_factors(lay, dtype), lay, p)

    graft = None if self.graft_type == "sgd" else _tree.zeros_like(name, params, self.nu_dtype)
    # two calls: separate buffers (a donated state must not hold one buffer twice)
    return {"graft": graft, "factors": jax.tree.map(factors, params, is_leaf=_tree.is_none),
            "roots": jax.tree.map(factors, params, is_leaf=_tree.is_none)}

  def apply(self, updates, state, params, hp, **extra):
    out_like = (updates, {k: getattr(state, k) for k in ("graft", "factors", "roots")})
    return kr.with_auto_axes(self._apply, (updates, state, hp), out_like)

  def _apply(self, updates, state, hp):
    name = self.transform_name()
    flat, treedef = jax.tree_util.tree_flatten_with_path(updates, is_leaf=_tree.is_none)
    _tree.check_floating(name, updates, "update")
    try:
      factors, roots = (treedef.flatten_up_to(getattr(state, k)) for k in ("factors", "roots"))
      nus = [None] * len(flat) if state.graft is None else treedef.flatten_up_to(state.graft)
    except (ValueError, TypeError):
      raise _tree._structure_error(name, "update", updates, state.factors) from None
    paths, leaves = [p for p, _ in flat], [g for _, g in flat]
    if state.graft is not None:
      _tree._check_leaves(name, "update", paths, leaves, nus)
    t = state.count + 1
    preconditioning = t >= self.start_preconditioning_step
    refresh = jnp.logical_and(preconditioning, (t - self.start_preconditioning_step)
                              % self.precondition_frequency == 0)

    grafts, new_nus, new_factors = [], [], []
    for g, nu, fs in zip(leaves, nus, factors):
      if g is None:
        grafts.append(None); new_nus.append(nu); new_factors.append(fs)
        continue
      dtype = _tree.compute_dtype(g.dtype)
      b2, eps = (jnp.asarray(hp[k], dtype) for k in ("b2", "eps"))
      g32 = g.astype(dtype)
      if self.graft_type == "sgd":
        graft = g32
      else:
        square = jnp.square(g32)
        v = nu.astype(dtype) + square if self.graft_type == "adagrad" else b2 * nu.astype(dtype) + (1 - b2) * square
        v = v.astype(nu.dtype)
        new_nus.append(v)
        v = v.astype(dtype)
        if self.graft_type == "adam":
          v = v / (1 - b2 ** t.astype(dtype))
        graft = g32 / (jnp.sqrt(v) + eps)
      if self.graft_type == "sgd":
        new_nus.append(None)
      grafts.append(graft)
      lay = self._layout(g.shape)
      gb = kr.to_blocks(g32, lay)
      new = []
      for a, f in enumerate(fs):
        decay = jnp.asarray(hp["b2"], f.dtype)
        new.append(decay * f + jnp.where(decay == 1, 1, 1 - decay) * kr.gram(gb, lay, a).astype(f.dtype))
      new_factors.append(tuple(new))

    def recompute(roots):
      out = []
      for g, fs in zip(leaves, new_factors):
        if g is None or not fs:
          out.append(fs)
          continue
        power = self.exponent or 2 * len(fs)
        out.append(tuple(_inverse_root(f, power, jnp.asarray(hp["matrix_eps"], f.dtype)).astype(f.dtype)
                         for f in fs))
      return out

    roots = lax.cond(refresh, recompute, lambda roots: roots, roots)

    outs = []
    for g, graft, rs in zip(leaves, grafts, roots):
      if g is None or not rs:
        outs.append(None if g is None else graft.astype(g.dtype))
        continue
      lay = self._layout(g.shape)
      gb = kr.to_blocks(g.astype(graft.dtype), lay)
      for a, r in enumerate(rs):
        gb = kr.multiply(gb, r.astype(graft.dtype), lay, a, transpose=False)
      graft_b = kr.to_blocks(graft, lay)
      scale = _guards.divide_or_zero(*jnp.broadcast_arrays(kr.block_norms(graft_b, lay), kr.block_norms(gb, lay)))
      grafted = kr.from_blocks(gb * scale, lay)
      outs.append(jnp.where(preconditioning, grafted, graft).astype(g.dtype))
    unflatten = lambda leaves: jax.tree.unflatten(treedef, leaves)
    return unflatten(outs), {"graft": None if state.graft is None else unflatten(new_nus),
                             "factors": unflatten(new_factors), "roots": unflatten(roots)}


def scale_by_shampoo(b2: Any = 0.999, eps: Any = 1e-8, matrix_eps: Any = 1e-6, *, block_size: Optional[int] = 1024,
                     precondition_frequency: int = 10, start_preconditioning_step: int = 1,
                     graft_type: str = "adam", exponent: Optional[int] = None, merge_dims: bool = False,
                     nu_dtype: Optional[Any] = None, factor_dtype: Optional[Any] = None) -> GradientTransformation:
  """Shampoo's direction (Gupta et al. 2018), blocked and grafted as Anil et al. (2020).

  For each block ``G`` of a matrix gradient (of a ``k``-axis tensor: one factor
  per axis, root ``2k``):

  .. math::

     L_t = \\beta_2 L_{t-1} + c\\, G_t G_t^\\top, \\quad
     R_t = \\beta_2 R_{t-1} + c\\, G_t^\\top G_t, \\quad
     c = 1 \\text{ if } \\beta_2 = 1 \\text{ else } 1-\\beta_2, \\\\
     P_t = (L + \\epsilon_M I)^{-1/4}\\, G_t\\, (R + \\epsilon_M I)^{-1/4}, \\quad
     u_t = P_t\\, \\frac{\\lVert D_t \\rVert}{\\lVert P_t \\rVert}

  ``β₂ = 1`` is Gupta et al.'s sum ``L += G Gᵀ`` (``ε_M I`` is their ``L₀``).
  The roots ``(F + ε_M I)^{-1/p}`` (``eigh``, eigenvalues clipped at 0) are
  recomputed from the current factors at step ``t = start_preconditioning_step``
  and every ``precondition_frequency`` steps after, under ``lax.cond`` inside
  the compiled step, and reused in between. ``D_t`` is the graft's direction
  (grafting, Agarwal et al. 2020): ``'adam'`` ``g / (√(v_t/(1-β₂^t)) + ε)``,
  ``'rmsprop'`` ``g / (√v_t + ε)`` (both ``v_t = β₂ v + (1-β₂) g²``),
  ``'adagrad'`` ``g / (√(v + g²) + ε)``, ``'sgd'`` ``g``; Shampoo supplies the
  direction in each block, the graft its norm. Before
  ``start_preconditioning_step`` the update is ``D_t``, and vectors and
  scalars always get ``D_t`` (the diagonal case).

  Axes longer than ``block_size`` are split into blocks (the last one padded
  with zeros, which is exact), each with its own factors and its own graft
  norm (Anil et al. 2020, Section 3.4). ``exponent`` overrides ``p = 2k`` (e.g.
  2 for ``L^{-1/2} G R^{-1/2}``). Momentum and weight decay are separate stages
  (see :func:`shampoo`).

  Args:
    b2: decay of the factors and of the graft's ``v``, in (0, 1] (1: sums).
    eps: the graft's ``ε``.
    matrix_eps: ``ε_M`` added to the factors' eigenvalues before the root.
    block_size: longest block side (``None``: no blocking).
    precondition_frequency: steps between two root computations.
    start_preconditioning_step: the first step (1-based) that uses Shampoo's direction.
    graft_type: ``'adam'``, ``'rmsprop'``, ``'adagrad'`` or ``'sgd'``.
    exponent: root ``p`` for every factor (default ``2k``).
    merge_dims: merge consecutive axes (as SOAP's option) before blocking.
    nu_dtype: dtype of the graft's ``v`` (default: the parameters').
    factor_dtype: dtype of factors and roots (default: the parameters', at least float32).

  Reproduces the NumPy algorithm of the papers (no torch/optax counterpart).

  References:
    Gupta et al., 2018, "Shampoo: Preconditioned Stochastic Tensor Optimization",
    https://arxiv.org/abs/1802.09568; Anil et al., 2020, "Scalable Second Order
    Optimization for Deep Learning", https://arxiv.org/abs/2002.09018
  """
  name = "scale_by_shampoo"
  check_hyperparameter(name, "b2", b2, low=0.0, high=1.0, low_open=True,
                       hint="b2 is the decay of the statistics; use a value in (0, 1], 1 for sums.")
  check_hyperparameter(name, "eps", eps, low=0.0, hint="eps is the graft's epsilon; use a value >= 0 such as 1e-8.")
  check_hyperparameter(name, "matrix_eps", matrix_eps, low=0.0, low_open=True,
                       hint="matrix_eps regularizes the factors before the inverse root; use a value > 0 such as 1e-6.")
  if graft_type not in GRAFTS:
    raise ValueError(f"{name}: graft_type={graft_type!r} is not one of {GRAFTS}.")
  if graft_type == "adam" and isinstance(b2, (int, float)) and b2 == 1:
    raise ValueError(f"{name}: b2=1 (sums) has no bias correction; use graft_type='adagrad' with b2=1.")
  for option, value in (("precondition_frequency", precondition_frequency),
                        ("start_preconditioning_step", start_preconditioning_step),
                        ("block_size", 1 if block_size is None else block_size),
                        ("exponent", 1 if exponent is None else exponent)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}: {option}={value!r} must be a positive integer.")
  return _ScaleByShampoo(b2, eps, matrix_eps, block_size=block_size, precondition_frequency=precondition_frequency,
                         start_preconditioning_step=start_preconditioning_step, graft_type=graft_type,
                         exponent=exponent, merge_dims=bool(merge_dims), nu_dtype=nu_dtype, factor_dtype=factor_dtype)


@named
def shampoo(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, matrix_eps: Any = 1e-6,
            weight_decay: Any = 0.0, block_size: Optional[int] = 1024, precondition_frequency: int = 10,
            start_preconditioning_step: int = 1, graft_type: str = "adam", nesterov: bool = False,
            exponent: Optional[int] = None, merge_dims: bool = False, *, nu_dtype: Any = None,
            factor_dtype: Any = None) -> GradientTransformation:
  """Shampoo: ``chain(scale_by_shampoo(...), trace(b1, nesterov), add_decayed_weights(wd), scale_by_learning_rate(lr))``.

  Momentum (``b = b1·b + u``, as ``torch.optim.SGD``) acts on the grafted
  direction; weight decay is decoupled (``p ← p − η(b + λp)``). ``b1=0`` and
  ``weight_decay=0`` leave their stages out.

  References:
    Gupta et al., 2018, https://arxiv.org/abs/1802.09568; Anil et al., 2020,
    https://arxiv.org/abs/2002.09018
  """
  stages = [scale_by_shampoo(b2, eps, matrix_eps, block_size=block_size,
                             precondition_frequency=precondition_frequency,
                             start_preconditioning_step=start_preconditioning_step, graft_type=graft_type,
                             exponent=exponent, merge_dims=merge_dims, nu_dtype=nu_dtype,
                             factor_dtype=factor_dtype)]
  if not is_literal_zero(b1):
    stages.append(trace(b1, nesterov=nesterov))
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
