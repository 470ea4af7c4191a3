"""optax interop: a gradxform transform as a genuine ``optax.GradientTransformationExtraArgs``.

optax's wrappers (``chain``, ``inject_hyperparams``, ``MultiSteps``,
``apply_if_finite``, ...) pass extra keyword arguments (``value=``, ``grad=``,
``value_fn=``) only to transforms that are instances of
``optax.GradientTransformationExtraArgs``; anything else is wrapped so that
they are dropped. optax is imported when :func:`to_optax` is called: it is not
a dependency of gradxform.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from gradxform._core.base import GradientTransformation

__all__ = ["to_optax"]


def to_optax(tx: Any) -> Any:
  """A gradxform transform as an ``optax.GradientTransformationExtraArgs`` (extra arguments pass through).

  ``gx.to_optax(gx.polyak_sgd())`` inside ``optax.chain``, ``optax.MultiSteps``
  or ``optax.apply_if_finite`` receives the ``value=`` (``grad=``,
  ``value_fn=``, ...) given to the outer update; a plain gradxform transform
  there works too, but optax drops its extra arguments. Given a factory (a
  function returning a transform, such as ``gx.polyak_sgd``), returns a factory
  with the same signature whose results are converted, for
  ``optax.inject_hyperparams(gx.to_optax(gx.polyak_sgd))(max_learning_rate=0.5)``.

  Args:
    tx: a gradxform transform, or a function returning one.

  Returns:
    ``optax.GradientTransformationExtraArgs(tx.init, tx.update)`` (or a factory
    of them). Its numbers and state are ``tx``'s.

  Raises:
    ImportError: if optax is not installed.

  References:
    optax.GradientTransformationExtraArgs,
    https://optax.readthedocs.io/en/latest/api/transformations.html#optax.GradientTransformationExtraArgs
  """
  if isinstance(tx, GradientTransformation):
    import optax  # pylint: disable=import-outside-toplevel  (a test-only dependency)

    def update(updates, state, params=None, **extra):
      return tx.update(updates, state, params, **extra)

    return optax.GradientTransformationExtraArgs(tx.init, update)
  if callable(tx) and not hasattr(tx, "init"):
    factory: Callable[..., Any] = tx

    @functools.wraps(factory)
    def make(*args, **kwargs):
      return to_optax(factory(*args, **kwargs))

    return make
  raise TypeError(f"to_optax: expected a gradxform transform or a function returning one, got "
                  f"{type(tx).__name__}. An optax transform needs no conversion.")
