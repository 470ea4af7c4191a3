"""Shampoo and SOAP on 8 simulated CPU devices (the checks run in their own process:
``tests/sharding_checks_shampoo.py``; XLA's device count is fixed when JAX starts)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKS = ["init_places_the_state_without_gathering", "model_parallel_step_matches_one_device",
          "data_parallel_and_zero1_match_one_device"]


@pytest.fixture(scope="module")
def results():
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  result = subprocess.run([sys.executable, "-W", "error", str(ROOT / "tests" / "sharding_checks_shampoo.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
  assert result.returncode == 0 and lines, f"the checks did not finish:\n{result.stdout}\n{result.stderr}"
  return json.loads(lines[-1][len("RESULTS "):])


@pytest.mark.slow
def test_every_check_ran(results):
  assert sorted(results) == sorted(CHECKS)


@pytest.mark.slow  # one subprocess on 8 simulated devices, float64: ~30 s of CPU
@pytest.mark.parametrize("name", CHECKS)
def test_sharding_check(results, name):
  assert results[name] == "ok", f"{name} failed on 8 devices:\n{results[name]}"
