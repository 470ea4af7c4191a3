"""Adafactor (Shazeer & Stern 2018): factored second moments, update clipping, relative step sizes."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, named
from gradxform._core.module import static_field
from gradxform._transforms.accumulators import ema
from gradxform._transforms.clipping import clip_by_block_rms
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale, scale_by_learning_rate, scale_by_relative_step
from gradxform._transforms.trust_ratio import scale_by_param_block_rms
from gradxform._transforms.options import check_dtype_option
from gradxform._transforms.options import check_flag

__all__ = ["adafactor", "scale_by_factored_rms"]

_NAME = "scale_by_factored_rms"


def factored_axes(shape: tuple, factored: bool = True, factor_axes: str = "last",
                  min_dim_size_to_factor: int = 1) -> Optional[tuple[int, int]]:
  """The axes ``(row, col)`` whose second moments are factored, or ``None`` (a full ``v``).

  ``"last"``: the last two axes of a >= 2-D leaf (torch). ``"largest"``: its two
  largest axes, the larger one as ``col`` (optax). Both must have at least
  ``min_dim_size_to_factor`` elements.
  """
  if not factored or len(shape) < 2:
    return None
  if factor_axes == "last":
    row, col = len(shape) - 2, len(shape) - 1
  else:
    order = np.argsort(shape, kind="stable")
    row, col = int(order[-2]), int(order[-1])
  return None if min(shape[row], shape[col]) < min_dim_size_to_factor else (row, col)


def _reduced_zeros(param: Any, axis: int, dtype: Any) -> jax.Array:
  """Zeros shaped like ``param`` with ``axis`` reduced to 1, sharded like ``param`` on its other axes.

  No data moves: a concrete ``NamedSharding`` parameter gives the state its
  spec with the reduced axis unsharded; under ``jit`` the shape of a
  (dead) keepdims reduction carries the sharding when the mesh has
  ``Explicit`` axes.
  """
  shape = tuple(1 if i == axis else n for i, n in enumerate(param.shape))
  sharding = None if isinstance(param, jax.core.Tracer) else getattr(param, "sharding", None)
  if isinstance(sharding, NamedSharding):
    spec = (list(sharding.spec) + [None] * param.ndim)[:param.ndim]
    spec[axis] = None
    return jnp.zeros(shape, dtype, device=NamedSharding(sharding.mesh, PartitionSpec(*spec)))
  return jnp.zeros_like(jnp.sum(param, axis=axis, keepdims=True), dtype=dtype)


def _like_update(stat: jax.Array, g: jax.Array, axis: int) -> jax.Array:
  """A statistic resharded like its update (``axis`` unsharded) when the mesh has ``Explicit`` axes.

  With ZeRO-1 state (rows and columns both split over the data axis) the
  product of the two has no valid sharding; here the small statistic is
  gathered to the update's layout instead (``m`` or ``n`` numbers). On
  ``Auto`` meshes XLA chooses, and with state laid out like the parameters
  this is a no-op.
  """
  sharding = jax.typeof(g).sharding
  if jax.sharding.AxisType.Explicit not in sharding.mesh.axis_types:
    return stat
  spec = (list(sharding.spec) + [None] * g.ndim)[:g.ndim]
  spec[axis] = None
  current = (list(jax.typeof(stat).sharding.spec) + [None] * g.ndim)[:g.ndim]
  return stat if current == spec else jax.sharding.reshard(stat, NamedSharding(sharding.mesh, PartitionSpec(*spec)))


class FactoredRmsState(NamedTuple):
  """State of :func:`scale_by_factored_rms`.

  Per parameter, either the factored statistics ``v_row`` (the parameter's
  shape with the column axis reduced to 1) and ``v_col`` (the row axis reduced
  to 1), with ``None`` in ``v``; or the full ``v`` (vectors, scalars, leaves not
  factored), with ``None`` in ``v_row`` and ``v_col``.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  v_row: Any
  v_col: Any
  v: Any


class _ScaleByFactoredRms(Transform):
  beta2_decay: Any
  eps: Any
  eps_root: Any
  step_offset: Any
  factored: bool = static_field(default=True)
  factor_axes: str = static_field(default="last")
  min_dim_size_to_factor: int = static_field(default=1)
  dtype: Optional[Any] = static_field(default=None)
  State = FactoredRmsState

  def axes(self, shape):
    return factored_axes(tuple(shape), self.factored, self.factor_axes, self.min_dim_size_to_factor)

  def init_fields(self, params):
    rows, cols, full = [], [], []
    leaves, treedef = jax.tree.flatten(params, is_leaf=_tree.is_none)
    for p in leaves:
      axes = None if p is None else self.axes(jnp.shape(p))
      dtype = None if p is None else (self.dtype or jnp.result_type(p))
      rows.append(None if axes is None else _reduced_zeros(p, axes[1], dtype))
      cols.append(None if axes is None else _reduced_zeros(p, axes[0], dtype))
      full.append(None if p is None or axes is not None else jnp.zeros_like(p, dtype=dtype))
    unflatten = lambda x: jax.tree.unflatten(treedef, x)
    return {"v_row": unflatten(rows), "v_col": unflatten(cols), "v": unflatten(full)}

  def apply(self, updates, state, params, hp, **extra):
    flat, treedef = jax.tree_util.tree_flatten_with_path(updates, is_leaf=_tree.is_none)
    _tree.check_floating(_NAME, updates, "update")
    stats = []
    for field in ("v_row", "v_col", "v"):
      leaves, state_def = jax.tree.flatten(getattr(state, field), is_leaf=_tree.is_none)
      if state_def != treedef:
        raise _tree._structure_error(_NAME, "update", updates, getattr(state, field))
      stats.append(leaves)
    # beta_t = 1 - t^beta2_decay in the hyperparameter's own dtype (float32 gives optax's numbers)
    decay_dtype = hp["beta2_decay"].dtype
    t = (state.count + 1).astype(decay_dtype) - hp["step_offset"].astype(decay_dtype)
    beta = 1 - t ** hp["beta2_decay"]
    scalars = {"beta": beta, "one_minus_beta": 1 - beta, "eps_root": hp["eps_root"]}
    if self.eps is not None:
      scalars["eps"] = hp["eps"]
    out = [[], [], [], []]
    for (path, g), row, col, v in zip(flat, *stats):
      if g is None:
        for i, x in enumerate((None, row, col, v)):
          out[i].append(x)
        continue
      g = jnp.asarray(g)
      self._check_leaf(path, g, row, col, v)
      new = self._rule(g, row, col, v, scalars)
      for i, x in enumerate(new):
        out[i].append(x)
    updates, v_row, v_col, v = (jax.tree.unflatten(treedef, x) for x in out)
    return updates, {"v_row": v_row, "v_col": v_col, "v": v}

  def _check_leaf(self, path, g, row, col, v):
    axes = self.axes(g.shape)
    expected = (None, None, g.shape) if axes is None else tuple(
        tuple(1 if i == a else n for i, n in enumerate(g.shape)) for a in (axes[1], axes[0])) + (None,)
    got = tuple(None if x is None else jnp.shape(x) for x in (row, col, v))
    if got != expected:
      raise ValueError(
          f"{_NAME}: the update at {_tree.keystr(path)} has shape {g.shape}, but the optimizer "
          f"state for it (v_row, v_col, v shapes {got}) was made for another shape. Gradients "
          "must have the shape of the parameters given to init().")

  def _rule(self, g, row, col, v, scalars):
    dtype = _tree.compute_dtype(g.dtype)
    s = {k: jnp.asarray(x, dtype) for k, x in scalars.items()}
    eps = s["eps"] if "eps" in s else jnp.asarray(jnp.finfo(g.dtype).eps, dtype)  # torch: eps of the parameter's dtype
    dtypes = [None if x is None else x.dtype for x in (row, col, v)]
    store = lambda new, old: new.astype(old.dtype).astype(dtype)  # the update reads the state as stored
    x = g.astype(dtype)
    g2 = x * x + s["eps_root"]
    axes = self.axes(g.shape)
    if axes is None:
      v = store(s["beta"] * v.astype(dtype) + s["one_minus_beta"] * g2, v)
      scale, row_out, col_out, v_out = lax.rsqrt(v), None, None, v
    else:
      r, c = axes
      row = store(s["beta"] * row.astype(dtype) + s["one_minus_beta"] * jnp.mean(g2, axis=c, keepdims=True), row)
      col = store(s["beta"] * col.astype(dtype) + s["one_minus_beta"] * jnp.mean(g2, axis=r, keepdims=True), col)
      row_out, col_out, v_out = row, col, None
      row, col = _like_update(row, x, c), _like_update(col, x, r)
      # 1/sqrt(R C / max(mean R, eps)) as a product of row and column factors: no root per element
      mean = jnp.maximum(jnp.mean(row, axis=r, keepdims=True), eps)
      mean = jnp.where(mean == 0, 1, mean)  # then R = 0 too: V = 0
      scale = lax.rsqrt(row / mean) * lax.rsqrt(col)
    # min(1/sqrt(V), 1/eps) = 1/max(sqrt(V), eps); an infinite scale (V = 0 with eps = 0) gives 0
    scale = jnp.minimum(scale, 1 / eps)
    u = x * jnp.where(scale == jnp.inf, 0, scale)
    stored = [None if new is None else new.astype(dt) for new, dt in zip((row_out, col_out, v_out), dtypes)]
    return (u.astype(g.dtype), *stored)


def scale_by_factored_rms(
    beta2_decay: Any = -0.8,
    eps: Any = None,
    eps_root: Any = 0.0,
    *,
    factored: bool = True,
    factor_axes: str = "last",
    min_dim_size_to_factor: int = 1,
    step_offset: Any = 0,
    dtype: Optional[Any] = None,
) -> GradientTransformation:
  """Divides by a factored estimate of the gradients' root mean square (Adafactor's second moment).

  For a leaf factored over axes ``(r, c)`` (rows and columns; any other axes
  are batch axes), with ``t`` the 1-based step:

  .. math::

     \\beta_t = 1 - (t - t_0)^{\\tau}, \\qquad G = g \\odot g + \\epsilon_{root}, \\\\
     R_t = \\beta_t R_{t-1} + (1-\\beta_t)\\, \\operatorname{mean}_c G, \\qquad
     C_t = \\beta_t C_{t-1} + (1-\\beta_t)\\, \\operatorname{mean}_r G, \\\\
     \\hat V_t = \\frac{R_t\\, C_t}{\\max(\\operatorname{mean}_r R_t,\\ \\epsilon)}, \\qquad
     u_t = \\frac{g}{\\max(\\sqrt{\\hat V_t},\\ \\epsilon)}

  (``τ`` = ``beta2_decay``, ``t₀`` = ``step_offset``). Other leaves keep a full
  ``V_t = β_t V_{t-1} + (1-β_t) G``. ``R`` has the leaf's shape with axis
  ``c`` reduced to 1, ``C`` with axis ``r`` reduced to 1: an ``m × n`` matrix
  keeps ``m + n`` numbers instead of ``m n``. Where a denominator is 0 (only
  with ``eps = eps_root = 0``) the update is 0.

  The defaults reproduce ``torch.optim.Adafactor``: the last two axes of every
  >= 2-D leaf, ``eps`` (torch's ``eps1``, ``None`` = the machine epsilon of the
  leaf's dtype) clamps the row mean and the root, nothing is added to ``g²``.
  ``optax.scale_by_factored_rms`` is ``scale_by_factored_rms(-decay_rate,
  eps=0.0, eps_root=epsilon, factor_axes="largest",
  min_dim_size_to_factor=128)``; optax computes ``β_t`` in float32, so pass
  ``beta2_decay=jnp.float32(-0.8)`` for its exact numbers (``β_t`` is computed
  in the dtype of ``beta2_decay``).

  Sharded parameters: ``R`` is sharded like the rows, ``C`` like the columns
  (``init`` places them so, and :func:`gradxform.state_shardings` gives the
  same); a step needs an all-reduce of the row and column means over the
  sharded axes (``m + n`` numbers per matrix), no all-gather.

  Args:
    beta2_decay: ``τ ≤ 0``; ``1 - β_t = (t - t₀)^τ`` (float, array or schedule).
    eps: ``ε ≥ 0``, the smallest root mean square (torch's ``eps1``); ``None``
      for the machine epsilon of each leaf's dtype.
    eps_root: ``ε_root ≥ 0`` added to ``g²`` before averaging (optax's ``eps``).
    factored: factor >= 2-D leaves (else every leaf keeps a full ``V``).
    factor_axes: ``"last"`` (torch: the last two axes) or ``"largest"``
      (optax: the two largest axes, the largest as columns).
    min_dim_size_to_factor: factor only if both axes have at least this many
      elements (optax: 128).
    step_offset: ``t₀``, for fine-tuning from a step count (optax's
      ``decay_offset``).
    dtype: dtype of the statistics (default: each parameter's dtype); the
      update reads them as stored.

  Returns:
    A transform with state :class:`FactoredRmsState`.

  References:
    Shazeer & Stern, 2018, "Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost", https://arxiv.org/abs/1804.04235
  """
  factored = check_flag("scale_by_factored_rms", "factored", factored)
  dtype = check_dtype_option("scale_by_factored_rms", "dtype", dtype)
  check_hyperparameter(_NAME, "beta2_decay", beta2_decay, high=0.0,
                       hint="beta2_decay is the exponent τ of 1 - β_t = t^τ; it must be <= 0, e.g. -0.8.")
  if eps is not None:
    check_hyperparameter(_NAME, "eps", eps, low=0.0,
                         hint="eps is the smallest root mean square; use a value >= 0, or None for the "
                         "machine epsilon of the parameters' dtype.")
  check_hyperparameter(_NAME, "eps_root", eps_root, low=0.0,
                       hint="eps_root is added to the squared gradients; it must be >= 0, e.g. 1e-30.")
  check_hyperparameter(_NAME, "step_offset", step_offset, low=0.0,
                       hint="step_offset is the step count to restart β_t from; it must be >= 0.")
  if factor_axes not in ("last", "largest"):
    raise ValueError(f"{_NAME}: factor_axes={factor_axes!r} is not one of 'last' (torch: the last two "
                     "axes) or 'largest' (optax: the two largest axes).")
  if isinstance(min_dim_size_to_factor, bool) or not isinstance(min_dim_size_to_factor, (int, np.integer)) \
      or min_dim_size_to_factor < 0:
    raise ValueError(f"{_NAME}: min_dim_size_to_factor={min_dim_size_to_factor!r} must be an integer >= 0 "
                     "(both factored axes need at least this many elements; optax uses 128).")
  return _ScaleByFactoredRms(beta2_decay, eps, eps_root, step_offset, factored=bool(factored),
                             factor_axes=factor_axes, min_dim_size_to_factor=int(min_dim_size_to_factor),
                             dtype=dtype)


def _split_eps(eps: Any) -> tuple[Any, Any]:
  if not isinstance(eps, (tuple, list)) or len(eps) != 2:
    raise TypeError(f"eps must be a pair (eps1, eps2) as torch's, e.g. (None, 1e-3); got {eps!r}. eps1 "
                    "is the smallest root mean square (None: the dtype's machine epsilon), eps2 the "
                    "smallest parameter scale.")
  return eps[0], eps[1]


@named
def adafactor(
    learning_rate: Any = 1e-2,
    beta2_decay: Any = -0.8,
    eps: tuple = (None, 1e-3),
    d: Optional[Any] = 1.0,
    weight_decay: Any = 0.0,
    *,
    maximize: bool = False,
    relative_step: bool = True,
    multiply_by_parameter_scale: bool = True,
    momentum: Optional[Any] = None,
    factored: bool = True,
    factor_axes: str = "last",
    min_dim_size_to_factor: int = 1,
    eps_root: Any = 0.0,
    step_offset: Any = 0,
    nu_dtype: Optional[Any] = None,
    mu_dtype: Optional[Any] = None,
) -> GradientTransformation:
  """Adafactor, as ``torch.optim.Adafactor`` by default; ``optax.adafactor`` by options.

  The chain (stages in brackets are left out when off)::

     [scale(-1) if maximize], scale_by_factored_rms(beta2_decay, eps[0], eps_root, ...),
     [clip_by_block_rms(d)], [scale_by_param_block_rms(eps[1])],
     relative_step=True:  scale_by_relative_step(lr), [ema(momentum, debias=False)],
                          [add_decayed_weights(weight_decay)], scale_by_learning_rate(lr)
     relative_step=False: [scale(lr)], [ema(momentum, debias=False)],
                          [add_decayed_weights(weight_decay)], scale(-1)

  With the defaults this is torch's rule: ``ρ_t = min(lr, 1/√t)``,
  ``α_t = max(ε₂, rms(p))·ρ_t``, ``p ← p(1 - lr·λ) - α_t Û_t`` with ``Û`` the
  factored-RMS update clipped to ``rms(Û) ≤ d``. ``relative_step=False`` is
  optax's convention: ``learning_rate`` is a plain factor (``None``: none),
  momentum accumulates the scaled steps and ``weight_decay`` is optax's
  ``weight_decay_rate``, ``p ← p - λp`` (not multiplied by the learning rate).
  ``optax.adafactor(learning_rate, ...)`` with its defaults is::

     adafactor(learning_rate, beta2_decay=-0.8, eps=(0.0, 1e-3), relative_step=False,
               factor_axes="largest", min_dim_size_to_factor=128, eps_root=1e-30)

  (its ``decay_rate`` is ``-beta2_decay``, ``clipping_threshold`` is ``d``,
  ``decay_offset`` is ``step_offset``, ``dtype_momentum`` is ``mu_dtype``;
  optax computes ``β_t`` in float32: pass ``beta2_decay=jnp.float32(-0.8)``
  for its exact numbers). State per ``m × n`` matrix: ``m + n`` numbers
  (Adam: ``2mn``), plus a momentum copy if ``momentum`` is set.

  Args:
    learning_rate: ``lr ≥ 0`` (float, array or schedule); with
      ``relative_step=False`` also ``None``.
    beta2_decay: ``τ ≤ 0``, ``β_t = 1 - t^τ``.
    eps: ``(ε₁, ε₂)``: the smallest root mean square (``None``: machine
      epsilon of the parameters' dtype) and the smallest parameter scale.
    d: clipping threshold on ``rms(Û)`` (``None``: no clipping).
    weight_decay: decoupled decay ``λ ≥ 0`` (see ``relative_step``).
    maximize: ascend instead of descend (torch's ``maximize``).
    relative_step: torch's (True) or optax's (False) use of the learning rate.
    multiply_by_parameter_scale: multiply by ``max(ε₂, rms(p))`` (both libraries' default).
    momentum: optional first-moment decay (optax's ``momentum``; not in torch).
    factored, factor_axes, min_dim_size_to_factor, eps_root, step_offset: see
      :func:`scale_by_factored_rms`.
    nu_dtype: dtype of the second-moment statistics (default: the parameters').
    mu_dtype: dtype of the momentum (default: the parameters').

  References:
    Shazeer & Stern, 2018, "Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost", https://arxiv.org/abs/1804.04235
  """
  maximize = check_flag("adafactor", "maximize", maximize)
  relative_step = check_flag("adafactor", "relative_step", relative_step)
  multiply_by_parameter_scale = check_flag("adafactor", "multiply_by_parameter_scale", multiply_by_parameter_scale)
  factored = check_flag("adafactor", "factored", factored)
  nu_dtype = check_dtype_option("adafactor", "nu_dtype", nu_dtype)
  mu_dtype = check_dtype_option("adafactor", "mu_dtype", mu_dtype)
  eps1, eps2 = _split_eps(eps)
  stages = [scale(-1.0)] if maximize else []
  stages.append(scale_by_factored_rms(beta2_decay, eps1, eps_root, factored=factored, factor_axes=factor_axes,
                                      min_dim_size_to_factor=min_dim_size_to_factor, step_offset=step_offset,
                                      dtype=nu_dtype))
  if d is not None:
    stages.append(clip_by_block_rms(d))
  if multiply_by_parameter_scale:
    stages.append(scale_by_param_block_rms(eps2))
  if learning_rate is None and relative_step:
    raise ValueError("learning_rate=None needs relative_step=False (optax's convention: no learning-rate "
                     "factor); with relative_step=True the learning rate caps the step min(lr, 1/sqrt(t)).")
  if learning_rate is not None:
    check_hyperparameter("adafactor", "learning_rate", learning_rate, low=0.0,
                         hint="The learning rate must be non-negative (e.g. 1e-2): the sign is applied for you.")
    stages.append(scale_by_relative_step(learning_rate) if relative_step else scale(learning_rate))
  if momentum is not None and not is_literal_zero(momentum):
    stages.append(ema(momentum, debias=False, dtype=mu_dtype))
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate) if relative_step else scale(-1.0))
  return chain(*stages)
