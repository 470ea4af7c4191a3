"""Multi-tensor execution: an optimizer run on a few packed buffers instead of many leaves.

:func:`packed` splits an optimizer into what can run on the flat buffers of a
:class:`~gradxform.Packer` (every rule that is elementwise per coordinate, or
reduces over all leaves at once: the same numbers on buffers as on the tree)
and what needs the leaves (per-leaf norms, masks and labels, per-leaf random
keys, optax transforms, second-order methods): those stages see the unpacked
tree, and their updates are packed again. This is the JAX counterpart of
torch.optim's ``foreach``/``fused`` implementations (and of apex's
``multi_tensor_apply``): a handful of large kernels instead of one per leaf.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.module import static_field
from gradxform._scale_out.packer import Packer

__all__ = ["packed"]

# gradxform transforms whose update is elementwise per coordinate or uses only
# reductions over all leaves together (a global norm, an all-finite check), so
# that on packed buffers they compute what they compute on the tree. Child
# transforms (chain stages, wrapped optimizers) are bound recursively.
_ON_BUFFERS = frozenset({
    "_Chain", "_Identity",
    "_Trace", "_Ema",
    "_ScaleByAdamax", "_ScaleByNadam", "_ScaleByRadam", "_ScaleByLion",
    "_ScaleByRms", "_ScaleByAdagrad", "_ScaleByAdadelta", "_ScaleByRprop", "_ScaleByAsgd",
    "_Clip", "_ClipByGlobalNorm",
    "_AddDecayedWeights",
    "_Scale", "_ScaleByLearningRate", "_ScaleBySign",
    "_ApplyIfFinite", "_Accumulate",
})


def runs_on_buffers(transform: Any) -> bool:
  """Whether ``transform`` itself (not its children) gives the same numbers on packed buffers."""
  cls = type(transform)
  return cls.__name__ in _ON_BUFFERS and cls.__module__.startswith("gradxform.")


class _OnLeaves(GradientTransformation):
  """Runs ``inner`` on the leaves of packed buffers: unpack, ``inner.update``, pack."""

  inner: GradientTransformation
  packer: Packer = static_field()

  def init(self, params):
    return self.inner.init(self.packer.unpack(params))

  def update(self, updates, state, params=None, **extra):
    packer = self.packer
    tree_params = None if params is None else packer.unpack(params)
    updates, state = self.inner.update(packer.unpack(updates), state, tree_params,
                                       **_convert_extra(extra, to_leaves=True, packer=packer))
    return packer.pack(updates, what="update"), state


def _bind(transform: GradientTransformation, packer: Packer) -> GradientTransformation:
  """``transform`` for packed buffers: itself where it runs on buffers, else on the leaves."""
  if not runs_on_buffers(transform):
    return _OnLeaves(transform, packer)
  changes = {}
  for field in dataclasses.fields(transform):
    value = getattr(transform, field.name)
    if isinstance(value, GradientTransformation):
      changes[field.name] = _bind(value, packer)
    elif isinstance(value, tuple) and any(isinstance(v, GradientTransformation) for v in value):
      changes[field.name] = tuple(_bind(v, packer) if isinstance(v, GradientTransformation) else v
                                  for v in value)
  return dataclasses.replace(transform, **changes) if changes else transform


def _convert_extra(extra: dict, to_leaves: bool, packer: Packer) -> dict:
  """The objective's extra arguments (``grad``, ``value_fn``) moved between trees and buffers."""
  to_new, to_old = ((packer.unpack, lambda t: packer.pack(t, what="parameter")) if to_leaves
                    else (lambda t: packer.pack(t, what="gradient", cast=True), packer.unpack))
  out = dict(extra)
  if out.get("grad") is not None:
    out["grad"] = to_new(out["grad"])
  value_fn = out.get("value_fn")
  if callable(value_fn):
    out["value_fn"] = lambda x, *args, **kwargs: value_fn(to_old(x), *args, **kwargs)
  return out


class _Packed(GradientTransformation):
  inner: GradientTransformation
  packer: Optional[Packer] = static_field(default=None)

  def init(self, params):
    if self.packer is None:
      packer = Packer(params)
      return _bind(self.inner, packer).init(packer.pack(params, what="parameter"))
    self.packer.check_buffers(params, "packed(...).init", "parameters")
    return _bind(self.inner, self.packer).init(params)

  def update(self, updates, state, params=None, **extra):
    if self.packer is not None:
      self.packer.check_buffers(updates, "packed(...).update", "updates")
      if params is not None:
        self.packer.check_buffers(params, "packed(...).update", "parameters")
      return _bind(self.inner, self.packer).update(updates, state, params, **extra)
    # the parameters' layout (as init's): gradients of another floating dtype are cast to it
    packer = Packer(updates if params is None else params)
    flat_params = None if params is None else packer.pack(params, what="parameter")
    try:
      flat_updates, state = _bind(self.inner, packer).update(
          packer.pack(updates, what="gradient", cast=True), state, flat_params,
          **_convert_extra(extra, to_leaves=False, packer=packer))
    except ValueError as error:
      layout = ", ".join(f"{name}[{size}]" for name, size in packer.sizes)
      raise ValueError(
          f"packed(...): {error} Here the buffers are the gradient tree packed by dtype ({layout}, "
          f"{packer.num_leaves} leaves): a tree other than the one given to init() packs to other "
          "buffers.") from error
    # each update laid out as its gradient (on a mesh with Explicit axes the buffers are gathered)
    return jax.tree.map(_tree.sharded_like, packer.unpack(flat_updates), updates), state


def packed(opt: GradientTransformation, packer: Optional[Packer] = None) -> GradientTransformation:
  """Runs ``opt`` as a few kernels on packed buffers (one per dtype), with ``opt``'s numbers.

  The update is ``opt``'s, computed on the layout of a :class:`Packer`::

      u, s' = unpack(opt.update(pack(g), s, pack(p)))       # elementwise stages
      u_k   = stage(unpack(u_{k-1}))                         # any other stage, on the leaves

  Stages whose rule is elementwise per coordinate, or reduces over all leaves
  together, run directly on the buffers: sgd/momentum/Nesterov, Adam, AdamW,
  NAdam, RAdam, Adamax, AMSGrad, Lion, RMSProp, Adagrad, Adadelta, their
  primitives (``trace``, ``ema``, ``scale_by_rms``, ...), ``clip``,
  ``clip_by_global_norm``, weight decay, learning rates and schedules, and the
  wrappers ``chain``, ``apply_if_finite`` and ``accumulate``. Their state is
  packed (one buffer per dtype per moment) and bit-identical to the tree's
  state, packed (``clip_by_global_norm`` sums in another order). Every other
  stage (per-leaf reductions such as ``clip_by_block_rms``,
  ``adaptive_grad_clip`` and ``centralize``, ``masked``/``partition``,
  ``add_noise``, 8-bit Adam, L-BFGS, Newton and line searches, optax
  transforms) runs on the unpacked leaves with its usual tree-shaped state, so
  it keeps its per-leaf numbers: ``packed`` never changes what is computed,
  only how many kernels compute it. The extra arguments ``grad`` and
  ``value_fn`` are converted between trees and buffers as each stage needs.

  Two ways to use it:

  * ``packed(opt, packer)``: parameters, gradients and updates are the
    packed buffers (``{dtype_name: 1-D array}``). The whole training step
    works on a few buffers: the fast path, whose step time and compile time do
    not grow with the number of leaves::

        packer = gx.Packer(params)
        flat = packer.pack(params)
        opt = gx.packed(gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-3)), packer)
        state = opt.init(flat)

        @jax.jit
        def train_step(flat, state, batch):
          grads = jax.grad(lambda f: loss(packer.unpack(f), batch))(flat)   # packed gradients
          updates, state = opt.update(grads, state, flat)
          return gx.apply_updates(flat, updates), state

  * ``packed(opt)``: parameters and gradients stay trees. The state is packed
    and the rule runs on buffers, but the step still takes and returns every
    leaf, so it pays jit's per-buffer cost and a concatenation of the
    gradients (and parameters) every step; on XLA:CPU it does not compile
    faster than the per-leaf optimizer, and its step is slower (Adam on a
    24.8M-parameter, 148-leaf tree: 95 ms against 30 ms per leaf, since the
    concatenations and slices move every array again; ``benchmarks/
    update_step.py``). Use it to keep optimizer state in a few buffers; use
    the first form for speed.

  Args:
    opt: a gradxform transform (a named optimizer, a chain, a wrapper).
    packer: the layout of the buffers ``update`` receives; ``None`` to take
      trees and pack them on each call.

  Returns:
    A transform with ``opt``'s numbers. Its ``init``/``update`` raise
    ``ValueError`` naming the argument if buffers do not match ``packer``.

  References:
    torch.optim's multi-tensor ``foreach`` and ``fused`` implementations
    (https://pytorch.org/docs/stable/optim.html#algorithms); NVIDIA apex
    ``multi_tensor_apply``.
  """
  if not isinstance(opt, GradientTransformation):
    raise TypeError(f"packed: expected a gradxform transform such as gx.adam(1e-3), got "
                    f"{type(opt).__name__}. Wrap an optax transform as gx.chain(optax_transform) "
                    "first (it then runs on the leaves).")
  if packer is not None and not isinstance(packer, Packer):
    raise TypeError(f"packed: packer must be a gx.Packer (from gx.Packer(params)), got "
                    f"{type(packer).__name__}.")
  return _Packed(opt, packer)
