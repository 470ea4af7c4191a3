"""Hessian–vector products for pytrees, and Hutchinson's estimate of the Hessian's diagonal.

A full Hessian has ``n²`` entries; its product with one vector costs about as
much as two gradients. Forward-over-reverse differentiation computes it
without ever forming the matrix: ``Hv = d/dε ∇f(x + εv) |_{ε=0}``, i.e.
``jax.jvp(jax.grad(f), (x,), (v,))``, and returns ``∇f(x)`` for free.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.objective import check_like

__all__ = ["grad_and_hvp", "hutchinson_diagonal", "hvp"]


def _as_tangent(name: str, vector: Any, params: Any) -> Any:
  check_like(name, "vector", vector, params)
  return jax.tree.map(lambda v, p: jnp.asarray(v).astype(jnp.result_type(p)), vector, params)


def grad_and_hvp(fn: Callable[[Any], jax.Array], params: Any, vector: Any) -> tuple[Any, Any]:
  """The gradient and the Hessian–vector product of ``fn`` at ``params``, in one pass.

  .. math::

     (\\nabla f(x),\\; H(x)\\, v), \\qquad H(x) v = \\frac{d}{d\\epsilon}\\nabla f(x + \\epsilon v)\\Big|_{\\epsilon=0}

  computed forward-over-reverse: ``jax.jvp(jax.grad(fn), (params,), (vector,))``.

  Args:
    fn: a scalar function of the parameter tree (the loss).
    params: the point ``x`` (a pytree of floating arrays).
    vector: ``v``, a tree with the structure and shapes of ``params`` (cast to
      the parameters' dtypes).

  Returns:
    ``(grad, hvp)``, two trees like ``params``.

  References:
    Pearlmutter, 1994, "Fast Exact Multiplication by the Hessian",
    https://doi.org/10.1162/neco.1994.6.1.147
  """
  return jax.jvp(jax.grad(fn), (params,), (_as_tangent("hvp", vector, params),))


def hvp(fn: Callable[[Any], jax.Array], params: Any, vector: Any) -> Any:
  """The Hessian–vector product ``H(x) v`` of a scalar function of a pytree.

  .. math::

     H(x)\\, v = \\nabla^2 f(x)\\, v = \\frac{d}{d\\epsilon}\\nabla f(x + \\epsilon v)\\Big|_{\\epsilon=0}

  Forward-over-reverse (``jax.jvp`` of ``jax.grad``): about the cost of two
  gradients, and the ``n × n`` Hessian is never formed.

  Args:
    fn: a scalar function of the parameter tree (the loss).
    params: the point ``x``.
    vector: ``v``, a tree like ``params``.

  Returns:
    ``Hv``, a tree like ``params``.

  Example::

      gx.hvp(loss_fn, params, jax.tree.map(jnp.ones_like, params))

  References:
    Pearlmutter, 1994, "Fast Exact Multiplication by the Hessian",
    https://doi.org/10.1162/neco.1994.6.1.147
  """
  return grad_and_hvp(fn, params, vector)[1]


def hutchinson_diagonal(fn: Callable[[Any], jax.Array], params: Any, key: jax.Array,
                        num_samples: int = 1) -> Any:
  """Hutchinson's unbiased estimate of the Hessian's diagonal, ``E[z ⊙ Hz]``.

  .. math::

     \\operatorname{diag}(H) = \\mathbb{E}_z[z \\odot H z], \\qquad
     \\hat D = \\frac{1}{S}\\sum_{s=1}^{S} z_s \\odot H z_s, \\quad z_s \\sim \\text{Rademacher}

  Each sample costs one Hessian–vector product (:func:`hvp`). Samples are
  accumulated in a ``lax.fori_loop`` in at least float32, so memory does not
  grow with ``num_samples``.

  Args:
    fn: a scalar function of the parameter tree (the loss).
    params: the point ``x``.
    key: a ``jax.random`` key.
    num_samples: ``S ≥ 1``, the number of probe vectors (static).

  Returns:
    A tree like ``params`` (same dtypes) holding the estimate of ``diag(H)``.

  References:
    Hutchinson, 1990, "A stochastic estimator of the trace of the influence
    matrix", https://doi.org/10.1080/03610919008812866; Bekas, Kokiopoulou &
    Saad, 2007, "An estimator for the diagonal of a matrix",
    https://doi.org/10.1016/j.apnum.2007.01.003
  """
  if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
    raise ValueError(f"hutchinson_diagonal: num_samples={num_samples!r} must be an integer >= 1 "
                     "(the number of Rademacher probe vectors; more samples, less variance).")
  _tree.check_floating("hutchinson_diagonal", params, "parameter")
  leaves, treedef = jax.tree.flatten(params)

  def sample(i, total):
    keys = jax.random.split(jax.random.fold_in(key, i), max(len(leaves), 1))
    z = jax.tree.unflatten(treedef, [
        _tree.sharded_like(jax.random.rademacher(k, jnp.shape(p), jnp.result_type(p)), p)
        for k, p in zip(keys, leaves)])
    hz = hvp(fn, params, z)
    return jax.tree.map(lambda t, a, b: t + a.astype(t.dtype) * b.astype(t.dtype), total, z, hz)

  zeros = jax.tree.map(lambda p: jnp.zeros_like(p, _tree.compute_dtype(jnp.result_type(p))), params)
  total = jax.lax.fori_loop(0, num_samples, sample, zeros)
  return jax.tree.map(lambda t, p: (t / num_samples).astype(jnp.result_type(p)), total, params)
