"""The layout of a parameter tree as a few flat buffers (one per dtype).

A jitted step over a tree of N leaves moves ~3N buffers (params, and the
optimizer's moments) across the ``jax.jit`` boundary and runs ~N small kernels
per update rule; for thousands of small leaves that per-buffer cost dominates
the arithmetic. :class:`Packer` lays a parameter tree out as **one 1-D buffer
per dtype**, so that the whole training step can work on a handful of buffers:

* ``jax.grad`` of ``loss(packer.unpack(flat))`` with respect to ``flat``
  returns packed gradients directly (no concatenation);
* every elementwise gradxform optimizer (sgd, adam, adamw, lion, rmsprop, ...)
  and :func:`~gradxform.clip_by_global_norm` (the norm over the buffers is the
  norm over the leaves) then runs as a few kernels on a few buffers;
* unpacking inside the loss is static slicing and reshaping, which XLA fuses
  into the consumers.

:func:`~gradxform.packed` runs any optimizer on such buffers, per-leaf stages
included (they see the leaves).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core import tree as _tree
from gradxform._core.tree import keystr, tree_difference

__all__ = ["Packer"]


def _spec(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
  shape = tuple(int(d) for d in np.shape(leaf)) if not hasattr(leaf, "shape") else tuple(
      int(d) for d in leaf.shape)
  dtype = jnp.dtype(leaf.dtype) if hasattr(leaf, "dtype") else jnp.result_type(leaf)
  return shape, dtype


def _flatten(tree: Any, what: str):
  flat, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)
  for path, leaf in flat:
    if leaf is None:
      raise ValueError(
          f"Packer: the {what} at {keystr(path)} is None; None leaves are not supported. "
          "Pack only the leaves that are optimized (e.g. split the tree first), or give the "
          "leaf an array value.")
  return flat, treedef


@dataclasses.dataclass(frozen=True)
class Packer:
  """The layout of a parameter tree as one flat 1-D buffer per dtype (or a few).

  ``Packer(params)`` records the tree structure and each leaf's path, shape,
  dtype and offset. Leaves are grouped by dtype, in order of first appearance
  (in ``jax.tree`` flattening order), into a dict ``{name: buffer}``, e.g.
  ``{"float32": f32[2048000], "bfloat16": bf16[1024]}``; within a buffer
  leaves follow each other in flattening order. Arrays, ``jax.ShapeDtypeStruct``
  (e.g. from ``jax.eval_shape``) and tracers are all accepted: only shapes and
  dtypes are read.

  ``max_buffer_size`` splits a dtype's leaves into several buffers of at most
  that many elements (a leaf is never split; a larger leaf gets a buffer of
  its own), named ``"float32"``, ``"float32:1"``, ``"float32:2"``, ... On a
  multi-core CPU, XLA runs the loops of independent buffers concurrently but
  did not split one 2M-element loop across cores: four buffers made a packed
  Adam step on 2,000 leaves of 32×32 ~1.2× faster with two cores
  (``benchmarks/update_step.py --all-threads``). The default, one buffer per
  dtype, suits accelerators (one kernel per buffer).

  The packer is frozen and hashable (equal layouts compare equal), so it can be
  closed over in a jitted function or passed as a static argument.

  Complex leaves pack into a buffer of their own dtype (``{"complex64": c64[n]}``);
  elementwise optimizers act on it with torch's convention for complex
  parameters (each component as a real coordinate), so the packed numbers equal
  the per-leaf ones.

  Restrictions: leaves must be floating point or complex (integer/boolean leaves
  raise ``TypeError``: keep them outside the packed tree), and ``None`` leaves
  are not supported (``ValueError``).

  Example (fully packed training, the fast path)::

      packer = gx.Packer(params)
      flat = packer.pack(params)                       # {"float32": f32[n]}
      opt = gx.adam(1e-3)
      state = opt.init(flat)
      loss_flat = lambda flat, batch: loss(packer.unpack(flat), batch)

      @jax.jit
      def train_step(flat, state, batch):
        grads = jax.grad(loss_flat)(flat, batch)     # packed gradients, no concatenation
        updates, state = opt.update(grads, state, flat)
        return gx.apply_updates(flat, updates), state
  """

  treedef: Any
  paths: tuple  # keystr of each leaf, in flattening order
  shapes: tuple  # shape of each leaf
  dtypes: tuple  # dtype name of each leaf
  buffers: tuple  # name of the buffer holding each leaf
  offsets: tuple  # start of each leaf inside its buffer
  sizes: tuple  # {buffer name: size}, as a tuple of pairs
  max_buffer_size: Optional[int] = None

  def __init__(self, params: Any, max_buffer_size: Optional[int] = None) -> None:
    if max_buffer_size is not None and (isinstance(max_buffer_size, bool) or not isinstance(
        max_buffer_size, (int, np.integer)) or max_buffer_size < 1):
      raise ValueError(f"Packer: max_buffer_size={max_buffer_size!r} must be a positive int (elements "
                       "per buffer) or None for one buffer per dtype.")
    flat, treedef = _flatten(params, "parameter")
    paths, shapes, dtypes, buffers, offsets, sizes = [], [], [], [], [], {}
    current = {}  # dtype name -> (name of its open buffer, number of buffers so far)
    for path, leaf in flat:
      shape, dtype = _spec(leaf)
      if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(
            f"Packer: the parameter at {keystr(path)} has dtype {dtype}; only floating-point or complex "
            "leaves can be packed. Keep integer/boolean leaves out of the packed tree.")
      dtype_name = jnp.dtype(dtype).name
      size = int(np.prod(shape, dtype=np.int64))
      name, count = current.get(dtype_name, (dtype_name, 1))
      if max_buffer_size is not None and 0 < sizes.get(name, 0) and sizes[name] + size > max_buffer_size:
        name, count = f"{dtype_name}:{count}", count + 1
      current[dtype_name] = (name, count)
      paths.append(keystr(path))
      shapes.append(shape)
      dtypes.append(dtype_name)
      buffers.append(name)
      offsets.append(sizes.get(name, 0))
      sizes[name] = sizes.get(name, 0) + size
    object.__setattr__(self, "treedef", treedef)
    object.__setattr__(self, "paths", tuple(paths))
    object.__setattr__(self, "shapes", tuple(shapes))
    object.__setattr__(self, "dtypes", tuple(dtypes))
    object.__setattr__(self, "buffers", tuple(buffers))
    object.__setattr__(self, "offsets", tuple(offsets))
    object.__setattr__(self, "sizes", tuple(sizes.items()))
    object.__setattr__(self, "max_buffer_size", None if max_buffer_size is None else int(max_buffer_size))

  # ------------------------------------------------------------------ layout

  @property
  def num_leaves(self) -> int:
    return len(self.paths)

  @property
  def buffer_names(self) -> tuple[str, ...]:
    """The buffers' keys, in order: dtype names, with ``":1"``, ``":2"``, ... for further buffers."""
    return tuple(name for name, _ in self.sizes)

  @staticmethod
  def buffer_dtype(name: str) -> jnp.dtype:
    """The dtype of the buffer called ``name`` (``"float32:1"`` holds float32)."""
    return jnp.dtype(name.split(":")[0])

  @property
  def leaf_slices(self) -> tuple[tuple[str, int, int], ...]:
    """``(buffer name, start, stop)`` of each leaf inside its buffer, in flattening order."""
    return tuple((b, o, o + int(np.prod(s, dtype=np.int64)))
                 for b, o, s in zip(self.buffers, self.offsets, self.shapes))

  def segment_ids(self) -> dict[str, np.ndarray]:
    """``{buffer name: int32[size]}``: the (global, flattening-order) leaf index of every element.

    For per-leaf reductions on packed buffers, e.g.
    ``jax.ops.segment_sum(buf ** 2, ids[name], num_segments=packer.num_leaves)``.
    """
    ids = {name: np.empty(size, np.int32) for name, size in self.sizes}
    for i, (name, start, stop) in enumerate(self.leaf_slices):
      ids[name][start:stop] = i
    return ids

  def abstract(self) -> dict[str, jax.ShapeDtypeStruct]:
    """The buffers as ``jax.ShapeDtypeStruct``-s."""
    return {name: jax.ShapeDtypeStruct((size,), self.buffer_dtype(name)) for name, size in self.sizes}

  # ------------------------------------------------------------------ pack / unpack

  def _check(self, tree: Any, what: str, cast: bool = False):
    flat, treedef = _flatten(tree, what)
    if treedef != self.treedef:
      detail = tree_difference({keystr(p) for p, _ in flat}, set(self.paths), treedef, self.treedef, limit=5)
      raise ValueError(
          f"Packer.pack: the {what} tree does not match the recorded layout: "
          f"{detail}. Pack trees with the structure the Packer was built from.")
    leaves = []
    for (path, leaf), shape, dtype in zip(flat, self.shapes, self.dtypes):
      got_shape, got_dtype = _spec(leaf)
      if got_shape != shape:
        raise ValueError(
            f"Packer.pack: the {what} at {keystr(path)} has shape {got_shape}, but the recorded "
            f"layout has {shape}.")
      if (jnp.dtype(got_dtype).name != dtype and cast and jnp.issubdtype(got_dtype, jnp.floating)
          and jnp.issubdtype(jnp.dtype(dtype), jnp.floating)):
        leaf = jnp.asarray(leaf).astype(dtype)
      elif jnp.dtype(got_dtype).name != dtype:
        raise ValueError(
            f"Packer.pack: the {what} at {keystr(path)} has dtype {jnp.dtype(got_dtype).name}, but "
            f"the recorded layout has {dtype}.")
      leaves.append(leaf)
    return leaves

  def pack(self, tree: Any, *, what: str = "leaf", cast: bool = False) -> dict[str, jax.Array]:
    """Ravels and concatenates the leaves of ``tree``: ``{buffer name: 1-D buffer}``.

    With ``cast``, floating leaves of another dtype (float32 gradients of
    bfloat16 parameters) are cast to the layout's dtype instead of refused.

    Raises:
      ValueError: naming the leaf's path, if the tree's structure, a shape or a
        dtype differs from the recorded layout (or a leaf is None).
    """
    leaves = self._check(tree, what, cast)
    groups: dict[str, list] = {name: [] for name in self.buffer_names}
    for leaf, name in zip(leaves, self.buffers):
      # a leaf split over Explicit mesh axes is gathered first: one buffer has one layout
      groups[name].append(jnp.ravel(_tree.replicated(jnp.asarray(leaf))))
    return {name: (parts[0] if len(parts) == 1 else jnp.concatenate(parts))
            for name, parts in groups.items()}

  def check_buffers(self, buffers: Any, where: str, what: str = "buffers") -> None:
    """Raises ``ValueError`` (prefixed by ``where``) unless ``buffers`` has this layout's keys, sizes and dtypes."""
    if not isinstance(buffers, Mapping) or set(buffers) != set(self.buffer_names):
      keys = sorted(buffers) if isinstance(buffers, Mapping) else type(buffers).__name__
      raise ValueError(f"{where}: expected the {what} as a dict with the keys {list(self.buffer_names)} "
                       f"(flat buffers, from Packer.pack), got {keys}.")
    for name, size in self.sizes:
      shape, dtype = _spec(buffers[name])
      expected = self.buffer_dtype(name).name
      if shape != (size,) or jnp.dtype(dtype).name != expected:
        raise ValueError(f"{where}: the {what}' buffer {name!r} is {jnp.dtype(dtype).name}{list(shape)}, "
                         f"expected {expected}[{size}].")

  def unpack(self, buffers: Mapping[str, Any]) -> Any:
    """The tree back from ``{buffer name: buffer}``: one ``lax.split`` per buffer, then reshapes.

    ``lax.split`` (not one ``lax.slice`` per leaf) matters for training: its
    derivative is one concatenation of the leaves' cotangents, O(size),
    whereas the transpose of N slices pads each cotangent to the whole buffer
    and adds them, O(N × size) per step (75 ms instead of ~2 ms for a
    200-leaf step measured on CPU). Forward and reverse mode both work.
    """
    self.check_buffers(buffers, "Packer.unpack")
    sizes: dict[str, list] = {name: [] for name in self.buffer_names}
    for name, start, stop in self.leaf_slices:
      sizes[name].append(stop - start)
    parts = {name: iter(jax.lax.split(jnp.asarray(buffers[name]), sizes[name])) for name in sizes}
    leaves = [next(parts[b]).reshape(shape) for b, shape in zip(self.buffers, self.shapes)]
    return jax.tree.unflatten(self.treedef, leaves)
