"""Second-order methods against first-order ones on the ravine and Rosenbrock.

The same two functions and start points as ``pathological_curvature.py``:

* ravine: a quadratic with condition number 50, rotated by 30°. The curvature
  step ``ε* = gᵀg / gᵀHg`` is the exact line search along the gradient: it
  stops exactly where the gradient turns orthogonal, so it zig-zags in right
  angles and converges linearly at a rate set by the condition number.
  Newton's step ``H⁻¹g`` sees the whole quadratic model and lands on the
  minimum in one step; L-BFGS learns the curvature from two steps and finishes
  in a handful.
* rosenbrock: the curved valley. Gradient descent, momentum and Adam (with
  the learning rates of ``pathological_curvature.py``) crawl along the floor;
  Newton and L-BFGS follow the valley's curvature and converge
  superlinearly (Newton quadratically, once close).

Every method runs as ``gx.step(opt, f, params, state)`` inside one jitted
``lax.scan``: the step passes ``value``, ``grad`` and ``value_fn`` to the
optimizer, which is what the curvature step (one Hessian-vector product per
step), Newton (the exact Hessian) and L-BFGS's line search need. Runs in
float64, so the loss can be followed down to 1e-12 and below.

Writes ``second_order_ravine.png`` and ``second_order_rosenbrock.png``
(trajectories, and the loss gap ``f − f*`` per iteration on a log scale) to
``--out``, and prints the number of iterations each method needs to bring the
loss gap below 1e-6.

Usage: python examples/newton_vs_first_order.py [--quick] [--out DIR]
"""

import argparse
import functools
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gradxform as gx  # noqa: E402
from pathological_curvature import LEARNING_RATES, PROBLEMS, draw_background, draw_path  # noqa: E402

TARGET = 1e-6  # loss gap f − f* (both functions have f* = 0)
STEPS = {"ravine": 300, "rosenbrock": 2000}  # iterations per method (quick mode: a quarter)

METHODS = {
    "GD": lambda name: gx.sgd(LEARNING_RATES[name]["SGD"]),
    "Momentum": lambda name: gx.sgd(LEARNING_RATES[name]["Momentum"], momentum=0.9),
    "Adam": lambda name: gx.adam(LEARNING_RATES[name]["Adam"]),
    "Curvature step": lambda name: gx.curvature_descent(),
    "Newton": lambda name: gx.newton(),
    "L-BFGS": lambda name: gx.lbfgs(),
}
COLORS = dict(zip(METHODS, plt.get_cmap("tab10").colors))


@functools.partial(jax.jit, static_argnames=("f", "steps"))
def trajectory(opt, f, start, steps):
  """The ``steps + 1`` points visited by ``opt`` minimizing ``f`` from ``start``, and their losses."""

  def one(carry, _):
    params, state = carry
    params, state, _ = gx.step(opt, f, params, state)
    return (params, state), params

  _, path = jax.lax.scan(one, (start, opt.init(start)), length=steps)
  path = jnp.concatenate([start[None], path])
  return path, jax.vmap(f)(path)


def iterations_to(losses, target):
  """The first iteration whose loss gap is at most ``target`` (None if never)."""
  hits = np.flatnonzero(losses <= target)
  return int(hits[0]) if hits.size else None


def plot(name, problem, paths, losses, filename):
  aspect = np.ptp(problem["ylim"]) / np.ptp(problem["xlim"])
  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5 * max(aspect, 0.8)))
  draw_background(left, problem)
  for method, path in paths.items():
    draw_path(left, path, COLORS[method], method, markers=method in ("Curvature step", "Newton", "L-BFGS"))
  left.set_title(f"{name}: trajectories")
  left.legend(loc="lower right", fontsize=8, framealpha=0.9)
  floor = 1e-16  # gaps below (Newton and L-BFGS reach exactly 0) are drawn at the floor
  for method, loss in losses.items():
    right.semilogy(np.maximum(loss, floor), color=COLORS[method], label=method, lw=1.5)
  right.axhline(TARGET, color="0.5", ls="--", lw=1, label=f"gap {TARGET:g}")
  right.set_xscale("symlog", linthresh=10)
  right.set_xlim(0, problem["steps"])
  right.set_ylim(floor / 3, None)
  right.set_xlabel("iteration (linear to 10, then log)")
  right.set_ylabel("f(x) − f*")
  right.set_title(f"{name}: loss gap per iteration")
  right.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(filename, dpi=100)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer steps (smoke test)")
  parser.add_argument("--out", default="out", help="directory for the figures (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)

  table = []
  for name in ("ravine", "rosenbrock"):
    problem = PROBLEMS[name]
    steps = STEPS[name] // 4 if args.quick else STEPS[name]
    start = jnp.asarray(problem["start"], jnp.float64)
    paths, losses = {}, {}
    for method, make in METHODS.items():
      path, loss = trajectory(make(name), problem["f"], start, steps)
      paths[method], losses[method] = np.asarray(path), np.asarray(loss)
      table.append((name, method, iterations_to(losses[method], TARGET), float(losses[method][-1])))
    plot(name, dict(problem, steps=steps), paths, losses, os.path.join(args.out, f"second_order_{name}.png"))

  print(f"{'function':<11} {'method':<15} {'iterations to gap 1e-6':>23} {'final gap':>11}")
  for name, method, hit, final in table:
    shown = f"> {STEPS[name] // 4 if args.quick else STEPS[name]}" if hit is None else str(hit)
    print(f"{name:<11} {method:<15} {shown:>23} {final:>11.2e}")
  print(f"figures written to {args.out}/")


if __name__ == "__main__":
  start_time = time.perf_counter()
  main()
  print(f"done in {time.perf_counter() - start_time:.1f} s")
