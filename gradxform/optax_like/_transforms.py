"""optax's transforms and wrappers whose signature or layout differs from gradxform's (see the package docstring)."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx
from gradxform._core.base import GradientTransformation, call_update, extra_names
from gradxform._core.module import static_field
from gradxform._wrappers.accumulation import AccumulateState
from gradxform.optax_like._states import with_optax_moments

__all__ = ["LookaheadParams", "LookaheadState", "MultiSteps", "adaptive_grad_clip", "add_noise", "centralize",
           "lookahead", "multi_transform", "partition", "scale_by_amsgrad", "scale_by_factored_rms",
           "scale_by_polyak", "scale_by_rss", "stateless"]


def _key_or_seed(where: str, key: Any, seed: Optional[int]) -> Any:
  """optax's ``key=`` and its deprecated name ``seed=``: the one given (or None)."""
  if seed is not None:
    if key is not None:
      raise ValueError(f"{where}: pass key or seed, not both (optax's rule; seed is its deprecated name).")
    return seed
  return key


def seed_of(where: str, key: Any, seed: Optional[int], default: int = 0) -> int:
  """optax's ``key=`` / deprecated ``seed=`` pair as gradxform's integer seed (optax makes its key from it)."""
  key = _key_or_seed(where, key, seed)
  if key is None:
    return default
  if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral):
    raise TypeError(
        f"{where}: key must be an integer here, got {type(key).__name__}. The state's key is made by init() "
        "from the integer, giving optax's noise for the same integer; pass e.g. key=0.")
  return int(key)


def key_words(where: str, key: Any) -> Optional[tuple]:
  """A concrete jax.random key (typed, or a raw uint32 pair) as its two words; ``None`` for an integer or None."""
  if key is None or isinstance(key, (numbers.Integral, np.bool_)):
    return None
  if isinstance(key, jax.core.Tracer):
    raise TypeError(f"{where}: key is a traced value; pass a concrete key (or an integer) when building the "
                    "transform (inject_hyperparams treats an integer key as a hyperparameter: name it in "
                    "static_args).")
  if hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  words = np.asarray(key)
  if words.dtype != np.uint32 or words.shape != (2,):
    raise TypeError(f"{where}: key must be an integer or a threefry jax.random key (jax.random.key(0) or "
                    f"jax.random.PRNGKey(0)); got an array of shape {words.shape} and dtype {words.dtype}.")
  return tuple(int(w) for w in words)


def add_noise(eta: Any, gamma: Any, key: Any = None, *, seed: Optional[int] = None) -> GradientTransformation:
  """``optax.add_noise``: ``g + N(0, η/(1+t)^γ)`` (:func:`gradxform.add_noise`) from optax's ``key``.

  ``key`` is an integer or a threefry ``jax.random`` key (typed or raw): the same key gives optax's noise.

  References:
    Neelakantan et al., 2015, https://arxiv.org/abs/1511.06807
  """
  key = _key_or_seed("add_noise", key, seed)
  words = key_words("add_noise", key)
  if words is None:
    return gx.add_noise(eta, gamma, seed_of("add_noise", key, None))
  return dataclasses.replace(gx.add_noise(eta, gamma, 0), key_words=words)


def _optax_unit_axes(axis: Any) -> Callable[[tuple], Any]:
  """optax's ``unitwise_norm`` axes: ``axis`` for every leaf, else by shape (see :func:`adaptive_grad_clip`)."""
  def axes(shape: tuple) -> Any:
    if axis is not None:
      return axis
    if sum(n != 1 for n in shape) <= 1:
      return None
    if len(shape) in (2, 3):
      return (0,)
    if len(shape) in (4, 5):
      return tuple(range(len(shape) - 1))
    raise ValueError(f"adaptive_grad_clip: a leaf of shape {shape} has no default unit (optax's rule covers "
                     "1- to 5-D leaves); pass axis=... (the axes one unit's norm reduces).")
  return axes


def adaptive_grad_clip(clipping: Any, eps: Any = 1e-3, axis: Any = None) -> GradientTransformation:
  """``optax.adaptive_grad_clip``: :func:`gradxform.adaptive_grad_clip` with optax's units.

  A unit's norm reduces ``axis`` for every leaf, or by shape as optax does
  (a leaf with at most one axis longer than 1: the whole leaf; 2-D and 3-D:
  axis 0; 4-D: axes 0-2; 5-D: axes 0-3). ``gx.adaptive_grad_clip`` reduces
  all axes but the last (3-D and ``(1, n)`` leaves differ).

  References:
    Brock et al., 2021, https://arxiv.org/abs/2102.06171
  """
  return dataclasses.replace(gx.adaptive_grad_clip(clipping, eps), unit_axes=_optax_unit_axes(axis))


def centralize() -> GradientTransformation:
  """``optax.centralize``: ``g − mean(g)`` over all axes but the first, for leaves of 2 or more axes.

  optax's layout puts the units first (PyTorch's ``(out, in, ...)``);
  ``gx.centralize`` centers each output unit of a JAX kernel ``(..., in, out)``.

  References:
    Yong et al., 2020, https://arxiv.org/abs/2004.01461
  """
  return dataclasses.replace(gx.centralize(), units_first=True)


def refuse_masked_extra_args(where: str, mask_compatible_extra_args: bool) -> None:
  """optax's ``mask_compatible_extra_args=True`` (per-parameter extra arguments masked too) is not reproduced."""
  if mask_compatible_extra_args:
    raise NotImplementedError(
        f"{where}: mask_compatible_extra_args=True (optax masks per-parameter extra arguments too) is not "
        "reproduced; extra arguments reach the inner transforms unmasked.")


def partition(transforms: Any, param_labels: Any, *, mask_compatible_extra_args: bool = False) -> GradientTransformation:
  """``optax.partition``: :func:`gradxform.partition` (each label's transform on its parameters)."""
  refuse_masked_extra_args("partition", mask_compatible_extra_args)
  return gx.partition(transforms, param_labels)


def multi_transform(transforms: Any, param_labels: Any, *,
                    mask_compatible_extra_args: bool = False) -> GradientTransformation:
  """``optax.multi_transform``, optax's former name of :func:`partition`."""
  return partition(transforms, param_labels, mask_compatible_extra_args=mask_compatible_extra_args)


def stateless(f: Callable[[Any, Any], Any]) -> GradientTransformation:
  """``optax.stateless``: ``u = f(updates, params)`` (:func:`gradxform.stateless`)."""
  return gx.stateless(f)


def scale_by_polyak(f_min: Any = 0.0, max_learning_rate: Any = 1.0, eps: Any = 0.0,
                    variant: str = "sps") -> GradientTransformation:
  """``optax.scale_by_polyak``: optax's default ``variant="sps"`` does not clip the gap ``f − f*`` at 0."""
  return gx.scale_by_polyak(f_min, max_learning_rate, eps, variant=variant)


def scale_by_factored_rms(factored: bool = True, decay_rate: Any = 0.8, step_offset: Any = 0,
                          min_dim_size_to_factor: int = 128, epsilon: Any = 1e-30,
                          decay_rate_fn: Optional[Callable] = None) -> GradientTransformation:
  """``optax.scale_by_factored_rms``: :func:`gradxform.scale_by_factored_rms` with optax's options.

  ``β_t = 1 − (t + t₀)^{−decay_rate}`` in float32, ``ε`` added to ``g²``, the
  two largest axes factored when both have at least ``min_dim_size_to_factor``
  elements.
  """
  if decay_rate_fn is not None:
    raise NotImplementedError(
        "scale_by_factored_rms: decay_rate_fn is not reproduced; β_t = 1 - t^(-decay_rate) is built in "
        "(gx.scale_by_factored_rms's beta2_decay may be a schedule instead).")
  return gx.scale_by_factored_rms(-jnp.float32(decay_rate) if isinstance(decay_rate, numbers.Real) else -decay_rate,
                                  eps=0.0, eps_root=epsilon, factored=factored, factor_axes="largest",
                                  min_dim_size_to_factor=min_dim_size_to_factor, step_offset=step_offset)


def scale_by_amsgrad(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, eps_root: Any = 0.0,
                     mu_dtype: Optional[Any] = None, bias_correction_mu: bool = True,
                     bias_correction_nu: bool = True) -> GradientTransformation:
  """``optax.scale_by_amsgrad``: ``m̂ / (√(max_{s≤t} v̂_s + ε_root) + ε)``, the maximum of the bias-corrected ``v̂``.

  The state is a ``ScaleByAmsgradState`` with optax's fields ``count``, ``mu``, ``nu``, ``nu_max``.

  References:
    Reddi et al., 2018, https://openreview.net/forum?id=ryQu7f-RZ
  """
  if not (bias_correction_mu and bias_correction_nu):
    raise NotImplementedError("scale_by_amsgrad: only bias_correction_mu=bias_correction_nu=True (optax's "
                              "default) is reproduced.")
  return with_optax_moments(gx.scale_by_adam(b1, b2, eps, eps_root, amsgrad=True, mu_dtype=mu_dtype,
                                             debias_before_max=True), amsgrad=True)


def scale_by_rss(initial_accumulator_value: Any = 0.1, eps: Any = 1e-7) -> GradientTransformation:
  """``optax.scale_by_rss``: Adagrad's ``g / √(G + ε)``, ``G`` the sum of squares from 0.1."""
  return gx.scale_by_adagrad(initial_accumulator_value, eps=0.0, eps_root=eps)


# ---------------------------------------------------------------- lookahead (optax's params layout)


class LookaheadParams(NamedTuple):
  """optax's lookahead parameters: the fast weights, which the gradient is taken at, and the slow ones."""

  fast: Any
  slow: Any

  @classmethod
  def init_synced(cls, params: Any) -> "LookaheadParams":
    """Fast and slow weights both equal to ``params``."""
    return cls(fast=params, slow=params)


class LookaheadState(NamedTuple):
  """State of :func:`lookahead` (optax's fields)."""

  fast_state: Any
  steps_since_sync: jax.Array  # int32 scalar in [0, sync_period)


class _Lookahead(GradientTransformation):
  fast_optimizer: Any
  slow_step_size: Any
  sync_period: int = static_field(default=5)
  reset_state: bool = static_field(default=False)

  def init(self, params):
    fast = params.fast if isinstance(params, LookaheadParams) else params
    return LookaheadState(self.fast_optimizer.init(fast), jnp.zeros([], jnp.int32))

  def update(self, updates, state, params=None, **extra):
    if not isinstance(params, LookaheadParams):
      raise TypeError(
          "lookahead (optax_like): params must be a LookaheadParams(fast, slow), as in optax: "
          "params = optax_like.LookaheadParams.init_synced(params), gradients taken at params.fast, "
          f"evaluate at params.slow; got {type(params).__name__}. gx.lookahead keeps the slow weights "
          "in its state instead.")
    inner = self.fast_optimizer
    fast_updates, fast_state = call_update(inner.update, extra_names(inner.update), updates, state.fast_state,
                                           params.fast, extra)
    sync = state.steps_since_sync == self.sync_period - 1
    alpha = self.slow_step_size

    def leaf(fast, update, slow):  # on a sync step: slow += α(fast + u − slow), fast jumps to the new slow
      gap = fast + update - slow
      slow_update = jnp.where(sync, alpha * gap, 0).astype(slow.dtype)
      return jnp.where(sync, slow_update - gap + update, update).astype(update.dtype), slow_update

    pairs = jax.tree.map(leaf, params.fast, fast_updates, params.slow)
    outer = jax.tree.structure(params.fast)
    fast_out, slow_out = jax.tree.transpose(outer, jax.tree.structure((0, 0)), pairs)
    if self.reset_state:
      fresh = inner.init(params.fast)
      fast_state = jax.tree.map(lambda now, new: jnp.where(sync, new, now), fast_state, fresh)
    steps = (state.steps_since_sync + 1) % self.sync_period
    return LookaheadParams(fast_out, slow_out), LookaheadState(fast_state, steps)


def lookahead(fast_optimizer: Any, sync_period: int, slow_step_size: Any,
              reset_state: bool = False) -> GradientTransformation:
  """``optax.lookahead``: Lookahead on optax's ``LookaheadParams(fast, slow)`` layout.

  The gradient is taken at ``params.fast``; the update is a
  ``LookaheadParams`` of updates. With ``k = sync_period``, ``α =
  slow_step_size`` and ``u`` the fast optimizer's update, on every ``k``-th
  step the slow weights move ``φ ← φ + α(θ + u − φ)`` and the fast weights jump
  to the new ``φ``; otherwise ``θ ← θ + u`` and ``φ`` stays.
  ``gx.lookahead`` is the same rule with the slow weights in its state and the
  ordinary parameter tree.

  References:
    Zhang et al., 2019, "Lookahead Optimizer: k steps forward, 1 step back",
    https://arxiv.org/abs/1907.08610
  """
  if callable(slow_step_size):
    raise TypeError("lookahead (optax_like): slow_step_size must be a number, as in optax (its state counts only "
                    "the steps since the last synchronization); gx.lookahead takes a schedule of the step count.")
  gx.lookahead(fast_optimizer, sync_period, slow_step_size, reset_state)  # checks the values
  return _Lookahead(fast_optimizer, slow_step_size, sync_period=int(sync_period), reset_state=bool(reset_state))


# ---------------------------------------------------------------- MultiSteps


class MultiSteps:
  """``optax.MultiSteps``: accumulate ``k`` micro-batch gradients, then one step of the inner optimizer.

  The transform is :func:`gradxform.accumulate` (``.gradient_transformation()``
  returns it; ``init``/``update`` delegate to it). Its state is an
  :class:`~gradxform.AccumulateState`: ``inner_state`` (optax:
  ``inner_opt_state``), ``grad_acc`` (optax: ``acc_grads``, here the sum, not
  the running mean; float32 by default, as optax), ``mini_step``,
  ``gradient_step``, ``skip_state``.
  """

  def __init__(self, opt: Any, every_k_schedule: Any, use_grad_mean: bool = True,
               should_skip_update_fn: Optional[Callable] = None, accumulator_dtype: Any = jnp.float32) -> None:
    inner = opt
    if not use_grad_mean:
      if not isinstance(every_k_schedule, numbers.Integral):
        raise NotImplementedError("MultiSteps: use_grad_mean=False is reproduced for an integer every_k_schedule "
                                  "only (the sum is the mean times k).")
      inner = gx.chain(gx.scale(float(every_k_schedule)), opt)
    self._opt = opt
    self._transform = gx.accumulate(inner, every_k_schedule, accumulator_dtype, should_skip=should_skip_update_fn)

  @property
  def inner_opt(self) -> Any:
    """The wrapped optimizer."""
    return self._opt

  def init(self, params: Any) -> AccumulateState:
    """The state for ``params``."""
    return self._transform.init(params)

  def update(self, updates: Any, state: AccumulateState, params: Any = None, **extra: Any):
    """Zero updates on accumulating calls; the inner optimizer's on every ``k``-th."""
    return self._transform.update(updates, state, params, **extra)

  def has_updated(self, state: AccumulateState) -> jax.Array:
    """Whether the last call ran the inner optimizer (a bool scalar)."""
    return state.emitted

  def gradient_transformation(self) -> GradientTransformation:
    """The transform (a :func:`gradxform.accumulate`)."""
    return self._transform
