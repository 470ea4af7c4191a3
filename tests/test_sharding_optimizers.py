"""Every named optimizer and wrapper on 1-D and 2-D meshes of 8 simulated devices, Auto and Explicit axes.

The checks run in one subprocess (``tests/sharding_checks_optimizers.py``; XLA's
device count is fixed when JAX starts); each test here reports one transform:
it traces, keeps the parameters' and its state's shardings, and equals one device.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.sharding_checks_optimizers import every_transform

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMES = sorted(every_transform())

pytestmark = pytest.mark.slow  # about 170 small compilations


@pytest.fixture(scope="module")
def results():
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  result = subprocess.run([sys.executable, "-W", "error", "-m", "tests.sharding_checks_optimizers"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800)
  lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
  assert result.returncode == 0 and lines, f"the checks did not finish:\n{result.stdout}\n{result.stderr}"
  return json.loads(lines[-1][len("RESULTS "):])


def test_every_transform_ran(results):
  assert sorted(results) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_traced_and_run_on_meshes(results, name):
  assert results[name] == "ok", f"{name} on 8 devices:\n{results[name]}"
