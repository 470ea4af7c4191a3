"""Test configuration: strict dtype promotion (any implicit mixing of dtypes fails), and the fast default run.

``python -m pytest`` (the README's command; ``-m 'not slow'`` is in pyproject's ``addopts``) leaves out the
tests marked ``slow``: the 8-device sweeps, the smoke runs of ``benchmarks/`` and of ``examples/`` (CI runs
every example again while it builds the documentation's gallery), and two thirds of the cases of the
catalogue-wide property checks listed in ``SAMPLED`` (a fixed third of the catalogue runs by default, a
different third for each check, so that the float64 reference check, which runs on every case, is joined
by at least one property check on most cases). ``python -m pytest -m "slow or not slow"`` runs everything.
"""

import zlib

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")

SLOW_FILES = {"test_benchmarks.py", "test_benchmark_muon.py", "test_benchmark_quantized.py",
              "test_benchmark_shampoo.py", "test_examples.py", "test_examples_scale.py",
              "test_example_char_lm.py", "test_example_dashboard.py", "test_example_second_order.py"}
SAMPLED = {
    "test_reference.py": {"test_float32_matches_reference_eager_and_jit", "test_dtypes_are_kept",
                          "test_jit_compiles_once", "test_bfloat16_tracks_float32"},
    "test_donation.py": {"test_donated_step_copies_nothing"},
    "test_inject.py": {"test_injected_catalogue_entry_is_static_and_gives_the_same_numbers"},
    "test_ports.py": {"test_gradients_of_any_floating_dtype_are_accepted"},
}


def _crc(text: str) -> int:
  return zlib.crc32(text.encode())


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    file = item.path.name
    name = getattr(item, "originalname", item.name)
    if file in SLOW_FILES:
      item.add_marker(pytest.mark.slow)
    elif name in SAMPLED.get(file, ()) and "[" in item.name:
      case = item.name[item.name.index("["):]
      if _crc(case) % 3 != _crc(name) % 3:
        item.add_marker(pytest.mark.slow)
