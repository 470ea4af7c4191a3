"""Populations: many hyperparameter settings trained as one vmapped, jitted program.

A :class:`Population` pairs an optimizer factory with a table of settings, one
row per member; the members' parameters and states are stacked along a leading
*member axis*. :func:`truncation_selection`, :func:`exploit` and
:func:`perturb` are population-based training (Jaderberg et al. 2017,
https://arxiv.org/abs/1711.09846) on those stacked arrays.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core.base import apply_updates

__all__ = ["Population", "exploit", "perturb", "truncation_selection"]


def _float_column(name: str, values: Any) -> jax.Array:
  try:
    array = jnp.asarray(values)
  except (TypeError, ValueError):
    raise TypeError(f"Population: hyperparams[{name!r}] must be a sequence of numbers, got "
                    f"{type(values).__name__}.") from None
  if jnp.issubdtype(array.dtype, jnp.integer):
    array = array.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
  elif not jnp.issubdtype(array.dtype, jnp.floating):
    raise TypeError(f"Population: hyperparams[{name!r}] has dtype {array.dtype}; hyperparameters "
                    "are real numbers.")
  if array.ndim != 1:
    raise ValueError(f"Population: hyperparams[{name!r}] has shape {array.shape}, but must be 1-D "
                     "(one value per member). For a grid of settings, build the columns with "
                     "np.meshgrid(...) and ravel them.")
  return array


class Population:
  """A population of optimizers: one factory, one row of hyperparameters per member.

  Example::

      pop = gx.Population(lambda lr, b1: gx.adam(lr, b1=b1),
                          {"lr": np.logspace(-4, -1, 8), "b1": np.full(8, 0.9)})
      params, state = pop.init(params)            # stacked: a leading axis of 8
      step = pop.step(loss_fn)                    # loss_fn(params, batch) -> scalar
      params, state, losses = step(pop.hyperparams, params, state, batch)

  The step computes, for every member ``i`` at once (``jax.vmap`` under
  ``jax.jit``), ``opt_i = factory(**hyperparams[i])``, ``g = ∇loss(p_i,
  batch)``, ``p_i ← p_i + opt_i.update(g, s_i, p_i)``: member ``i``'s result
  equals its own separate run (to floating-point rounding). The
  hyperparameters are an argument of the step: new values never recompile it.

  Args:
    factory: ``factory(**values) -> optimizer``, called with one keyword
      argument per column of ``hyperparams``, each a scalar (a traced scalar
      inside the step). It must build the same kind of optimizer for every
      value (e.g. ``lambda lr, b1: gx.adam(lr, b1=b1)``); fixed settings go in
      the closure.
    hyperparams: ``{name: values}``, one 1-D sequence per factory argument,
      all of the same length (the number of members); kept, as floating
      arrays, in ``self.hyperparams`` (``self.size`` is the number of members).

  Known issue (XLA:CPU, jax 0.10): a population of SOAP (and, less often,
  Shampoo) on a model with several matrices of different shapes can hang in
  its first call (every thread idle; the same program without ``vmap`` runs).
  XLA's concurrency-optimized CPU scheduler is at fault: start the process with
  ``XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false`` (as
  ``examples/char_lm.py`` does). It was seen on CPU only.
  """

  def __init__(self, factory: Callable[..., Any], hyperparams: Mapping[str, Any]) -> None:
    if not callable(factory):
      raise TypeError(f"Population: factory must be a function of the hyperparameters returning an "
                      f"optimizer (e.g. lambda lr: gx.adam(lr)), got {type(factory).__name__}.")
    if not isinstance(hyperparams, Mapping) or not hyperparams:
      raise TypeError("Population: hyperparams must be a non-empty dict {name: values}, one 1-D "
                      f"sequence per argument of the factory; got {hyperparams!r}.")
    columns = {str(name): _float_column(name, values) for name, values in hyperparams.items()}
    sizes = {name: column.shape[0] for name, column in columns.items()}
    if len(set(sizes.values())) != 1 or 0 in sizes.values():
      raise ValueError(f"Population: every column of hyperparams needs one value per member, and at "
                       f"least one member; got lengths {sizes}.")
    self.factory = factory
    self.hyperparams = columns
    self.size = next(iter(sizes.values()))
    table = {name: np.asarray(column) for name, column in columns.items()}
    for i in range(self.size):  # range checks of every setting, with the member named
      try:
        optimizer = factory(**{name: float(column[i]) for name, column in table.items()})
      except (TypeError, ValueError) as error:
        setting = ", ".join(f"{name}={column[i]}" for name, column in table.items())
        raise type(error)(f"Population: member {i} ({setting}): {error}") from None
      if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"Population: the factory must return an optimizer (with init and update), "
                        f"got {type(optimizer).__name__}.")

  def __repr__(self) -> str:
    return f"Population(size={self.size}, hyperparams={list(self.hyperparams)})"

  def member(self, i: int, hyperparams: Optional[Mapping[str, Any]] = None) -> Any:
    """Member ``i``'s optimizer on its own (from ``hyperparams``, default the table), for a separate run."""
    table = self.hyperparams if hyperparams is None else hyperparams
    return self.factory(**{name: jnp.asarray(column[i]) for name, column in table.items()})

  def _check(self, where: str, hyperparams: Any, **stacked: Any) -> None:
    """Checks the keys and shapes of ``hyperparams`` and the member axis of each ``stacked`` tree."""
    if not isinstance(hyperparams, Mapping) or set(hyperparams) != set(self.hyperparams):
      got = sorted(hyperparams) if isinstance(hyperparams, Mapping) else type(hyperparams).__name__
      raise ValueError(f"Population.{where}: hyperparams must have the keys {sorted(self.hyperparams)} "
                       f"(the factory's arguments), got {got}. Pass pop.hyperparams or a tree "
                       "returned by exploit()/perturb().")
    for name, column in hyperparams.items():
      if jnp.shape(column) != (self.size,):
        raise ValueError(f"Population.{where}: hyperparams[{name!r}] has shape {jnp.shape(column)}, "
                         f"expected ({self.size},): one value per member.")
    for what, tree in stacked.items():
      sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
      if sizes - {self.size}:
        raise ValueError(f"Population.{where}: every leaf of {what} needs a leading member axis of "
                         f"size {self.size}; found leading sizes {sorted(sizes, key=str)}. Use the "
                         "params and state returned by pop.init() (or pass stacked=True to init "
                         "with per-member params).")

  def init(self, params: Any, hyperparams: Optional[Mapping[str, Any]] = None, *,
           stacked: bool = False) -> tuple[Any, Any]:
    """Stacked parameters and optimizer states for all members.

    Args:
      params: one parameter tree, copied to every member; or, with
        ``stacked=True``, a tree whose leaves have a leading member axis
        (e.g. ``jax.vmap(init_fn)(keys)`` for a different start per member).
      hyperparams: the table to initialize with (default ``self.hyperparams``);
        matters for optimizers whose state starts from a hyperparameter.
      stacked: whether ``params`` already has the member axis.

    Returns:
      ``(params, state)``, each leaf with a leading axis of ``size``.
    """
    hyperparams = self.hyperparams if hyperparams is None else hyperparams
    self._check("init", hyperparams, **({"params": params} if stacked else {}))
    if not stacked:
      params = jax.tree.map(lambda p: jnp.broadcast_to(p, (self.size,) + jnp.shape(p)), params)
    state = jax.vmap(lambda hp, p: self.factory(**hp).init(p))(hyperparams, params)
    return params, state

  def _jit(self, loss_fn, has_aux, shared_batch, donate, member_sharding, scan: bool) -> Callable:
    grad_fn = jax.value_and_grad(loss_fn, has_aux=has_aux)
    where = "train" if scan else "step"

    def one(hp, params, state, batch):  # one member, one step
      loss, grads = grad_fn(params, batch)
      updates, state = self.factory(**hp).update(grads, state, params)
      return apply_updates(params, updates), state, loss

    def step(hyperparams, params, state, batch):
      return jax.vmap(one, in_axes=(0, 0, 0, None if shared_batch else 0))(hyperparams, params, state, batch)

    def run(hyperparams, params, state, batch):
      checked = {"params": params, "state": state}  # at trace time: no cost per call
      if not shared_batch:
        checked["batch (shared_batch=False)"] = jax.tree.map(lambda b: b[0], batch) if scan else batch
      if isinstance(hyperparams, Mapping):  # lists of numbers too
        hyperparams = {name: jnp.asarray(column) for name, column in hyperparams.items()}
      self._check(where, hyperparams, **checked)
      if not scan:
        return step(hyperparams, params, state, batch)

      def body(carry, batch):
        params, state, losses = step(hyperparams, *carry, batch)
        return (params, state), losses

      (params, state), losses = jax.lax.scan(body, (params, state), batch)
      return params, state, losses

    out_shardings = member_sharding
    if scan and isinstance(member_sharding, jax.sharding.NamedSharding):  # losses: (steps, members)
      losses = jax.sharding.NamedSharding(member_sharding.mesh,
                                          jax.sharding.PartitionSpec(None, *member_sharding.spec))
      out_shardings = (member_sharding, member_sharding, losses)
    return jax.jit(run, donate_argnums=(1, 2) if donate else (), out_shardings=out_shardings)

  def step(self, loss_fn: Callable, *, has_aux: bool = False, shared_batch: bool = True,
           donate: bool = False, member_sharding: Optional[jax.sharding.Sharding] = None) -> Callable:
    """A jitted step of all members: ``(hyperparams, params, state, batch) -> (params, state, losses)``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` for one member (a scalar),
        or ``(loss, aux)`` with ``has_aux=True``.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      shared_batch: if true every member sees the same ``batch``; if false each
        leaf of ``batch`` has a leading member axis (one batch per member).
      donate: donate ``params`` and ``state`` to the step (their buffers are
        reused for the outputs; the arrays passed in become invalid).
      member_sharding: for a population split over devices (see
        :func:`gradxform.member_shardings`), the sharding of the member axis,
        e.g. ``NamedSharding(mesh, P("members"))``, given to every output.
        (Without it, sharding propagation may replicate outputs that do not
        depend on the member, such as a recorded hyperparameter not swept.)

    Returns:
      A ``jax.jit`` function. ``losses`` (shape ``(size,)``; ``(loss, aux)``
      with ``has_aux``) are each member's loss at the parameters *before* the
      update. New ``hyperparams`` values of the same shapes and dtypes reuse
      the compiled code.
    """
    return self._jit(loss_fn, has_aux, shared_batch, donate, member_sharding, scan=False)

  def train(self, loss_fn: Callable, *, has_aux: bool = False, shared_batch: bool = True,
            donate: bool = False, member_sharding: Optional[jax.sharding.Sharding] = None) -> Callable:
    """Many steps in one jitted call: ``(hyperparams, params, state, batches) -> (params, state, losses)``.

    :meth:`step` once per entry of the leading axis of ``batches`` (a
    ``jax.lax.scan``): a whole training run of every member is one compiled
    program. The arguments are those of :meth:`step`; with
    ``shared_batch=False`` the member axis of ``batches`` is the second one.
    ``losses`` has shape ``(steps, size)``.
    """
    return self._jit(loss_fn, has_aux, shared_batch, donate, member_sharding, scan=True)


def truncation_selection(losses: Any, fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
  """Population-based training's truncation selection: who replaces whom.

  Members are ranked by ``losses`` (on the host; NaN counts as the worst), and
  the ``k = max(1, floor(fraction · size))`` worst are replaced by the ``k``
  best: the worst by the best, the second worst by the second best, ...

  Args:
    losses: shape ``(size,)``, one score per member (lower is better).
    fraction: the share of the population replaced, in ``(0, 0.5]``.

  Returns:
    ``(winners, losers)``: int32 NumPy arrays of length ``k`` (fixed by
    ``size`` and ``fraction``, so :func:`exploit` does not recompile); member
    ``winners[j]`` is to be copied into member ``losers[j]``.

  References:
    Jaderberg et al., 2017, https://arxiv.org/abs/1711.09846 (Section 3.1)
  """
  losses = np.asarray(losses, np.float64)
  if losses.ndim != 1 or losses.shape[0] < 2:
    raise ValueError(f"truncation_selection: losses must have shape (size,) with size >= 2, got "
                     f"{losses.shape}.")
  if not 0.0 < fraction <= 0.5:
    raise ValueError(f"truncation_selection: fraction={fraction} must be in (0, 0.5] (the share of "
                     "the population replaced by the best members).")
  k = max(1, int(fraction * losses.shape[0]))
  order = np.argsort(np.where(np.isnan(losses), np.inf, losses), kind="stable").astype(np.int32)
  return order[:k], order[::-1][:k]


def _copy_rows(x: jax.Array, source: jax.Array) -> jax.Array:
  sharding = jax.typeof(x).sharding
  if jax.sharding.AxisType.Explicit in getattr(sharding.mesh, "axis_types", ()):
    return x.at[source].get(out_sharding=sharding)  # explicit axes: say where the rows go
  return x[source]


@jax.jit
def _exploit(tree, source):
  return jax.tree.map(lambda x: _copy_rows(x, source), tree)


def exploit(tree: Any, winners: Any, losers: Any) -> Any:
  """Copies members ``winners[j]`` into members ``losers[j]``, for every leaf of ``tree``.

  PBT's *exploit* step. Copy a population's hyperparameters, params and state
  together, so that the copy continues exactly where its source was. Jitted
  (new indices of the same length reuse the compiled copy); every leaf keeps
  its sharding, so a population split over devices stays split.

  Args:
    tree: arrays with a leading member axis, e.g. ``(hyperparams, params, state)``.
    winners: int indices of the members copied.
    losers: int indices (same length) of the members overwritten.

  Returns:
    The tree with ``x[losers] = x[winners]`` for every leaf.

  References:
    Jaderberg et al., 2017, "Population Based Training of Neural Networks", https://arxiv.org/abs/1711.09846
  """
  winners, losers = np.asarray(winners), np.asarray(losers)
  if winners.shape != losers.shape or winners.ndim != 1:
    raise ValueError(f"exploit: winners and losers must be 1-D and of the same length, got shapes "
                     f"{winners.shape} and {losers.shape}.")
  sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(f"exploit: every leaf of tree needs the same leading member axis; found leading "
                     f"sizes {sorted(sizes, key=str)}. Pass the stacked params/state/hyperparams of a "
                     "population.")
  size = sizes.pop()
  for name, index in (("winners", winners), ("losers", losers)):
    if index.size and (index.min() < -size or index.max() >= size):
      raise IndexError(f"exploit: {name}={index.tolist()} is out of range for {size} members.")
  source = np.arange(size, dtype=np.int32)
  source[losers] = winners
  copied = _exploit(tree, jnp.asarray(source))

  def keep_sharding(new, old):  # sharding propagation may have chosen another layout
    sharding = getattr(old, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding) and new.sharding != sharding:
      return jax.device_put(new, sharding)
    return new

  return jax.tree.map(keep_sharding, copied, tree)


@functools.partial(jax.jit, static_argnames=("names",))
def _perturb(key, hyperparams, members, factors, names):
  new = dict(hyperparams)
  for i, name in enumerate(names):
    column = hyperparams[name]
    choice = jax.random.choice(jax.random.fold_in(key, i), factors, shape=members.shape)
    factor = jnp.ones(column.shape, column.dtype).at[members].set(choice.astype(column.dtype))
    new[name] = column * factor  # element-wise: a column split over devices stays split
  return new


def perturb(key: jax.Array, hyperparams: Mapping[str, Any], members: Any, *,
            factors: Sequence[float] = (0.8, 1.25), names: Optional[Sequence[str]] = None) -> dict:
  """Multiplies the hyperparameters of ``members`` by factors drawn at random.

  PBT's *explore* step: ``h ← h · f`` for each listed member and each name,
  with ``f`` drawn uniformly from ``factors`` (independently). Jitted; new
  keys and members of the same length reuse the compiled code.

  Args:
    key: a ``jax.random`` key.
    hyperparams: ``{name: array of shape (size,)}`` (a population's table).
    members: int indices of the members to perturb (usually the ``losers``
      of :func:`truncation_selection`, after :func:`exploit`).
    factors: the multipliers to draw from.
    names: which hyperparameters to perturb (default: all). Keep bounded ones
      (momentum, betas) out, or clip them after, e.g. ``jnp.minimum(b1, 0.999)``.

  Returns:
    A new ``{name: array}``; the other members and names are unchanged.

  References:
    Jaderberg et al., 2017, "Population Based Training of Neural Networks", https://arxiv.org/abs/1711.09846
  """
  names = tuple(hyperparams) if names is None else tuple(names)
  unknown = [name for name in names if name not in hyperparams]
  if unknown:
    raise ValueError(f"perturb: names {unknown} are not in hyperparams (keys {sorted(hyperparams)}).")
  factors = np.asarray(factors, np.float64)
  if factors.ndim != 1 or factors.size == 0 or not np.all(factors > 0):
    raise ValueError(f"perturb: factors must be a non-empty sequence of positive numbers, got "
                     f"{factors.tolist()}.")
  members = jnp.asarray(members, jnp.int32)
  return _perturb(key, dict(hyperparams), members, jnp.asarray(factors), names)
