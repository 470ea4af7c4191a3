"""Stochastic weight averaging (Izmailov et al. 2018), as torch.optim.swa_utils.AveragedModel."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation, apply_updates
from gradxform._core.chain import as_transform
from gradxform._core.hyperparams import Transform
from gradxform._core.module import static_field

__all__ = ["swa", "swa_params"]

_NAME = "swa"


class SwaState(NamedTuple):
  """State of :func:`swa`.

  ``average`` (the parameters' structure, dtype ``dtype`` or the parameters') holds the averaged
  parameters once ``n_averaged > 0``; ``n_averaged`` (int32 scalar) counts the parameters averaged, as
  torch's ``AveragedModel.n_averaged``; ``inner_state`` is the wrapped optimizer's state.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  average: Any
  n_averaged: jax.Array
  inner_state: Any

  def diagnostics(self) -> dict:
    """``n_averaged``, the number of parameter sets in the average, for :func:`gradxform.diagnostics`."""
    return {"n_averaged": self.n_averaged}


class _Swa(Transform):
  inner: GradientTransformation
  start_step: int = static_field(default=0)
  update_every: int = static_field(default=1)
  avg_fn: Optional[Callable] = static_field(default=None)
  dtype: Optional[Any] = static_field(default=None)
  State = SwaState

  def init_fields(self, params):
    _tree.require_params(_NAME, params, "keep its own copy of the parameters", "init")
    return {"average": _tree.zeros_like(_NAME, params, self.dtype), "n_averaged": jnp.zeros([], jnp.int32),
            "inner_state": self.inner.init(params)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.require_params(_NAME, params, "average the parameters it produces", "update")
    updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)
    new_params = apply_updates(params, updates)
    n = state.n_averaged
    due = (state.count >= self.start_step) & ((state.count - self.start_step) % self.update_every == 0)
    avg_fn = self.avg_fn

    def rule(a, p):
      dtype = _tree.compute_dtype(_tree.wider(a.dtype, jnp.result_type(p)))
      a32, p32 = a.astype(dtype), jnp.asarray(p).astype(dtype)
      if avg_fn is None:
        averaged = a32 + (p32 - a32) / (n + 1).astype(dtype)
      else:
        averaged = jnp.asarray(avg_fn(a32, p32, n)).astype(dtype)
      new = jnp.where(n == 0, p32, averaged)
      return jnp.where(due, new, a32).astype(a.dtype)

    average = jax.tree.map(rule, state.average, new_params)
    return updates, {"average": average, "n_averaged": jnp.where(due, n + 1, n).astype(jnp.int32),
                     "inner_state": inner_state}


def swa(inner: Any, start_step: int = 0, update_every: int = 1, avg_fn: Optional[Callable] = None,
        dtype: Optional[Any] = None) -> GradientTransformation:
  """Stochastic weight averaging of the parameters ``inner`` produces, as torch's ``AveragedModel``.

  The updates of ``inner`` pass unchanged; at the updates ``t ≥ start_step`` with
  ``(t − start_step) mod update_every = 0`` the new parameters ``p_t`` join the average:

  .. math::

     \\bar p \\leftarrow p_t \\;(n = 0), \\qquad
     \\bar p \\leftarrow \\bar p + \\frac{p_t - \\bar p}{n + 1} \\;\\text{(or } f(\\bar p, p_t, n)\\text{)},
     \\qquad n \\leftarrow n + 1

  which is torch's ``swa_model.update_parameters(model)`` called after those optimizer steps (an equal
  average; ``avg_fn`` replaces it, with torch's signature ``avg_fn(averaged, current, num_averaged)``, e.g.
  an EMA). Read the average with :func:`swa_params`. Pair it with the schedule
  :func:`gradxform.schedules.swa_lr` (torch's ``SWALR``).

  Batch statistics: torch's ``update_bn`` recomputes BatchNorm's running statistics for the averaged
  weights with one pass over the training data. In Flax, do the same: run
  ``model.apply({"params": gx.swa_params(state), "batch_stats": zeros}, x, train=True,
  mutable=["batch_stats"])`` over the training batches with the BatchNorm ``momentum`` set so the
  statistics are a plain average (or average the returned batch means yourself), then evaluate with them.

  Args:
    inner: the optimizer (gradxform or optax).
    start_step: the first update whose parameters are averaged (torch's ``swa_start``, in updates).
    update_every: average every this many updates (e.g. once per epoch).
    avg_fn: a custom averaging function ``(averaged, current, n_averaged) -> averaged``.
    dtype: dtype of the stored average (default: the parameters'; use float32 with bfloat16 parameters).

  Returns:
    A transform with state :class:`SwaState`; ``init`` and ``update`` need the parameters.

  References:
    Izmailov et al., 2018, "Averaging Weights Leads to Wider Optima and Better Generalization",
    https://arxiv.org/abs/1803.05407
  """
  inner = as_transform(inner, _NAME)
  for name, value, low in (("start_step", start_step, 0), ("update_every", update_every, 1)):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
      raise ValueError(f"{_NAME}: {name} must be an integer >= {low} (a number of updates), got {value!r}.")
  if avg_fn is not None and not callable(avg_fn):
    raise TypeError(f"{_NAME}: avg_fn must be a function (averaged, current, n_averaged) -> averaged, "
                    f"got {type(avg_fn).__name__}.")
  if dtype is not None and not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise TypeError(f"{_NAME}: dtype must be a floating dtype such as jnp.float32, got {dtype!r}.")
  return _Swa(inner, start_step=int(start_step), update_every=int(update_every), avg_fn=avg_fn,
              dtype=None if dtype is None else jnp.dtype(dtype))


def swa_params(state: Any) -> Any:
  """The averaged parameters kept by :func:`swa` (torch's ``swa_model`` parameters).

  Searches ``state`` (of any nesting) for the one :class:`SwaState`. Before any parameters were averaged
  (``n_averaged = 0``) the average is all zeros.

  Args:
    state: an optimizer state containing exactly one :class:`SwaState`.

  Returns:
    A tree like the parameters.

  References:
    Izmailov et al., 2018, https://arxiv.org/abs/1803.05407
  """
  is_swa = lambda x: isinstance(x, SwaState)
  found = [x for x in jax.tree.leaves(state, is_leaf=is_swa) if is_swa(x)]
  if len(found) != 1:
    raise ValueError(f"swa_params: found {len(found)} SwaStates in the optimizer state; expected exactly one. "
                     + ("Wrap the optimizer in gx.swa(...) and pass its state." if not found else
                        "Pass the part of the state that holds the one you mean."))
  return found[0].average
