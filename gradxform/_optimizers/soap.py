"""SOAP (Vyas et al. 2024): Adam in the eigenbasis of Shampoo's Kronecker factors, as the reference code."""

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
from gradxform._transforms import kronecker as kr
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["scale_by_soap", "soap", "ScaleBySoapState"]


class ScaleBySoapState(NamedTuple):
  """State of :func:`scale_by_soap`.

  ``mu`` (Adam's ``m``, kept in the eigenbasis) and ``nu`` (``v``, in the
  eigenbasis) mirror the parameters. ``factors`` and ``eigenbases`` hold, for
  each parameter, a tuple with one ``(d, d)`` matrix per axis (``None`` for an
  axis without preconditioner: longer than ``max_precond_dim``, or a vector
  without ``precondition_1d``); with ``merge_dims`` the axes are the merged ones.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any
  nu: Any
  factors: Any
  eigenbases: Any


def _project(x, bases, lay, back):
  """``Q_aᵀ`` (or ``Q_a`` when ``back``) applied to every preconditioned axis of ``x`` (leaf shape)."""
  xb = kr.to_blocks(x, lay)
  for axis, q in enumerate(bases):
    if q is not None:
      xb = kr.multiply(xb, q, lay, axis, transpose=not back)
  return kr.from_blocks(xb, lay)


def _eigenbasis(factor):
  """The reference's first basis: ``eigh(F + 1e-30 I)``, eigenvectors by descending eigenvalue."""
  eye = jnp.eye(factor.shape[-1], dtype=factor.dtype)
  _, vectors = kr.symmetric_eigh(factor + 1e-30 * eye)
  return vectors[..., ::-1]


def _power_qr(factor, basis, nu, lay, axis):
  """One power iteration and QR from the last basis; ``v`` follows the re-sorted columns."""
  estimated = jnp.sum(basis * jnp.matmul(factor, basis, precision=lax.Precision.HIGHEST), axis=-2)
  order = jnp.argsort(-estimated, stable=True)
  nu = jnp.take(nu, order, axis=axis)
  basis = jnp.take(basis, order, axis=-1)
  q, _ = jnp.linalg.qr(jnp.matmul(factor, basis, precision=lax.Precision.HIGHEST))
  return q, nu


class _ScaleBySoap(Transform):
  b1: Any
  b2: Any
  shampoo_beta: Any
  eps: Any
  precondition_frequency: int = static_field(default=10)
  max_precond_dim: int = static_field(default=10000)
  merge_dims: bool = static_field(default=False)
  precondition_1d: bool = static_field(default=False)
  normalize_grads: bool = static_field(default=False)
  correct_bias: bool = static_field(default=True)
  mu_dtype: Optional[Any] = static_field(default=None)
  nu_dtype: Optional[Any] = static_field(default=None)
  factor_dtype: Optional[Any] = static_field(default=None)
  State = ScaleBySoapState

  def _layout(self, shape):
    return kr.layout(shape, min_ndim=1 if self.precondition_1d else 2, merge_dims=self.merge_dims,
                     max_dim=self.max_precond_dim)

  def init_fields(self, params):
    name = self.transform_name()

    def factors(p, basis):
      if p is None:
        return None
      dtype = self.factor_dtype or _tree.compute_dtype(jnp.result_type(p))
      lay = self._layout(jnp.shape(p))
      zeros = kr.zero_factors(lay, dtype)
      if basis:
        zeros = tuple(None if z is None else jnp.broadcast_to(jnp.eye(z.shape[-1], dtype=dtype), z.shape)
                      for z in zeros)
      return kr.place_like(zeros, lay, p)

    return {"mu": _tree.zeros_like(name, params, self.mu_dtype),
            "nu": _tree.zeros_like(name, params, self.nu_dtype),
            "factors": jax.tree.map(lambda p: factors(p, False), params, is_leaf=_tree.is_none),
            "eigenbases": jax.tree.map(lambda p: factors(p, True), params, is_leaf=_tree.is_none)}

  def apply(self, updates, state, params, hp, **extra):
    out_like = (updates, {k: getattr(state, k) for k in ("mu", "nu", "factors", "eigenbases")})
    return kr.with_auto_axes(self._apply, (updates, state, hp), out_like)

  def _apply(self, updates, state, hp):
    name = self.transform_name()
    flat, treedef = jax.tree_util.tree_flatten_with_path(updates, is_leaf=_tree.is_none)
    _tree.check_floating(name, updates, "update")
    try:
      fields = [treedef.flatten_up_to(getattr(state, k)) for k in ("mu", "nu", "factors", "eigenbases")]
    except (ValueError, TypeError):
      raise _tree._structure_error(name, "update", updates, state.mu) from None
    grads = [g for _, g in flat]
    _tree._check_leaves(name, "update", [p for p, _ in flat], grads, fields[0])
    scalars = dict(hp, shampoo_beta=hp["b2"] if self.shampoo_beta is None else hp["shampoo_beta"],
                   step=state.count.astype(hp["b1"].dtype))  # the reference's step: the first call only sets up
    # The reference refreshes the bases at the end of a step (after its Adam step); the same refresh
    # runs here at the start of the next one, before anything reads the bases, so that the old
    # bases, m and v only flow through the conditional and a donated state is updated in place
    # (XLA copies an operand of a conditional that is also read outside it).
    count, mus, nus, factors, bases = state.count, *fields
    eigh_now = count == 1
    qr_now = jnp.logical_and(count > 1, (count - 1) % self.precondition_frequency == 0)
    refresh = lambda *args: lax.cond(eigh_now, self._first_bases, self._power_qr_bases, *args)
    mus, nus, bases = lax.cond(jnp.logical_or(eigh_now, qr_now), refresh, _unchanged, mus, nus, factors, bases)
    factors = self._accumulate(scalars, grads, factors)  # (XLA copies the factors, read by both: d² per axis)
    outs, mus, nus = self._step(scalars, count == 0, grads, mus, nus, bases)
    unflatten = lambda leaves: jax.tree.unflatten(treedef, leaves)
    return unflatten(outs), dict(zip(("mu", "nu", "factors", "eigenbases"),
                                     map(unflatten, (mus, nus, factors, bases))))

  def _accumulate(self, hp, grads, factors):
    """``F_a ← β_s F_a + (1 − β_s) G_(a) G_(a)ᵀ`` for every factor."""
    new = []
    for g, fs in zip(grads, factors):
      if g is None or not fs:
        new.append(fs)
        continue
      lay = self._layout(g.shape)
      gb = kr.to_blocks(g.astype(_tree.compute_dtype(g.dtype)), lay)
      new.append(tuple(None if f is None else jnp.asarray(hp["shampoo_beta"], f.dtype) * f
                       + (1 - jnp.asarray(hp["shampoo_beta"], f.dtype)) * kr.gram(gb, lay, a).astype(f.dtype)
                       for a, f in enumerate(fs)))
    return new

  def _step(self, hp, first, grads, mus, nus, bases):
    """Adam in the current bases (skipped on the first call, which only sets up)."""
    outs, new_mus, new_nus = [], [], []
    for g, mu, nu, qs in zip(grads, mus, nus, bases):
      if g is None:
        for out, x in zip((outs, new_mus, new_nus), (None, mu, nu)):
          out.append(x)
        continue
      dtype = _tree.compute_dtype(g.dtype)
      b1, b2, eps, t = (jnp.asarray(hp[k], dtype) for k in ("b1", "b2", "eps", "step"))
      # on the first call m and v keep their values and the update is zero (scalar selects only)
      active = jnp.where(first, jnp.zeros([], dtype), 1)
      b1, b2 = jnp.where(first, 1, b1), jnp.where(first, 1, b2)
      lay = self._layout(g.shape)
      g32 = g.astype(dtype)
      qs32 = tuple(None if q is None else q.astype(dtype) for q in qs)
      projected = _project(g32, qs32, lay, back=False)
      m = (b1 * mu.astype(dtype) + (1 - b1) * projected).astype(mu.dtype)
      v = (b2 * nu.astype(dtype) + (1 - b2) * jnp.square(projected)).astype(nu.dtype)
      direction = _project(m.astype(dtype) / (jnp.sqrt(v.astype(dtype)) + eps), qs32, lay, back=True)
      if self.normalize_grads:
        direction = direction / (1e-30 + jnp.sqrt(jnp.mean(jnp.square(direction))))
      if self.correct_bias:
        t = jnp.maximum(t, 1)
        b1, b2 = (jnp.asarray(hp[k], dtype) for k in ("b1", "b2"))
        active = active * (jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t))
      outs.append((active * direction).astype(g.dtype))
      new_mus.append(m); new_nus.append(v)
    return outs, new_mus, new_nus

  def _first_bases(self, mus, nus, factors, bases):
    """The first bases, ``eigh`` of the factors after the first gradient; ``m`` and ``v`` are still zero."""
    new = [fs if fs is None else tuple(None if f is None else _eigenbasis(f).astype(f.dtype) for f in fs)
           for fs in factors]
    return mus, nus, new

  def _power_qr_bases(self, mus, nus, factors, bases):
    """One power iteration + QR per factor; ``m`` rotated into the new bases, ``v`` re-sorted."""
    new_mus, new_nus, new_bases = [], [], []
    for mu, nu, fs, qs in zip(mus, nus, factors, bases):
      if mu is None or not any(q is not None for q in qs):
        new_mus.append(mu); new_nus.append(nu); new_bases.append(qs)
        continue
      lay = self._layout(mu.shape)
      dtype = next(f.dtype for f in fs if f is not None)
      m = _project(mu.astype(dtype), qs, lay, back=True)
      v = kr.to_blocks(nu.astype(dtype), lay)
      qs = list(qs)
      for axis, f in enumerate(fs):
        if f is not None:
          q, v = _power_qr(f, qs[axis], v, lay, axis)
          qs[axis] = q.astype(f.dtype)
      new_bases.append(tuple(qs))
      new_mus.append(_project(m, tuple(qs), lay, back=False).astype(mu.dtype))
      new_nus.append(kr.from_blocks(v, lay).astype(nu.dtype))
    return new_mus, new_nus, new_bases


def _unchanged(mus, nus, factors, bases):
  return mus, nus, bases


def scale_by_soap(b1: Any = 0.95, b2: Any = 0.95, shampoo_beta: Any = None, eps: Any = 1e-8, *,
                  precondition_frequency: int = 10, max_precond_dim: int = 10000, merge_dims: bool = False,
                  precondition_1d: bool = False, normalize_grads: bool = False, correct_bias: bool = True,
                  mu_dtype: Optional[Any] = None, nu_dtype: Optional[Any] = None,
                  factor_dtype: Optional[Any] = None) -> GradientTransformation:
  """SOAP's direction (Vyas et al. 2024): Adam run in the eigenbasis of Shampoo's factors.

  For a matrix gradient ``G`` (every axis of a tensor likewise, one factor per axis):

  .. math::

     L_t = \\beta_s L_{t-1} + (1-\\beta_s) G_t G_t^\\top, \\quad
     R_t = \\beta_s R_{t-1} + (1-\\beta_s) G_t^\\top G_t, \\\\
     G'_t = Q_L^\\top G_t Q_R, \\quad
     m_t = \\beta_1 m_{t-1} + (1-\\beta_1) G'_t, \\quad
     v_t = \\beta_2 v_{t-1} + (1-\\beta_2) G'^2_t, \\\\
     u_t = \\frac{\\sqrt{1-\\beta_2^{t}}}{1-\\beta_1^{t}}\\; Q_L \\frac{m_t}{\\sqrt{v_t} + \\epsilon} Q_R^\\top

  with ``β_s = shampoo_beta`` (default ``b2``). The step semantics are those of
  the reference implementation (github.com/nikhilvyas/SOAP, ``soap.py``):

  * the **first update only initialises**: it accumulates ``L, R`` from the
    first gradient, sets ``Q = eigh(F + 1e-30 I)`` (columns by descending
    eigenvalue) and returns a zero update; ``t`` counts from the second update;
  * each later update uses the current bases, *then* adds ``G_t`` to the
    factors; every ``precondition_frequency`` steps (``t % f == 0``) the bases
    are refreshed by one power iteration and QR, ``Q ← qr(F Q_sorted)``, where
    the columns of ``Q`` (and the matching axis of ``v``) are first sorted by
    the estimated eigenvalues ``diag(Qᵀ F Q)``, descending; ``m`` is rotated
    into the new basis (``Q_newᵀ Q_old m``), ``v`` is only re-sorted;
  * axes longer than ``max_precond_dim`` keep the identity; vectors are Adam
    unless ``precondition_1d``; ``merge_dims`` merges consecutive axes while
    their product is ``<= max_precond_dim``; ``normalize_grads`` divides the
    direction by its RMS before the bias correction.

  The refresh runs under ``lax.cond`` inside the compiled step, at the start of
  the step after the one the reference does it in (before anything reads the
  bases: same numbers, and a donated state is updated in place but for the
  factors, which XLA copies, ``d²`` per axis); so ``eigenbases`` in the state
  after step ``k`` are the ones step ``k`` used. The factors
  and bases are kept in ``factor_dtype`` (default: the parameters', at least
  float32; the reference computes ``eigh``/``qr`` in float32 even for float64
  parameters, here they run in the factors' dtype). The reference's
  ``data_format`` (NCHW/NHWC conv layouts) only matters with ``merge_dims``
  and is left out: every axis has its own factor.

  Args:
    b1: ``β₁``, decay of the first moment, in [0, 1).
    b2: ``β₂``, decay of the second moment, in [0, 1).
    shampoo_beta: ``β_s``, decay of the factors, in [0, 1) (``None``: ``b2``, as the reference's -1).
    eps: ``ε`` added to ``√v``.
    precondition_frequency: steps between two refreshes of the bases.
    max_precond_dim: longest axis with a preconditioner.
    merge_dims, precondition_1d, normalize_grads, correct_bias: the reference's options.
    mu_dtype, nu_dtype: dtypes of ``m`` and ``v`` (default: the parameters').
    factor_dtype: dtype of the factors and bases (default: the parameters', at least float32).

  References:
    Vyas et al., 2024, "SOAP: Improving and Stabilizing Shampoo using Adam",
    https://arxiv.org/abs/2409.11321
  """
  check_betas("scale_by_soap", b1, b2, eps)
  if shampoo_beta is not None:
    check_hyperparameter("scale_by_soap", "shampoo_beta", shampoo_beta, low=0.0, high=1.0, high_open=True,
                         hint="shampoo_beta is the decay of the Kronecker factors; use a value in [0, 1) "
                         "or None for b2.")
  for option, value in (("precondition_frequency", precondition_frequency), ("max_precond_dim", max_precond_dim)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"scale_by_soap: {option}={value!r} must be a positive integer.")
  return _ScaleBySoap(b1, b2, shampoo_beta, eps, precondition_frequency=precondition_frequency,
                      max_precond_dim=max_precond_dim, merge_dims=bool(merge_dims),
                      precondition_1d=bool(precondition_1d), normalize_grads=bool(normalize_grads),
                      correct_bias=bool(correct_bias), mu_dtype=mu_dtype, nu_dtype=nu_dtype,
                      factor_dtype=factor_dtype)


class SoapStepState(NamedTuple):
  """State of :func:`soap`'s last stage, ``p ← (p − η u)(1 − η λ)``: only the count and the hyperparameters."""

  count: jax.Array  # int32 scalar
  hyperparams: dict


class _SoapStep(Transform):
  learning_rate: Any
  weight_decay: Any
  State = SoapStepState

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params("soap", params, "apply the decoupled weight decay")
    started = (state.count > 0).astype(hp["learning_rate"].dtype)

    def rule(u, p, learning_rate, weight_decay, started):
      decay = learning_rate * weight_decay * started
      return -learning_rate * u * (1 - decay) - decay * p, p

    updates, _ = _tree.leafwise("soap", rule, updates, params, scalars={**hp, "started": started})
    return updates, {}


@named
def soap(learning_rate: Any = 3e-3, b1: Any = 0.95, b2: Any = 0.95, shampoo_beta: Any = None, eps: Any = 1e-8,
         weight_decay: Any = 0.01, precondition_frequency: int = 10, max_precond_dim: int = 10000,
         merge_dims: bool = False, precondition_1d: bool = False, normalize_grads: bool = False,
         correct_bias: bool = True, *, mu_dtype: Any = None, nu_dtype: Any = None,
         factor_dtype: Any = None) -> GradientTransformation:
  """SOAP with the reference's defaults and step: ``chain(scale_by_soap(...), <lr and decay>)``.

  The last stage is ``p ← (p − η u)(1 − η λ)`` (the reference decays the
  already-stepped weights, after the Adam step; AdamW decays the old ones, a
  difference of ``η²λ u``), skipped on the first update, which only sets up the
  preconditioner. With ``weight_decay=0`` it is ``scale_by_learning_rate``.

  References:
    Vyas et al., 2024, https://arxiv.org/abs/2409.11321; reference code
    https://github.com/nikhilvyas/SOAP/blob/main/soap.py
  """
  direction = scale_by_soap(b1, b2, shampoo_beta, eps, precondition_frequency=precondition_frequency,
                            max_precond_dim=max_precond_dim, merge_dims=merge_dims,
                            precondition_1d=precondition_1d, normalize_grads=normalize_grads,
                            correct_bias=correct_bias, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
                            factor_dtype=factor_dtype)
  if is_literal_zero(weight_decay):
    return chain(direction, scale_by_learning_rate(learning_rate))
  check_hyperparameter("soap", "learning_rate", learning_rate,
                       hint="learning_rate is the step size; use a value such as 3e-3.")
  check_hyperparameter("soap", "weight_decay", weight_decay, low=0.0,
                       hint="weight_decay is the decoupled decay rate; use a value >= 0 such as 0.01.")
  return chain(direction, _SoapStep(learning_rate, weight_decay))
