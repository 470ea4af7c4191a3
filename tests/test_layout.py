"""The package layout: one public path per name, folders by role, imports only downward.

gradxform/ is laid out by role (see the README's "Architecture"): each private folder's
``__init__`` says what lives there and what it may import, and this file checks both, with
the public names that must stay importable from where they were.
"""

import ast
import importlib
import pathlib

import pytest

import gradxform as gx

ROOT = pathlib.Path(gx.__file__).parent

# Every public name of gradxform 0.1 (before the layout moved them), at its public place.
PUBLIC_0_1 = [
    "AccumulateState", "AddDecayedWeightsState", "AddNoiseState", "ApplyIfFiniteState", "ClipState",
    "EmaParamsState", "EmaState", "EmptyState", "GradientTransformation", "LinesearchState",
    "LookaheadState", "MaskedState", "MinimizeResult", "Packer", "PartitionState", "Population", "Quantized",
    "ScaleByAdadeltaState", "ScaleByAdagradState", "ScaleByAdam8bitState", "ScaleByAdamaxState",
    "ScaleByCurvatureStepState", "ScaleByLbfgsState", "ScaleByLionState", "ScaleByNadamState",
    "ScaleByNewtonState", "ScaleByPolyakState", "ScaleByRadamState", "ScaleByRmsState", "ScaleBySophiaState",
    "ScaleState", "TraceState", "ZeroNansState", "accumulate", "adadelta", "adagrad", "adam", "adam_8bit",
    "adamax", "adamw", "adamw_8bit", "adaptive_grad_clip", "add_decayed_weights", "add_noise",
    "apply_if_finite", "apply_updates", "averaged_params", "centralize", "chain", "clip",
    "clip_by_block_rms", "clip_by_global_norm", "curvature_descent", "dequantize_blockwise", "dynamic_map",
    "ema", "ema_params", "exploit", "freeze", "grad_and_hvp", "hessian_matrix", "hutchinson_diagonal", "hvp",
    "hyperparams", "identity", "lbfgs", "lion", "lookahead", "masked", "member_shardings", "minimize",
    "nadam", "newton", "packed", "partition", "perturb", "polyak_sgd", "quantize_blockwise", "radam",
    "rmsprop", "scale", "scale_by_adadelta", "scale_by_adagrad", "scale_by_adam", "scale_by_adam_8bit",
    "scale_by_adamax", "scale_by_backtracking_linesearch", "scale_by_curvature_step", "scale_by_lbfgs",
    "scale_by_learning_rate", "scale_by_lion", "scale_by_nadam", "scale_by_newton", "scale_by_polyak",
    "scale_by_radam", "scale_by_rms", "scale_by_schedule", "scale_by_sign", "scale_by_sophia",
    "scale_by_zoom_linesearch", "schedules", "set_to_zero", "sgd", "sophia", "state_shardings", "stateless",
    "static_field", "step", "trace", "tree_get", "tree_set", "truncation_selection", "zero_nans",
]
SCHEDULES_0_1 = [
    "Schedule", "constant", "cosine_decay", "exponential_decay", "join", "linear", "one_cycle",
    "piecewise_constant", "polynomial", "warmup_cosine_decay", "warmup_stable_decay",
]

# folder -> the folders its modules may import from (besides itself). Bottom to top.
LAYERS = {
    "_core": set(),
    "schedules": {"_core"},
    "_transforms": {"_core", "schedules"},
    "_optimizers": {"_core", "schedules", "_transforms"},
    "_wrappers": {"_core", "schedules", "_transforms", "_optimizers"},
    "_second_order": {"_core", "schedules", "_transforms", "_optimizers", "_wrappers"},
    "_scale_out": {"_core", "schedules", "_transforms", "_optimizers", "_wrappers", "_second_order"},
    # optax's names and defaults: a second public place on purpose (a port from optax keeps its numbers)
    "optax_like": {"_core", "schedules", "_transforms", "_optimizers", "_wrappers", "_second_order", "_scale_out"},
}


def _modules():
  for path in sorted(ROOT.rglob("*.py")):
    yield path, path.relative_to(ROOT).parts


def _imported_folders(path):
  """The gradxform folders a module imports from (absolute and relative imports)."""
  tree = ast.parse(path.read_text())
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      if node.level:
        raise AssertionError(f"{path}: use absolute imports (from gradxform.X import ...)")
      targets = [node.module or ""]
      if node.module == "gradxform":
        targets = ["gradxform." + alias.name for alias in node.names]
    elif isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    else:
      continue
    for target in targets:
      parts = target.split(".")
      if parts[0] == "gradxform" and len(parts) > 1:
        found.add(parts[1])
      elif target == "gradxform":  # ``import gradxform as gx``: the whole package
        found.update({"_core", "schedules", "_transforms", "_optimizers", "_wrappers", "_second_order",
                      "_scale_out", "optax_like"})
  return found


@pytest.mark.parametrize("name", PUBLIC_0_1)
def test_public_name_stays_at_its_place(name):
  assert hasattr(gx, name), f"gx.{name} was public in 0.1 and must stay importable as gx.{name}"


@pytest.mark.parametrize("name", SCHEDULES_0_1)
def test_schedule_name_stays_at_its_place(name):
  assert hasattr(gx.schedules, name), f"gx.schedules.{name} was public in 0.1"


def test_one_public_path_per_name():
  """Folders are private: no public module besides ``gradxform``, ``gradxform.schedules`` and optax_like's mirrors
  of ``optax``, ``optax.contrib`` and ``optax.schedules``."""
  for path, parts in _modules():
    private = any(p.startswith("_") and p != "__init__.py" for p in parts)
    optax_mirrors = (("optax_like", "__init__.py"), ("optax_like", "contrib.py"), ("optax_like", "schedules.py"))
    assert private or parts in (("__init__.py",), ("schedules", "__init__.py")) + optax_mirrors, (
        f"{path} is a public module path; keep it in a private (underscore) folder or file")


def test_every_folder_says_what_lives_there_and_what_it_may_import():
  for folder in LAYERS:
    init = ROOT / folder / "__init__.py"
    assert init.exists(), f"{folder} has no __init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc, f"{folder}/__init__.py needs a docstring saying what lives there"
    if folder != "schedules":
      assert "May import" in doc, f"{folder}/__init__.py must say what it may import"
  folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
  assert folders == set(LAYERS), f"folders not described in LAYERS: {folders ^ set(LAYERS)}"


def test_imports_point_down_the_layers():
  wrong = []
  for path, parts in _modules():
    if len(parts) == 1:  # gradxform/__init__.py re-exports everything
      continue
    folder = parts[0]
    for imported in _imported_folders(path) - {folder}:
      if imported not in LAYERS[folder]:
        wrong.append(f"{path.relative_to(ROOT)} imports gradxform.{imported}")
  assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_files_stay_short():
  long = [f"{p.relative_to(ROOT)} ({n} lines)" for p, _ in _modules()
          if (n := len(p.read_text().splitlines())) > 420]
  assert not long, f"split these files by concept: {long}"


def test_every_named_optimizer_lives_in_a_file_named_after_its_family():
  for path in sorted((ROOT / "_optimizers").glob("*.py")):
    if path.name == "__init__.py":
      continue
    module = importlib.import_module(f"gradxform._optimizers.{path.stem}")
    exported = getattr(module, "__all__", None)
    assert exported, f"{path} must list its public names in __all__"
    for name in exported:
      assert getattr(gx, name) is getattr(module, name), f"gx.{name} is not the one in {path.name}"
