"""Parameter groups: ``masked``, ``freeze``, ``partition`` (torch's param groups, by tree or by path).

A group is chosen by a *mask* (a boolean per parameter) or a *label* (a name per
parameter). Either can be given as

* a tree with the params' structure, or a prefix of it (``{"encoder": False}``
  covers every leaf under ``encoder``);
* a function of the parameter's path and value, ``fn(path, leaf)``, where the
  path is a string such as ``"params/Dense_0/bias"``;
* a function of the whole tree, ``fn(params) -> tree`` (optax's convention);
* for labels, a list of ``(regex, label)`` rules matched with ``re.search``
  against the path, first match wins.

State keeps the parameters' containers: the inner transform of a group sees
the parameters outside the group as ``None`` (JAX's "no value here"), so its
per-parameter state has the params' structure with ``None`` in those places.
``jax.tree.map(f, params, state.inner_state.<field>)`` works (``f`` receives
``None`` for leaves outside the group) and orbax saves and restores it as is.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Mapping, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation, stateless
from gradxform._core.chain import as_transform
from gradxform._core.module import static_field

__all__ = ["freeze", "masked", "partition", "path_str", "set_to_zero"]



def path_str(path: Sequence[Any]) -> str:
  """``(DictKey('params'), DictKey('Dense_0'), DictKey('bias'))`` -> ``"params/Dense_0/bias"``."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


class _Static:
  """A tree or rule list kept as a static (hashable) value of a transform."""

  def __init__(self, value: Any) -> None:
    self.value = value
    leaves, treedef = jax.tree.flatten(value)
    self._key = (treedef, tuple(leaves))

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, _Static) and self._key == other._key

  def __hash__(self) -> int:
    return hash(self._key)


def is_function(spec: Any) -> bool:
  """Whether a mask or label ``spec`` is a function rather than a tree.

  A callable that is also a pytree with leaves, none of them callable or an
  array (an Equinox module of booleans, a Flax struct of labels), is a tree:
  ``jax.tree.map(lambda x: x.ndim > 1, eqx.filter(model, eqx.is_inexact_array))``
  gives one, and it keeps the model's ``__call__``. A ``jax.tree_util.Partial``
  and a callable without leaves stay functions.
  """
  if not callable(spec) or isinstance(spec, _Static):
    return False
  if isinstance(spec, jax.tree_util.Partial):
    return True
  leaves = jax.tree.leaves(spec)
  if not leaves or leaves[0] is spec:  # a plain function, or a callable with nothing in it
    return True
  return any(callable(leaf) or np.ndim(leaf) > 0 for leaf in leaves)


def _freeze_spec(spec: Any) -> Any:
  """Functions stay as they are; trees and rule lists become hashable static values."""
  return spec if is_function(spec) else _Static(spec)


def _takes_path(fn: Callable) -> bool:
  try:
    parameters = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
  except (TypeError, ValueError):
    return False
  return len(parameters) == 2


def _broadcast(where: str, what: str, spec: Any, tree: Any) -> Any:
  """Expands a prefix tree ``spec`` to one value per leaf of ``tree`` (None stays None)."""
  try:
    return jax.tree.map(lambda value, sub: jax.tree.map(lambda _: value, sub), spec, tree,
                        is_leaf=_tree.is_none)
  except ValueError as error:
    raise ValueError(
        f"{where}: the {what} tree does not match the params tree ({error}). Give one "
        f"{what} per parameter, a prefix of the params tree, or a function "
        "fn(path, leaf) of each parameter's path."
    ) from None


def resolve(where: str, what: str, spec: Any, tree: Any) -> Any:
  """One mask value or label per leaf of ``tree``, from any of the accepted forms."""
  if isinstance(spec, _Static):
    spec = spec.value
  if is_function(spec) and _takes_path(spec):
    return jax.tree_util.tree_map_with_path(lambda path, leaf: spec(path_str(path), leaf), tree)
  if is_function(spec):
    return _broadcast(where, what, spec(tree), tree)
  if what == "label" and isinstance(spec, (list, tuple)) and all(
      isinstance(rule, tuple) and len(rule) == 2 for rule in spec):
    return jax.tree_util.tree_map_with_path(lambda path, _: _match(where, spec, path_str(path)), tree)
  return _broadcast(where, what, spec, tree)


def _match(where: str, rules: Sequence[tuple], path: str) -> Any:
  for pattern, label in rules:
    if re.search(pattern, path):
      return label
  raise ValueError(
      f"{where}: no rule matches the parameter {path!r} (rules: {[p for p, _ in rules]}). "
      "Every parameter needs a label: add a catch-all rule such as (r'.*', 'default')."
  )


def _as_mask(where: str, mask: Any) -> bool:
  if isinstance(mask, (bool, np.bool_)) or (not isinstance(mask, jax.core.Tracer) and
      hasattr(mask, "dtype") and mask.dtype == np.bool_ and np.ndim(mask) == 0):
    return bool(mask)
  raise TypeError(
      f"{where}: mask values must be Python booleans (True = the transform applies), got "
      f"{type(mask).__name__} {mask!r}. Masks decide the structure of the computation, "
      "so they cannot be traced values."
  )


def select(mask: Any, tree: Any) -> Any:
  """Keeps the leaves where ``mask`` is true; the others become ``None``."""
  return jax.tree.map(lambda m, x: x if m else None, mask, tree, is_leaf=_tree.is_none)


def merge(mask: Any, inside: Any, outside: Any) -> Any:
  """Leaves of ``inside`` where ``mask`` is true, of ``outside`` elsewhere."""
  return jax.tree.map(lambda m, a, b: a if m else b, mask, inside, outside, is_leaf=_tree.is_none)


def _mask_tree(where: str, spec: Any, tree: Any) -> Any:
  return jax.tree.map(lambda m: _as_mask(where, m), resolve(where, "mask", spec, tree))


def _check_state(where: str, state: Any, expected: type) -> None:
  if not isinstance(state, expected):
    raise TypeError(
        f"{where}: expected a {expected.__name__} as state, got {type(state).__name__}. Pass the state "
        "returned by this transform's init() or update() (inside a chain, states are positional).")


class MaskedState(NamedTuple):
  """State of :func:`masked`: the inner transform's state, ``None`` for parameters outside the mask."""

  inner_state: Any


class _Masked(GradientTransformation):
  inner: GradientTransformation
  mask: Any = static_field()

  def init(self, params):
    return MaskedState(self.inner.init(select(_mask_tree("masked", self.mask, params), params)))

  def update(self, updates, state, params=None, **extra):
    _check_state("masked", state, MaskedState)
    mask = _mask_tree("masked", self.mask, updates if params is None else params)
    new, inner_state = self.inner.update(
        select(mask, updates), state.inner_state, None if params is None else select(mask, params), **extra)
    return merge(mask, new, updates), MaskedState(inner_state)


def masked(inner: Any, mask: Any) -> GradientTransformation:
  """Applies ``inner`` only to the parameters where ``mask`` is true; the others pass unchanged.

  .. math::  u_i = T(g)_i \\text{ if } m_i \\text{ else } g_i

  The inner transform never sees the other parameters (they reach it as
  ``None``), so it keeps no state for them. Masks nest: ``masked(masked(tx,
  m1), m2)`` applies ``tx`` where both are true.

  Args:
    inner: a gradxform (or optax) transform.
    mask: booleans as a tree (or prefix) of the params, ``fn(path, leaf)``,
      or ``fn(params) -> tree`` (see the module docstring).

  Returns:
    A transform with state :class:`MaskedState`.

  References:
    optax.masked, https://optax.readthedocs.io/en/latest/api/optimizer_wrappers.html
  """
  return _Masked(as_transform(inner, "masked"), _freeze_spec(mask))


def set_to_zero() -> GradientTransformation:
  """Replaces every update by zeros: ``u = 0`` (parameters stay where they are).

  References:
    optax.set_to_zero, https://optax.readthedocs.io/en/latest/api/transformations.html
  """
  return stateless(_zeros)


def _zeros(updates: Any, params: Any) -> Any:
  del params
  return jax.tree.map(jnp.zeros_like, updates)


def freeze(mask: Any) -> GradientTransformation:
  """Freezes the parameters where ``mask`` is true: their updates are zero, no state is kept.

  ``freeze(mask) = masked(set_to_zero(), mask)``; chain it with an optimizer
  masked the other way to keep that optimizer's state off frozen parameters:
  ``chain(freeze(m), masked(adam(lr), not m))``, or use :func:`partition`.

  Reference:
    optax's ``freeze`` (``optax.transforms.freeze``), https://optax.readthedocs.io/en/latest/api/transformations.html
  """
  return _Masked(set_to_zero(), _freeze_spec(mask))


class PartitionState(NamedTuple):
  """State of :func:`partition`: ``{label: MaskedState}``, one per transform."""

  inner_states: dict


class _Partition(GradientTransformation):
  transforms: dict
  labels: Any = static_field()

  def _masks(self, tree: Any) -> dict:
    labels = resolve("partition", "label", self.labels, tree)
    flat = jax.tree_util.tree_flatten_with_path(labels)[0]
    for path, label in flat:
      if label not in self.transforms:
        raise ValueError(
            f"partition: the parameter {path_str(path)!r} has label {label!r}, which has no "
            f"transform (transforms are given for {sorted(self.transforms)}). Add a "
            f"transform for {label!r} or change the labels."
        )
    return {label: jax.tree.map(lambda l, label=label: l == label, labels) for label in self.transforms}

  def init(self, params):
    masks = self._masks(params)
    return PartitionState({label: MaskedState(tx.init(select(masks[label], params)))
                           for label, tx in self.transforms.items()})

  def update(self, updates, state, params=None, **extra):
    _check_state("partition", state, PartitionState)
    masks = self._masks(updates if params is None else params)
    new_states, result = {}, updates
    for label, tx in self.transforms.items():
      group_params = None if params is None else select(masks[label], params)
      group, inner = tx.update(select(masks[label], updates), state.inner_states[label].inner_state,
                               group_params, **extra)
      result = merge(masks[label], group, result)
      new_states[label] = MaskedState(inner)
    return result, PartitionState(new_states)


def partition(transforms: Mapping[Any, Any],
              labels: Union[Any, Callable, Sequence[tuple]]) -> GradientTransformation:
  """Applies a different transform to each group of parameters (torch's param groups).

  .. math::  u_i = T_{\\ell(i)}(g)_i

  where ``ℓ(i)`` is the label of parameter ``i``. Example: no weight decay on
  biases and LayerNorm scales, and a 10× smaller learning rate for the embedding::

      gx.partition(
          {"decay": gx.adamw(1e-3, weight_decay=0.1),
           "no_decay": gx.adam(1e-3),
           "embed": gx.adamw(1e-4, weight_decay=0.1)},
          [(r"embed", "embed"), (r"bias$|LayerNorm", "no_decay"), (r".*", "decay")])

  Args:
    transforms: ``{label: transform}``.
    labels: one label per parameter: a tree (or prefix) of labels,
      ``fn(path, leaf) -> label``, ``fn(params) -> tree of labels``, or a list
      of ``(regex, label)`` rules on the path, first match wins.

  Returns:
    A transform with state :class:`PartitionState`; each group's state holds
    ``None`` for parameters of other groups.

  Raises:
    ValueError: at ``init``/``update`` if a parameter matches no rule or has a
    label with no transform.

  References:
    optax.partition, https://optax.readthedocs.io/en/latest/api/combining_optimizers.html
  """
  if not isinstance(transforms, Mapping) or not transforms:
    raise TypeError("partition: transforms must be a non-empty dict {label: transform}, got "
                    f"{type(transforms).__name__}.")
  return _Partition({label: as_transform(tx, f"partition (label {label!r})")
                     for label, tx in transforms.items()}, _freeze_spec(labels))

