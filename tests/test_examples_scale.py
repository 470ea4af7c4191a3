"""Smoke tests of the scale-out examples and benchmark, in --quick mode, checking their numbers.

Each script runs in a subprocess (``examples/data_parallel.py`` asks XLA for 8
CPU devices before JAX starts). Besides the figures, the tests read the
printed results: population members equal to their separate runs, learned
hyperparameters that beat the starting ones, data-parallel and ZeRO-1 runs
equal to the one-device run.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Runs a script as __main__ with the scale-out names on ``gradxform`` (a no-op once
# gradxform/__init__.py exports them).
LAUNCH = """
import os, runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""


def run_script(relative, *args):
  env = dict(os.environ, MPLBACKEND="Agg")
  env.pop("XLA_FLAGS", None)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
  result = subprocess.run([sys.executable, "-W", "error", "-c", LAUNCH, str(ROOT / relative), *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, f"{relative} failed:\n{result.stdout}\n{result.stderr}"
  return result.stdout


def number(pattern, text):
  match = re.search(pattern, text)
  assert match, f"{pattern!r} not found in:\n{text}"
  return float(match.group(1))


def test_lr_sweep(tmp_path):
  out = run_script("examples/lr_sweep.py", "--quick", "--out", str(tmp_path))
  assert (tmp_path / "lr_sweep.png").stat().st_size > 0
  assert "2 optimizers × 16 learning rates = 32 members" in out and "one program" in out
  # Members that train stably equal their separate runs to float32 rounding: within the 1e-3 that
  # defines "stable", and within a small multiple of what reordering a batch's examples alone moves them
  # (jax 0.10's batched matmuls round differently from the unbatched ones: up to 4e-4, 1.7x the control).
  worst = number(r"largest relative difference (\S+) over the", out)
  stable = number(r"over the (\d+) whose loss", out)
  ratio = number(r"largest ratio to that reordering control (\S+)", out)
  assert worst < 1e-3 and ratio < 10 and stable >= 5, out
  assert re.search(r"population / separate: \d+\.\d+× the time", out), out
  for name in ("adam", "sgd\\+momentum"):
    loss = number(rf"\n{name}\s+\S+\s+(\S+)\s+\S+", out)
    accuracy = number(rf"\n{name}\s+\S+\s+\S+\s+(\S+)", out)
    assert loss < 0.05 and accuracy > 0.9, out  # the best rate after 4 epochs


def test_hypergradient(tmp_path):
  out = run_script("examples/hypergradient.py", "--quick", "--out", str(tmp_path))
  assert (tmp_path / "hypergradient.png").stat().st_size > 0
  learning_rate = number(r"learned: lr = (\S+),", out)
  momentum = number(r"momentum = (\S+) \(from", out)
  assert learning_rate > 0.004 and momentum > 0.55, out  # both pushed up from 0.003 and 0.5
  tuned = number(r"tuned by hypergradients\s+(\S+)", out)
  fixed = number(r"fixed at the start values\s+(\S+)", out)
  assert tuned < 0.9 * fixed, out
  assert "1 compiled meta-step" in out, out


def test_data_parallel(tmp_path):
  out = run_script("examples/data_parallel.py", "--quick", "--out", str(tmp_path))
  assert (tmp_path / "data_parallel_loss.png").stat().st_size > 0
  assert out.startswith("8 devices (cpu)"), out
  assert re.search(r"\[1\]\[0\]\.nu\['w0'\]\s+\(64, 64\)\s+P\('data',\)\s+per device \(8, 64\)", out), out
  assert re.search(r"\['w0'\]\s+\(64, 64\)\s+P\(\)\s+per device \(64, 64\)", out), out  # params replicated
  rows = {}
  for line in out.splitlines():
    match = re.match(r"(one device|data parallel|ZeRO-1)\s+(\S+)\s+(\S+)\s+(\S+)", line)
    if match:
      rows[match.group(1)] = [float(v) for v in match.groups()[1:]]
  assert set(rows) == {"one device", "data parallel", "ZeRO-1"}, out
  for name in ("data parallel", "ZeRO-1"):
    assert rows[name][2] < 1e-4, out  # max |params - one device|: float32 rounding
    assert abs(rows[name][0] - rows["one device"][0]) < 1e-4, out
  assert rows["ZeRO-1"][1] < rows["data parallel"][1] / 4, out  # state memory per device


def test_population_benchmark_quick():
  out = run_script("benchmarks/population.py", "--quick")
  assert "WARNING" not in out, out
  assert re.search(r"members steps/call population ms/call", out), out
  rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+\d+\.\d+\s+\S+\s+\d+\.\d+\s+\d+\.\d+\s+\S+\s+\d+\.\d+x", out, flags=re.M)
  assert sorted(rows) == sorted([("1", "1"), ("8", "1"), ("1", "28"), ("8", "28")]), out
