"""Smoke test of benchmarks/packed_step.py --quick: every implementation runs and the table is printed."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_run_prints_the_table():
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "packed_step.py"), "--quick"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  for name in ("(a) gx.adam per-leaf", "(b) packed(gx.adam)", "(c) fully packed adam"):
    assert len(re.findall(re.escape(name) + r"\s+[\d.]+\s+[\d.]+", out)) == 2, out
  # the packed paths agree with per-leaf gx.adam after one step
  for match in re.findall(r"\((?:b|c)\) [^:]+: ([\d.e+-]+)", out.split("implementation")[0]):
    assert float(match) < 1e-6, out
  assert "targets" in out
