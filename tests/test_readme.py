"""The README's Python snippets run as written (in order, sharing one namespace)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_readme_python_blocks_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
  assert len(blocks) >= 4
  namespace = {}
  for block in blocks:
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
  assert namespace["population"].shape == (8,)
  assert float(namespace["hypergradient"]) != 0.0
