"""Schedule-Free learning (Defazio et al. 2024): interpolation and averaging in place of momentum and a decaying schedule."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import schedules as _schedules
from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import as_transform, chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, is_literal_zero, named
from gradxform._core.module import static_field
from gradxform._optimizers.rmsprop import scale_by_rms
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._wrappers.accumulation import floating_dtype
from gradxform._wrappers.averaging import _check_params, _copy
from gradxform.schedules._base import Schedule, prepare
from gradxform._transforms.options import check_flag

__all__ = ["ScheduleFreeState", "schedule_free", "schedule_free_adamw", "schedule_free_eval_params",
           "schedule_free_radam", "schedule_free_sgd"]


def _materialized(x: jax.Array) -> jax.Array:
  """``x`` (for finite values) computed in a loop of its own: ``rem(x, +inf) = x``, and XLA does not fuse a remainder into several consumers."""
  return jax.lax.rem(x, jnp.full_like(x, jnp.inf))


class ScheduleFreeState(NamedTuple):
  """State of :func:`schedule_free`.

  ``z`` is the base optimizer's sequence (the parameters' structure, dtype
  ``state_dtype`` or the parameters'); ``weight_sum`` is ``Σ_s γ_max(s)^r``
  and ``max_lr`` the largest learning rate so far (scalars in the learning
  rate's dtype); ``inner_state`` is the base optimizer's state.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  weight_sum: jax.Array
  max_lr: jax.Array
  z: Any
  inner_state: Any


class _ScheduleFree(Transform):
  inner: GradientTransformation
  learning_rate: Any
  b1: Any
  weight_lr_power: Any
  state_dtype: Optional[Any] = static_field(default=None)
  State = ScheduleFreeState
  recorded = ("b1",)  # schedule_free_eval_params reads it from the state

  def init_fields(self, params):
    _tree.require_params("schedule_free", params, "keep the base optimizer's sequence z", "init")
    dtype = self.resolve(jnp.zeros([], jnp.int32))["learning_rate"].dtype
    return {"weight_sum": jnp.zeros([], dtype), "max_lr": jnp.zeros([], dtype),
            "z": _copy("schedule_free", params, self.state_dtype), "inner_state": self.inner.init(params)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params("schedule_free", params, "recover x from y and z", "update")
    _check_params("schedule_free", params, state.z)
    lr = hp["learning_rate"].astype(state.max_lr.dtype)
    max_lr = jnp.maximum(state.max_lr, lr)
    weight = max_lr ** hp["weight_lr_power"].astype(max_lr.dtype)
    weight_sum = state.weight_sum + weight
    c = jnp.where(weight_sum > 0, weight / jnp.where(weight_sum > 0, weight_sum, 1), 0)
    base_updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)
    b1 = hp["b1"]

    def step_rule(u, y, z):
      """y_{t+1} − y_t, with z_{t+1} = z_t + u as stored."""
      u, y = jnp.asarray(u), jnp.asarray(y)
      dtype = _tree.compute_dtype(_tree.wider(u.dtype, y.dtype, z.dtype))
      beta, ck = b1.astype(dtype), c.astype(dtype)
      y_c, z_c = y.astype(dtype), z.astype(dtype)
      new_z = (z_c + u.astype(dtype)).astype(z.dtype).astype(dtype)
      x = (1 - ck) * (y_c - (1 - beta) * z_c) / beta + ck * new_z
      return (beta * x + (1 - beta) * new_z - y_c).astype(u.dtype)

    def z_rule(u, z, step):
      dtype = _tree.compute_dtype(_tree.wider(jnp.result_type(u), z.dtype))
      # "+ 0 * step" adds exactly zero, but orders this write of z after the step (which reads the old z)
      return (z.astype(dtype) + jnp.asarray(u).astype(dtype) + 0 * step.astype(dtype)).astype(z.dtype)

    flat, treedef = jax.tree_util.tree_flatten_with_path(base_updates, is_leaf=_tree.is_none)
    try:
      y_leaves, z_leaves = treedef.flatten_up_to(params), treedef.flatten_up_to(state.z)
    except ValueError:
      raise _tree._structure_error("schedule_free", "base optimizer's update", base_updates, state.z) from None
    # The step reads y and the old z; the new parameters (y + step) and the new z overwrite them, and XLA:CPU
    # cannot write both in one loop. So the step is materialized first (a remainder by +inf is the identity on
    # finite numbers, and an "expensive" operation XLA does not duplicate into its consumers), z is written
    # next, and the returned update reads the new z ("+ 0 * z"): with donated params and state, XLA then
    # updates both in place (one temporary) instead of copying them.
    steps = [None if u is None else _materialized(step_rule(u, y, z)) for (_, u), y, z in zip(flat, y_leaves, z_leaves)]
    new_z = [z if u is None else z_rule(u, z, s) for (_, u), z, s in zip(flat, z_leaves, steps)]
    steps = [None if s is None else s + 0 * z.astype(s.dtype) for s, z in zip(steps, new_z)]
    new_updates = jax.tree.unflatten(treedef, steps)
    z = jax.tree.unflatten(treedef, new_z)
    return new_updates, {"weight_sum": weight_sum.astype(state.weight_sum.dtype),
                         "max_lr": max_lr.astype(state.max_lr.dtype), "z": z, "inner_state": inner_state}


def schedule_free(base_optimizer: Any, learning_rate: Any, b1: Any = 0.9, weight_lr_power: Any = 2.0,
                  state_dtype: Optional[Any] = None) -> GradientTransformation:
  """Schedule-Free learning around any base optimizer (Defazio et al. 2024), as ``optax.contrib.schedule_free``.

  The parameters are the gradient points ``y``; the base optimizer (without
  momentum) moves its own sequence ``z``, and ``x``, the sequence to
  evaluate, averages ``z``:

  .. math::

     z_{t+1} = z_t + \\mathrm{base}(g_t), \\quad
     x_{t+1} = (1 - c_{t+1})\\, x_t + c_{t+1}\\, z_{t+1}, \\quad
     y_{t+1} = \\beta_1 x_{t+1} + (1 - \\beta_1)\\, z_{t+1}

  with ``c_{t+1} = γ_max^r / Σ_{s ≤ t} γ_max(s)^r`` (``γ_max`` the largest
  learning rate so far, ``r = weight_lr_power``; 0 while all are 0). ``x`` is
  not stored: it is recovered as ``(y − (1−β₁) z)/β₁``. The returned update is
  ``y_{t+1} − y_t``; evaluate at :func:`schedule_free_eval_params`.

  Turn the base optimizer's momentum off (``b1=0`` for Adam-like ones), and
  use a warmup but no decay in its learning rate: ``learning_rate`` here must
  be the base optimizer's, for the weights ``c``. It is evaluated at the
  update count (0 at the first update), like the base optimizer's schedule;
  optax's evaluates it one step ahead (at 1 on the first update), so to
  reproduce optax with a schedule ``s`` pass ``lambda count: s(count + 1)``
  (:func:`schedule_free_sgd` and :func:`schedule_free_adamw` do).

  Args:
    base_optimizer: the optimizer that moves ``z`` (gradxform or optax).
    learning_rate: its learning rate ``γ_t`` (number, array or schedule).
    b1: interpolation ``β₁`` in (0, 1] (0.9; 0.95 or 0.98 also work well).
    weight_lr_power: ``r ≥ 0``: the average weighs steps by ``γ_max^r``.
    state_dtype: dtype of ``z`` (default: the parameters').

  Returns:
    A transform with state :class:`ScheduleFreeState`. ``init`` and ``update``
    need the parameters.

  References:
    Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, 2024, "The Road Less
    Scheduled", https://arxiv.org/abs/2405.15682
  """
  inner = as_transform(base_optimizer, "schedule_free")
  check_hyperparameter("schedule_free", "learning_rate", learning_rate, low=0.0,
                       hint="learning_rate is the base optimizer's (non-negative) learning rate.")
  check_hyperparameter("schedule_free", "b1", b1, low=0.0, low_open=True, high=1.0,
                       hint="b1 interpolates y between x and z; use a value in (0, 1] such as 0.9 "
                            "(b1 = 0 would make x unrecoverable from y and z).")
  check_hyperparameter("schedule_free", "weight_lr_power", weight_lr_power, low=0.0,
                       hint="weight_lr_power must be non-negative (2.0 by default).")
  state_dtype = floating_dtype("schedule_free", "state_dtype", state_dtype)
  return _ScheduleFree(inner, learning_rate, b1, weight_lr_power, state_dtype=state_dtype)


def schedule_free_eval_params(state: Any, params: Any) -> Any:
  """The evaluation parameters ``x = (y − (1−β₁) z)/β₁`` of :func:`schedule_free`, from its state and ``y = params``.

  Searches ``state`` (of any nesting) for the one :class:`ScheduleFreeState`.
  Before the first update ``x = y``.

  References:
    Defazio et al., 2024, https://arxiv.org/abs/2405.15682
  """
  is_sf = lambda x: isinstance(x, ScheduleFreeState)
  found = [x for x in jax.tree.leaves(state, is_leaf=is_sf) if is_sf(x)]
  if len(found) != 1:
    what = "no ScheduleFreeState" if not found else f"{len(found)} ScheduleFreeStates"
    raise ValueError(f"schedule_free_eval_params: found {what} in the optimizer state; expected exactly one. "
                     "Pass the state of an optimizer built with gx.schedule_free(...) (or schedule_free_*).")
  sf = found[0]
  _check_params("schedule_free_eval_params", params, sf.z)
  b1 = jnp.asarray(sf.hyperparams["b1"])

  def read(y, z):
    y = jnp.asarray(y)
    dtype = _tree.compute_dtype(_tree.wider(y.dtype, z.dtype))
    beta = b1.astype(dtype)
    return ((y.astype(dtype) - (1 - beta) * z.astype(dtype)) / beta).astype(y.dtype)

  return jax.tree.map(read, params, sf.z)


def _warmups(learning_rate, warmup_steps):
  """(base optimizer's, schedule_free's) learning rates for optax's warmup: ``γ·min(t, W)/W`` and one step ahead."""
  if warmup_steps is None:
    return learning_rate, learning_rate
  base = _schedules.linear(0.0, learning_rate, warmup_steps)
  ahead = learning_rate if warmup_steps == 1 else _schedules.linear(
      learning_rate / warmup_steps, learning_rate, warmup_steps - 1)
  return base, ahead


def _check_learning_rate(name, learning_rate):
  check_hyperparameter(name, "learning_rate", learning_rate, low=0.0,
                       hint="learning_rate must be a non-negative number.")


@named
def schedule_free_sgd(learning_rate: Any = 1.0, warmup_steps: Optional[int] = None, b1: Any = 0.9,
                      weight_decay: Any = 0.0, weight_lr_power: Any = 2.0,
                      state_dtype: Optional[Any] = None) -> GradientTransformation:
  """Schedule-Free SGD, as ``optax.contrib.schedule_free_sgd``.

  ``schedule_free(chain(add_decayed_weights(wd), scale_by_learning_rate(γ_t)), γ_{t+1}, b1)``:
  ``z ← z − γ_t (g + λ y)``. With ``warmup_steps = W`` the base learning rate
  is ``γ·min(t, W)/W`` (``t = 0`` at the first update: that step is zero) and
  the averaging weights use it one step ahead, as optax; the paper's code
  uses ``γ·min(t+1, W)/W`` for both.

  References:
    Defazio et al., 2024, https://arxiv.org/abs/2405.15682
  """
  _check_learning_rate("schedule_free_sgd", learning_rate)
  base_lr, ahead = _warmups(learning_rate, warmup_steps)
  stages = [] if is_literal_zero(weight_decay) else [add_decayed_weights(weight_decay)]
  stages.append(scale_by_learning_rate(base_lr))
  return schedule_free(chain(*stages), ahead, b1, weight_lr_power, state_dtype)


@named
def schedule_free_adamw(learning_rate: Any = 0.0025, warmup_steps: Optional[int] = None, b1: Any = 0.9,
                        b2: Any = 0.999, eps: Any = 1e-8, weight_decay: Any = 0.0, weight_lr_power: Any = 2.0,
                        state_dtype: Optional[Any] = None) -> GradientTransformation:
  """Schedule-Free AdamW, as ``optax.contrib.schedule_free_adamw`` (default learning rate 0.0025).

  The base optimizer is AdamW without momentum:
  ``chain(scale_by_rms(b2, eps, debias=True), add_decayed_weights(wd), scale_by_learning_rate(γ_t))``,
  ``z ← z − γ_t (g/(√v̂ + ε) + λ y)``; warmup as :func:`schedule_free_sgd`.
  (The paper's code also scales ``γ_t`` by ``√(1 − β₂^t)`` in the weights.)

  References:
    Defazio et al., 2024, https://arxiv.org/abs/2405.15682
  """
  _check_learning_rate("schedule_free_adamw", learning_rate)
  base_lr, ahead = _warmups(learning_rate, warmup_steps)
  check_hyperparameter("schedule_free_adamw", "b2", b2, low=0.0, high=1.0, high_open=True,
                       hint="b2 is the decay of the squared-gradient average; use a value in [0, 1) such as 0.999.")
  stages = [dataclasses.replace(scale_by_rms(b2, eps, debias=True), public_names=(("decay", "b2"),))]
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(base_lr))
  return schedule_free(chain(*stages), ahead, b1, weight_lr_power, state_dtype)


class _RectifiedLearningRate(Schedule):
  """``γ·r_t`` with RAdam's rectification ``r_t`` at step ``t = count + 1`` (0, or 1, while ``ρ_t ≤ 4``)."""

  learning_rate: Any
  b2: Any
  silent_sgd_phase: bool = static_field(default=True)

  def __call__(self, count):
    count, learning_rate, b2 = prepare(count, self.learning_rate, self.b2)
    t = count + 1
    rho_inf = 2 / (1 - b2) - 1
    rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
    safe = jnp.where(rho > 4, rho, 5)
    rect = jnp.sqrt((safe - 4) * (safe - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * safe))
    return learning_rate * jnp.where(rho > 4, rect, 0.0 if self.silent_sgd_phase else 1.0)


class ScaleByRectifiedRmsState(NamedTuple):
  """State of schedule-free RAdam's base direction: the second moment ``nu``."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  nu: Any


class _ScaleByRectifiedRms(Transform):
  b2: Any
  eps: Any
  State = ScaleByRectifiedRmsState

  def init_fields(self, params):
    return {"nu": _tree.zeros_like("schedule_free_radam", params)}

  def apply(self, updates, state, params, hp, **extra):
    b2 = hp["b2"]
    t = (state.count + 1).astype(b2.dtype)
    rho_inf = 2 / (1 - b2) - 1
    rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
    scalars = {"b2": b2, "eps": hp["eps"], "correction": 1 - b2 ** t, "adaptive": rho > 4}

    def rule(g, nu, b2, eps, correction, adaptive, stored):
      nu, = stored(b2 * nu + (1 - b2) * g * g)
      return jnp.where(adaptive > 0, g / (jnp.sqrt(nu / correction) + eps), g), nu

    updates, nu = _tree.leafwise("schedule_free_radam", rule, updates, state.nu, scalars=scalars, stored=True)
    return updates, {"nu": nu}


@named
def schedule_free_radam(learning_rate: Any = 0.0025, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
                        weight_decay: Any = 0.0, weight_lr_power: Any = 2.0, silent_sgd_phase: bool = True,
                        state_dtype: Optional[Any] = None) -> GradientTransformation:
  """Schedule-Free RAdam, as the paper's code (``schedulefree.RAdamScheduleFree``): no warmup to choose.

  The base step is ``z ← z − γ r_t (d_t + λ y)`` with RAdam's rectification
  ``r_t = √((ρ_t−4)(ρ_t−2)ρ_∞ / ((ρ_∞−4)(ρ_∞−2)ρ_t))`` and ``d_t = g/(√v̂_t + ε)``
  while ``ρ_t > 4``; before that (``t ≤ 4`` for ``β₂ = 0.999``) ``r_t = 0`` (the
  parameters stay, ``v`` accumulates), or ``r_t = 1`` and ``d_t = g`` (SGD)
  with ``silent_sgd_phase=False``. The averaging weights use ``γ r_t``.
  ``ρ_∞ = 2/(1−β₂) − 1``, ``ρ_t = ρ_∞ − 2tβ₂^t/(1−β₂^t)``.

  References:
    Defazio et al., 2024, https://arxiv.org/abs/2405.15682; Liu et al., 2020
    (RAdam), https://arxiv.org/abs/1908.03265
  """
  silent_sgd_phase = check_flag("schedule_free_radam", "silent_sgd_phase", silent_sgd_phase)
  name = "schedule_free_radam"
  _check_learning_rate(name, learning_rate)
  check_betas(name, 0.0, b2, eps)
  rectified = _RectifiedLearningRate(learning_rate, b2, silent_sgd_phase=bool(silent_sgd_phase))
  stages = [_ScaleByRectifiedRms(b2, eps)]
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(rectified))
  return schedule_free(chain(*stages), rectified, b1, weight_lr_power, state_dtype)
