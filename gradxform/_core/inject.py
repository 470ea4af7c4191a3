"""Hyperparameters as state inputs: ``inject`` moves them out of the optimizer, ``set_hyperparams`` writes them.

Frameworks keep the optimizer where JAX treats it as static: a closure of the
jitted step, Flax linen's ``TrainState.tx``, Flax NNX's ``Optimizer.tx``, a
Python-float leaf under ``eqx.filter_jit``. There a new learning rate in the
optimizer is a new compilation. ``inject(opt)`` returns the same optimizer with
every numeric hyperparameter moved into its state (the optimizer keeps only
the initial values, as static Python numbers): the step then reads them as
ordinary array inputs, and ``set_hyperparams`` changes them between steps.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform
from gradxform._core.records import Hyperparams, _is_variable
from gradxform._core.module import InState, Module, _is_static_value

__all__ = ["inject", "set_hyperparams"]


def _python_number(where: str, value: Any) -> Any:
  """A concrete scalar as a Python int or float (so that it is hashable and holds no array)."""
  if isinstance(value, jax.core.Tracer):
    raise TypeError(
        f"inject: {where} is a traced value. Call gx.inject(...) outside jit/vmap/grad, on concrete "
        "numbers: the state then carries the value, and the jitted step reads it as an input.")
  if isinstance(value, numbers.Number):
    return value
  array = np.asarray(value)
  if array.ndim != 0:
    raise ValueError(f"inject: {where} has shape {array.shape}; hyperparameters are scalars.")
  return int(array) if np.issubdtype(array.dtype, np.integer) else float(array)


def _state_dtype(value: Any) -> str:
  """float32, or the value's own floating dtype when wider (float64 under x64); never bfloat16/float16."""
  dtype = getattr(value, "dtype", None)
  if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
  return "float32" if jnp.finfo(dtype).bits < 32 else jnp.dtype(jax.dtypes.canonicalize_dtype(dtype)).name


def _static_numbers(tree: Any, where: str) -> Any:
  """Every leaf of ``tree`` (a schedule, a wrapper's option) as a Python number."""
  return jax.tree.map(lambda leaf: _python_number(where, leaf), tree)


def _copy(obj: Any, changes: Mapping[str, Any]) -> Any:
  new = object.__new__(type(obj))
  for field in dataclasses.fields(obj):
    object.__setattr__(new, field.name, changes.get(field.name, getattr(obj, field.name)))
  return new


def _inject_transform(t: Transform) -> Transform:
  name = t.transform_name()
  hyper = set(t.hyperparameter_names())
  changes = {}
  for field in dataclasses.fields(t):
    value = getattr(t, field.name)
    if field.metadata.get("static") or _is_static_value(value) or value is None:
      continue
    if field.name not in hyper:  # nested transforms (Adam's numerator, a wrapper's inner)
      changes[field.name] = _inject_tree(value)
    elif isinstance(value, Module):  # a schedule: stays in the optimizer, its value is logged
      changes[field.name] = _static_numbers(value, f"{name}.{field.name}")
    else:
      changes[field.name] = InState(_python_number(f"{name}.{field.name}", value), _state_dtype(value))
  return _copy(t, changes)


def _inject_tree(tree: Any) -> Any:
  def visit(node):
    if isinstance(node, Transform):
      return _inject_transform(node)
    return _python_number("an option of a wrapper", node)
  return jax.tree.map(visit, tree, is_leaf=lambda x: isinstance(x, Transform))


def inject(optimizer: GradientTransformation) -> GradientTransformation:
  """The same optimizer with its hyperparameters in the state, as inputs of each update.

  Every numeric hyperparameter of every stage (learning rate, betas, eps,
  weight decay, momentum, clipping thresholds, ...) leaves the optimizer: it
  keeps only the initial value, as a static Python number, and ``init`` writes
  that value into the state's ``hyperparams`` (float32, or float64 when the
  value is float64, whatever the parameters' dtype). Each update reads it from
  there, so

  .. code-block:: python

      state = gx.set_hyperparams(state, learning_rate=1e-4)

  changes it between steps without recompiling, however the framework holds
  the optimizer (a closure, ``TrainState.tx``, ``nnx.Optimizer.tx``,
  ``eqx.filter_jit``): the injected optimizer has no leaves at all, so it is
  hashable and static everywhere. The numbers are those of ``optimizer``.

  Schedules stay in the optimizer (their value at each step is recorded in
  the state, and writing it raises); options of wrappers that are not
  hyperparameters (``apply_if_finite``'s ``max_consecutive_errors``) become
  static Python numbers. optax stages inside a chain are left as they are.

  Args:
    optimizer: any gradxform transform (a chain, a wrapper, a partition, ...),
      built from concrete numbers (not inside ``jit``).

  Returns:
    The injected optimizer; ``gx.inject(opt).init(params)`` has the structure of
    ``opt.init(params)``.

  References:
    optax.inject_hyperparams (the idea; here it applies to a built optimizer,
    keeps float32 hyperparameters for low-precision parameters, and leaves the
    state's layout unchanged),
    https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.inject_hyperparams
  """
  if not isinstance(optimizer, GradientTransformation):
    raise TypeError(f"inject: expected a gradxform transform, got {type(optimizer).__name__}. Wrap an "
                    "optax transform as gx.chain(optax_transform) (its hyperparameters stay in it).")
  return _inject_tree(optimizer)


def _path_names(path) -> list[str]:
  names = []
  for key in path:
    for attr in ("name", "key", "idx"):
      if hasattr(key, attr):
        names.append(str(getattr(key, attr)))
        break
    else:
      names.append(str(key))
  return names


def set_hyperparams(tree: Any, values: Optional[Mapping[str, Any]] = None, /, **named: Any) -> Any:
  """Writes hyperparameters into a state made by an injected optimizer (see :func:`inject`).

  ``set_hyperparams(state, learning_rate=1e-4)`` sets every hyperparameter named
  ``learning_rate`` in ``state``; ``set_hyperparams(state, {"adam/1/learning_rate":
  1e-4})`` sets one by its path, as :func:`gradxform.hyperparams` lists them.
  ``tree`` may be any pytree holding optimizer states (a Flax ``TrainState``,
  a tuple ``(model, opt_state)``); new values are cast to the stored dtype
  (float32 or wider) and keep its shape, so a jitted step does not recompile.
  Values held in mutable boxes (Flax NNX's ``Variable``, as in
  ``nnx.Optimizer.opt_state``) are set in place, and ``tree`` is returned.

  Returns:
    ``tree`` with the new values (a new tree; nothing else is copied).

  Raises:
    KeyError: a name or path that is not in the state (the available ones are listed).
    TypeError: a name that is not an input: the optimizer holds its value (it
      was not built with :func:`inject`) or it follows a schedule.

  References:
    optax's ``inject_hyperparams`` (the idiom it replaces),
    https://optax.readthedocs.io/en/latest/api/optimizer_schedules.html#optax.inject_hyperparams
  """
  requests = dict(values or {})
  requests.update(named)
  if not requests:
    return tree
  is_node = lambda x: isinstance(x, Hyperparams)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_node)
  changes: dict[int, dict[str, Any]] = {}
  matched = {request: 0 for request in requests}
  available = []
  for i, (path, node) in enumerate(leaves):
    if not is_node(node):
      continue
    names = _path_names(path)
    prefix = "/".join(names[:-1] if names and names[-1] == "hyperparams" else names)
    for name in node:
      full = f"{prefix}/{name}" if prefix else name
      available.append(full)
      for request in requests:
        if request in (name, full):
          if name not in node.inputs:
            raise type(node._refuse(name))(f"set_hyperparams({request!r}): {node._refuse(name).args[0]}")
          matched[request] += 1
          changes.setdefault(i, {})[name] = requests[request]
  missing = [request for request, count in matched.items() if not count]
  if missing:
    raise KeyError(
        f"set_hyperparams: no hyperparameter {missing} in this state. It has: {available}. A constant "
        "the optimizer holds is not in its state: to set hyperparameters between steps, build the "
        "optimizer with gx.inject(opt).")
  new_leaves, in_place = [], True
  for i, (path, node) in enumerate(leaves):
    if i not in changes:
      new_leaves.append(node)
      continue
    if all(_is_variable(dict.__getitem__(node, name)) for name in changes[i]):
      for name, value in changes[i].items():
        node[name] = value  # sets the Variable's value in place
      new_leaves.append(node)
    else:
      in_place = False
      new_leaves.append(node.replaced(changes[i], where="set_hyperparams"))
  return tree if in_place else jax.tree_util.tree_unflatten(treedef, new_leaves)
