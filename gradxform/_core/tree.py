"""Lifting per-leaf math to trees, with precise errors when trees disagree.

The update rules in gradxform are written once, for one array, as a function of
the gradient leaf, the state leaves and scalar hyperparameters. :func:`leafwise`
lifts such a rule to whole trees: it checks that the gradient tree matches the
state (structure and shapes), runs the rule in at least float32 (so a
``b2`` of 0.999 is never rounded to 1.0 for bfloat16 parameters, as torch's
"opmath" does) and casts every result back to the dtype it is stored in. A rule
computes its update from new state *as stored* (``stored``), as torch and optax
do with low-precision state: the update never depends on digits that are
thrown away.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gradxform._core import rounding as _rounding
from gradxform._core.rounding import convert as _cast

__all__ = [
    "check_floating",
    "increment",
    "is_none",
    "require_params",
    "global_norm",
    "keystr",
    "leafwise",
    "sum_of",
    "zeros_like",
]


def is_none(x: Any) -> bool:
  """``is_leaf`` for trees where ``None`` marks a parameter outside a mask."""
  return x is None


_INT32_MAX = np.iinfo(np.int32).max


def increment(count: jax.Array) -> jax.Array:
  """``count + 1`` for an int32 step counter, saturating instead of overflowing."""
  return jnp.where(count < _INT32_MAX, count + 1, count)


def require_params(transform: str, params: Any, why: str, where: str = "update") -> None:
  """Raises a ``ValueError`` naming the transform if ``params`` is ``None``."""
  if params is None:
    call = "init(params)" if where == "init" else "update(grads, state, params)"
    raise ValueError(
        f"{transform}: params are required in {where}() (to {why}), but got None. "
        f"Call {call} with the current parameters.")


def keystr(path: Sequence[Any]) -> str:
  """A readable leaf path, e.g. ``['dense']['kernel']`` (``<root>`` for a bare array)."""
  return jax.tree_util.keystr(tuple(path)) or "<root>"


def wider(*dtypes: Any) -> jnp.dtype:
  """The widest of floating dtypes (by size), without consulting the promotion rules.

  ``jnp.promote_types`` refuses mixed widths under strict dtype promotion; the
  library chooses its own precision explicitly instead.
  """
  return max((jnp.dtype(d) for d in dtypes), key=lambda d: d.itemsize)


def compute_dtype(dtype: Any) -> jnp.dtype:
  """The precision an update rule runs in: the leaf's dtype, at least float32."""
  return wider(dtype, jnp.float32)


def check_floating(name: str, tree: Any, what: str, allow_complex: bool = False) -> None:
  """Raises ``TypeError`` naming the first leaf of ``tree`` that is not floating point.

  Complex leaves pass when ``allow_complex`` (transforms whose rule runs on the real view, as torch.optim
  treats a complex tensor as its ``view_as_real``); otherwise the message says the transform has no
  complex form and how to get around it.
  """
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    dtype = jnp.result_type(leaf)
    if jnp.issubdtype(dtype, jnp.floating):
      continue
    if jnp.issubdtype(dtype, jnp.complexfloating):
      if allow_complex:
        continue
      raise TypeError(
          f"{name}: the {what} at {keystr(path)} has complex dtype {dtype}, and {name} has no complex form "
          "(its rule is not elementwise on the real and imaginary parts). Optimize the real view instead: "
          "params as jnp.stack([z.real, z.imag], -1), or keep such leaves out with gx.partition / gx.masked."
      )
    raise TypeError(
        f"{name}: the {what} at {keystr(path)} has integer/boolean dtype {dtype}, but "
        "optimizers act on floating-point parameters. Keep such leaves "
        "out of the optimized tree (split them off, or exclude them with a "
        "mask), or cast them to a floating dtype."
    )


def real_dtype(dtype: Any) -> jnp.dtype:
  """The real counterpart of a dtype: float32 for complex64, float64 for complex128, else itself."""
  dtype = jnp.dtype(dtype)
  return jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.complexfloating) else dtype


def as_real(x: jax.Array) -> jax.Array:
  """A complex array's real view (a trailing axis of 2: real, imaginary), as torch's ``view_as_real``."""
  return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1) if jnp.iscomplexobj(x) else x


def as_complex(x: jax.Array, dtype: Any) -> jax.Array:
  """The inverse of :func:`as_real` into ``dtype`` (a no-op for real dtypes)."""
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.complexfloating):
    return x
  return lax.complex(x[..., 0].astype(real_dtype(dtype)), x[..., 1].astype(real_dtype(dtype))).astype(dtype)


def zeros_like(name: str, params: Any, dtype: Optional[Any] = None) -> Any:
  """Per-parameter state initialized to zero (``dtype`` defaults to each parameter's; a complex
  parameter's state is complex, its real view holding the per-component values, as torch's)."""
  check_floating(name, params, "parameter", allow_complex=True)
  # zeros_like (not zeros(shape)) keeps a sharded parameter's sharding in the state
  return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=dtype or jnp.result_type(p)), params)


def full_like(x: jax.Array, value: Any) -> jax.Array:
  """``x``'s shape and dtype filled with ``value``; a complex leaf gets ``value`` in both components
  (``value + value·i``, as torch.optim initializes complex state such as Adagrad's sum or Rprop's steps)."""
  value = jnp.asarray(value).astype(real_dtype(x.dtype))
  if jnp.iscomplexobj(x):
    value = lax.complex(value, value)
  return jnp.zeros_like(x) + value.astype(x.dtype)


def tree_difference(got_paths: set, expected_paths: set, got_structure: Any, expected_structure: Any,
                    limit: int = 3) -> str:
  """Says how two trees differ: ``missing leaves [...]; unexpected leaves [...]``, else the containers."""
  missing, extra = sorted(expected_paths - got_paths)[:limit], sorted(got_paths - expected_paths)[:limit]
  detail = []
  if missing:
    detail.append(f"missing leaves {missing}")
  if extra:
    detail.append(f"unexpected leaves {extra}")
  if not detail:
    detail.append(f"the containers differ: got {got_structure}, expected {expected_structure}")
  return "; ".join(detail)


def _paths(tree: Any) -> set:
  return {keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)[0]}


def _structure_error(name: str, what: str, got: Any, expected: Any) -> ValueError:
  detail = tree_difference(_paths(got), _paths(expected), jax.tree.structure(got, is_leaf=is_none),
                           jax.tree.structure(expected, is_leaf=is_none))
  return ValueError(
      f"{name}: the {what} tree does not match the optimizer state ({detail}). "
      "Pass updates with the same structure as the params given to init(), or "
      "call init() again for the new parameter tree."
  )


def _check_leaves(name: str, what: str, paths, updates, reference) -> None:
  for path, g, s in zip(paths, updates, reference):
    if g is None or s is None:
      continue
    if jnp.shape(g) != jnp.shape(s):
      raise ValueError(
          f"{name}: the {what} at {keystr(path)} has shape {jnp.shape(g)}, but the "
          f"optimizer state for it has shape {jnp.shape(s)}. Gradients must have "
          "the shape of the parameters given to init()."
      )


def _storage(olds: Sequence[Any], dtype: Any, exact: set) -> Callable[..., tuple]:
  """``stored`` for one leaf: new state values rounded to the dtypes of ``olds``, back in ``dtype``."""
  def stored(*values):
    return tuple(None if v is None else _rounding.store(v, s.dtype, dtype, exact) for v, s in zip(values, olds))
  return stored


def leafwise(
    name: str,
    rule: Callable[..., tuple],
    updates: Any,
    *states: Any,
    scalars: Optional[Mapping[str, jax.Array]] = None,
    check_dtype: Sequence[bool] = (),
    stored: bool = False,
    derive: Optional[Callable[[dict], dict]] = None,
) -> tuple:
  """Applies ``rule(g, *state_leaves, **scalars) -> (u, *new_state_leaves)`` leaf by leaf.

  Args:
    name: the transform's name, for error messages.
    rule: per-leaf math. Receives each gradient leaf and the matching state
      leaves cast to the compute dtype (at least float32), and the scalars cast
      to the same dtype. A state passed as ``None`` reaches the rule as ``None``
      and must come back as ``None``.
    updates: the incoming updates (gradients). ``None`` leaves pass through.
    *states: per-parameter state trees with the structure of ``updates``, or
      ``None``.
    scalars: named scalar hyperparameters (arrays), cast once per dtype.
    check_dtype: for each state, whether it has the parameters' dtype (true
      where the state inherited it, the default; false where its dtype was
      chosen, e.g. ``mu_dtype``). The update comes back in the dtype of the
      first such state (the parameters' dtype), else in the gradient's: float32
      gradients for bfloat16 parameters are accepted, computed in float32,
      stored in each state's dtype and returned in bfloat16.
    stored: also pass the rule ``stored(*new_leaves)``, which returns new
      values of the first states (in order) as they will be stored: rounded to
      each state's dtype, in the compute dtype. A rule whose update reads new
      state computes it from these values.
    derive: ``derive(scalars) -> more scalars``, computed once per compute
      dtype from the scalars already cast to it (e.g. ``1 − β``), instead of
      once per leaf inside the rule: the same numbers, traced once.

  Returns:
    ``(new_updates, *new_states)``; every leaf keeps the dtype it had.
  """
  scalars = dict(scalars or {})
  flat, treedef = jax.tree_util.tree_flatten_with_path(updates, is_leaf=is_none)
  paths = [path for path, _ in flat]
  g_leaves = [None if leaf is None else jnp.asarray(leaf) for _, leaf in flat]
  check_floating(name, updates, "update", allow_complex=True)
  state_leaves = []
  for i, state in enumerate(states):
    if state is None:
      state_leaves.append([None] * len(g_leaves))
      continue
    leaves, state_def = jax.tree.flatten(state, is_leaf=is_none)
    if state_def != treedef:
      raise _structure_error(name, "update", updates, state)
    leaves = [None if leaf is None else jnp.asarray(leaf) for leaf in leaves]
    _check_leaves(name, "update", paths, g_leaves, leaves)
    state_leaves.append(leaves)
  like_params = [check_dtype[i] if i < len(check_dtype) else True for i in range(len(states))]

  cast_cache: dict = {}

  def cast_scalars(dtype):
    if dtype not in cast_cache:
      cast = {k: scalar(v, dtype) for k, v in scalars.items()}
      cast_cache[dtype] = {**cast, **derive(cast)} if derive is not None else cast
    return cast_cache[dtype]

  outs = [[] for _ in range(1 + len(states))]
  for i, g in enumerate(g_leaves):
    olds = [leaves[i] for leaves in state_leaves]
    if g is None:
      outs[0].append(None)
      for j, s in enumerate(olds):
        outs[j + 1].append(s)
      continue
    if jnp.iscomplexobj(g):  # torch's convention: the rule runs on the real view, per component
      g_dtype, g = g.dtype, as_real(g)
      olds_dtypes = [None if s is None else s.dtype for s in olds]
      olds = [None if s is None else as_real(s) for s in olds]
    else:
      g_dtype, olds_dtypes = g.dtype, [None if s is None else s.dtype for s in olds]
    dtype = compute_dtype(wider(g.dtype, *(s.dtype for s in olds if s is not None)))
    out_dtype = next((d for d, like in zip(olds_dtypes, like_params) if like and d is not None), g_dtype)
    kwargs = cast_scalars(dtype)
    exact: set = set()
    if stored:
      kwargs = {**kwargs, "stored": _storage(olds, dtype, exact)}
    result = rule(_cast(g, dtype), *(None if s is None else _cast(s, dtype) for s in olds), **kwargs)
    outs[0].append(as_complex(_cast(result[0], real_dtype(out_dtype)), out_dtype))
    for j, (new, old, old_dtype) in enumerate(zip(result[1:], olds, olds_dtypes)):
      if new is None:
        outs[j + 1].append(None)
        continue
      out = as_complex(_rounding.final(new, old.dtype, exact), old_dtype)
      if _rounding.narrower(old.dtype, new.dtype):
        _rounding.mark_rounded(out)
      outs[j + 1].append(out)
  return tuple(
      None if j > 0 and states[j - 1] is None else jax.tree.unflatten(treedef, leaves)
      for j, leaves in enumerate(outs)
  )


def scalar(value: Any, dtype: Any) -> jax.Array:
  """``jnp.asarray(value, dtype)``, still a concrete array inside ``jit`` when ``value`` is not traced.

  A hyperparameter held as a number stays known while tracing, so a rule can leave out the guards it
  cannot need (:mod:`gradxform._core.guards`); a traced one (an optimizer passed to the step) stays traced.
  """
  if isinstance(value, jax.core.Tracer):
    return jnp.asarray(value, dtype)
  with jax.ensure_compile_time_eval():
    return jnp.asarray(value, dtype)


def sum_of(parts: Sequence[jax.Array], dtype: Any) -> jax.Array:
  """``Σ parts`` (one scalar per leaf) as one reduction of the stacked values; 0 in ``dtype`` for none.

  Not a chain of N additions: XLA deems that cheap and copies it into every per-leaf loop that reads the sum
  (O(N²) instructions to compile).
  """
  return jnp.sum(jnp.stack(parts)) if parts else jnp.zeros((), dtype)


_SMALL, _RUN = 1 << 16, 1 << 20  # elements: a leaf below _SMALL joins a run of at most _RUN


def _runs(leaves: Sequence[jax.Array]) -> list:
  """The leaves as few arrays to reduce: leaves under ``_SMALL`` elements raveled and concatenated in runs of at
  most ``_RUN`` elements (one loop each, a temporary of at most 4 MiB in float32); larger leaves and leaves
  split over Explicit mesh axes as they are (never gathered)."""
  alone, runs, run, size = [], [], [], 0
  for x in leaves:
    if x.size >= _SMALL or explicit_sharding(x) is not None:
      alone.append(x)
      continue
    if size + x.size > _RUN:
      runs.append(run)
      run, size = [], 0
    run.append(jnp.ravel(x))
    size += x.size
  runs.append(run)
  return alone + [r[0] if len(r) == 1 else jnp.concatenate(r) for r in runs if r]


def global_norm(tree: Any) -> jax.Array:
  """The Euclidean norm of all leaves together, accumulated in at least float32."""
  leaves = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
  if not leaves:
    return jnp.zeros((), jnp.float32)
  leaves = [as_real(x) for x in leaves]  # |z|² = re² + im²
  dtype = compute_dtype(wider(*(x.dtype for x in leaves)))
  leaves = [x.astype(dtype) for x in leaves]
  # Σ g² directly (as optax), unless it overflowed or squares may have underflowed: then, under lax.cond,
  # again with every leaf scaled by a power of two (exact) that brings its squares into range, 2^-k after an
  # overflow and 2^k for tiny gradients (k = maxexp / 2 + 16: 80 in float32), so finite float32 gradients
  # such as [1e30, 1, 0] do not overflow. A scale computed from the leaves (their maximum) inside the N
  # reductions made XLA copy that N-leaf computation into each (O(N²) to compile); and N more reduction
  # loops in the fallback doubled the compile time of a clip on many leaves, so small leaves are summed
  # there in concatenated runs (see _runs).
  total = sum_of([jnp.sum(jnp.square(x)) for x in leaves], dtype)
  info = jnp.finfo(dtype)
  plain = jnp.isfinite(total) & (total >= info.tiny / info.eps)
  k = info.maxexp // 2 + 16

  def rescaled():
    scale = jnp.where(total > 1, np.ldexp(1.0, -k), np.ldexp(1.0, k)).astype(dtype)
    return jnp.sqrt(sum_of([jnp.sum(jnp.square(x * scale)) for x in _runs(leaves)], dtype)) / scale

  return lax.cond(plain, lambda: jnp.sqrt(total), rescaled)


def explicit_sharding(x: Any) -> Optional[Any]:
  """``x``'s sharding when it is part of its type (a mesh with Explicit axes that splits ``x``), else None.

  With Auto axes (or no mesh) XLA propagates shardings itself and nothing is
  needed; with Explicit axes an operation that mixes layouts (a concatenation,
  a ``cond`` or ``scan`` carry, a contraction over a split axis) must be told.
  """
  try:
    sharding = x.sharding if isinstance(x, jax.ShapeDtypeStruct) else jax.typeof(x).sharding
  except (AttributeError, TypeError):
    return None
  mesh = getattr(sharding, "mesh", None)
  spec = getattr(sharding, "spec", None)
  if mesh is None or spec is None or not any(axis is not None for axis in spec):
    return None
  explicit = jax.sharding.AxisType.Explicit
  if not any(t == explicit for t in getattr(mesh, "axis_types", ())):
    return None
  return sharding


def replicated(x: jax.Array) -> jax.Array:
  """``x`` gathered on every device when its type splits it over Explicit axes (else ``x`` itself)."""
  sharding = explicit_sharding(x)
  if sharding is None:
    return x
  return jax.sharding.reshard(x, jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec()))


def sharded_like(x: jax.Array, like: Any) -> jax.Array:
  """``x`` laid out as ``like`` when ``like``'s type splits it over Explicit axes (else ``x`` itself)."""
  sharding = explicit_sharding(like)
  if sharding is None or explicit_sharding(x) == sharding:
    return x
  return jax.sharding.reshard(x, sharding)


def dot(a: jax.Array, b: jax.Array) -> jax.Array:
  """``Σ_i a_i b_i`` of two arrays laid out alike, as a scalar on every device (any mesh)."""
  return jnp.sum(a * b)
