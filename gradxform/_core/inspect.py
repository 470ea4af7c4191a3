"""Reading and replacing parts of an optimizer state by path; listing hyperparameters."""

from __future__ import annotations

from typing import Any, Sequence, Union

import jax
import jax.numpy as jnp

from gradxform._core.records import Hyperparams, NoHyperparams, _is_variable

__all__ = ["hyperparams", "tree_get", "tree_set"]

Path = Union[str, Sequence[Union[str, int]]]


def _keys(path: Path) -> tuple:
  if isinstance(path, str):
    return tuple(part for part in path.split("/") if part)
  return tuple(path)


def _child(node: Any, key: Any, where: str) -> Any:
  if isinstance(node, NoHyperparams):
    raise KeyError(f"at {where or '<root>'}: {node._refuse(key).args[0]}")
  if isinstance(node, dict):
    if key in node:
      return node[key]
    options = list(node)
  elif hasattr(node, "_fields"):  # NamedTuple states
    if key in node._fields:
      return getattr(node, key)
    if str(key).isdigit() and int(key) < len(node):
      return node[int(key)]
    options = list(node._fields)
  elif isinstance(node, (tuple, list)):
    if str(key).lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
      return node[int(key)]
    options = list(range(len(node)))
  else:
    options = []
  raise KeyError(f"no {key!r} at {where or '<root>'} ({type(node).__name__}); "
                 f"available: {options}")


def tree_get(tree: Any, path: Path) -> Any:
  """The part of ``tree`` at ``path``: ``"0/nu"``, ``"adam/numerator/ema"`` or ``("adam", 0, "nu")``.

  Path components are dict keys, NamedTuple field names and tuple indices.

  Raises:
    KeyError: naming the first component that does not exist and the options there.

  References:
    optax.tree_utils.tree_get, https://optax.readthedocs.io/en/latest/api/utilities.html
  """
  node, where = tree, ""
  for key in _keys(path):
    try:
      node = _child(node, key, where)
    except KeyError as error:
      raise KeyError(f"tree_get({path!r}): {error.args[0]}") from None
    where = f"{where}/{key}" if where else str(key)
  return node


def _replace(node: Any, keys: tuple, value: Any, where: str) -> Any:
  if not keys:
    return value
  key, rest = keys[0], keys[1:]
  child = _child(node, key, where)
  new = _replace(child, rest, value, f"{where}/{key}" if where else str(key))
  if isinstance(node, Hyperparams):  # only inputs can be written, cast to their dtype
    return node.replaced({key: new}, where=f"tree_set({where or '<root>'})")
  if isinstance(node, dict):
    return {**node, key: new}
  if hasattr(node, "_fields"):
    field = key if key in node._fields else node._fields[int(key)]
    return node._replace(**{field: new})
  items = list(node)
  items[int(key)] = new
  return type(node)(items)


def tree_set(tree: Any, path: Path, value: Any, *, check: bool = True) -> Any:
  """A copy of ``tree`` with the part at ``path`` replaced by ``value`` (nothing is mutated).

  With ``check`` (default), ``value`` must have the replaced part's tree
  structure, shapes and dtypes, so the state stays valid for the optimizer and
  a jitted step does not recompile.

  References:
    optax.tree_utils.tree_set, https://optax.readthedocs.io/en/latest/api/utilities.html
  """
  old = tree_get(tree, path)
  if check:
    old_leaves, old_def = jax.tree.flatten(old)
    new_leaves, new_def = jax.tree.flatten(value)
    if old_def != new_def:
      raise ValueError(f"tree_set({path!r}): the new value's structure {new_def} differs from "
                       f"the old {old_def}. Pass check=False to change it on purpose.")
    for i, (a, b) in enumerate(zip(old_leaves, new_leaves)):
      if (jnp.shape(a), jnp.result_type(a)) != (jnp.shape(b), jnp.result_type(b)):
        raise ValueError(
            f"tree_set({path!r}): leaf {i} has shape {jnp.shape(b)} and dtype "
            f"{jnp.result_type(b)}, but the state holds shape {jnp.shape(a)} and dtype "
            f"{jnp.result_type(a)}. Cast or reshape it (or pass check=False).")
  return _replace(tree, _keys(path), value, "")


def hyperparams(state: Any) -> dict[str, jax.Array]:
  """The hyperparameters a state holds, by path, for logging: inputs and the values of schedules.

  Example: ``{"0/decay": 0.999, "0/numerator/decay": 0.9, "1/learning_rate": 1e-3}``
  for ``gx.inject(gx.adam(1e-3))``: for an injected optimizer (:func:`gradxform.inject`)
  they are the inputs the next update reads, under the paths
  :func:`gradxform.set_hyperparams` takes. A scheduled hyperparameter shows the value
  used at the last update (at count 0 after init). Constants are not in the state
  (the optimizer holds them): ``gx.hyperparams(gx.adam(1e-3).init(params))`` is ``{}``.

  References:
    optax.tree_utils, https://optax.readthedocs.io/en/latest/api/utilities.html
  """
  found: dict[str, jax.Array] = {}

  def visit(node: Any, where: str) -> None:
    if hasattr(node, "_fields"):
      if "hyperparams" in node._fields and isinstance(node.hyperparams, dict):
        for name, value in node.hyperparams.items():
          found[f"{where}/{name}" if where else name] = value.get_value() if _is_variable(value) else value
      children = [(f, getattr(node, f)) for f in node._fields if f != "hyperparams"]
    elif isinstance(node, dict):
      children = list(node.items())
    elif isinstance(node, (tuple, list)):
      children = list(enumerate(node))
    else:
      return
    for key, child in children:
      visit(child, f"{where}/{key}" if where else str(key))

  visit(state, "")
  return found
