"""Sharding on 8 simulated CPU devices: state follows the parameters, ZeRO-1, split populations.

XLA's device count is fixed when JAX starts, so the checks run in one
subprocess (``tests/sharding_checks.py``, with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``), all in one run; each
test here reports one of them. Every check compares the sharded computation
with the same one on a single device (float32 rounding), on meshes with Auto
and with Explicit axes.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "sharding_checks.py"
CHECKS = [
    "init_keeps_parameter_sharding",
    "jitted_update_keeps_sharding_and_matches_one_device",
    "data_parallel_and_zero1_match_one_device",
    "population_split_over_devices_matches_one_device",
    "member_shardings_rejects_indivisible_populations",
    "multi_device_doc_snippets_run",
]


@pytest.fixture(scope="module")
def results():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  result = subprocess.run([sys.executable, "-W", "error", str(SCRIPT)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
  assert result.returncode == 0 and lines, f"the checks did not finish:\n{result.stdout}\n{result.stderr}"
  return json.loads(lines[-1][len("RESULTS "):])


def test_every_check_ran(results):
  assert sorted(results) == sorted(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
def test_sharding_check(results, name):
  assert results[name] == "ok", f"{name} failed on 8 devices:\n{results[name]}"
