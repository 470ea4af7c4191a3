"""Muon on 8 simulated CPU devices (``tests/sharding_checks_muon.py``, its own process): the state follows the
parameters' sharding, and data-parallel and 2-D (data x model) sharded steps equal the one-device step."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "sharding_checks_muon.py"
CHECKS = ["init_follows_parameter_sharding", "two_d_sharded_step_matches_one_device",
          "data_parallel_step_matches_one_device", "explicit_axes_step_matches_one_device"]


@pytest.fixture(scope="module")
def output():
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  result = subprocess.run([sys.executable, "-W", "error", str(SCRIPT)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  found = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines()
           if line.startswith(("RESULTS ", "COLLECTIVES "))}
  assert result.returncode == 0 and "RESULTS" in found, f"the checks did not finish:\n{result.stdout}\n{result.stderr}"
  return found


@pytest.mark.parametrize("name", CHECKS)
def test_sharding_check(output, name):
  assert sorted(output["RESULTS"]) == sorted(CHECKS)
  assert output["RESULTS"][name] == "ok", f"{name} failed on 8 devices:\n{output['RESULTS'][name]}"


def test_a_matrix_split_along_one_axis_needs_one_gram_all_reduce_per_iteration(output):
  """Newton-Schulz on a matrix split along its long side: X Xᵀ is summed over devices (one all-reduce of the
  small m x m Gram matrix for the norm and one per iteration, 1 + 5); the rest is local. Nothing is gathered."""
  for leaf in ("w_col", "w_row", "stack"):
    assert output["COLLECTIVES"][leaf].get("all-gather", 0) == 0, output["COLLECTIVES"][leaf]
    assert output["COLLECTIVES"][leaf]["all-reduce"] == 6, output["COLLECTIVES"][leaf]
