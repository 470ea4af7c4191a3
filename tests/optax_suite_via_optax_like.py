"""Runs optax's own ``alias_test.py`` with ``optax._src.alias`` replaced by ``gx.optax_like``.

Not collected by pytest (it needs optax's source, absl and scikit-learn, and
reports failures that are known differences). Usage::

    PYTHONPATH=. python tests/optax_suite_via_optax_like.py   # prints pytest's summary line

The copy keeps only the optimizers the namespace reproduces in
``_OPTIMIZERS_UNDER_TEST``; the other tests of the file run as written.
"""

import pathlib
import subprocess
import sys
import tempfile

import optax

PORTED = ("adadelta", "adagrad", "adam", "adamax", "adamw", "lion", "rmsprop", "sgd")


def main():
  source = (pathlib.Path(optax.__file__).parent / "_src" / "alias_test.py").read_text()
  shim = ("from gradxform import optax_like as _optax_like\n\n\n"
          "class _Alias:  # optax's alias module, read from gx.optax_like\n"
          "  def __getattr__(self, name):\n"
          "    return getattr(_optax_like, name)\n\n\n"
          "alias = _Alias()\n")
  source = source.replace("from optax._src import alias\n", shim)
  keep = f"_OPTIMIZERS_UNDER_TEST = tuple(o for o in _OPTIMIZERS_UNDER_TEST if o['opt_name'] in {PORTED!r})\n\n\n"
  source = source.replace("def _get_opt(", keep + "def _get_opt(", 1)
  with tempfile.TemporaryDirectory() as folder:
    path = pathlib.Path(folder) / "alias_via_optax_like_test.py"
    path.write_text(source)
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                            "--tb=line", str(path)])


if __name__ == "__main__":
  sys.exit(main())
