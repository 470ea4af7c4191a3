"""One call for a dashboard: every diagnostic and hyperparameter an optimizer state records."""

from __future__ import annotations

from typing import Any, Iterator

import jax

from gradxform._core.inspect import hyperparams

__all__ = ["diagnostics"]


def _states(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
  """``(path, state)`` for every NamedTuple state in a state tree, outermost first."""
  if hasattr(node, "_fields"):
    yield where, node
    children = [(f, getattr(node, f)) for f in node._fields if f != "hyperparams"]
  elif isinstance(node, dict):
    children = list(node.items())
  elif isinstance(node, (tuple, list)):
    children = list(enumerate(node))
  else:
    return
  for key, child in children:
    yield from _states(child, f"{where}/{key}" if where else str(key))


def diagnostics(state: Any) -> dict[str, jax.Array]:
  """Every diagnostic scalar and hyperparameter value in an optimizer state, as a flat dict for a logger.

  Collects, by path in the state (so a partitioned optimizer reports per group):

  * what each state that records diagnostics reports (its ``diagnostics()`` method): the gradient norm
    before and after ``clip_by_global_norm`` and the fraction of clipped updates; the gradient, update and
    parameter norms of :func:`gradxform.monitor`; the non-finite updates ``apply_if_finite`` skipped;
  * under ``hyperparams/``, the hyperparameters the state holds (:func:`gradxform.hyperparams`): the
    value each schedule gave at the last update, and the inputs of :func:`gradxform.inject`. Constants
    are the optimizer's, not the state's: log them from there.

  Example: ``{"0/grad_norm": 3.1, "0/inner_state/0/grad_norm_before_clip": 3.1,
  "0/inner_state/0/clipped_fraction": 0.25, "hyperparams/0/inner_state/1/learning_rate": 1e-3, ...}``.
  All values are scalars (cheap to compute, to transfer and to log); call ``jax.device_get`` on the
  dict once per logging step.

  Args:
    state: an optimizer state (any nesting of chains, wrappers and partitions).

  Returns:
    ``{path: scalar array}``.

  References:
    Cited as missing by optax issue 326 ("log the gradient norm before clipping"),
    https://github.com/google-deepmind/optax/issues/326
  """
  found: dict[str, jax.Array] = {}
  for where, node in _states(state):
    report = getattr(node, "diagnostics", None)
    if callable(report):
      for name, value in report().items():
        found[f"{where}/{name}" if where else name] = value
  for name, value in hyperparams(state).items():
    found[f"hyperparams/{name}"] = value
  return found
