"""Gradient hygiene: ``zero_nans``, ``add_noise`` (annealed Gaussian noise) and ``centralize``."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import EmptyState, GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter, step_number
from gradxform._core.module import static_field
from gradxform._transforms.options import check_seed

__all__ = ["AddNoiseState", "ZeroNansState", "add_noise", "centralize", "zero_nans"]



# ---------------------------------------------------------------------------
# zero_nans


class ZeroNansState(NamedTuple):
  """State of :func:`zero_nans`.

  ``found_nan`` has the tree structure of the params given to ``init`` (so
  of the updates), ``None`` where they are ``None``: one boolean scalar per
  leaf, true iff that leaf of the updates contained a NaN at the last update.
  A leaf whose update is ``None`` but whose parameter was not keeps its slot,
  set to False, so the state's structure never changes between steps (no
  retracing, valid ``lax.scan`` carry). The transform does not read the flags;
  they are there for logging. For a single flag use
  ``jax.tree.reduce(jnp.logical_or, state.found_nan, False)``.
  """

  found_nan: Any


class _ZeroNans(GradientTransformation):

  def init(self, params):
    _tree.check_floating("zero_nans", params, "parameter")
    return ZeroNansState(found_nan=jax.tree.map(
        lambda p: None if p is None else jnp.zeros([], jnp.bool_), params, is_leaf=_tree.is_none))

  def update(self, updates, state, params=None, **extra):
    del params, extra
    if not isinstance(state, ZeroNansState):
      raise TypeError(
          f"zero_nans: expected a ZeroNansState as state, got {type(state).__name__}. "
          "Pass the state returned by this transform's init() or update() (inside a "
          "chain, states are positional: one per stage).")
    rule = lambda g: (jnp.where(jnp.isnan(g), jnp.zeros_like(g), g),)
    cleaned, = _tree.leafwise("zero_nans", rule, updates)
    try:
      found = jax.tree.map(_found_nan, updates, state.found_nan, is_leaf=_tree.is_none)
    except ValueError as error:
      raise ValueError(
          f"zero_nans: the update tree does not match the state ({error}). Pass updates "
          "with the structure of the params given to init(), or call init() again.") from None
    return cleaned, ZeroNansState(found_nan=found)


def _found_nan(g: Any, old: Any) -> Any:
  """Whether ``g`` has a NaN; a masked (``None``) update keeps its slot (False) if init made one."""
  if g is None:
    return None if old is None else jnp.zeros([], jnp.bool_)
  return jnp.any(jnp.isnan(g))


def zero_nans() -> GradientTransformation:
  """Replaces NaN coordinates of the updates with zero and records which leaves had any.

  .. math::

     u_i = \\begin{cases} 0 & \\text{if } g_i \\text{ is NaN} \\\\ g_i & \\text{otherwise} \\end{cases}

  Only NaNs are replaced: ``±inf`` coordinates pass through unchanged, as in
  ``optax.zero_nans`` (a later norm-based clipping turns them into NaN; use
  :func:`clip` first, or handle them upstream, if infinities can occur).
  Put it first in a chain so that one bad coordinate does not poison the
  moments of the stages after it.

  Returns:
    A transform with state :class:`ZeroNansState`: per-leaf flags (one boolean
    scalar per leaf, the tree structure of the params, ``None`` where they are
    ``None``), as ``optax.ZeroNansState``.

  References:
    optax, ``zero_nans``,
    https://optax.readthedocs.io/en/latest/api/transformations.html#optax.zero_nans
  """
  return _ZeroNans()


# ---------------------------------------------------------------------------
# add_noise


class AddNoiseState(NamedTuple):
  """State of :func:`add_noise`.

  ``rng_key`` is a raw ``uint32`` key array (``jax.random.PRNGKey(seed)``,
  split once per update), so the state can be saved by any checkpointer.
  """

  count: jax.Array  # int32 scalar
  hyperparams: dict
  rng_key: jax.Array  # uint32 raw PRNG key


_NOISE = "add_noise"


class _AddNoise(Transform):
  eta: Any
  gamma: Any
  seed: int = static_field(default=0)
  key_words: Optional[tuple] = static_field(default=None)  # a given key's raw uint32 words (instead of seed)
  State = AddNoiseState

  def init_fields(self, params):
    del params
    if self.key_words is not None:
      return {"rng_key": jnp.asarray(self.key_words, jnp.uint32)}
    return {"rng_key": jax.random.PRNGKey(self.seed)}

  def apply(self, updates, state, params, hp, **extra):
    _tree.check_floating(_NOISE, updates, "update")
    t = step_number(state, hp, "eta")
    std = jnp.sqrt(hp["eta"] / t ** hp["gamma"].astype(t.dtype))
    rng_key, sample_key = jax.random.split(state.rng_key)
    flat, treedef = jax.tree.flatten(updates, is_leaf=_tree.is_none)
    present = [leaf for leaf in flat if leaf is not None]
    keys = iter(jax.random.split(sample_key, len(present))) if present else iter(())
    noise = []
    for leaf in flat:
      if leaf is None:
        noise.append(None)
      else:
        dtype = _tree.compute_dtype(jnp.result_type(leaf))
        noise.append(jax.random.normal(next(keys), jnp.shape(leaf), dtype))
    noise = jax.tree.unflatten(treedef, noise)
    rule = lambda g, n, std: (g + std * n, n)
    updates, _ = _tree.leafwise(_NOISE, rule, updates, noise, scalars={"std": std},
                                check_dtype=(False,))
    return updates, {"rng_key": rng_key}


def add_noise(eta: Any, gamma: Any, seed: int) -> GradientTransformation:
  """Adds annealed Gaussian noise to the updates (Neelakantan et al. 2015).

  .. math::

     u_t = g_t + \\sigma_t\\, \\xi_t, \\quad \\xi_t \\sim \\mathcal{N}(0, I), \\qquad
     \\sigma_t^2 = \\frac{\\eta}{(1 + t)^{\\gamma}}

  with ``t = 0`` at the first update (so ``σ² = η`` there, then
  ``η / 2^γ, η / 3^γ, …``), as the paper's ``σ_t² = η / (1 + t)^γ`` and
  ``optax.add_noise`` (``eta / (count + 1)^gamma``). The key is split as in
  optax (``key, sample = split(key)``, then one key per non-``None`` leaf from
  ``split(sample, n_leaves)``), so float32 and float64 leaves receive
  optax's noise for the same seed; the noise is drawn in the compute dtype (at
  least float32), so bfloat16/float16 leaves differ from optax, which samples
  in the leaf's dtype. The paper uses ``γ = 0.55`` and ``η ∈ {0.01, 0.3, 1}``.

  Args:
    eta: ``η ≥ 0``, the initial noise variance (float, array or schedule).
    gamma: ``γ ≥ 0``, the annealing exponent (float, array or schedule).
    seed: an integer in ``[0, 2**32)`` for ``jax.random.PRNGKey`` (the key is
      created by ``init``; the same seed gives the same noise).

  Returns:
    A transform with state :class:`AddNoiseState` (``count``, ``hyperparams``:
    ``eta`` and ``gamma`` where scheduled or injected, ``rng_key``).

  References:
    Neelakantan et al., 2015, "Adding Gradient Noise Improves Learning for Very
    Deep Networks", https://arxiv.org/abs/1511.06807
  """
  check_hyperparameter(_NOISE, "eta", eta, low=0.0,
                       hint="eta is the initial variance of the added noise; it must be >= 0, "
                       "e.g. 0.01 (the paper uses 0.01, 0.3 or 1.0).")
  check_hyperparameter(_NOISE, "gamma", gamma, low=0.0,
                       hint="gamma is the decay exponent of the noise variance; it must be >= 0, "
                       "e.g. 0.55.")
  return _AddNoise(eta, gamma, seed=check_seed(_NOISE, seed, "the noise"))


# ---------------------------------------------------------------------------
# centralize


class _Centralize(GradientTransformation):
  units_first: bool = static_field(default=False)  # optax's layout: units along the first axis

  def init(self, params):
    del params
    return EmptyState()

  def update(self, updates, state, params=None, **extra):
    del params, extra

    def rule(g):
      if self.units_first:
        return (g - jnp.mean(g, axis=tuple(range(1, g.ndim)), keepdims=True),) if g.ndim > 1 else (g,)
      if g.ndim < 2 or g.size == g.shape[-1]:  # no unit has more than one element
        return (g,)
      return (g - jnp.mean(g, axis=tuple(range(g.ndim - 1)), keepdims=True),)

    updates, = _tree.leafwise("centralize", rule, updates)
    return updates, state


def centralize() -> GradientTransformation:
  """Gradient centralization: removes the mean of each output unit's gradient.

  .. math::

     u_{\\ldots, j} = g_{\\ldots, j} - \\operatorname{mean}_{\\ldots}(g_{\\ldots, j})

  For a leaf with ``ndim ≥ 2`` the mean is over all axes except the last, one
  per output unit ``j``, since JAX/Flax kernels are laid out ``(..., in, out)``
  (the paper's weight vectors ``w_j`` are the columns). 0-D and 1-D leaves
  (biases, scales) are left unchanged, as in the paper, which centralizes
  only the weights of fully connected and convolution layers; so are leaves
  whose units have a single element (``prod(shape[:-1]) == 1``, e.g. a
  ``(1, 1, d)`` class token), whose centered gradient would be identically
  zero.

  ``optax.centralize`` instead subtracts the mean over all axes except the
  *first* (PyTorch's ``(out, in, ...)`` layout), so on JAX kernels it centers
  each input row; ``centralize()(g)`` equals optax's on ``g`` with its last
  axis moved to the front (and back).

  Returns:
    A transform with state :class:`~gradxform.EmptyState`.

  References:
    Yong, Huang, Hua & Zhang, 2020, "Gradient Centralization: A New
    Optimization Technique for Deep Neural Networks", https://arxiv.org/abs/2004.01461
  """
  return _Centralize()
