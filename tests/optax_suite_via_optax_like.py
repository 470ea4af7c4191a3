"""Runs optax's own test files with optax's modules replaced by ``gx.optax_like`` where it has the name.

Not collected by pytest (it needs optax's test files, absl, scipy and scikit-learn, and reports
failures that are known differences). Usage::

    PYTHONPATH=. python tests/optax_suite_via_optax_like.py [FILE ...]   # default: the files below

Each file is copied with its imports of optax's modules (``alias``, ``transform``, ``combine``,
``lookahead``, ``linesearch``, ``contrib``, ``optax.transforms._*``, ``optax.schedules._schedule``)
replaced by a view that returns ``optax_like``'s object where ``optax_like`` has the name and optax's
otherwise (optax's ``base``, ``update``, ``numerics`` and test utilities stay optax's). In
``alias_test.py`` only the optimizers ``optax_like`` has stay in ``_OPTIMIZERS_UNDER_TEST``. A test
counts as "through optax_like" when it used at least one ``optax_like`` object; the summary gives
passed/failed/skipped for those and for the rest.
"""

import os
import pathlib
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

import optax

FILES = ["_src/alias_test.py", "_src/lookahead_test.py", "_src/transform_test.py", "_src/linesearch_test.py",
         "transforms/_clipping_test.py", "transforms/_adding_test.py", "transforms/_accumulation_test.py",
         "transforms/_combining_test.py", "transforms/_masking_test.py", "schedules/_schedule_test.py",
         "schedules/_inject_test.py", "contrib/_common_test.py"]

SHIM = '''
import atexit as _atexit
import os as _os
from gradxform import optax_like as _optax_like
_USED = set()


class _Via:  # optax's module, read from gx.optax_like where it has the name
  def __init__(self, original, mirror):
    self._original, self._mirror = original, mirror

  def __getattr__(self, name):
    if hasattr(self._mirror, name):
      _USED.add(_os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0])
      return getattr(self._mirror, name)
    return getattr(self._original, name)


_atexit.register(lambda: open(_os.environ["GX_USED_FILE"], "a").write("".join(u + "\\n" for u in _USED)))
'''

# "from optax._src import alias" -> alias = _Via(<optax's module>, optax_like)
_IMPORT = re.compile(r"^from (optax\._src|optax\.transforms|optax\.schedules|optax) import "
                     r"(alias|transform|combine|lookahead|linesearch|contrib|_[a-z]+)( as (\w+))?$", re.M)
_KEEP = {"_inject"}  # optax's inject_hyperparams module is used as the reference in optax's tests


def _rewrite(source: str) -> str:
  def replace(match):
    package, module, _, alias = match.groups()
    name = alias or module
    if module in _KEEP:
      return match.group(0)
    mirror = "_optax_like.contrib" if module == "contrib" else "_optax_like"
    return f"from {package} import {module} as _original_{name}\n{name} = _Via(_original_{name}, {mirror})"
  source = _IMPORT.sub(replace, source)
  first = source.index("\nfrom ") if "\nfrom " in source else 0
  source = source[:first] + "\n" + SHIM + source[first:]
  keep = ("_OPTIMIZERS_UNDER_TEST = tuple(o for o in _OPTIMIZERS_UNDER_TEST if hasattr(_optax_like, o['opt_name']))"
          "\n\n\n")
  return source.replace("def _get_opt(", keep + "def _get_opt(", 1)


def main(files):
  root = pathlib.Path(optax.__file__).parent
  totals, by_file = {}, {}
  with tempfile.TemporaryDirectory() as folder:
    used_file = pathlib.Path(folder) / "used.txt"
    used_file.touch()
    paths = []
    for name in files:
      path = pathlib.Path(folder) / (name.replace("/", "__").replace(".py", "") + "_via_optax_like_test.py")
      path.write_text(_rewrite((root / name).read_text()))
      paths.append(path)
    report = pathlib.Path(folder) / "report.xml"
    env = dict(os.environ, GX_USED_FILE=str(used_file))
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                            "-n", "2", "--tb=line", f"--junitxml={report}", *map(str, paths)], env=env)
    used = {}  # test name -> "module_stem[.Class]::name" of the tests that used an optax_like object
    for line in filter(None, used_file.read_text().splitlines()):
      path, *parts = line.split("::")
      used.setdefault(parts[-1], []).append(".".join([pathlib.Path(path).stem] + parts[:-1]) + "::" + parts[-1])
    for case in ElementTree.parse(report).iter("testcase"):
      key = case.get("classname") + "::" + case.get("name")
      outcome = ("failed" if case.find("failure") is not None or case.find("error") is not None
                 else "skipped" if case.find("skipped") is not None else "passed")
      through = any(key.endswith(norm) for norm in used.get(case.get("name"), ()))
      group = "through optax_like" if through else "optax's own objects only"
      source = case.get("classname").split("_via_optax_like_test")[0].rsplit(".", 1)[-1].replace("__", "/")
      for counts in (totals.setdefault(group, {}), by_file.setdefault(f"  {source}.py, {group}", {})):
        counts[outcome] = counts.get(outcome, 0) + 1
  for group, counts in [*totals.items(), *sorted(by_file.items())]:
    print(f"{group}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
  return code


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:] or FILES))
