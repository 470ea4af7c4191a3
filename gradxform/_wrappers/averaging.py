"""Averaging of the parameters: ``lookahead`` (slow weights) and ``ema_params`` (Polyak averaging)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._wrappers.accumulation import check_period, floating_dtype
from gradxform._core.base import GradientTransformation, apply_updates
from gradxform._core.chain import as_transform
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field
from gradxform._core.rounding import round_like

__all__ = ["EmaParamsState", "LookaheadState", "averaged_params", "ema_params", "lookahead"]




def _copy(name: str, params: Any, dtype: Optional[Any] = None) -> Any:
  """A fresh copy of the parameters (so that donating params and state never aliases a buffer)."""
  _tree.check_floating(name, params, "parameter")
  return jax.tree.map(lambda p: jnp.array(p, dtype=dtype or jnp.result_type(p), copy=True), params)


def _check_params(name: str, params: Any, reference: Any) -> None:
  """Raises if ``params`` does not have the structure and shapes the state was built for."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=_tree.is_none)
  leaves, ref_def = jax.tree.flatten(reference, is_leaf=_tree.is_none)
  if treedef != ref_def:
    raise _tree._structure_error(name, "params", params, reference)
  _tree._check_leaves(name, "params", [path for path, _ in flat], [p for _, p in flat], leaves)


class LookaheadState(NamedTuple):
  """State of :func:`lookahead`.

  ``slow`` holds the slow weights ``φ`` (the parameters' structure and
  dtypes); ``inner_state`` is the state of the fast optimizer, carried across
  synchronizations. ``count`` is the number of (fast) steps taken, so a sync
  happens when it reaches a multiple of ``sync_period``.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  slow: Any
  inner_state: Any


class _Lookahead(Transform):
  inner: GradientTransformation
  slow_step_size: Any
  sync_period: int = static_field(default=5)
  reset_state: bool = static_field(default=False)
  State = LookaheadState

  def init_fields(self, params):
    _tree.require_params("lookahead", params, "keep its own copy of the parameters", "init")
    return {"slow": _copy("lookahead", params), "inner_state": self.inner.init(params)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params("lookahead", params, "keep its own copy of the parameters", "update")
    _check_params("lookahead", params, state.slow)
    fast_updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)
    sync = (state.count + 1) % self.sync_period == 0
    alpha = hp["slow_step_size"]

    def rule(path, u, p, slow):
      if u is None:
        return None, slow
      if p is None or slow is None:
        raise ValueError(
            f"lookahead: the update at {_tree.keystr(path)} has no parameter (params or the "
            "state hold None there). Pass params with the structure given to init().")
      u, p = jnp.asarray(u), jnp.asarray(p)
      dtype = _tree.compute_dtype(_tree.wider(u.dtype, p.dtype, slow.dtype))
      # θ_{t,k}, rounded as the parameters will be (reduce_precision: jit keeps the rounding)
      fast = round_like(p.astype(dtype) + u.astype(dtype), p.dtype)
      new_slow = round_like(slow.astype(dtype) + alpha.astype(dtype) * (fast - slow.astype(dtype)), slow.dtype)
      to_slow = new_slow - p.astype(dtype)  # moves the parameters to φ_t
      return (jnp.where(sync, to_slow.astype(u.dtype), u),
              jnp.where(sync, new_slow.astype(slow.dtype), slow))

    flat, treedef = jax.tree_util.tree_flatten_with_path(fast_updates, is_leaf=_tree.is_none)
    try:
      p_leaves, s_leaves = treedef.flatten_up_to(params), treedef.flatten_up_to(state.slow)
    except ValueError:
      raise _tree._structure_error("lookahead", "inner optimizer's update", fast_updates,
                                   state.slow) from None
    outs = [rule(path, u, p, s) for (path, u), p, s in zip(flat, p_leaves, s_leaves)]
    new_updates = jax.tree.unflatten(treedef, [u for u, _ in outs])
    slow = jax.tree.unflatten(treedef, [s for _, s in outs])
    if self.reset_state:  # a synchronization restarts the fast optimizer at the new (slow) weights
      fresh = self.inner.init(jax.tree.map(lambda p, s: s.astype(jnp.result_type(p)), params, slow))
      inner_state = jax.tree.map(lambda new, old: jnp.where(sync, new, old), fresh, inner_state)
    return new_updates, {"slow": slow, "inner_state": inner_state}


def lookahead(inner: Any, sync_period: int = 5, slow_step_size: Any = 0.5,
              reset_state: bool = False) -> GradientTransformation:
  """Lookahead: the parameters follow ``inner``, and every ``k`` steps move towards slow weights.

  Algorithm 1 of Zhang et al. (2019), on the ordinary parameters: the
  parameters are the fast weights ``θ``, the state keeps the slow weights
  ``φ`` (``φ_0 = θ_0``). With ``k = sync_period`` and ``α = slow_step_size``,
  at step ``t``:

  .. math::

     \\theta' = \\theta_{t-1} + \\mathrm{inner}(g_t), \\qquad
     \\begin{cases}
       \\phi \\leftarrow \\phi + \\alpha(\\theta' - \\phi),\\; \\theta_t = \\phi
         & \\text{if } k \\mid t \\\\
       \\theta_t = \\theta'  & \\text{otherwise}
     \\end{cases}

  so the returned update is ``u_t = inner(g_t)``, or ``φ_new − θ_{t-1}`` on a
  synchronization step (the parameters jump to the new slow weights, which
  are also the next fast weights). The inner optimizer's state is carried
  across synchronizations (as the paper and torch-optimizer do), or, with
  ``reset_state=True`` (optax's option), replaced by ``inner.init`` at the
  new weights on each synchronization step. After a synchronization the
  parameters *are* the slow weights; evaluate there (or read
  ``state.slow``). Use it as the last stage of a chain, or wrap the whole
  chain, since later stages would change the update it computed.

  Args:
    inner: the fast optimizer (gradxform or optax), e.g. ``gx.adam(1e-3)``.
    sync_period: ``k ≥ 1``, fast steps per synchronization (a static int;
      the paper uses 5 or 10).
    slow_step_size: ``α`` in [0, 1] (float, array, or a schedule of the step
      count); ``α = 1`` is plain ``inner``.
    reset_state: re-initialize the inner optimizer's state at each
      synchronization (optax's ``reset_state``).

  Returns:
    A transform with state :class:`LookaheadState`. ``init`` and ``update``
    need the parameters.

  References:
    Zhang, Lucas, Hinton & Ba, 2019, "Lookahead Optimizer: k steps forward, 1
    step back", https://arxiv.org/abs/1907.08610
  """
  inner = as_transform(inner, "lookahead")
  sync_period = check_period("lookahead", "sync_period", sync_period,
                             "the number of fast steps between synchronizations with the slow weights")
  check_hyperparameter("lookahead", "slow_step_size", slow_step_size, low=0.0, high=1.0,
                       hint="slow_step_size is the slow weights' step α towards the fast weights; "
                            "the paper uses 0.5.")
  return _Lookahead(inner, slow_step_size, sync_period=sync_period, reset_state=bool(reset_state))


class EmaParamsState(NamedTuple):
  """State of :func:`ema_params`.

  ``average`` (the parameters' structure; dtype ``dtype`` or the
  parameters') is the running average ``a_t``; ``weight`` the total weight
  ``w_t`` it carries, so that :func:`averaged_params` returns ``a_t / w_t``;
  ``inner_state`` is the state of the wrapped optimizer.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  average: Any
  weight: jax.Array  # scalar of the decay's dtype (float32 unless x64): 1 - Π β_s, or 1 without debias
  inner_state: Any


class _EmaParams(Transform):
  inner: GradientTransformation
  decay: Any
  debias: bool = static_field(default=True)
  dtype: Optional[Any] = static_field(default=None)
  State = EmaParamsState

  def init_fields(self, params):
    _tree.require_params("ema_params", params, "keep its own copy of the parameters", "init")
    weight_dtype = self.resolve(jnp.zeros([], jnp.int32))["decay"].dtype
    if self.debias:
      average, weight = _tree.zeros_like("ema_params", params, self.dtype), jnp.zeros([], weight_dtype)
    else:
      average, weight = _copy("ema_params", params, self.dtype), jnp.ones([], weight_dtype)
    return {"average": average, "weight": weight, "inner_state": self.inner.init(params)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params("ema_params", params, "keep its own copy of the parameters", "update")
    _check_params("ema_params", params, state.average)
    updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)
    new_params = apply_updates(params, updates)
    decay = hp["decay"]

    def rule(a, p):
      dtype = _tree.compute_dtype(_tree.wider(a.dtype, jnp.result_type(p)))
      beta = decay.astype(dtype)
      p = round_like(jnp.asarray(p).astype(dtype), jnp.result_type(p))  # as stored, eager or jit
      return (beta * a.astype(dtype) + (1 - beta) * p).astype(a.dtype)

    average = jax.tree.map(rule, state.average, new_params)
    weight = decay * state.weight + (1 - decay) if self.debias else state.weight
    return updates, {"average": average, "weight": weight.astype(state.weight.dtype),
                     "inner_state": inner_state}


def ema_params(inner: Any, decay: Any = 0.999, debias: bool = True,
               dtype: Optional[Any] = None) -> GradientTransformation:
  """Polyak averaging as an exponential moving average of the parameters, for evaluation.

  Wraps ``inner`` (whose updates it returns unchanged) and averages the
  parameters each update produces, ``p_t = p_{t-1} + u_t``:

  .. math::

     a_t = \\beta\\, a_{t-1} + (1 - \\beta)\\, p_t, \\qquad
     w_t = \\beta\\, w_{t-1} + (1 - \\beta), \\qquad
     \\bar p_t = a_t / w_t

  With ``debias`` (default) ``a_0 = 0, w_0 = 0``, so ``w_t = 1 − β^t`` and
  ``\\bar p_t = \\sum_s β^{t-s} p_s / \\sum_s β^{t-s}`` is a normalized average of
  ``p_1 … p_t`` (with a scheduled ``β``, ``w_t = 1 − Π_s β_s``, still exact).
  Without it ``a_0 = p_0, w_0 = 1`` (the average starts at the initial
  parameters, as TensorFlow's ``ExponentialMovingAverage``). Read the average
  with :func:`averaged_params` (before the first update with ``debias`` it is
  zero). Use it as the last stage of a chain, or wrap the whole chain, so that
  ``u_t`` is the update actually applied.

  Args:
    inner: the optimizer (gradxform or optax).
    decay: ``β`` in [0, 1) (float, array or schedule); ``1/(1 − β)`` is
      roughly the number of recent steps averaged.
    debias: start from zero and divide by ``1 − β^t`` (else start from the
      initial parameters).
    dtype: dtype of the stored average (default: the parameters'). With
      bfloat16 parameters use ``jnp.float32``: a bfloat16 average cannot
      resolve steps of ``(1 − β)(p − a)``.

  Returns:
    A transform with state :class:`EmaParamsState`. ``init`` and ``update``
    need the parameters.

  References:
    Polyak & Juditsky, 1992, "Acceleration of Stochastic Approximation by
    Averaging", https://doi.org/10.1137/0330046
  """
  inner = as_transform(inner, "ema_params")
  check_hyperparameter("ema_params", "decay", decay, low=0.0, high=1.0, high_open=True,
                       hint="decay is the averaging coefficient β; use a value in [0, 1), e.g. 0.999.")
  dtype = floating_dtype("ema_params", "dtype", dtype)
  return _EmaParams(inner, decay, debias=bool(debias), dtype=dtype)


def averaged_params(state: Any) -> Any:
  """The averaged parameters ``\\bar p_t = a_t / w_t`` kept by :func:`ema_params`, for evaluation.

  Searches ``state`` (an optimizer state of any nesting: a chain's tuple, the
  state of another wrapper, an optax state) for the one :class:`EmaParamsState`
  and returns its debiased average, a tree like the parameters in the
  average's dtype. Stacked states (from ``jax.vmap``) give stacked averages.

  Args:
    state: an optimizer state containing exactly one :class:`EmaParamsState`
      (an outer one hides any nested inside its ``inner_state``).

  Returns:
    The averaged parameters.

  References:
    Polyak & Juditsky, 1992, "Acceleration of Stochastic Approximation by
    Averaging", https://doi.org/10.1137/0330046
  """
  is_ema = lambda x: isinstance(x, EmaParamsState)
  found = [x for x in jax.tree.leaves(state, is_leaf=is_ema) if is_ema(x)]
  if len(found) != 1:
    what = "no EmaParamsState" if not found else f"{len(found)} EmaParamsStates"
    raise ValueError(
        f"averaged_params: found {what} in the optimizer state; expected exactly one. "
        + ("Wrap the optimizer in gx.ema_params(...) and pass its state."
           if not found else "Pass the part of the state that holds the one you mean."))
  ema = found[0]
  weight = jnp.asarray(ema.weight)

  def read(a):
    dtype = _tree.compute_dtype(_tree.wider(a.dtype, weight.dtype))
    w = weight.astype(dtype).reshape(weight.shape + (1,) * (a.ndim - weight.ndim))
    zero = w == 0
    return jnp.where(zero, jnp.zeros([], dtype), a.astype(dtype) / jnp.where(zero, 1, w)).astype(a.dtype)

  return jax.tree.map(read, ema.average)
