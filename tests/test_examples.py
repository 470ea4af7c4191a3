"""Smoke tests: each example script runs in --quick mode and writes its figures."""

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name, out):
  env = dict(os.environ, MPLBACKEND="Agg")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
  result = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
  return result.stdout


def assert_figures(out, names):
  for name in names:
    path = out / name
    assert path.is_file() and path.stat().st_size > 0, f"{name} was not written"


def test_pathological_curvature(tmp_path):
  stdout = run_example("pathological_curvature.py", tmp_path)
  assert_figures(tmp_path, ["ravine.png", "saddle.png", "rosenbrock.png"])
  for name in ("SGD", "Momentum", "Nesterov", "Adagrad", "Adadelta", "RMSProp", "Adam"):
    assert name in stdout
  for function in ("ravine", "saddle", "rosenbrock"):
    assert function in stdout


def test_digits_mlp(tmp_path):
  stdout = run_example("digits_mlp.py", tmp_path)
  assert_figures(tmp_path, ["digits_loss.png", "digits_accuracy.png"])
  rows = {}
  for line in stdout.splitlines():
    if line.strip():
      rows.setdefault(line.split()[0], line.split())  # the table comes first
  for name in ("sgd", "momentum", "adam", "adamw", "rmsprop", "adagrad", "lion"):
    assert name in rows, f"no row for {name} in:\n{stdout}"
  # Columns: optimizer, final train loss, test accuracy, compile s, run s. Quick
  # mode (10 epochs) gets Adam to about 0.96 test accuracy.
  assert float(rows["adam"][2]) > 0.9, stdout


def test_finetune_groups(tmp_path):
  pytest.importorskip("orbax.checkpoint")
  stdout = run_example("finetune_groups.py", tmp_path)
  assert "resumed run matches the uninterrupted run bit for bit: True (max |diff| = 0)" in stdout
  assert "'w0': None" in stdout and "'b0': (64,)" in stdout  # the bias group keeps no state for weights
  accuracy = float(stdout.split("test accuracy ")[1].split(";")[0].split()[0])
  assert accuracy > 0.85


def test_choose_optimizer(tmp_path):
  stdout = run_example("choose_optimizer.py", tmp_path)
  assert_figures(tmp_path, ["choose_optimizer.png", "choose_optimizer.md"])
  rows = [line.split("|")[1:-1] for line in (tmp_path / "choose_optimizer.md").read_text().splitlines()[2:]]
  assert len(rows) == 4, stdout  # quick mode: the first four candidates
  for name, lr, mean, spread, acc, micros in rows:
    # three epochs of the digits MLP at the best of four rates: well past chance (loss ln 10 = 2.3)
    assert float(mean) < 0.5 and float(acc) > 0.85 and float(lr) > 0 and float(micros) > 0, rows
