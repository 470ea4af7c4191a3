"""Shardings for optimizer state and populations on a device mesh.

gradxform does not distribute anything itself: JAX's sharding (a
``jax.sharding.Mesh``, ``NamedSharding`` and ``jax.jit``) is the engine, and an
optimizer's state is an ordinary tree of arrays inside it. Every per-parameter
state array is created with ``jnp.zeros_like(param)``, so an eager
``opt.init(sharded_params)`` already has each parameter's sharding, and the
element-wise updates under ``jax.jit`` keep it. These helpers give the
shardings explicitly, for what sharding propagation cannot guess:

* :func:`state_shardings`: the state's shardings from the parameters' (for
  ``jax.jit(opt.init, out_shardings=...)``, and for ZeRO-1: state split over
  the data-parallel axis while the parameters stay replicated);
* :func:`member_shardings`: a population's stacked arrays split along their
  member axis, so that each device trains some of the members.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["member_shardings", "state_shardings"]



def _named_sharding(leaf: Any) -> Optional[NamedSharding]:
  sharding = getattr(leaf, "sharding", None)
  return sharding if isinstance(sharding, NamedSharding) else None


def _find_mesh(params: Any, mesh: Optional[Mesh], where: str) -> Mesh:
  meshes = {s.mesh for s in map(_named_sharding, jax.tree.leaves(params)) if s is not None}
  if mesh is not None:
    return mesh
  if len(meshes) == 1:
    return meshes.pop()
  if not meshes:
    raise ValueError(f"{where}: none of the parameters has a NamedSharding, so there is no mesh to "
                     "place the state on. Pass mesh=jax.make_mesh(...) (parameters without a "
                     "NamedSharding count as replicated over it).")
  raise ValueError(f"{where}: the parameters are placed on {len(meshes)} different meshes; pass "
                   "mesh= explicitly.")


def _padded_spec(spec: PartitionSpec, ndim: int) -> list:
  entries = list(spec) + [None] * (ndim - len(spec))
  return entries[:ndim]


def _spec(entries: list) -> PartitionSpec:
  """A spec without trailing ``None`` entries (``P('data')``, not ``P('data', None)``)."""
  while entries and entries[-1] is None:
    entries = entries[:-1]
  return PartitionSpec(*entries)


def _uses_axis(entry: Any, axis: str) -> bool:
  return entry == axis or (isinstance(entry, tuple) and axis in entry)


def _zero_spec(spec: PartitionSpec, shape: tuple, mesh: Mesh, axis: str) -> PartitionSpec:
  """``spec`` with ``axis`` added on the largest unsharded dimension divisible by its size."""
  entries = _padded_spec(spec, len(shape))
  if any(_uses_axis(entry, axis) for entry in entries):
    return spec
  size = mesh.shape[axis]
  candidates = [d for d, (entry, n) in enumerate(zip(entries, shape)) if entry is None and n % size == 0 and n > 0]
  if not candidates:
    return spec  # too small or indivisible: stays as the parameter is
  dim = max(candidates, key=lambda d: (shape[d], -d))
  entries[dim] = axis
  return _spec(entries)


def _state_spec(param_shape: tuple, spec: PartitionSpec, shape: tuple) -> Optional[PartitionSpec]:
  """The spec of a state leaf of the parameter's shape, or of that shape with some axes reduced to 1.

  Reduced axes (Adafactor's factored row and column statistics) are unsharded;
  the others keep the parameter's spec. ``None`` if the shapes do not fit.
  """
  if shape == param_shape:
    return spec
  if len(shape) != len(param_shape) or any(s not in (n, 1) for s, n in zip(shape, param_shape)):
    return None
  entries = _padded_spec(spec, len(shape))
  return _spec([e if s == n else None for e, s, n in zip(entries, shape, param_shape)])


def state_shardings(opt: Any, params: Any, mesh: Optional[Mesh] = None, *,
                    zero_axis: Optional[str] = None) -> Any:
  """The shardings of ``opt``'s state, derived from the parameters' shardings.

  The state's structure comes from ``jax.eval_shape(opt.init, params)`` (no
  memory is allocated). A state leaf is *per-parameter* when its path ends
  with a parameter's path and it has that parameter's shape (``state[0].nu['w']``
  for ``params['w']``); it gets the parameter's sharding. A leaf of that shape
  with some axes reduced to 1 (factored statistics, ``v_row``/``v_col`` of
  :func:`gradxform.scale_by_factored_rms`) gets it too, unsharded on those axes. Everything else
  (step counts, recorded hyperparameters, other scalars) is replicated.

  With ``zero_axis`` (ZeRO stage 1, Rajbhandari et al. 2020,
  https://arxiv.org/abs/1910.02054), each per-parameter leaf is in addition
  split over that mesh axis, along its largest dimension that is not sharded
  already and is divisible by the axis size (a leaf with no such dimension
  keeps the parameter's sharding). Parameters stay as they are, typically
  replicated: each device then stores and updates ``1/n`` of the moments, and
  ``jax.jit`` with these ``out_shardings`` all-gathers the updated parameters.

  Args:
    opt: the optimizer (anything with ``init``).
    params: the parameters: arrays (``jax.Array``, whose ``NamedSharding`` is
      used) or ``jax.ShapeDtypeStruct`` (with or without a ``sharding``).
      Leaves without a ``NamedSharding`` count as replicated.
    mesh: the mesh; defaults to the one the parameters are placed on.
    zero_axis: a mesh axis name to split the state over, or ``None``.

  Returns:
    A tree of ``NamedSharding`` with the structure of ``opt.init(params)``,
    for ``jax.device_put(state, ...)`` or ``jax.jit(..., out_shardings=...)``.

  Example::

      mesh = jax.make_mesh((8,), ("data",))
      shardings = gx.state_shardings(opt, params, mesh, zero_axis="data")
      state = jax.jit(opt.init, out_shardings=shardings)(params)
  """
  mesh = _find_mesh(params, mesh, "state_shardings")
  if zero_axis is not None and zero_axis not in mesh.axis_names:
    raise ValueError(f"state_shardings: zero_axis={zero_axis!r} is not an axis of the mesh (axes "
                     f"{mesh.axis_names}). Pass the name of the data-parallel axis.")
  replicated = NamedSharding(mesh, PartitionSpec())
  by_path = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    sharding = _named_sharding(leaf)
    spec = sharding.spec if sharding is not None and sharding.mesh == mesh else PartitionSpec()
    by_path[tuple(path)] = (tuple(leaf.shape), spec)
  abstract = jax.eval_shape(opt.init, params)

  def sharding_of(path, leaf):
    path, shape = tuple(path), tuple(leaf.shape)
    for start in range(len(path) + 1):  # the longest matching parameter path first
      match = by_path.get(path[start:])
      spec = None if match is None else _state_spec(match[0], match[1], shape)
      if spec is not None:
        if zero_axis is not None:
          spec = _zero_spec(spec, shape, mesh, zero_axis)
        return NamedSharding(mesh, spec)
    return replicated

  return jax.tree_util.tree_map_with_path(sharding_of, abstract)


def member_shardings(tree: Any, mesh: Mesh, axis: str = "members") -> Any:
  """Shardings that split a population's stacked arrays along their member axis.

  Every leaf's leading axis (the member axis of :class:`gradxform.Population`'s
  params, state and hyperparameters) is split over the mesh axis ``axis``;
  the other dimensions are replicated. Passed to ``jax.device_put``, each
  device holds and trains ``size / n`` members, and the population's jitted
  step keeps that placement (the members are independent: no communication).

  Args:
    tree: arrays with a leading member axis (or ``jax.ShapeDtypeStruct``).
    mesh: the device mesh.
    axis: the mesh axis to split the members over; the number of members
      must be divisible by its size.

  Returns:
    A tree of ``NamedSharding`` with the structure of ``tree``.

  References:
    JAX, "Distributed arrays and automatic parallelization", https://docs.jax.dev/en/latest/notebooks/Distributed_arrays_and_automatic_parallelization.html
  """
  if axis not in mesh.axis_names:
    raise ValueError(f"member_shardings: axis={axis!r} is not an axis of the mesh (axes "
                     f"{mesh.axis_names}).")
  size = mesh.shape[axis]

  def sharding_of(path, leaf):
    shape = tuple(leaf.shape)
    if not shape or shape[0] % size:
      raise ValueError(
          f"member_shardings: the leaf at {jax.tree_util.keystr(tuple(path)) or '<root>'} has shape "
          f"{shape}; its leading (member) axis must be divisible by the {size} devices of mesh "
          f"axis {axis!r}. Use a population size that is a multiple of {size}.")
    return NamedSharding(mesh, PartitionSpec(axis))

  return jax.tree_util.tree_map_with_path(sharding_of, tree)
