"""Test problems with known minima: a quadratic, an ill-conditioned ravine, Rosenbrock."""

import jax.numpy as jnp
import numpy as np

PROBLEMS = {
    # name: (loss, start, minimizer)
    "quadratic": (lambda x: 0.5 * jnp.sum(jnp.array([1.0, 2.0]) * (x - jnp.array([1.0, -2.0])) ** 2),
                  np.array([3.0, 1.0]), np.array([1.0, -2.0])),
    "ravine": (lambda x: 0.5 * (x[0] ** 2 + 100.0 * x[1] ** 2),
               np.array([-4.0, 1.0]), np.array([0.0, 0.0])),
    "rosenbrock": (lambda x: (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2,
                   np.array([-1.5, 2.0]), np.array([1.0, 1.0])),
}
