"""Differential privacy: per-example clipping and the DP-SGD aggregate (Abadi et al. 2016)."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._core.base import GradientTransformation
from gradxform._core.hyperparams import Transform, check_hyperparameter
from gradxform._core.module import static_field

__all__ = ["differentially_private_aggregate", "per_example_global_norm_clip", "per_example_layer_norm_clip"]

_DP = "differentially_private_aggregate"


def _check_batched(name: str, grads: Any) -> list:
  leaves = jax.tree.leaves(grads)
  if not leaves or any(jnp.ndim(g) == 0 for g in leaves) or len({jnp.shape(g)[0] for g in leaves}) != 1:
    shapes = jax.tree.map(jnp.shape, grads)
    raise ValueError(f"{name}: expects per-example gradients, every leaf with the same leading batch axis "
                     f"(e.g. from jax.vmap(jax.grad(loss), in_axes=(None, 0))); got shapes {shapes}.")
  return leaves


def per_example_global_norm_clip(grads: Any, l2_norm_clip: Any) -> tuple[Any, jax.Array]:
  """Clips each example's gradient to a global norm and sums over the batch, as optax's function.

  .. math::

     \\tilde g = \\sum_i g_i \\min\\left(1, \\frac{C}{\\|g_i\\|}\\right)

  (an example with ``‖g_i‖ = 0`` keeps its factor 1).

  Args:
    grads: per-example gradients, every leaf with a leading batch axis.
    l2_norm_clip: ``C > 0``.

  Returns:
    ``(summed clipped gradients without the batch axis, number of examples clipped)``.

  References:
    Abadi et al., 2016, "Deep Learning with Differential Privacy", Algorithm 1,
    https://arxiv.org/abs/1607.00133
  """
  leaves = _check_batched("per_example_global_norm_clip", grads)
  squares = sum(jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1) for g in leaves)
  norms = jnp.sqrt(squares)
  multipliers = jnp.nan_to_num(jnp.minimum(l2_norm_clip / norms, 1.0), nan=1.0)
  clipped = jax.tree.map(lambda g: jnp.tensordot(multipliers.astype(g.dtype), g, axes=1), grads)
  return clipped, jnp.sum(multipliers < 1.0)


def per_example_layer_norm_clip(grads: Any, global_l2_norm_clip: Any, uniform: bool = True) -> tuple[Any, Any]:
  """Clips each example's gradient layer by layer and sums over the batch, as optax's function.

  Layer ``l`` is clipped to ``C_l = C / √L`` (``uniform``) or ``C √(n_l / n)`` (by its share of the
  ``n`` parameters), so the whole per-example gradient has norm at most ``C``.

  Args:
    grads: per-example gradients, every leaf with a leading batch axis.
    global_l2_norm_clip: ``C > 0``.
    uniform: the same bound for every layer, or bounds by size.

  Returns:
    ``(summed clipped gradients, number of examples clipped per layer)``, two trees.

  References:
    McMahan et al., 2018, "A General Approach to Adding Differential Privacy to Iterative Training
    Procedures", https://arxiv.org/abs/1812.06210
  """
  leaves = _check_batched("per_example_layer_norm_clip", grads)
  total = sum(g[0].size for g in leaves)
  if uniform:
    bound = lambda g: global_l2_norm_clip * (1.0 / len(leaves)) ** 0.5
  else:
    bound = lambda g: global_l2_norm_clip * (g[0].size / total) ** 0.5
  pairs = jax.tree.map(lambda g: per_example_global_norm_clip(g, bound(g)), grads)
  is_pair = lambda x: isinstance(x, tuple) and len(x) == 2 and not isinstance(x[0], tuple)
  return (jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair),
          jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair))


class DifferentiallyPrivateAggregateState(NamedTuple):
  """State of :func:`differentially_private_aggregate`: ``rng_key`` is a raw ``uint32`` key."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  rng_key: jax.Array


class _DifferentiallyPrivateAggregate(Transform):
  l2_norm_clip: Any
  noise_multiplier: Any
  seed: int = static_field(default=0)
  name: str = static_field(default=_DP)
  State = DifferentiallyPrivateAggregateState

  def init(self, params):  # params has no batch axis; the per-example gradients do
    count = jnp.zeros([], jnp.int32)
    return self.State(count=count, hyperparams=self.resolve(count), rng_key=jax.random.PRNGKey(self.seed))

  def apply(self, updates, state, params, hp, **extra):
    leaves, treedef = jax.tree.flatten(updates)
    batch = _check_batched(_DP, updates)[0].shape[0]
    clipped, _ = per_example_global_norm_clip(leaves, hp["l2_norm_clip"])
    rng_key, *keys = jax.random.split(state.rng_key, len(leaves) + 1)
    std = hp["l2_norm_clip"] * hp["noise_multiplier"]
    noised = [((g + std.astype(g.dtype) * jax.random.normal(k, g.shape, g.dtype)) / batch).astype(g.dtype)
              for g, k in zip(clipped, keys)]
    return jax.tree.unflatten(treedef, noised), {"rng_key": rng_key}


def differentially_private_aggregate(l2_norm_clip: Any, noise_multiplier: Any, seed: int = 0) -> GradientTransformation:
  """DP-SGD's aggregate: clip per example, sum, add Gaussian noise, average (as optax.contrib's).

  .. math::

     \\bar g = \\frac{1}{B}\\left(\\sum_{i=1}^{B} g_i \\min\\left(1, \\frac{C}{\\|g_i\\|}\\right)
       + \\mathcal{N}(0, \\sigma^2 C^2 I)\\right)

  The input is per-example gradients (a leading batch axis ``B`` on every leaf); the output has the
  parameters' shapes. The key is split as optax does, so the same seed gives optax's noise.

  This transform only adds the noise; it does no privacy accounting. The ``(ε, δ)`` guarantee depends on
  the sampling rate, the number of steps and ``σ`` and must be computed with an accountant (e.g. the RDP
  or PRV accountants of ``dp_accounting``), and it holds only if batches are sampled as the accountant
  assumes (Poisson or uniform sampling, not shuffled epochs).

  Args:
    l2_norm_clip: ``C > 0``, each example's gradient norm bound.
    noise_multiplier: ``σ ≥ 0``, the noise's standard deviation relative to ``C``.
    seed: an integer in ``[0, 2**32)`` for ``jax.random.PRNGKey``.

  Returns:
    A transform with state :class:`DifferentiallyPrivateAggregateState`.

  References:
    Abadi et al., 2016, "Deep Learning with Differential Privacy", https://arxiv.org/abs/1607.00133
  """
  check_hyperparameter(_DP, "l2_norm_clip", l2_norm_clip, low=0.0, low_open=True,
                       hint="the per-example gradient norm bound C, e.g. 1.0.")
  check_hyperparameter(_DP, "noise_multiplier", noise_multiplier, low=0.0,
                       hint="the noise's standard deviation relative to l2_norm_clip, e.g. 1.1.")
  if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**32:
    raise ValueError(f"{_DP}: seed must be a Python integer in [0, 2**32), got {seed!r}.")
  return _DifferentiallyPrivateAggregate(l2_norm_clip, noise_multiplier, seed=int(seed))
