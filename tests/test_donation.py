"""Donated optimizer state is updated in place: the compiled step copies no state or params buffer.

For each named optimizer (and a few wrappers) a step
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


def _params():
  rng = np.random.default_rng(0)
  return {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in _SHAPES.items()}


def _entry(hlo_text):
  """The lines of the ENTRY computation of an HLO module."""
  lines = hlo_text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("ENTRY"))
  end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("}"))
  return lines[start + 1:end]


def _is_scalar(hlo_type):
  return hlo_type.split("{")[0].endswith("[]")


def compile_step(opt, apply_updates=gx.apply_updates):
  """Compiles the donated step for ``opt``; returns ``(hlo_text, donated leaves)``."""
  params = _params()
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


def _xfail(reason):
  return pytest.mark.xfail(strict=True, reason=reason)


# Optimizers known to copy state when it is donated (see the module docstring); strict xfail.
_KNOWN = {
    # scale_by_lion's rule reads the old mu twice (for sign(b1*mu + (1-b1)*g) and for b2*mu + (1-b2)*g);
    # XLA:CPU puts the two in separate fusions, writes the new mu into the donated buffer first and so
    # copies every mu leaf (HLO: %copy.6 = f32[64,64]{1,0} copy(%state_0__mu__a__.1)), as optax.lion does.
    "lion": "gx.lion copies its momentum when the state is donated (the old mu is read after the new one "
            "is written); fix in gradxform/_adam_variants.py",
    # the update uses the unrounded float32 moments while the stored ones are rounded to bfloat16: XLA
    # recomputes the moments from the old buffers in two fusions (HLO: %copy.7 = bf16[64,64]{1,0}
    # copy(%state_0__nu__a__.1), and the same for numerator.ema).
    "adam_bf16_state": "gx.adam with bfloat16 moments copies mu and nu when the state is donated",
    # the same for the 8-bit codes: the update and the re-encoding each decode the old codes
    # (HLO: %copy.71 = u8[2,2048]{1,0} copy(%state_0__mu__a___codes.1), and the scales).
    "adamw_8bit": "8-bit Adam copies its codes and scales when the state is donated",
}

_WRAPPERS = [
    ("apply_if_finite_adam", lambda: gx.apply_if_finite(gx.adam(1e-3), 3)),
    ("accumulate_adam", lambda: gx.accumulate(gx.adam(1e-3), 4)),
    ("partition", lambda: gx.partition({"decay": gx.adamw(1e-3, weight_decay=0.1), "plain": gx.sgd(0.1, momentum=0.9)},
                                       [(r"c", "plain"), (r".*", "decay")])),
    ("clip_adam", lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-3))),
    ("adam_bf16_state", lambda: gx.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)),
    ("adamw_8bit", lambda: gx.adamw_8bit(1e-3)),  # the 64x64 leaves are quantized (4096 values)
]

CASES = [pytest.param(case.make, id=case.id, marks=[_xfail(_KNOWN[case.id])] if case.id in _KNOWN else [])
         for case in OPTIMIZERS]
CASES += [pytest.param(make, id=name, marks=[_xfail(_KNOWN[name])] if name in _KNOWN else [])
          for name, make in _WRAPPERS]


@pytest.mark.parametrize("make", CASES)
def test_donated_step_copies_nothing(make):
  hlo_text, donated = compile_step(make())
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
