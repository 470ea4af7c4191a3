"""Smoke test of ``benchmarks/shampoo_soap.py --quick``: it runs and prints one row per optimizer and
frequency (no timing is asserted: timings on shared machines are noise)."""

import re

import pytest

from tests.test_benchmarks import run_quick


@pytest.mark.slow  # compiles five optimizers in a subprocess: ~25 s of CPU
def test_shampoo_soap_benchmark_quick():
  stdout, output = run_quick("shampoo_soap.py")
  for row in ("gx.adam", "gx.soap, frequency 2", "gx.soap, frequency 5", "gx.shampoo, frequency 2",
              "gx.shampoo, frequency 5"):
    assert re.search(re.escape(row) + r"\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+x", stdout), (row, output)
