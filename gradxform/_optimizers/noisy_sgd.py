"""Noisy SGD (Neelakantan et al. 2015): SGD on gradients with annealed Gaussian noise."""

from __future__ import annotations

from typing import Any

from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import named
from gradxform._transforms.hygiene import add_noise
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["noisy_sgd"]


@named
def noisy_sgd(learning_rate: Any, eta: Any = 0.01, gamma: Any = 0.55, seed: int = 0) -> GradientTransformation:
  """Noisy SGD, as ``optax.noisy_sgd``: ``chain(add_noise(eta, gamma, seed), scale_by_learning_rate(lr))``.

  .. math::

     p \\leftarrow p - \\eta_{lr} \\big(g_t + \\sigma_t \\xi_t\\big), \\quad \\xi_t \\sim \\mathcal N(0, I), \\quad
     \\sigma_t^2 = \\frac{\\eta}{(1 + t)^{\\gamma}} \\;(t = 0 \\text{ first})

  The PRNG key lives in the state (made from ``seed`` by ``init``, split at
  each update), so an update is a pure function of ``(grads, state)``: the
  same state gives the same noise, under ``jit`` and ``vmap`` too. optax
  takes ``key=``; ``optax.noisy_sgd(lr, key=seed)`` draws the same noise for
  float32/float64 leaves (see :func:`add_noise`).

  Args:
    learning_rate: ``η_lr ≥ 0`` (float, array or schedule).
    eta: ``η ≥ 0``, the initial noise variance (optax's 0.01).
    gamma: ``γ ≥ 0``, its annealing exponent (0.55).
    seed: an integer in ``[0, 2**32)``.

  References:
    Neelakantan et al., 2015, "Adding Gradient Noise Improves Learning for Very
    Deep Networks", https://arxiv.org/abs/1511.06807
  """
  return chain(add_noise(eta, gamma, seed), scale_by_learning_rate(learning_rate))
