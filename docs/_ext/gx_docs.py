"""Generates gradxform's API reference, gallery and README-derived pages at build time.

Everything a page says comes from the code (docstrings, grouped by the package's folders), the
examples (run in their ``--quick`` mode, their figures and output shown) or the README (sections
copied with their links rewritten), so the site cannot drift from the sources.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import re
import subprocess
import sys
import types

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATED = DOCS / "_generated"

# folder of gradxform -> (page name, title, one line)
GROUPS = {
    "_core": ("protocol", "Protocol", "The transform protocol, chaining, and state inspection."),
    "_transforms": ("primitives", "Primitive transforms", "Accumulators, scaling, clipping, weight decay, "
                    "gradient hygiene and parameter groups: the stages named optimizers are chained from."),
    "_optimizers": ("optimizers", "Optimizers", "Named optimizers, one section per family: its `scale_by_*` "
                    "primitive (the update rule) and the named chains built on it."),
    "_wrappers": ("wrappers", "Wrappers", "Transforms around an inner optimizer."),
    "schedules": ("schedules", "Schedules", "`gx.schedules`: any hyperparameter as a function of the step count."),
    "_second_order": ("second_order", "Second order and line searches",
                      "Methods that use the loss value or curvature, and the `step`/`minimize` drivers."),
    "_scale_out": ("scale_out", "Scale-out", "Populations and PBT, sharding helpers, packed execution, low-bit state."),
}


def public_names():
  """``(qualified name, object)`` for every public name of ``gradxform`` and ``gradxform.schedules``."""
  import gradxform as gx
  names = []
  for module, prefix in ((gx, "gradxform"), (gx.schedules, "gradxform.schedules")):
    for name in sorted(dir(module)):
      obj = getattr(module, name)
      if name.startswith("_") or isinstance(obj, types.ModuleType):
        continue
      names.append((f"{prefix}.{name}", obj))
  return names


def group_of(qualified: str, obj) -> tuple[str, str]:
  """``(folder, file)`` where an object is defined: ``("_optimizers", "adam")``."""
  module = getattr(obj, "__module__", "") or ""
  parts = module.split(".")
  if qualified.startswith("gradxform.schedules."):
    return "schedules", parts[-1].lstrip("_") if len(parts) > 2 else "schedules"
  if len(parts) >= 3 and parts[0] == "gradxform" and parts[1] in GROUPS:
    return parts[1], parts[2]
  raise ValueError(f"{qualified} is defined in {module!r}, outside the documented folders {sorted(GROUPS)}")


def api_entries():
  """``{page: {file: [(qualified, obj)]}}`` for the API reference."""
  pages: dict = {}
  for qualified, obj in public_names():
    folder, file = group_of(qualified, obj)
    pages.setdefault(GROUPS[folder][0], {}).setdefault(file, []).append((qualified, obj))
  return pages


def _source_line(entry) -> int:
  """Where an object is defined in its file: entries appear in the order a reader meets them there."""
  try:
    return inspect.getsourcelines(inspect.unwrap(entry[1]))[1]
  except (OSError, TypeError):
    return 0


def _directive(qualified, obj):
  kind = "autoclass" if inspect.isclass(obj) else "autofunction"
  return f".. {kind}:: {qualified}\n"


def write_api():
  out = GENERATED / "api"
  out.mkdir(parents=True, exist_ok=True)
  pages = api_entries()
  index = ["API reference", "=============", "",
           "Every public name, grouped as the package is laid out. Each entry shows the update rule, "
           "its reference and which library's numbers it reproduces.", "", ".. toctree::", "   :maxdepth: 2", ""]
  for folder, (page, title, blurb) in GROUPS.items():
    if page not in pages:
      continue
    index.append(f"   {page}")
    lines = [title, "=" * len(title), "", blurb.replace("`", "``"), ""]
    for file, entries in sorted(pages[page].items()):
      heading = f"``{file}``"
      lines += [heading, "-" * len(heading), ""]
      for qualified, obj in sorted(entries, key=_source_line):
        lines.append(_directive(qualified, obj))
    (out / f"{page}.rst").write_text("\n".join(lines) + "\n")
  (out / "index.rst").write_text("\n".join(index) + "\n")


_LINK = re.compile(r"\]\((?!https?://|#)([^)]+)\)")


def _rewrite_links(text: str) -> str:
  """Repository-relative links of the README become links into the site (or plain file names)."""
  def fix(match):
    target = match.group(1)
    if target == "benchmarks/README.md":
      return "](project:/guides/benchmarks.md)"
    if target.startswith("docs/"):
      return f"](project:/{target[5:]})"
    if target.startswith("examples/") and target.endswith(".py"):
      return f"](project:/_generated/gallery/{target[9:-3]}.md)"
    return "]"
  return _LINK.sub(fix, text)


def readme_sections() -> dict[str, str]:
  """The README's ``## `` sections by title, links rewritten for the site."""
  text = (ROOT / "README.md").read_text()
  sections, title, body = {}, "intro", []
  for line in text.splitlines():
    if line.startswith("## "):
      sections[title] = "\n".join(body).strip() + "\n"
      title, body = line[3:].strip(), []
    else:
      body.append(line)
  sections[title] = "\n".join(body).strip() + "\n"
  return {k: _rewrite_links(v) for k, v in sections.items()}


def write_readme_pages():
  """Pages built from README sections: ``_generated/readme/<slug>.md`` (included by the guides)."""
  out = GENERATED / "readme"
  out.mkdir(parents=True, exist_ok=True)
  for title, body in readme_sections().items():
    slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
    # demote the README's ### headings so they nest under the including page's title
    (out / f"{slug}.md").write_text(re.sub(r"^### ", "## ", body, flags=re.M))
  bench = (ROOT / "benchmarks" / "README.md").read_text()
  bench = re.sub(r"\A# [^\n]*\n", "", bench)  # the including page has the title
  bench = re.sub(r"\]\((?!https?://|#)([^)]+)\)", lambda m: f"]({m.group(1)})" if m.group(1).endswith(".md")
                 else "]", bench)
  (GENERATED / "benchmarks_readme.md").write_text(bench)


EXAMPLE_TIMEOUT = 600


def run_examples():
  """Runs each example in ``--quick`` mode (figures to ``_generated/gallery/<name>/``) and writes its page."""
  out = GENERATED / "gallery"
  out.mkdir(parents=True, exist_ok=True)
  index = ["# Gallery", "", "Each example is a short script you can read top to bottom. The figures and "
           "output below were made while this site was built, by running it in its `--quick` mode "
           "(the full runs take longer and give the figures quoted in the README).", "",
           "```{toctree}", ":maxdepth: 1", ""]
  env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(
      p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
  for script in sorted((ROOT / "examples").glob("*.py")):
    name = script.stem
    figures_dir = out / name
    figures_dir.mkdir(exist_ok=True)
    log = figures_dir / "output.txt"
    stale = not log.exists() or log.stat().st_mtime < script.stat().st_mtime
    if stale or os.environ.get("GX_DOCS_RERUN"):
      result = subprocess.run([sys.executable, str(script), "--quick", "--out", str(figures_dir)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT)
      if result.returncode != 0:
        raise RuntimeError(f"examples/{name}.py --quick failed while building the gallery:\n{result.stderr}")
      log.write_text(result.stdout)
    doc = (inspect.cleandoc(_module_docstring(script)) or name).split("\n\n")
    title, explanation = doc[0].strip().rstrip("."), "\n\n".join(doc[1:])
    figures = sorted(figures_dir.glob("*.png"))
    page = [f"# {name}: {title}", "", explanation, "", f"Run it: `python examples/{name}.py` "
            f"(`--quick` for the short run shown here, `--out DIR` for the figures' folder).", ""]
    for figure in figures:
      page += [f"```{{image}} {name}/{figure.name}", f":alt: {figure.stem}", ":width: 90%", "```", ""]
    page += ["## Output of the quick run", "", "```text", log.read_text().rstrip(), "```", "",
             "## Source", "", f"```{{literalinclude}} ../../../examples/{name}.py", ":language: python", "```", ""]
    (out / f"{name}.md").write_text("\n".join(page))
    index.append(name)
  index += ["```", ""]
  (out / "index.md").write_text("\n".join(index))


def _module_docstring(path: pathlib.Path) -> str:
  import ast
  return ast.get_docstring(ast.parse(path.read_text())) or ""


def generate(app=None):
  GENERATED.mkdir(exist_ok=True)
  write_api()
  write_readme_pages()
  run_examples()


def setup(app):
  app.connect("builder-inited", lambda app: generate(app))
  return {"parallel_read_safe": True, "version": "1"}
