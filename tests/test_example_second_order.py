"""Smoke test: examples/newton_vs_first_order.py runs in --quick mode, writes its figures, and
the second-order methods reach the 1e-6 loss gap where the first-order ones do not."""

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_newton_vs_first_order(tmp_path):
  env = dict(os.environ, MPLBACKEND="Agg")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
  result = subprocess.run([sys.executable, str(ROOT / "examples" / "newton_vs_first_order.py"), "--quick",
                           "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, f"failed:\n{result.stdout}\n{result.stderr}"
  for name in ("second_order_ravine.png", "second_order_rosenbrock.png"):
    assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, f"{name} was not written"
  iterations = {}
  for line in result.stdout.splitlines():
    parts = line.rsplit(None, 2)
    if line.startswith(("ravine", "rosenbrock")) and len(parts) == 3:
      # columns: function (11), method (15), iterations ("> N" if never), final gap
      function, method = line.split()[0], line[12:27].strip()
      iterations[function, method] = None if parts[0].endswith(">") else int(parts[1])
  for function in ("ravine", "rosenbrock"):
    for method in ("GD", "Momentum", "Adam", "Curvature step", "Newton", "L-BFGS"):
      assert (function, method) in iterations, f"no row for {function} {method}:\n{result.stdout}"
  assert iterations["ravine", "Newton"] == 1  # one Newton step solves a quadratic
  assert iterations["rosenbrock", "Newton"] is not None and iterations["rosenbrock", "L-BFGS"] is not None
  assert iterations["rosenbrock", "GD"] is None  # first order does not get there in the quick budget
