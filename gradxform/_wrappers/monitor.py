"""``monitor``: records the norms of the gradient, the update and the parameters at every update."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import as_transform

__all__ = ["monitor"]


class MonitorState(NamedTuple):
  """State of :func:`monitor`: float32 scalars of the last update, and the wrapped optimizer's state.

  ``grad_norm`` is the global norm of the gradient ``inner`` received, ``update_norm`` of the update it
  returned, ``param_norm`` of the parameters it was given (0 without parameters).
  """

  grad_norm: jax.Array
  update_norm: jax.Array
  param_norm: jax.Array
  inner_state: Any

  def diagnostics(self) -> dict:
    """The three norms, for :func:`gradxform.diagnostics`."""
    return {"grad_norm": self.grad_norm, "update_norm": self.update_norm, "param_norm": self.param_norm}


class _Monitor(GradientTransformation):
  inner: GradientTransformation

  def init(self, params):
    zero = lambda: jnp.zeros([], jnp.float32)  # one buffer each: a donated state must not alias itself
    return MonitorState(zero(), zero(), zero(), self.inner.init(params))

  def update(self, updates, state, params=None, **extra):
    if not isinstance(state, MonitorState):
      raise TypeError(f"monitor: expected a MonitorState as state, got {type(state).__name__}. Pass the state "
                      "returned by this transform's init() or update().")
    grad_norm = _tree.global_norm(updates).astype(jnp.float32)
    updates, inner_state = self.inner.update(updates, state.inner_state, params, **extra)
    param_norm = (jnp.zeros([], jnp.float32) if params is None
                  else _tree.global_norm(params).astype(jnp.float32))
    return updates, MonitorState(grad_norm, _tree.global_norm(updates).astype(jnp.float32), param_norm,
                                 inner_state)


def monitor(inner: Any) -> GradientTransformation:
  """Records ``‖g‖``, ``‖u‖`` and ``‖p‖`` at every update of ``inner``, for :func:`gradxform.diagnostics`.

  .. math::

     \\|g\\| = \\sqrt{\\textstyle\\sum_\\text{leaves}\\sum_i g_i^2}, \\quad
     \\|u\\| \\text{ of } u = \\text{inner}(g), \\quad \\|p\\| \\text{ of the parameters}

  The updates pass unchanged. Wrap the whole optimizer (``gx.monitor(gx.chain(gx.clip_by_global_norm(1.0),
  gx.adamw(1e-3)))``) and log ``gx.diagnostics(state)``: the gradient norm before and after clipping, the
  update and parameter norms, the clipped fraction, skipped non-finite steps and every hyperparameter.

  Args:
    inner: the optimizer (gradxform or optax).

  Returns:
    A transform with state :class:`MonitorState`.

  References:
    optax issue 326 (logging the gradient norm from inside a chain),
    https://github.com/google-deepmind/optax/issues/326
  """
  return _Monitor(as_transform(inner, "monitor"))
