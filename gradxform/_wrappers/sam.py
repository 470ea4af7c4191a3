"""Sharpness-aware minimization (Foret et al. 2021), as optax.contrib.sam: ``sam`` and its ``normalize``."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import EmptyState, GradientTransformation, apply_updates
from gradxform._core.chain import as_transform
from gradxform._core.hyperparams import Transform
from gradxform._core.module import static_field
from gradxform._transforms.options import check_flag
from gradxform._wrappers.accumulation import check_period
from gradxform._wrappers.averaging import _copy

__all__ = ["SamState", "normalize", "sam"]

_NAME = "sam"


class _Normalize(GradientTransformation):

  def init(self, params):
    del params
    return EmptyState()

  def update(self, updates, state, params=None, **extra):
    del params, extra
    norm = _tree.global_norm(updates)
    safe = jnp.where(norm > 0, norm, jnp.ones([], norm.dtype))  # a zero gradient stays zero

    def rule(g):
      dtype = _tree.compute_dtype(_tree.wider(g.dtype, safe.dtype))
      return (g.astype(dtype) / safe.astype(dtype),)

    updates, = _tree.leafwise("normalize", rule, updates)
    return updates, state


def normalize() -> GradientTransformation:
  """Divides the updates by their global norm: the direction of SAM's adversarial step.

  .. math::

     u = g / \\|g\\|_2 \\quad (u = 0 \\text{ if } g = 0)

  with the norm over all leaves together. Equal to ``optax.contrib.normalize()``, except on an all-zero
  gradient, where optax returns NaN (0/0) and this returns zeros (no perturbation).

  Returns:
    A stateless transform.

  References:
    Foret et al., 2021, https://arxiv.org/abs/2010.01412 (eq. 2, ``ε̂ = ρ g/‖g‖`` for p = 2)
  """
  return _Normalize()


class SamState(NamedTuple):
  """State of :func:`sam`.

  ``steps_since_sync`` (int32 scalar) counts the adversarial steps since the last descent step;
  ``opt_state`` and ``adv_state`` are the outer and adversarial optimizers' states; ``cache`` holds the
  outer parameters (the parameters' structure and dtypes; ``None`` with ``opaque_mode``).
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  steps_since_sync: jax.Array  # int32 scalar
  opt_state: Any
  adv_state: Any
  cache: Any

  def diagnostics(self) -> dict:
    """``steps_since_sync`` (0 after a descent step), for :func:`gradxform.diagnostics`."""
    return {"steps_since_sync": self.steps_since_sync}


def _select(condition: jax.Array, if_true: Any, if_false: Any) -> Any:
  """Per leaf ``if_true`` where the scalar ``condition`` holds, else ``if_false`` (in its dtype)."""
  return jax.tree.map(lambda a, b: jnp.where(condition, a, b).astype(jnp.result_type(b)), if_true, if_false)


def _like(grads: Any, updates: Any) -> Any:
  """``updates`` in the gradients' dtypes (both branches of a step return the same types)."""
  return jax.tree.map(lambda u, g: None if u is None else jnp.asarray(u).astype(jnp.result_type(g)), updates, grads,
                      is_leaf=_tree.is_none)


class _Sam(Transform):
  optimizer: GradientTransformation
  adv_optimizer: GradientTransformation
  sync_period: int = static_field(default=2)
  reset_state: bool = static_field(default=True)
  opaque_mode: bool = static_field(default=False)
  batch_axis_name: Optional[str] = static_field(default=None)
  State = SamState

  def init_fields(self, params):
    _tree.require_params(_NAME, params, "keep the outer parameters between adversarial steps", "init")
    return {"steps_since_sync": jnp.zeros([], jnp.int32), "opt_state": self.optimizer.init(params),
            "adv_state": self.adv_optimizer.init(params),
            "cache": None if self.opaque_mode else _copy(_NAME, params)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params(_NAME, params, "take the adversarial steps from the parameters", "update")
    grad_fn = extra.pop("grad_fn", None)
    if self.opaque_mode:
      return self._opaque(updates, state, params, grad_fn, extra)
    return self._transparent(updates, state, params, extra)

  def _transparent(self, grads, state, params, extra):
    first = state.steps_since_sync == 0
    last = state.steps_since_sync == self.sync_period - 1
    # The outer parameters: the current ones after a descent step, else those cached then.
    outer = _select(first, params, state.cache)

    def ascend():  # the adversary descends on -L; the outer optimizer waits
      adv_updates, adv_state = self.adv_optimizer.update(grads, state.adv_state, params, **extra)
      return _like(grads, jax.tree.map(jnp.negative, adv_updates)), state.opt_state, adv_state

    def descend():  # from the outer parameters, with the gradient at the perturbed ones
      opt_updates, opt_state = self.optimizer.update(grads, state.opt_state, outer, **extra)

      def back(c, p, u):  # moves the parameters from p to c + u
        dtype = _tree.wider(jnp.result_type(c), jnp.result_type(p), jnp.result_type(u))
        return (c.astype(dtype) - p.astype(dtype)) + u.astype(dtype)

      adv_state = self.adv_optimizer.init(params) if self.reset_state else state.adv_state
      return _like(grads, jax.tree.map(back, outer, params, opt_updates)), opt_state, adv_state

    # A branch, not a blend of both (optax's c·a + (1 − c)·b): only one optimizer runs per step, and a
    # NaN on the branch not taken (optax's normalize of a zero gradient) does not leak.
    updates, opt_state, adv_state = jax.lax.cond(last, descend, ascend)
    return updates, {"steps_since_sync": ((state.steps_since_sync + 1) % self.sync_period).astype(jnp.int32),
                     "opt_state": opt_state, "adv_state": adv_state, "cache": outer}

  def _opaque(self, grads, state, params, grad_fn, extra):
    if grad_fn is None or not callable(grad_fn):
      raise ValueError(f"{_NAME}: with opaque_mode=True, update needs grad_fn=, a function (params, i) -> "
                       "gradients of the loss at params (i = 0 … sync_period − 2 is the adversarial step), "
                       f"e.g. grad_fn=jax.grad(lambda p, i: loss(p, batch)); got {grad_fn!r}.")
    adv_params, adv_grads, adv_state = params, grads, state.adv_state
    for i in range(self.sync_period - 1):
      adv_updates, adv_state = self.adv_optimizer.update(adv_grads, adv_state, adv_params, **extra)
      adv_params = apply_updates(adv_params, jax.tree.map(jnp.negative, adv_updates))
      adv_grads = grad_fn(adv_params, i)
      if self.batch_axis_name is not None:
        adv_grads = jax.lax.pmean(adv_grads, axis_name=self.batch_axis_name)
    if self.reset_state:
      adv_state = self.adv_optimizer.init(params)
    updates, opt_state = self.optimizer.update(adv_grads, state.opt_state, params, **extra)
    return updates, {"steps_since_sync": jnp.zeros([], jnp.int32), "opt_state": opt_state,
                     "adv_state": adv_state, "cache": None}


def sam(optimizer: Any, adv_optimizer: Any, sync_period: int = 2, reset_state: bool = True,
        opaque_mode: bool = False, batch_axis_name: Optional[str] = None) -> GradientTransformation:
  """Sharpness-aware minimization: descend with the gradient taken at an adversarially perturbed point.

  SAM minimizes ``max_{‖ε‖ ≤ ρ} L(w + ε)``. With the paper's adversary (one normalized ascent step,
  ``adv_optimizer = gx.chain(gx.normalize(), gx.sgd(rho))``) and ``sync_period = 2``:

  .. math::

     \\hat\\epsilon_t = \\rho\\, \\frac{\\nabla L(w_t)}{\\|\\nabla L(w_t)\\|_2}, \\qquad
     w_{t+1} = w_t + \\mathrm{optimizer}\\big(\\nabla L(w_t + \\hat\\epsilon_t)\\big)

  In general ``sync_period − 1`` adversarial steps ``w ← w − adv_optimizer(∇L(w))`` (the adversary
  minimizes ``−L``) are followed by one descent step of ``optimizer`` from the outer parameters ``w_t``
  with the last gradient. Default mode (``opaque_mode=False``): each call to ``update`` is one of these
  steps, so the training loop alternates (with ``sync_period = 2``) an adversarial step, whose update moves
  the parameters to ``w_t + ε̂``, and a descent step, whose update moves them from there to ``w_{t+1}``;
  evaluate after a descent step (``state.steps_since_sync == 0``). With ``opaque_mode=True`` one call does
  both: ``update(grads, state, params, grad_fn=g)`` takes the adversarial steps internally, calling
  ``g(params, i)`` for ``i = 0 … sync_period − 2``, and returns the descent update only (use it when each
  call has side effects, e.g. BatchNorm statistics). The adversary's state is reset after each descent
  step with ``reset_state``; the outer optimizer's state advances on descent steps only.

  Reproduces ``optax.contrib.sam`` (both modes) step for step, with two differences where optax's output is
  not usable: with ``sync_period=1`` optax moves the parameters back to those of the previous step at every
  update, while this is plain ``optimizer``; and it branches (``lax.cond``) instead of computing both steps
  and blending them arithmetically, so each update runs one of the two optimizers and a NaN in the branch
  not taken (e.g. optax's ``normalize`` of a zero gradient) does not leak (under ``vmap`` both run). Extra
  arguments of ``update`` reach both optimizers.

  Args:
    optimizer: the outer optimizer, e.g. ``gx.sgd(0.1, momentum=0.9)`` (gradxform or optax).
    adv_optimizer: the adversary; its update is subtracted, e.g. ``gx.chain(gx.normalize(), gx.sgd(rho))``
      for the paper's ``ρ`` (0.05 in most of its experiments).
    sync_period: steps per cycle, ``sync_period − 1`` adversarial ones and one descent step (static int ≥ 1).
    reset_state: re-initialize the adversary's state after each descent step.
    opaque_mode: take the adversarial steps inside one ``update`` (needs ``grad_fn=``).
    batch_axis_name: in ``opaque_mode`` under ``pmap``/``shard_map``, ``pmean`` the adversarial gradients
      over this axis.

  Returns:
    A transform with state :class:`SamState`; ``init`` and ``update`` need the parameters.

  References:
    Foret, Kleiner, Mobahi & Neyshabur, 2021, "Sharpness-Aware Minimization for Efficiently Improving
    Generalization", https://arxiv.org/abs/2010.01412
  """
  optimizer = as_transform(optimizer, f"{_NAME} (optimizer)")
  adv_optimizer = as_transform(adv_optimizer, f"{_NAME} (adv_optimizer)")
  sync_period = check_period(_NAME, "sync_period", sync_period,
                             "the number of steps per cycle: sync_period − 1 adversarial steps, then one descent")
  reset_state = check_flag(_NAME, "reset_state", reset_state)
  opaque_mode = check_flag(_NAME, "opaque_mode", opaque_mode)
  if batch_axis_name is not None and not isinstance(batch_axis_name, str):
    raise TypeError(f"{_NAME}: batch_axis_name must be None or the name (a str) of the mapped axis to "
                    f"average the adversarial gradients over, got {type(batch_axis_name).__name__}.")
  return _Sam(optimizer, adv_optimizer, sync_period=sync_period, reset_state=reset_state,
              opaque_mode=opaque_mode, batch_axis_name=batch_axis_name)
