"""The documentation site: every public name has a docstring with a reference and an API entry.

The site itself is built (``sphinx-build -W``) and checked in a browser (``docs/check_site.py``) by
``.ci/run`` after the tests; these checks need no Sphinx and run in the default suite.
"""

import inspect
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import gx_docs  # noqa: E402

NAMES = gx_docs.public_names()


@pytest.mark.parametrize("qualified, obj", NAMES, ids=[n for n, _ in NAMES])
def test_public_name_has_a_docstring(qualified, obj):
  doc = inspect.getdoc(obj) or ""
  short = qualified.rsplit(".", 1)[1]
  assert doc and not doc.startswith(f"{short}("), f"{qualified} needs a docstring of its own"


@pytest.mark.parametrize("qualified, obj", [(n, o) for n, o in NAMES if not inspect.isclass(o)],
                         ids=[n for n, o in NAMES if not inspect.isclass(o)])
def test_public_function_cites_a_reference(qualified, obj):
  doc = inspect.getdoc(obj) or ""
  assert "http" in doc or "Reference" in doc, f"{qualified}'s docstring needs a reference (a link)"


def test_every_public_name_has_an_api_entry():
  entries = {q for page in gx_docs.api_entries().values() for items in page.values() for q, _ in items}
  assert entries == {q for q, _ in NAMES}
  assert set(gx_docs.api_entries()) == {page for page, _, _ in gx_docs.GROUPS.values()}


def test_every_example_has_a_title_and_explanation_for_the_gallery():
  for script in sorted((ROOT / "examples").glob("*.py")):
    doc = gx_docs._module_docstring(script)
    assert doc and "\n\n" in doc, f"{script.name}: the gallery needs a docstring: a title line, then an explanation"


def test_guides_include_readme_sections_that_exist():
  sections = {gx_docs.re.sub(r"[^a-z0-9]+", "_", t.lower()).strip("_") for t in gx_docs.readme_sections()}
  for page in sorted((ROOT / "docs").rglob("*.md")):
    if "_build" in page.parts or "_generated" in page.parts:
      continue
    for slug in gx_docs.re.findall(r"_generated/readme/(\w+)\.md", page.read_text()):
      assert slug in sections, f"{page.name} includes README section {slug!r}, which no longer exists"
