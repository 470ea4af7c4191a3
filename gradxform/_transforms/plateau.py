"""Plateau-driven scaling: ``reduce_on_plateau`` (torch's ReduceLROnPlateau, as a transform)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field

__all__ = ["reduce_on_plateau"]

_NAME = "reduce_on_plateau"


class ReduceOnPlateauState(NamedTuple):
  """State of :func:`reduce_on_plateau`.

  ``scale`` (float32 scalar) multiplies the updates (the learning rate relative to its initial value);
  ``best`` (float32 scalar) is the best monitored value so far; ``num_bad_steps`` and
  ``cooldown_counter`` (int32 scalars) are torch's ``num_bad_epochs`` and ``cooldown_counter``.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  scale: jax.Array
  best: jax.Array
  num_bad_steps: jax.Array
  cooldown_counter: jax.Array

  def diagnostics(self) -> dict:
    """``plateau_scale`` (the learning-rate scale), ``plateau_best`` and ``plateau_num_bad_steps``."""
    return {"plateau_scale": self.scale, "plateau_best": self.best, "plateau_num_bad_steps": self.num_bad_steps}


class _ReduceOnPlateau(Transform):
  complex_ok = True  # elementwise: runs on a complex leaf's real view, as torch.optim
  factor: Any
  threshold: Any
  min_scale: Any
  eps: Any
  patience: int = static_field(default=10)
  cooldown: int = static_field(default=0)
  mode: str = static_field(default="min")
  threshold_mode: str = static_field(default="rel")
  name: str = static_field(default=_NAME)
  State = ReduceOnPlateauState

  def init_fields(self, params):
    worst = np.inf if self.mode == "min" else -np.inf
    return {"scale": jnp.ones([], jnp.float32), "best": jnp.asarray(worst, jnp.float32),
            "num_bad_steps": jnp.zeros([], jnp.int32), "cooldown_counter": jnp.zeros([], jnp.int32)}

  def apply(self, updates, state, params, hp, **extra):
    value = extra.get("value")
    if value is None:
      raise ValueError(
          f"{_NAME}: needs the monitored value (e.g. a validation loss) as the extra argument value, "
          "but update() got none. Call opt.update(grads, state, params, value=loss).")
    value = jnp.asarray(value)
    if value.shape != () or not jnp.issubdtype(value.dtype, jnp.floating):
      raise ValueError(f"{_NAME}: value must be a floating scalar (the monitored loss or metric), got "
                       f"shape {value.shape} and dtype {value.dtype}.")
    # This update uses the scale decided by the values seen so far (torch: optimizer.step() uses the
    # learning rate set by earlier scheduler.step(metric) calls); then the new value is recorded.
    scale = state.scale
    updates = jax.tree.map(lambda u: (u * scale.astype(_tree.compute_dtype(u.dtype))).astype(u.dtype), updates)
    current = value.astype(jnp.float32)
    threshold = hp["threshold"].astype(jnp.float32)
    if self.mode == "min":
      better = current < (state.best * (1 - threshold) if self.threshold_mode == "rel" else state.best - threshold)
    else:
      better = current > (state.best * (1 + threshold) if self.threshold_mode == "rel" else state.best + threshold)
    best = jnp.where(better, current, state.best)
    bad = jnp.where(better, 0, state.num_bad_steps + 1)
    cooling = state.cooldown_counter > 0
    cooldown_counter = jnp.where(cooling, state.cooldown_counter - 1, state.cooldown_counter)
    bad = jnp.where(cooling, 0, bad)
    reduce = bad > self.patience
    reduced = jnp.maximum(scale * hp["factor"].astype(jnp.float32), hp["min_scale"].astype(jnp.float32))
    new_scale = jnp.where(reduce & (scale - reduced > hp["eps"].astype(jnp.float32)), reduced, scale)
    cooldown_counter = jnp.where(reduce, self.cooldown, cooldown_counter)
    bad = jnp.where(reduce, 0, bad)
    return updates, {"scale": new_scale, "best": best, "num_bad_steps": bad.astype(jnp.int32),
                     "cooldown_counter": cooldown_counter.astype(jnp.int32)}


def reduce_on_plateau(factor: Any = 0.1, patience: int = 10, threshold: Any = 1e-4, threshold_mode: str = "rel",
                      cooldown: int = 0, min_scale: Any = 0.0, mode: str = "min",
                      eps: Any = 1e-8) -> GradientTransformation:
  """Scales the updates down when a monitored value stops improving, as torch's ``ReduceLROnPlateau``.

  Each ``update(..., value=v)`` is one ``scheduler.step(v)`` of torch: the updates are multiplied by the
  current ``scale`` (the learning rate relative to its initial value), then ``v`` is recorded:

  .. math::

     \\text{better} = \\begin{cases} v < b(1 - \\tau) & \\text{min, rel} \\\\ v < b - \\tau & \\text{min, abs}
       \\\\ v > b(1 + \\tau) & \\text{max, rel} \\\\ v > b + \\tau & \\text{max, abs} \\end{cases}
     \\qquad n \\leftarrow 0 \\text{ if better else } n + 1

  ``b ← v`` when better; during a cooldown ``n ← 0``; when ``n > patience``:
  ``scale ← max(scale·factor, min_scale)`` (if that lowers it by more than ``eps``), a cooldown of
  ``cooldown`` steps starts and ``n ← 0``. Chain it after the learning rate:
  ``chain(adam(1e-3), reduce_on_plateau(patience=5))``; feed a validation loss once per epoch by calling
  the update with it (e.g. inside ``accumulate``, or on the epoch's last step). The scale is
  ``state.scale``; to drive another hyperparameter, read it and pass ``hp * scale`` (hyperparameters are
  leaves). optax.contrib's ``reduce_on_plateau`` applies the new scale to the same update and can average
  the value over steps; this follows torch's decisions exactly.

  Args:
    factor: the factor in (0, 1) applied at each reduction.
    patience: steps without improvement tolerated before a reduction (a non-negative integer).
    threshold: ``τ ≥ 0``, the improvement that counts.
    threshold_mode: ``"rel"`` or ``"abs"``.
    cooldown: steps after a reduction during which bad steps are not counted.
    min_scale: the lowest scale (torch's ``min_lr`` divided by the initial learning rate).
    mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
    eps: reductions smaller than this (in scale) are skipped.

  Returns:
    A transform with state :class:`ReduceOnPlateauState`; ``update`` needs ``value=``.

  References:
    torch's ``ReduceLROnPlateau``,
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html
  """
  check_hyperparameter(_NAME, "factor", factor, low=0.0, high=1.0, high_open=True,
                       hint="factor multiplies the scale at each reduction; torch uses 0.1.")
  check_hyperparameter(_NAME, "threshold", threshold, low=0.0, hint="torch uses 1e-4.")
  check_hyperparameter(_NAME, "min_scale", min_scale, low=0.0, hint="the lowest scale, e.g. 0.0 or 1e-3.")
  check_hyperparameter(_NAME, "eps", eps, low=0.0, hint="torch uses 1e-8.")
  for name, value in (("patience", patience), ("cooldown", cooldown)):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(f"{_NAME}: {name} must be a non-negative integer (a number of steps), got {value!r}.")
  if mode not in ("min", "max"):
    raise ValueError(f"{_NAME}: mode={mode!r} must be 'min' (a loss) or 'max' (an accuracy).")
  if threshold_mode not in ("rel", "abs"):
    raise ValueError(f"{_NAME}: threshold_mode={threshold_mode!r} must be 'rel' or 'abs'.")
  return _ReduceOnPlateau(factor, threshold, min_scale, eps, patience=int(patience), cooldown=int(cooldown),
                          mode=mode, threshold_mode=threshold_mode)
