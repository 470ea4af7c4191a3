"""DP-SGD (Abadi et al. 2016): private aggregation of per-example gradients, then SGD."""

from __future__ import annotations

from typing import Any, Optional

from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import named
from gradxform._transforms.accumulators import trace
from gradxform._transforms.privacy import differentially_private_aggregate
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["dpsgd"]


@named
def dpsgd(learning_rate: Any, l2_norm_clip: Any, noise_multiplier: Any, seed: int,
          momentum: Optional[Any] = None, nesterov: bool = False) -> GradientTransformation:
  """DP-SGD, as ``optax.contrib.dpsgd``: ``chain(differentially_private_aggregate(C, σ, seed), trace(μ),
  scale_by_learning_rate(lr))``.

  ``update`` takes per-example gradients (a leading batch axis on every leaf, e.g.
  ``jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(params, x, y)``). See
  :func:`differentially_private_aggregate` for the rule and for what it does not do (privacy accounting).

  References:
    Abadi et al., 2016, "Deep Learning with Differential Privacy", https://arxiv.org/abs/1607.00133
  """
  stages = [differentially_private_aggregate(l2_norm_clip, noise_multiplier, seed)]
  if momentum is not None:
    stages.append(trace(momentum, nesterov=nesterov))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
