"""DoG and DoWG (Ivgi et al. 2023; Khaled et al. 2023): the step size is a distance travelled over gradient norms
(global, as optax.contrib, and per leaf, as optax's ``scale_by_distance_over_gradients``)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, named
from gradxform._core.module import static_field
from gradxform._core.objective import scalar_dtype, vdot
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.options import check_dtype_option

__all__ = ["ScaleByDistanceOverGradientsState", "ScaleByDogState", "ScaleByDowgState", "dog", "dowg",
           "scale_by_distance_over_gradients", "scale_by_dog", "scale_by_dowg"]

_INIT_STEPS = ("distance", "learning_rate", "heuristic")


def copy_params(name: str, params: Any) -> Any:
  """A fresh copy of the parameters for the state (``x_0``): donating params and state never aliases a buffer."""
  _tree.require_params(name, params, "keep the initial parameters x_0", "init")
  _tree.check_floating(name, params, "parameter")
  return jax.tree.map(lambda p: jnp.array(p, copy=True), params)


def distance_squared(name: str, params: Any, origin: Any, dtype: Any) -> jax.Array:
  """``‖x − x_0‖²`` in ``dtype``, with an error naming ``name`` when ``params`` is missing or mismatched."""
  _tree.require_params(name, params, "measure the distance from the initial parameters")
  if jax.tree.structure(params) != jax.tree.structure(origin):
    raise _tree._structure_error(name, "params", params, origin)
  diff = jax.tree.map(lambda x, x0: jnp.asarray(x).astype(dtype) - jnp.asarray(x0).astype(dtype), params, origin)
  return vdot(diff, diff, dtype)


def _scaled(name: str, updates: Any, step: jax.Array) -> Any:
  updates, = _tree.leafwise(name, lambda g, step: (step * g,), updates, scalars={"step": step})
  return updates


class ScaleByDogState(NamedTuple):
  """State of :func:`scale_by_dog`.

  ``max_dist`` is ``r̄_t`` (the largest distance from ``x_0`` so far, the
  "distance" of DoG), ``sum_sq_norm_grads`` is ``G_t``, ``step_size`` the
  ``η_t`` of the last update (scalars in the parameters' widest dtype, at
  least float32); ``init_params`` is ``x_0``.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  init_params: Any
  max_dist: jax.Array
  sum_sq_norm_grads: jax.Array
  step_size: jax.Array

  def diagnostics(self) -> dict:
    """``max_dist`` (DoG's distance ``r̄_t``) and ``step_size`` (``η_t``), for :func:`gradxform.diagnostics`."""
    return {"max_dist": self.max_dist, "step_size": self.step_size}


class _ScaleByDog(Transform):
  init_step_value: Any
  eps: Any
  init_step_type: str = static_field(default="heuristic")
  State = ScaleByDogState

  def init_fields(self, params):
    x0 = copy_params("scale_by_dog", params)
    dtype = scalar_dtype(params)
    value = self.resolve(jnp.zeros([], jnp.int32))["init_step_value"].astype(dtype)
    if self.init_step_type == "distance":
      r_eps = value
    elif self.init_step_type == "heuristic":
      r_eps = value * (1 + jnp.sqrt(vdot(params, params, dtype)))
    else:
      r_eps = jnp.zeros([], dtype)
    return {"init_params": x0, "max_dist": r_eps, "sum_sq_norm_grads": jnp.zeros([], dtype),
            "step_size": jnp.zeros([], dtype)}

  def apply(self, updates, state, params, hp, **extra):
    dtype = state.max_dist.dtype
    dist = jnp.sqrt(distance_squared("scale_by_dog", params, state.init_params, dtype))
    max_dist = jnp.maximum(state.max_dist, dist)
    sum_sq = state.sum_sq_norm_grads + vdot(updates, updates, dtype)
    step = max_dist / jnp.sqrt(sum_sq + hp["eps"].astype(dtype))
    if self.init_step_type == "learning_rate":
      step = jnp.where(state.count == 0, hp["init_step_value"].astype(dtype), step)
    return _scaled("scale_by_dog", updates, step), {
        "max_dist": max_dist, "sum_sq_norm_grads": sum_sq, "step_size": step}


def _check_init_step(name: str, init_step: Any) -> tuple[str, Any]:
  if not (isinstance(init_step, tuple) and len(init_step) == 2 and init_step[0] in _INIT_STEPS):
    raise ValueError(
        f"{name}: init_step={init_step!r} must be a pair (kind, value) with kind one of {_INIT_STEPS}, "
        "e.g. ('heuristic', 1e-6) (r_0 = value·(1 + ‖x_0‖)), ('distance', 1e-4) (r_0 = value) or "
        "('learning_rate', 1e-3) (η_0 = value).")
  kind, value = init_step
  check_hyperparameter(name, "init_step", value, low=0.0, low_open=True,
                       hint=f"the {kind} of init_step must be a small positive number (e.g. 1e-6).")
  return kind, value


def scale_by_dog(init_step: tuple = ("heuristic", 1e-6), eps: Any = 1e-8) -> GradientTransformation:
  """Distance over Gradients (Ivgi et al. 2023, Algorithm 1), as ``optax.contrib.scale_by_dog``.

  .. math::

     \\bar r_t = \\max(\\bar r_{t-1}, \\|x_t - x_0\\|), \\quad
     G_t = G_{t-1} + \\|g_t\\|^2, \\quad
     \\eta_t = \\frac{\\bar r_t}{\\sqrt{G_t + \\epsilon}}, \\quad u_t = \\eta_t\\, g_t

  with ``r̄_0 = r_ε`` set by ``init_step``. Norms are over the whole tree.
  ``init`` must get the real initial parameters: they are kept as ``x_0``.

  Args:
    init_step: ``(kind, value)``: ``("distance", r)`` sets ``r_ε = r``;
      ``("heuristic", α)`` sets ``r_ε = α(1 + ‖x_0‖)`` (the paper suggests
      α = 1e-6, 1e-4 with batch normalization); ``("learning_rate", η)``
      takes ``η_1 = η`` at the first step (and ``r_ε = 0``).
    eps: ``ε > 0`` added to ``G_t``.

  Returns:
    A transform with state :class:`ScaleByDogState`: ``max_dist`` is DoG's
    distance ``r̄_t``, ``step_size`` its step ``η_t``.

  References:
    Ivgi, Hinder & Carmon, 2023, "DoG is SGD's Best Friend: A Parameter-Free
    Dynamic Step Size Schedule", https://arxiv.org/abs/2302.12022
  """
  kind, value = _check_init_step("scale_by_dog", init_step)
  check_hyperparameter("scale_by_dog", "eps", eps, low=0.0, low_open=True,
                       hint="eps is added to the sum of squared gradient norms; use a small positive number.")
  return _ScaleByDog(value, eps, init_step_type=kind)


@named
def dog(learning_rate: Any = 1.0, init_step: tuple = ("heuristic", 1e-6), eps: Any = 1e-8,
        weight_decay: Any = 0.0, mask: Optional[Any] = None) -> GradientTransformation:
  """DoG, as ``optax.contrib.dog``: ``chain([add_decayed_weights(λ, mask)], scale_by_dog(init_step, eps), scale_by_learning_rate(lr))``.

  ``x ← x − η·r̄_t/√(G_t + ε)·(g + λx)`` (see :func:`scale_by_dog`); the
  learning rate is a multiplier of DoG's step size (a schedule's shape), 1 by
  default. The paper recommends averaging the iterates (``gx.ema_params``).
  A literal 0 ``weight_decay`` (the default; optax's ``None``) leaves that stage out.

  References:
    Ivgi, Hinder & Carmon, 2023, https://arxiv.org/abs/2302.12022
  """
  stages = [] if is_literal_zero(weight_decay) else [add_decayed_weights(weight_decay, mask)]
  return chain(*stages, scale_by_dog(init_step, eps), scale_by_learning_rate(learning_rate))


class ScaleByDowgState(NamedTuple):
  """State of :func:`scale_by_dowg`.

  ``estim_sq_dist`` is ``r̄_t²`` (the squared distance estimate),
  ``weighted_sq_norm_grads`` is ``v_t``, ``step_size`` the ``η_t`` of the last
  update (scalars in the parameters' widest dtype, at least float32);
  ``init_params`` is ``x_0``.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  init_params: Any
  estim_sq_dist: jax.Array
  weighted_sq_norm_grads: jax.Array
  step_size: jax.Array

  def diagnostics(self) -> dict:
    """``estim_sq_dist`` (``r̄_t²``) and ``step_size`` (``η_t``), for :func:`gradxform.diagnostics`."""
    return {"estim_sq_dist": self.estim_sq_dist, "step_size": self.step_size}


class _ScaleByDowg(Transform):
  init_estim_sq_dist: Any
  eps: Any
  State = ScaleByDowgState

  def init_fields(self, params):
    x0 = copy_params("scale_by_dowg", params)
    dtype = scalar_dtype(params)
    hp = self.resolve(jnp.zeros([], jnp.int32))
    r2 = hp["init_estim_sq_dist"] if self.init_estim_sq_dist is not None else hp["eps"]
    return {"init_params": x0, "estim_sq_dist": r2.astype(dtype), "weighted_sq_norm_grads": jnp.zeros([], dtype),
            "step_size": jnp.zeros([], dtype)}

  def apply(self, updates, state, params, hp, **extra):
    dtype = state.estim_sq_dist.dtype
    r2 = jnp.maximum(state.estim_sq_dist, distance_squared("scale_by_dowg", params, state.init_params, dtype))
    v = state.weighted_sq_norm_grads + r2 * vdot(updates, updates, dtype)
    step = r2 / (jnp.sqrt(v) + hp["eps"].astype(dtype))
    return _scaled("scale_by_dowg", updates, step), {
        "estim_sq_dist": r2, "weighted_sq_norm_grads": v, "step_size": step}


def scale_by_dowg(init_estim_sq_dist: Any = None, eps: Any = 1e-4) -> GradientTransformation:
  """Distance over Weighted Gradients (Khaled et al. 2023, Algorithm 1), as ``optax.contrib.scale_by_dowg``.

  .. math::

     \\bar r_t^2 = \\max(\\bar r_{t-1}^2, \\|x_t - x_0\\|^2), \\quad
     v_t = v_{t-1} + \\bar r_t^2 \\|g_t\\|^2, \\quad
     u_t = \\frac{\\bar r_t^2}{\\sqrt{v_t} + \\epsilon}\\, g_t

  Norms are over the whole tree; ``init`` must get the real initial parameters.

  Args:
    init_estim_sq_dist: ``r̄_0² > 0``, the initial guess of the squared
      distance to a solution (default: ``eps``, as optax).
    eps: ``ε > 0`` added to ``√v_t``.

  Returns:
    A transform with state :class:`ScaleByDowgState`: ``estim_sq_dist`` is
    ``r̄_t²``, ``step_size`` the step ``η_t``.

  References:
    Khaled, Mishchenko & Jin, 2023, "DoWG Unleashed: An Efficient Universal
    Parameter-Free Gradient Descent Method", https://arxiv.org/abs/2305.16284
  """
  if init_estim_sq_dist is not None:
    check_hyperparameter("scale_by_dowg", "init_estim_sq_dist", init_estim_sq_dist, low=0.0, low_open=True,
                         hint="init_estim_sq_dist is a squared distance guess; use a small positive number.")
  check_hyperparameter("scale_by_dowg", "eps", eps, low=0.0, low_open=True,
                       hint="eps keeps the denominator positive (and is the default r_0²); use e.g. 1e-4.")
  return _ScaleByDowg(init_estim_sq_dist, eps)


@named
def dowg(learning_rate: Any = 1.0, init_estim_sq_dist: Any = None, eps: Any = 1e-4, weight_decay: Any = 0.0,
         mask: Optional[Any] = None) -> GradientTransformation:
  """DoWG, as ``optax.contrib.dowg``: ``chain([add_decayed_weights(λ, mask)], scale_by_dowg(r0², eps), scale_by_learning_rate(lr))``.

  ``x ← x − η·r̄_t²/(√v_t + ε)·(g + λx)`` (see :func:`scale_by_dowg`); the
  learning rate multiplies the estimated step size (1 by default). A literal 0
  ``weight_decay`` (the default; optax's ``None``) leaves that stage out.

  References:
    Khaled, Mishchenko & Jin, 2023, https://arxiv.org/abs/2305.16284
  """
  stages = [] if is_literal_zero(weight_decay) else [add_decayed_weights(weight_decay, mask)]
  return chain(*stages, scale_by_dowg(init_estim_sq_dist, eps), scale_by_learning_rate(learning_rate))


# optax's core variant: a per-leaf DoG step size, as a primitive.
_NAME = "scale_by_distance_over_gradients"


class ScaleByDistanceOverGradientsState(NamedTuple):
  """State of :func:`scale_by_distance_over_gradients`.

  Per leaf: ``max_dist`` (scalar, the parameters' dtype), ``grad_sum_of_squares``
  (scalar, at least float32) and ``init_params`` (the starting point, in ``param_dtype``).
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  max_dist: Any
  grad_sum_of_squares: Any
  init_params: Any


def _distance(x: jax.Array, y: Optional[jax.Array] = None) -> jax.Array:
  dtype = _tree.compute_dtype(jnp.result_type(x))
  x = jnp.asarray(x, dtype)
  d = x if y is None else x - jnp.asarray(y, dtype)
  return jnp.sqrt(jnp.sum(jnp.square(d)))


class _ScaleByDistanceOverGradients(Transform):
  reps_rel: Any
  eps: Any
  global_scale: Any
  param_dtype: Optional[Any] = static_field(default=jnp.float32)
  State = ScaleByDistanceOverGradientsState

  def init_fields(self, params):
    _tree.require_params(_NAME, params, "measure the distance travelled from them", where="init")
    _tree.check_floating(_NAME, params, "parameter")
    reps_rel = self.reps_rel
    first = lambda p: (jnp.asarray(reps_rel) * (1 + _distance(p))).astype(jnp.result_type(p))
    sums = lambda p: jnp.zeros([], _tree.compute_dtype(jnp.result_type(p)))
    return {"max_dist": jax.tree.map(first, params), "grad_sum_of_squares": jax.tree.map(sums, params),
            "init_params": jax.tree.map(lambda p: jnp.asarray(p, self.param_dtype or jnp.result_type(p)), params)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params(_NAME, params, "measure the distance travelled from init")
    _tree.check_floating(_NAME, updates, "update")
    is_none = _tree.is_none
    if jax.tree.structure(updates, is_leaf=is_none) != jax.tree.structure(state.init_params, is_leaf=is_none):
      raise _tree._structure_error(_NAME, "update", updates, state.init_params)
    max_dist = jax.tree.map(lambda d, p, p0: jnp.maximum(d, _distance(p, p0).astype(d.dtype)),
                            state.max_dist, params, state.init_params)
    sums = jax.tree.map(lambda s, g: s + jnp.sum(jnp.square(jnp.asarray(g, s.dtype))),
                        state.grad_sum_of_squares, updates)
    step = jax.tree.map(lambda d, s: None if d is None else hp["global_scale"].astype(s.dtype) * d.astype(s.dtype)
                        / jnp.sqrt(s + hp["eps"].astype(s.dtype)), max_dist, sums)
    step_like_g = jax.tree.map(lambda g, e: jnp.broadcast_to(e, jnp.shape(g)), updates, step, is_leaf=is_none)
    updates, _ = _tree.leafwise(_NAME, lambda g, eta: (eta * g, None), updates, step_like_g, check_dtype=(False,))
    return updates, {"max_dist": max_dist, "grad_sum_of_squares": sums}


def scale_by_distance_over_gradients(reps_rel: Any = 1e-6, eps: Any = 1e-8, param_dtype: Any = jnp.float32,
                                     global_scale: Any = 1.0) -> GradientTransformation:
  """Layer-wise DoG (Ivgi et al. 2023, LDoG), as ``optax.scale_by_distance_over_gradients``.

  .. math::

     \\bar r_t = \\max\\big(\\bar r_{t-1}, \\|p_t - p_0\\|\\big), \\quad
     \\bar r_0 = r_\\epsilon (1 + \\|p_0\\|), \\qquad
     G_t = G_{t-1} + \\|g_t\\|^2, \\qquad
     u_t = s\\, \\frac{\\bar r_t}{\\sqrt{G_t + \\epsilon}}\\, g_t

  per leaf. A step size, not a descent direction: chain it with
  ``scale(-1.0)`` (or pass ``global_scale=-1.0``). The starting point is
  stored in ``param_dtype`` (float32 as optax; ``None``: the parameters'
  dtype). optax keeps ``G`` with shape ``(1,)``, which turns scalar
  leaves' updates into shape ``(1,)``; here it is a scalar.

  Args:
    reps_rel: ``r_ε > 0``, the initial movement relative to ``1 + ‖p₀‖``
      (1e-6; the authors suggest 1e-4 with batch norm).
    eps: ``ε ≥ 0`` inside the root.
    param_dtype: dtype of the stored starting point.
    global_scale: ``s``, a factor (typically 1 or -1).

  Returns:
    A transform with state :class:`ScaleByDistanceOverGradientsState`
    (one parameter copy); ``init`` and ``update`` require ``params``.

  References:
    Ivgi, Hinder & Carmon, 2023, "DoG is SGD's Best Friend: A Parameter-Free
    Dynamic Step Size Schedule", https://arxiv.org/abs/2302.12022
  """
  param_dtype = check_dtype_option("scale_by_distance_over_gradients", "param_dtype", param_dtype)
  check_hyperparameter(_NAME, "reps_rel", reps_rel, low=0.0, low_open=True,
                       hint="reps_rel sets the first step (relative to 1 + ||p0||); it must be > 0, e.g. 1e-6.")
  check_hyperparameter(_NAME, "eps", eps, low=0.0, hint="eps must be >= 0 (it is added inside the root).")
  check_hyperparameter(_NAME, "global_scale", global_scale, hint="global_scale is a factor, typically 1.0 or -1.0.")
  return _ScaleByDistanceOverGradients(reps_rel, eps, global_scale, param_dtype=param_dtype)
