"""Sphinx configuration of gradxform's site: ``sphinx-build -W -b html docs docs/_build/html``."""

import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "_ext"))

import gradxform  # noqa: E402

project = "gradxform"
author = "The gradxform authors"
copyright = "2026, The gradxform authors"
release = gradxform.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax's files are copied into the site: formulas render with no network
    "myst_parser",
    "gx_docs",  # API pages from the code, the gallery from the examples, guides from the README
]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated/readme", "_generated/benchmarks_readme.md",
                    "_generated/gallery/*/*.txt", "_generated/gallery/*/*.md", "_generated/gallery/*/*.csv"]

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures stay readable; types are in the Args sections
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"gradxform {release}"
html_static_path = []
