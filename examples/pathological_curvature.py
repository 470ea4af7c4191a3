"""Optimizer trajectories on pathological curvature: a ravine, a saddle and Rosenbrock.

The classic pictures (Martens 2010; Sutskever et al. 2013; Goh, "Why Momentum
Really Works", 2017): seven optimizers start from the same point on three 2-D
functions and take the same number of steps.

* ravine: an ill-conditioned quadratic (condition number 50) rotated by 30°, so
  its narrow valley is not aligned with the axes. Plain SGD must keep its step
  small enough for the steep direction and zig-zags across the valley while it
  crawls along it; momentum builds up speed along the valley floor. The
  per-coordinate methods (Adagrad, RMSProp, Adam) rescale x and y separately,
  which cannot straighten a diagonal valley: their first steps, about equal in
  x and y, jump across it.
* saddle: ``f = x² − y² + y⁴/4``, a saddle at the origin between two minima at
  ``(0, ±√2)`` (the quartic term bounds the function from below, so escaping
  paths stay in the picture). The start lies just off the saddle's stable
  manifold (the x axis): gradient descent first slides towards the saddle, and
  escapes only as fast as the tiny y component grows. Methods that divide by
  the gradient's magnitude (Adagrad, Adadelta, RMSProp, Adam) step as far in y
  as in x and escape at once.
* rosenbrock: ``(1 − x)² + 100 (y − x²)²``, the curved banana valley with its
  minimum at (1, 1). Everyone finds the valley; the steep walls limit the
  step size, so the long way along its floor separates the optimizers.

The learning rates (``LEARNING_RATES`` below) were chosen per function from a
small grid as the largest that gives a stable, representative path. The
optimizer is an argument of the jitted ``trajectory`` function, not a closure:
it is a pytree whose learning rate is a leaf, so trying another learning rate
re-uses the compiled code.

Writes ``ravine.png``, ``saddle.png`` and ``rosenbrock.png`` (and, unless
``--quick``, an animated ``.gif`` of each if pillow is installed) to ``--out``,
and prints the final loss and distance to the nearest minimum of every run.

Usage: python examples/pathological_curvature.py [--quick] [--out DIR]
"""

import argparse
import functools
import importlib.util
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import colors  # noqa: E402
import numpy as np  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import gradxform as gx  # noqa: E402

ANGLE = np.pi / 6  # the ravine's valley runs along (cos 30°, sin 30°)


def ravine(p):
  u = jnp.cos(ANGLE) * p[0] + jnp.sin(ANGLE) * p[1]  # along the valley
  v = -jnp.sin(ANGLE) * p[0] + jnp.cos(ANGLE) * p[1]  # across it
  return 0.5 * (u**2 + 50.0 * v**2)


def saddle(p):
  return p[0]**2 - p[1]**2 + 0.25 * p[1]**4


def rosenbrock(p):
  return (1.0 - p[0])**2 + 100.0 * (p[1] - p[0]**2)**2


# Each problem: the function, start, number of steps (all optimizers take the
# same), its minima, the plotted box and contour levels.
PROBLEMS = {
    "ravine": dict(f=ravine, start=(-4.5, -1.5), steps=100, minima=[(0.0, 0.0)],
                   xlim=(-5.5, 1.5), ylim=(-3.5, 1.0), levels=0.5 * np.linspace(1.0, 26.0, 26)**2,
                   log_levels=False),
    "saddle": dict(f=saddle, start=(1.0, 1e-3), steps=100, minima=[(0.0, np.sqrt(2.0)), (0.0, -np.sqrt(2.0))],
                   xlim=(-2.0, 2.0), ylim=(-2.0, 2.0), levels=np.linspace(-1.0, 4.0, 26), log_levels=False),
    "rosenbrock": dict(f=rosenbrock, start=(-1.5, 2.0), steps=1000, minima=[(1.0, 1.0)],
                       xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), levels=np.logspace(-2, 3.5, 23), log_levels=True),
}

OPTIMIZERS = {
    "SGD": gx.sgd,
    "Momentum": lambda lr: gx.sgd(lr, momentum=0.9),
    "Nesterov": lambda lr: gx.sgd(lr, momentum=0.9, nesterov=True),
    "Adagrad": gx.adagrad,
    "Adadelta": gx.adadelta,
    "RMSProp": gx.rmsprop,
    "Adam": gx.adam,
}

# Learning rate per function and optimizer. Momentum and Nesterov (β = 0.9)
# take steps about 1/(1 − β) = 10× larger than SGD's at the same rate. Adadelta
# is Zeiler's rule at lr = 1, but its steps start near √eps = 1e-3 and grow
# slowly, so on the ravine it gets a larger rate to move at all in 100 steps.
LEARNING_RATES = {
    "ravine": {"SGD": 0.035, "Momentum": 0.01, "Nesterov": 0.01, "Adagrad": 1.0,
               "Adadelta": 10.0, "RMSProp": 0.1, "Adam": 0.3},
    "saddle": {"SGD": 0.05, "Momentum": 0.01, "Nesterov": 0.01, "Adagrad": 0.1,
               "Adadelta": 1.0, "RMSProp": 0.01, "Adam": 0.05},
    "rosenbrock": {"SGD": 1e-3, "Momentum": 3e-4, "Nesterov": 3e-4, "Adagrad": 0.3,
                   "Adadelta": 1.0, "RMSProp": 0.01, "Adam": 0.05},
}

COLORS = dict(zip(OPTIMIZERS, plt.get_cmap("tab10").colors))


@functools.partial(jax.jit, static_argnames=("f", "steps"))
def trajectory(opt, f, start, steps):
  """The ``steps + 1`` points visited by ``opt`` minimizing ``f`` from ``start``."""

  def step(carry, _):
    p, state = carry
    updates, state = opt.update(jax.grad(f)(p), state, p)
    p = gx.apply_updates(p, updates)
    return (p, state), p

  _, path = jax.lax.scan(step, (start, opt.init(start)), length=steps)
  return jnp.concatenate([start[None], path])


def draw_background(ax, problem):
  xs = np.linspace(*problem["xlim"], 200)
  ys = np.linspace(*problem["ylim"], 200)
  grid = jnp.stack(jnp.meshgrid(jnp.asarray(xs, jnp.float32), jnp.asarray(ys, jnp.float32)))
  z = np.asarray(problem["f"](grid))
  norm = colors.LogNorm() if problem["log_levels"] else None
  ax.contourf(xs, ys, z, levels=problem["levels"], cmap="Greys", norm=norm, alpha=0.25, extend="both")
  ax.contour(xs, ys, z, levels=problem["levels"], colors="0.6", linewidths=0.5, norm=norm)
  for m in problem["minima"]:
    ax.plot(*m, marker="*", color="gold", markeredgecolor="k", markersize=14, zorder=5)
  ax.plot(*problem["start"], marker="o", color="k", markersize=6, zorder=5)
  ax.set_xlim(problem["xlim"])
  ax.set_ylim(problem["ylim"])
  ax.set_aspect("equal")
  ax.locator_params(nbins=5)


def draw_path(ax, path, color, label=None, markers=True):
  every = max(1, len(path) // 40)  # at most ~40 markers per path
  line, = ax.plot(path[:, 0], path[:, 1], "-", color=color, lw=1.5, label=label, alpha=0.9,
                  marker="o" if markers else None, ms=2.5, markevery=every)
  return line


def plot(name, problem, paths, results, filename):
  """All paths on one panel (with the legend), then one panel per optimizer."""
  aspect = np.ptp(problem["ylim"]) / np.ptp(problem["xlim"])
  fig, axes = plt.subplots(2, 4, figsize=(16, 8 * aspect + 1.0), sharex=True, sharey=True)
  axes = axes.ravel()
  draw_background(axes[0], problem)
  axes[0].set_title(f"{name}: all optimizers, {problem['steps']} steps")
  for ax, (opt_name, path) in zip(axes[1:], paths.items()):
    label = f"{opt_name} (lr={LEARNING_RATES[name][opt_name]:g})"
    draw_path(axes[0], path, COLORS[opt_name], label, markers=False)
    draw_background(ax, problem)
    draw_path(ax, path, COLORS[opt_name])
    ax.set_title(f"{label}: f = {results[opt_name]:.2g}", color=COLORS[opt_name])
  axes[0].legend(loc="lower right", fontsize=8, framealpha=0.9)
  fig.tight_layout()
  fig.savefig(filename, dpi=100)
  plt.close(fig)


def animate(name, problem, paths, filename):
  from matplotlib.animation import FuncAnimation, PillowWriter

  fig, ax = plt.subplots(figsize=(6, 5))
  draw_background(ax, problem)
  ax.set_title(name)
  lines = {k: draw_path(ax, p[:1], COLORS[k], k, markers=False) for k, p in paths.items()}
  ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
  counter = ax.text(0.02, 0.96, "", transform=ax.transAxes, va="top")
  fig.tight_layout()
  frames = np.unique(np.geomspace(1, problem["steps"] + 1, 60).astype(int))  # slow start, then faster

  def show(k):
    for opt_name, line in lines.items():
      line.set_data(paths[opt_name][:k, 0], paths[opt_name][:k, 1])
    counter.set_text(f"step {k - 1}")
    return [*lines.values(), counter]

  FuncAnimation(fig, show, frames=frames, blit=True).save(filename, writer=PillowWriter(fps=12))
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer steps, no animations (smoke test)")
  parser.add_argument("--out", default="out", help="directory for the figures (default: out/)")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  make_gifs = not args.quick and importlib.util.find_spec("PIL") is not None  # PillowWriter needs pillow

  rows = []
  for name, problem in PROBLEMS.items():
    if args.quick:
      problem = dict(problem, steps=problem["steps"] // 4)
    start = jnp.asarray(problem["start"], jnp.float32)
    paths, results = {}, {}
    for opt_name, make in OPTIMIZERS.items():
      opt = make(LEARNING_RATES[name][opt_name])
      paths[opt_name] = path = np.asarray(trajectory(opt, problem["f"], start, problem["steps"]))
      results[opt_name] = final_loss = float(problem["f"](jnp.asarray(path[-1])))
      distance = min(np.hypot(*(path[-1] - np.asarray(m))) for m in problem["minima"])
      rows.append((name, opt_name, LEARNING_RATES[name][opt_name], final_loss, distance))

    plot(name, problem, paths, results, os.path.join(args.out, f"{name}.png"))
    if make_gifs:
      animate(name, problem, paths, os.path.join(args.out, f"{name}.gif"))

  print(f"{'function':<11} {'optimizer':<9} {'lr':>7} {'final f':>11} {'dist. to min':>12}")
  for name, opt_name, lr, final_loss, distance in rows:
    print(f"{name:<11} {opt_name:<9} {lr:>7g} {final_loss:>11.3e} {distance:>12.3e}")
  print(f"figures written to {args.out}/")


if __name__ == "__main__":
  start_time = time.perf_counter()
  main()
  print(f"done in {time.perf_counter() - start_time:.1f} s")
