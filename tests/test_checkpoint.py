"""orbax checkpoints: save at step k, restore from the abstract state in a fresh process, continue.

The continued run must be bit-identical to an uninterrupted one, for chains,
named chains, partitions, masks, schedules, accumulate, apply_if_finite,
lookahead and parameter averaging.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.checkpoint_cases import CASES, init_params, train

ocp = pytest.importorskip("orbax.checkpoint")

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPLIT, TOTAL = 4, 10

RESTORE_AND_CONTINUE = """
import sys, json, jax, numpy as np, orbax.checkpoint as ocp
from tests.checkpoint_cases import CASES, init_params, train
ckpt_dir, out_dir, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
checkpointer = ocp.StandardCheckpointer()
for name in names:
  opt = CASES[name]()
  params = init_params()
  abstract = {"params": jax.eval_shape(lambda: params), "opt_state": jax.eval_shape(opt.init, params)}
  restored = checkpointer.restore(f"{ckpt_dir}/{name}", abstract)
  final, _ = train(opt, restored["params"], restored["opt_state"], %d, %d)
  np.savez(f"{out_dir}/{name}.npz", *jax.tree.leaves(final))
""" % (SPLIT, TOTAL)


def test_restore_in_a_fresh_process_continues_bit_identically(tmp_path):
  checkpointer = ocp.StandardCheckpointer()
  expected = {}
  for name, make in CASES.items():
    opt = make()
    params = init_params()
    expected[name], _ = train(opt, params, opt.init(params), 0, TOTAL)
    halfway, state = train(opt, params, opt.init(params), 0, SPLIT)
    checkpointer.save(tmp_path / "ckpt" / name, {"params": halfway, "opt_state": state})
  checkpointer.wait_until_finished()
  env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  result = subprocess.run(
      [sys.executable, "-c", RESTORE_AND_CONTINUE, str(tmp_path / "ckpt"), str(tmp_path), json.dumps(list(CASES))],
      env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  for name in CASES:
    got = np.load(tmp_path / f"{name}.npz")
    leaves = jax.tree.leaves(expected[name])
    assert len(got.files) == len(leaves)
    for i, leaf in enumerate(leaves):
      np.testing.assert_array_equal(got[f"arr_{i}"], np.asarray(leaf), err_msg=f"{name} leaf {i}")


def test_restored_state_has_the_original_types(tmp_path):
  opt = CASES["partition"]()
  params = init_params()
  _, state = train(opt, params, opt.init(params), 0, 2)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "c", state)
  checkpointer.wait_until_finished()
  restored = checkpointer.restore(tmp_path / "c", jax.eval_shape(opt.init, params))
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  assert type(restored).__name__ == "PartitionState"
