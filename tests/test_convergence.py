"""Every named optimizer reaches the known minimum of a quadratic, a ravine and Rosenbrock."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.catalogue import CONVERGENCE
from tests.problems import PROBLEMS


def minimize(opt, loss, start, steps):
  x = jnp.asarray(start, jnp.float32)

  def step(carry, _):
    x, state = carry
    updates, state = opt.update(jax.grad(loss)(x), state, x)
    return (gx.apply_updates(x, updates), state), None

  (x, _), _ = jax.lax.scan(step, (x, opt.init(x)), length=steps)
  return x


@pytest.mark.parametrize("name,problem,setting", CONVERGENCE,
                         ids=[f"{n}-{p}" for n, p, _ in CONVERGENCE])
def test_reaches_minimum(name, problem, setting):
  make, steps, tolerance = setting
  loss, start, minimizer = PROBLEMS[problem]
  x = np.asarray(jax.jit(minimize, static_argnums=(1, 3))(make(), loss, start, steps))
  assert np.linalg.norm(x - minimizer) < tolerance, (name, problem, x)
