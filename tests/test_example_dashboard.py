"""Smoke test: examples/training_dashboard.py --quick writes its CSV and PNG, with numbers that hold together."""

import csv

import numpy as np

from tests.test_examples import assert_figures, run_example

COLUMNS = ("step", "epoch", "train_loss", "val_loss", "swa_val_loss", "grad_norm_before_clip",
           "grad_norm_after_clip", "clipped_fraction", "plateau_scale", "n_averaged",
           "update_norm", "param_norm", "grad_norm")
MAX_NORM, FACTOR, STEPS_PER_EPOCH, EPOCHS = 0.3, 0.5, 28, 30  # as the script's quick mode


def test_training_dashboard(tmp_path):
  stdout = run_example("training_dashboard.py", tmp_path)
  assert_figures(tmp_path, ["training_dashboard.png", "training_dashboard.csv"])
  with open(tmp_path / "training_dashboard.csv") as f:
    rows = list(csv.DictReader(f))
  missing = [c for c in COLUMNS if c not in rows[0]]
  assert not missing, f"columns missing from the CSV: {missing}"
  # the hyperparameters are constants: the optimizer's, not logged from the state
  assert not {"learning_rate", "weight_decay", "factor"} & set(rows[0])
  assert len(rows) == EPOCHS * STEPS_PER_EPOCH
  col = {c: np.array([float(r[c]) for r in rows]) for c in COLUMNS}

  # Clipping: the norm after is min(before, max_norm) (torch's 1e-6 aside), and the clipped fraction is the
  # running mean of the steps whose norm exceeded max_norm, recomputed here from the logged norms.
  before, after = col["grad_norm_before_clip"], col["grad_norm_after_clip"]
  np.testing.assert_allclose(after, np.minimum(before, MAX_NORM), rtol=1e-4)
  np.testing.assert_allclose(col["grad_norm"], before, rtol=1e-5)  # monitor sees the gradient the clip sees
  clipped = before > MAX_NORM
  assert clipped[0] and not clipped[-1]
  np.testing.assert_allclose(col["clipped_fraction"], np.cumsum(clipped) / np.arange(1, len(rows) + 1),
                             rtol=1e-4)

  # The plateau reduced the learning rate at least once in quick mode, by powers of its factor.
  scale = col["plateau_scale"]
  assert scale[0] == 1.0 and scale.min() < 1.0, "the plateau never reduced the learning rate"
  assert np.all(np.diff(scale) <= 0)
  np.testing.assert_allclose(np.log(scale) / np.log(FACTOR), np.round(np.log(scale) / np.log(FACTOR)), atol=1e-6)
  assert f"learning-rate scale reductions: {int(np.sum(np.diff(scale) < 0))}" in stdout

  # SWA: averaged once per epoch from its start; its validation loss is finite once it averaged, NaN before.
  n = col["n_averaged"]
  assert n[-1] == EPOCHS - EPOCHS * 3 // 4
  assert np.all(np.isnan(col["swa_val_loss"][n == 0])) and np.all(np.isfinite(col["swa_val_loss"][n > 0]))
  swa_final = float(stdout.split("epochs averaged): val loss ")[1].split(",")[0])
  assert abs(swa_final - col["swa_val_loss"][-1]) < 1e-3
  # Training did something: the validation loss fell tenfold and the SWA model is as good as the last one.
  assert col["val_loss"][-1] < col["val_loss"][0] / 10
  assert swa_final < 1.5 * col["val_loss"][-1]
  assert float(stdout.split("SWA model")[1].split("val accuracy ")[1].split()[0]) > 0.95

