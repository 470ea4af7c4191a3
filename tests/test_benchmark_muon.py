"""Smoke test of ``benchmarks/muon.py --quick``: it checks gx.muon against optax.contrib.muon and prints the table."""

import pytest

from tests.test_benchmarks import run_quick


def test_muon_benchmark_quick():
  pytest.importorskip("optax")
  stdout, output = run_quick("muon.py")
  assert "check: gx.muon (optax options) equals optax.contrib.muon after one step" in stdout, output
  for row in ("gx.muon (optax options)", "optax.contrib.muon", "gx.muon (torch defaults)", "newton_schulz alone",
              "matmul", "ratio gx.muon / optax.contrib.muon", "Newton-Schulz rate in the gx.muon step"):
    assert row in stdout, (row, output)
