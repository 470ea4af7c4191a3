"""Weight decay added to the updates: ``add_decayed_weights``."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from gradxform import _tree
from gradxform._base import GradientTransformation
from gradxform._hyperparams import Transform, check_hyperparameter
from gradxform._module import static_field

__all__ = ["add_decayed_weights"]

_NAME = "add_decayed_weights"


class AddDecayedWeightsState(NamedTuple):
  """State of :func:`add_decayed_weights`: only the count and the decay."""

  count: jax.Array  # int32 scalar
  hyperparams: dict


class _Frozen:
  """A pytree of Python booleans kept as a static, hashable value."""

  def __init__(self, tree: Any) -> None:
    self.leaves, self.treedef = jax.tree.flatten(tree)
    self.tree = tree

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, _Frozen) and (self.treedef, self.leaves) == (other.treedef, other.leaves)

  def __hash__(self) -> int:
    return hash((self.treedef, tuple(self.leaves)))

  def __call__(self, params: Any) -> Any:
    del params
    return self.tree


def _resolve_mask(mask: Any, params: Any) -> Any:
  tree = mask(params)
  leaves = jax.tree.leaves(tree)
  if not all(isinstance(leaf, (bool, jnp.bool_)) or getattr(leaf, "dtype", None) == jnp.bool_
             for leaf in leaves):
    raise TypeError(f"{_NAME}: the mask must be a tree of booleans (True = apply weight decay).")
  return tree


class _AddDecayedWeights(Transform):
  weight_decay: Any
  mask: Optional[Callable] = static_field(default=None)
  State = AddDecayedWeightsState

  def apply(self, updates, state, params, hp, **extra):
    if params is None:
      raise ValueError(
          f"{_NAME}: params are required to add weight decay. Call "
          "update(grads, state, params) with the current parameters.")
    rule = lambda g, p, weight_decay: (g + weight_decay * p, p)
    if self.mask is None:
      updates, _ = _tree.leafwise(_NAME, rule, updates, params, scalars=hp)
      return updates, {}
    mask = _resolve_mask(self.mask, params)
    try:
      masked_params = jax.tree.map(lambda keep, p: p if keep else None, mask, params)
    except ValueError as error:
      raise ValueError(
          f"{_NAME}: the mask's tree structure does not match the params ({error}). "
          "Give one boolean per parameter leaf, or a function params -> such a tree.") from None
    masked_updates = jax.tree.map(lambda keep, g: g if keep else None, mask, updates)
    decayed, _ = _tree.leafwise(_NAME, rule, masked_updates, masked_params, scalars=hp)
    updates = jax.tree.map(lambda keep, g, d: d if keep else g, mask, updates, decayed,
                           is_leaf=lambda x: x is None)
    return updates, {}


def add_decayed_weights(
    weight_decay: Any = 0.0, mask: Optional[Union[Any, Callable[[Any], Any]]] = None
) -> GradientTransformation:
  """Adds ``λ p`` to the updates: ``u = g + λ · p``.

  Before the scaling stages this is L2 regularization coupled into the
  gradient (``torch.optim.SGD``'s ``weight_decay``); after them and before
  :func:`scale_by_learning_rate` it is decoupled weight decay (AdamW, Loshchilov
  & Hutter 2019): ``p ← p − η (u + λ p)``.

  Args:
    weight_decay: ``λ ≥ 0`` (float, array or schedule).
    mask: a tree of booleans with the structure of the params (True = decay
      this leaf), or a function ``params -> such a tree``. Default: all leaves.

  References:
    Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization",
    https://arxiv.org/abs/1711.05101
  """
  check_hyperparameter(_NAME, "weight_decay", weight_decay, low=0.0,
                       hint="weight_decay must be non-negative (e.g. 1e-2).")
  if mask is not None and not callable(mask):
    mask = _Frozen(mask)
  return _AddDecayedWeights(weight_decay, mask=mask)
