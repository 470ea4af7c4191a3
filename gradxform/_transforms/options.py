"""Options shared by the named optimizers: flag, dtype and seed checks and torch.optim's gradient preamble.

``torch.optim`` optimizers first negate the gradient (``maximize=True``) and then add
coupled L2 weight decay ``λp`` to it, before their own rule; :func:`gradient_preamble`
returns those stages (none by default), so every named optimizer spells them the same way.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional

import jax.numpy as jnp
import numpy as np

from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import is_literal_zero
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.scaling import scale

__all__ = ["check_flag", "check_dtype_option", "check_seed", "gradient_preamble"]


def check_flag(transform: str, name: str, value: Any) -> bool:
  """``value`` as a Python bool; raises ``TypeError`` unless it is one (options are static)."""
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  raise TypeError(
      f"{transform}: {name} is an option and must be True or False, got {type(value).__name__} "
      f"{value!r}. Options are fixed when the optimizer is built (they choose the rule); to vary a "
      "number, pass it as a hyperparameter instead.")


def check_dtype_option(transform: str, name: str, dtype: Optional[Any]) -> Optional[Any]:
  """``dtype`` as a floating ``jnp.dtype`` (or ``None``); raises ``TypeError`` otherwise."""
  if dtype is None:
    return None
  try:
    resolved = np.dtype(dtype)
  except TypeError:
    raise TypeError(f"{transform}: {name} must be a floating dtype such as jnp.bfloat16 or "
                    f"jnp.float32 (or None for the parameters' dtype), got {dtype!r}.") from None
  if not jnp.issubdtype(resolved, jnp.floating):
    raise TypeError(f"{transform}: {name} must be a floating dtype such as jnp.bfloat16 or "
                    f"jnp.float32 (or None for the parameters' dtype), got {resolved}.")
  return resolved


def check_seed(transform: str, seed: Any, varies: str) -> int:
  """``seed`` as a Python int in ``[0, 2**32)`` for ``jax.random.PRNGKey`` (made by ``init``); ``varies`` names what
  another seed changes (e.g. ``"the noise"``). ``TypeError`` for a non-integer, ``ValueError`` out of range."""
  if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
    raise TypeError(
        f"{transform}: seed must be a Python integer, got {type(seed).__name__} {seed!r}. "
        f"The key is made from it by init(); to vary {varies}, pass another seed.")
  if not 0 <= int(seed) < 2**32:
    raise ValueError(
        f"{transform}: seed={seed} is out of range [0, 2**32). Larger or negative seeds "
        "give keys that depend on jax_enable_x64; use e.g. seed % 2**32.")
  return int(seed)


def gradient_preamble(transform: str, maximize: Any, weight_decay: Any = 0.0) -> list[GradientTransformation]:
  """The stages torch.optim runs on the gradient before its rule: ``g ← −g`` then ``g ← g + λp``.

  ``maximize`` adds ``scale(-1)``; a ``weight_decay`` that is not the literal
  Python number 0 adds ``add_decayed_weights(weight_decay)`` (coupled L2). Both
  are left out by default, so a default optimizer's chain is unchanged.
  """
  stages = []
  if check_flag(transform, "maximize", maximize):
    stages.append(scale(-1.0))
  if not is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  return stages
