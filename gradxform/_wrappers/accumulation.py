"""Gradient accumulation over micro-batches: ``accumulate``."""

from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import as_transform
from gradxform._core.module import static_field

__all__ = ["AccumulateState", "accumulate"]

_NAME = "accumulate"



def check_period(transform: str, name: str, value: Any, meaning: str) -> int:
  """Returns ``value`` as a Python int, or raises a ``ValueError`` unless it is an integer >= 1."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
    raise ValueError(
        f"{transform}: {name} must be a Python integer >= 1 ({meaning}); got "
        f"{type(value).__name__} {value!r}. It is a static option: pass e.g. {name}=4.")
  if value < 1:
    raise ValueError(f"{transform}: {name}={value} is out of range [1, inf): it is {meaning}. "
                     f"Pass an integer >= 1, e.g. {name}=4.")
  return int(value)


def floating_dtype(transform: str, name: str, value: Any) -> Optional[jnp.dtype]:
  """``value`` as a floating ``jnp.dtype`` (``None`` stays ``None``), or a ``TypeError``."""
  if value is None:
    return None
  try:
    dtype = jnp.dtype(value)
  except TypeError:
    raise TypeError(f"{transform}: {name} must be a floating dtype such as jnp.float32, "
                    f"got {value!r}.") from None
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"{transform}: {name}={dtype} is not a floating dtype; use e.g. jnp.float32.")
  return dtype


def _add(g: Any, a: jax.Array) -> jax.Array:
  """``a + g`` in the wider of their dtypes (at least float32), stored in ``a``'s dtype."""
  if g is None:
    return a
  g = jnp.asarray(g)
  dtype = _tree.compute_dtype(_tree.wider(a.dtype, g.dtype))
  return (a.astype(dtype) + g.astype(dtype)).astype(a.dtype)


def _divide(a: jax.Array, k: Any, dtype: Any) -> jax.Array:
  """``a / k`` computed in at least float32, returned in ``dtype`` (the gradients')."""
  compute = _tree.compute_dtype(a.dtype)
  return (a.astype(compute) / jnp.asarray(k).astype(compute)).astype(dtype)


class AccumulateState(NamedTuple):
  """State of :func:`accumulate`.

  ``grad_acc`` (the parameters' structure, dtype ``acc_dtype`` or the
  parameters') holds the sum of the micro-gradients since the last inner step;
  ``inner_state`` is the wrapped transform's state, which changes only on
  every ``every_k``-th micro-step. ``emitted`` says whether the last call
  ran the inner step (its update is the one to apply, e.g. to count optimizer
  steps or log); ``gradient_step`` counts those calls.
  """

  mini_step: jax.Array  # int32 scalar, micro-steps accumulated so far in this cycle, in [0, every_k)
  grad_acc: Any
  inner_state: Any
  gradient_step: jax.Array  # int32 scalar, inner steps taken (the count a schedule of every_k sees)
  emitted: jax.Array  # bool scalar, whether the last update was an inner step (optax's has_updated)
  skip_state: Any = ()  # what should_skip reported at the last call (optax's skip_state); () without it


class _Accumulate(GradientTransformation):
  inner: GradientTransformation
  every_k: int = static_field()
  acc_dtype: Optional[Any] = static_field(default=None)
  every_k_schedule: Any = None  # a schedule gradient_step -> k (then every_k is ignored)
  should_skip: Optional[Callable] = static_field(default=None)

  def init(self, params):
    skip_state = ()
    if self.should_skip is not None:  # zeros shaped as the predicate's report
      shapes = jax.eval_shape(self.should_skip, params, jnp.zeros([], jnp.int32), params)[1]
      skip_state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return AccumulateState(
        mini_step=jnp.zeros([], jnp.int32),
        grad_acc=_tree.zeros_like(_NAME, params, self.acc_dtype),
        inner_state=self.inner.init(params),
        gradient_step=jnp.zeros([], jnp.int32),
        emitted=jnp.zeros([], jnp.bool_),
        skip_state=skip_state,
    )

  def period(self, gradient_step: jax.Array) -> Any:
    """``k`` for the cycle after ``gradient_step`` inner steps: an int, or the schedule's value (int32, >= 1)."""
    if self.every_k_schedule is None:
      return self.every_k
    k = jnp.asarray(self.every_k_schedule(gradient_step))
    if not jnp.issubdtype(k.dtype, jnp.integer):
      k = jnp.round(k)
    return jnp.maximum(k.astype(jnp.int32), 1)

  def update(self, updates, state, params=None, **extra):
    if not isinstance(state, AccumulateState):
      raise TypeError(
          f"{_NAME}: expected an AccumulateState as state, got {type(state).__name__}. "
          "Pass the state returned by this transform's init() or update().")
    k = self.period(state.gradient_step)
    _tree.check_floating(_NAME, updates, "update")
    flat, treedef = jax.tree_util.tree_flatten_with_path(updates, is_leaf=_tree.is_none)
    acc_leaves, acc_def = jax.tree.flatten(state.grad_acc, is_leaf=_tree.is_none)
    if acc_def != treedef:
      raise _tree._structure_error(_NAME, "update", updates, state.grad_acc)
    _tree._check_leaves(_NAME, "update", [path for path, _ in flat], [g for _, g in flat], acc_leaves)
    acc = jax.tree.map(_add, updates, state.grad_acc, is_leaf=_tree.is_none)
    mini_step = state.mini_step + 1
    skip_state = state.skip_state
    if self.should_skip is not None:  # a skipped micro-step leaves everything as it was (optax's MultiSteps)
      skipped, skip_state = self.should_skip(updates, state.gradient_step, params)
      skipped = jnp.asarray(skipped).astype(jnp.bool_)
      acc = jax.tree.map(lambda new, old: jnp.where(skipped, old, new), acc, state.grad_acc)
      mini_step = jnp.where(skipped, state.mini_step, mini_step)
      emit = (mini_step >= k) & ~skipped
    else:
      emit = mini_step >= k

    def inner_step():
      # the mean gradient, in the dtype the gradients came in
      mean = jax.tree.map(lambda g, a: None if g is None else _divide(a, k, jnp.result_type(g)),
                          updates, acc, is_leaf=_tree.is_none)
      return self.inner.update(mean, state.inner_state, params, **extra)

    out_updates, _ = jax.eval_shape(inner_step)

    def skip():
      # laid out as the inner update (cond's branches must agree on Explicit mesh axes)
      zeros = jax.tree.map(lambda s: None if s is None else _tree.sharded_like(jnp.zeros(s.shape, s.dtype), s),
                           out_updates, is_leaf=_tree.is_none)
      return zeros, state.inner_state

    new_updates, inner_state = jax.lax.cond(emit, inner_step, skip)
    new_state = AccumulateState(
        mini_step=jnp.where(emit, jnp.zeros([], jnp.int32), mini_step),
        grad_acc=jax.tree.map(lambda a: jnp.where(emit, jnp.zeros_like(a), a), acc),
        inner_state=inner_state,
        gradient_step=jnp.where(emit, _tree.increment(state.gradient_step), state.gradient_step),
        emitted=emit,
        skip_state=skip_state,
    )
    return new_updates, new_state


def accumulate(inner: Any, every_k: Any, acc_dtype: Optional[Any] = None,
               should_skip: Optional[Callable] = None) -> GradientTransformation:
  """Gradient accumulation: one step of ``inner`` on the mean of ``k`` micro-batch gradients.

  With ``k = every_k`` and micro-step ``j = 1, 2, …``:

  .. math::

     a_j = a_{j-1} + g_j \\quad (a_0 = 0), \\qquad
     u_j = \\begin{cases}
       \\mathrm{inner}(a_j / k,\\; s,\\; p) \\text{, then } a_j \\leftarrow 0
         & \\text{if } j \\equiv 0 \\pmod k \\\\
       0 & \\text{otherwise}
     \\end{cases}

  On micro-steps that do not complete a cycle the updates are zero (the
  parameters stay put) and the inner state is untouched, so ``k`` micro-steps
  with gradients ``g_1 … g_k`` equal one step of ``inner`` on their mean (its
  step count, schedules included, advances once per cycle). The inner update
  runs under ``jax.lax.cond``, only on the ``k``-th micro-step. This is optax's
  ``MultiSteps`` as an ordinary transform: it can be a stage of :func:`chain`
  (stages before it see every micro-gradient; stages after it see zeros on
  the micro-steps). ``apply_if_finite(accumulate(...))`` drops a non-finite
  micro-gradient alone; ``accumulate(apply_if_finite(...))`` drops its cycle.

  Args:
    inner: the transform applied to the mean gradient (gradxform or optax).
    every_k: ``k ≥ 1``, the number of micro-batches per step: a static int,
      or a schedule ``gradient_step -> k`` (a ``gx.schedules`` schedule or a
      function, as optax's ``every_k_schedule``), evaluated at the number of
      inner steps taken; values are rounded to integers and floored at 1.
    acc_dtype: dtype of the accumulator (default: each parameter's). With
      bfloat16 parameters, ``jnp.float32`` keeps the sum exact enough; the
      mean is cast back to the gradients' dtype before ``inner`` sees it.
    should_skip: ``(updates, gradient_step, params) -> (skip, report)``, as optax's
      ``should_skip_update_fn`` (e.g. :func:`skip_not_finite`, or
      ``functools.partial(skip_large_updates, max_squared_norm=c)``): a skipped
      micro-gradient is dropped (zero update, nothing accumulated, the micro-step
      not counted) and ``report`` is kept in ``state.skip_state``.

  Returns:
    A transform with state :class:`AccumulateState`.

  References:
    Goyal et al., 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1
    Hour" (large batches as sums of per-worker micro-batch gradients),
    https://arxiv.org/abs/1706.02677
  """
  inner = as_transform(inner, _NAME)
  acc_dtype = floating_dtype(_NAME, "acc_dtype", acc_dtype)
  if should_skip is not None and not callable(should_skip):
    raise TypeError(f"{_NAME}: should_skip must be a function (updates, gradient_step, params) -> (skip, report), "
                    f"got {type(should_skip).__name__}; e.g. gx.skip_not_finite.")
  if callable(every_k):
    return _Accumulate(inner, every_k=0, acc_dtype=acc_dtype, every_k_schedule=every_k, should_skip=should_skip)
  every_k = check_period(_NAME, "every_k", every_k, "the number of micro-batches accumulated per step")
  return _Accumulate(inner, every_k=every_k, acc_dtype=acc_dtype, should_skip=should_skip)
