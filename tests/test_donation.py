"""Donated optimizer state is updated in place: the compiled step copies no state or params buffer.

For each named optimizer (also with bfloat16 parameters, and a few wrappers and
low-precision moments) a step
``(params, state, grads) -> (new_params, new_state)`` is jitted with
``donate_argnums=(0, 1)`` and compiled for a small tree; the optimized HLO
(``compiled.as_text()``) is then checked for

* no ``copy`` instruction on a non-scalar array in the entry computation (a
  copy of a donated buffer is what makes an optimizer slow when its state is
  donated: XLA must keep the old value because it is read after the new one
  was written into the same buffer), and
* every donated non-scalar leaf aliased to an output (``input_output_alias``).

Scalars (step counts, hyperparameter values) may be copied: that costs nothing.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.catalogue import OPTIMIZERS

_SHAPES = {"a": (64, 64), "b": (64, 64), "c": (64,)}
_ENTRY_PARAM = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+) parameter\((\d+)\)")
_COPY = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+) copy\(%([^)\s]+)\)")
_ALIAS = re.compile(r"\{[\d,\s]*\}: \((\d+), \{[\d,\s]*\}, (?:may|must)-alias\)")


def _params(dtype=jnp.float32):
  rng = np.random.default_rng(0)
  return {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in _SHAPES.items()}


def _entry(hlo_text):
  """The lines of the ENTRY computation of an HLO module."""
  lines = hlo_text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("ENTRY"))
  end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("}"))
  return lines[start + 1:end]


def _is_scalar(hlo_type):
  return hlo_type.split("{")[0].endswith("[]")


def compile_step(opt, apply_updates=gx.apply_updates, dtype=jnp.float32):
  """Compiles the donated step for ``opt`` and params of ``dtype``; returns ``(hlo_text, donated leaves)``."""
  params = _params(dtype)
  state = opt.init(params)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return apply_updates(params, updates), state

  grads = jax.tree.map(lambda p: 0.1 * p, params)
  # keep_unused: entry parameter i is flat input i, so aliases can be matched to leaves
  compiled = jax.jit(step, donate_argnums=(0, 1), keep_unused=True).lower(params, state, grads).compile()
  return compiled.as_text(), jax.tree.leaves((params, state))


def donation_problems(hlo_text, donated):
  """What keeps a donated step from updating in place: a list of messages (empty if none)."""
  entry = _entry(hlo_text)
  names = {}
  for line in entry:
    match = _ENTRY_PARAM.match(line)
    if match:
      names[match.group(1)] = int(match.group(3))
  problems = []
  for line in entry:
    match = _COPY.match(line)
    if match and not _is_scalar(match.group(2)):
      source = match.group(3)
      what = f"input {names[source]}" if source in names else "an intermediate"
      problems.append(f"copy of {what}: {line.strip()}")
  header = hlo_text.splitlines()[0]
  aliased = {int(i) for i in _ALIAS.findall(header.split("input_output_alias=", 1)[-1].split("entry_computation_layout")[0])}
  for index, leaf in enumerate(donated):
    if np.ndim(leaf) > 0 and index not in aliased:
      problems.append(f"donated input {index} (shape {np.shape(leaf)}) is not aliased to an output")
  return problems


_WRAPPERS = [
    ("apply_if_finite_adam", lambda: gx.apply_if_finite(gx.adam(1e-3), 3)),
    ("accumulate_adam", lambda: gx.accumulate(gx.adam(1e-3), 4)),
    ("partition", lambda: gx.partition({"decay": gx.adamw(1e-3, weight_decay=0.1), "plain": gx.sgd(0.1, momentum=0.9)},
                                       [(r"c", "plain"), (r".*", "decay")])),
    ("clip_adam", lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-3))),
    ("adam_bf16_state", lambda: gx.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)),
    ("adamw_8bit", lambda: gx.adamw_8bit(1e-3)),  # the 64x64 leaves are quantized (4096 values)
    # more bfloat16 moments: the update reads them as stored (rounded), so no fusion recomputes them
    ("adam_amsgrad_bf16_state", lambda: gx.adam(1e-3, amsgrad=True, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)),
    ("nadam_bf16_state", lambda: gx.nadam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)),
    ("radam_bf16_state", lambda: gx.radam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)),
    ("adamax_bf16_state", lambda: gx.adamax(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)),
    ("lion_bf16_state", lambda: gx.lion(1e-3, mu_dtype=jnp.bfloat16)),
]


def _case(make, name, dtype=jnp.float32):
  return pytest.param(make, dtype, id=name)


CASES = [_case(case.make, case.id) for case in OPTIMIZERS]
CASES += [_case(make, name) for name, make in _WRAPPERS]
# bfloat16 parameters, state in their dtype (computed in float32, stored in bfloat16)
CASES += [_case(case.make, f"{case.id}_bf16_params", jnp.bfloat16) for case in OPTIMIZERS]


@pytest.mark.parametrize("make,dtype", CASES)
def test_donated_step_copies_nothing(make, dtype):
  hlo_text, donated = compile_step(make(), dtype=dtype)
  problems = donation_problems(hlo_text, donated)
  assert not problems, "\n".join(problems)


def test_check_catches_optax_lion():
  """optax.lion reads the old momentum after writing the new one: the check must see its copies."""
  optax = pytest.importorskip("optax")
  hlo_text, donated = compile_step(optax.lion(1e-3), optax.apply_updates)
  problems = donation_problems(hlo_text, donated)
  assert any(p.startswith("copy of input") for p in problems), hlo_text


def test_check_accepts_in_place_step():
  """A hand-written SGD-momentum step is copy-free, so the check has no false positive."""

  class Momentum(gx.GradientTransformation):
    def init(self, params):
      return jax.tree.map(jnp.zeros_like, params)

    def update(self, updates, state, params=None, **extra):
      state = jax.tree.map(lambda m, g: 0.9 * m + g, state, updates)
      return jax.tree.map(lambda m: -0.1 * m, state), state

  hlo_text, donated = compile_step(Momentum())
  assert donation_problems(hlo_text, donated) == []


@pytest.mark.parametrize("make", [
    lambda: gx.adam(1e-3),
    lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-3, weight_decay=0.1)),
    lambda: gx.chain(gx.clip_by_block_rms(1.0), gx.sgd(0.1, momentum=0.9)),  # a stage on the leaves
], ids=["adam", "clip_adamw", "block_rms_sgd"])
def test_packed_step_updates_buffers_in_place(make):
  """gx.packed(opt, packer) on packed params: the donated buffers are updated in place too."""
  packer = gx.Packer(_params())
  flat = packer.pack(_params())
  opt = gx.packed(make(), packer)
  state = opt.init(flat)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return gx.apply_updates(params, updates), state

  grads = jax.tree.map(lambda p: 0.1 * p, flat)
  compiled = jax.jit(step, donate_argnums=(0, 1), keep_unused=True).lower(flat, state, grads).compile()
  assert donation_problems(compiled.as_text(), jax.tree.leaves((flat, state))) == []

