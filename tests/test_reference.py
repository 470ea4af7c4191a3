"""Every primitive and optimizer against its independent NumPy reference, step by step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.catalogue import CASES, gradient_stream, initial_params
from tests.helpers import assert_trees_close, cast, run, run_reference


@pytest.mark.parametrize("case", CASES, ids=str)
def test_float64_matches_reference(case):
  stream, params = gradient_stream(), initial_params()
  expected, expected_params = run_reference(case.reference(), params, stream)
  with jax.enable_x64(True):
    got, got_params, _ = run(case.make(), params, stream, jnp.float64)
    for step, (g, e) in enumerate(zip(got, expected)):
      assert_trees_close(g, e, rtol=1e-10, atol=1e-12, what=f"{case.id} step {step}")
    assert_trees_close(got_params, expected_params, rtol=1e-10, atol=1e-12, what=case.id)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_float32_matches_reference_eager_and_jit(case):
  stream, params = gradient_stream(), initial_params()
  expected, _ = run_reference(case.reference(), params, stream)
  eager, _, _ = run(case.make(), params, stream, jnp.float32)
  jitted, _, _ = run(case.make(), params, stream, jnp.float32, jit=True)
  for step, (e32, j32, e) in enumerate(zip(eager, jitted, expected)):
    assert_trees_close(e32, e, rtol=case.rtol32, atol=case.atol32 + 1e-6, what=f"{case.id} eager step {step}")
    assert_trees_close(j32, e32, rtol=1e-5, atol=1e-6, what=f"{case.id} jit vs eager step {step}")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_dtypes_are_kept(case, dtype):
  stream, params = gradient_stream(steps=4), initial_params()
  updates, new_params, state = run(case.make(), params, stream, dtype)
  for leaf in jax.tree.leaves((updates, new_params)):
    assert leaf.dtype == dtype
  for leaf in jax.tree.leaves(state):
    assert leaf.dtype in (dtype, jnp.float32, jnp.int32), leaf.dtype  # moments in param dtype; scalars f32/i32
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(new_params))


def test_float64_params_keep_float64_under_x64():
  from tests.catalogue import OPTIMIZERS
  with jax.enable_x64(True):
    for case in OPTIMIZERS:
      updates, new_params, state = run(case.make(), initial_params(), gradient_stream(steps=2), jnp.float64)
      assert {x.dtype for x in jax.tree.leaves((updates, new_params))} == {jnp.dtype(jnp.float64)}, case.id


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bfloat16_tracks_float32(case):
  """bf16 parameters: the rule runs in float32 with float32 hyperparameters, state is stored in bf16.

  The float32 run sees the same (bf16-rounded) inputs, so differences come from
  storing state in bf16 only: a b2 of 0.999 rounded to 1.0 would show here.
  """
  stream = [cast(cast(g, jnp.bfloat16), jnp.float32) for g in gradient_stream(steps=6)]
  params = cast(cast(initial_params(), jnp.bfloat16), jnp.float32)
  u16, _, _ = run(case.make(), params, stream, jnp.bfloat16)
  u32, _, _ = run(case.make(), params, stream, jnp.float32)
  for a, b in zip(jax.tree.leaves(u16), jax.tree.leaves(u32)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.linalg.norm(a - b) <= case.bf16_atol * np.linalg.norm(b) + 1e-6, (case.id, a, b)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_jit_compiles_once(case):
  traces = []

  @jax.jit
  def step(grads, state, params):
    traces.append(1)
    return case.make().update(grads, state, params)

  params = cast(initial_params(), jnp.float32)
  state = case.make().init(params)
  for grads in gradient_stream(steps=3):
    updates, state = step(cast(grads, jnp.float32), state, params)
  assert len(traces) == 1
