"""reduce_on_plateau against torch's ReduceLROnPlateau, decision for decision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

# A recorded loss sequence with improvements, plateaus, noise and a late drop.
LOSSES = [1.0, 0.9, 0.85, 0.86, 0.851, 0.8505, 0.852, 0.849, 0.849, 0.8491, 0.85, 0.7, 0.70001, 0.69995,
          0.71, 0.72, 0.69, 0.69, 0.69, 0.69, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.4, 0.4, 0.4, 0.4]

CONFIGS = [
    dict(mode="min", factor=0.5, patience=2, threshold=1e-3, threshold_mode="rel", cooldown=0, min_lr=0.0),
    dict(mode="min", factor=0.3, patience=1, threshold=0.005, threshold_mode="abs", cooldown=2, min_lr=0.002),
    dict(mode="max", factor=0.7, patience=0, threshold=1e-4, threshold_mode="rel", cooldown=1, min_lr=0.0),
    dict(mode="min", factor=0.1, patience=3, threshold=0.0, threshold_mode="rel", cooldown=0, min_lr=0.0,
         eps=5e-3),
]


def torch_scales(config, lr=0.1):
  torch = pytest.importorskip("torch")
  param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
  opt = torch.optim.SGD([param], lr=lr)
  kwargs = dict(config)
  eps = kwargs.pop("eps", 1e-8)
  scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, eps=eps * lr, **kwargs)
  scales = []
  for loss in LOSSES:
    scales.append(opt.param_groups[0]["lr"] / lr)  # the lr this step's optimizer.step() uses
    opt.step()
    scheduler.step(loss)
  return np.asarray(scales)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['mode']}-{c['threshold_mode']}-p{c['patience']}")
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_matches_torch_decision_for_decision(config, jit):
  expected = torch_scales(config)
  kwargs = dict(config)
  min_lr = kwargs.pop("min_lr")
  opt = gx.chain(gx.sgd(0.1), gx.reduce_on_plateau(min_scale=min_lr / 0.1, **kwargs))
  params = {"w": jnp.ones(2)}
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  got = []
  for loss in LOSSES:
    updates, state = update({"w": jnp.ones(2)}, state, params, value=jnp.float32(loss))
    got.append(float(-updates["w"][0]) / 0.1)  # sgd's update is -lr * g * scale, g = 1
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert len(set(np.round(expected, 8))) > 1, "the sequence must trigger at least one reduction"


def test_state_resumes_and_reads():
  opt = gx.reduce_on_plateau(factor=0.5, patience=0)
  state = opt.init({"w": jnp.ones(1)})
  for loss in (1.0, 2.0, 3.0):
    _, state = opt.update({"w": jnp.ones(1)}, state, value=jnp.float32(loss))
  assert float(state.scale) == 0.25 and float(state.best) == 1.0 and int(state.num_bad_steps) == 0


@pytest.mark.parametrize("make, message", [
    (lambda: gx.reduce_on_plateau(factor=1.5), "factor"),
    (lambda: gx.reduce_on_plateau(patience=-1), "patience"),
    (lambda: gx.reduce_on_plateau(cooldown=1.5), "cooldown"),
    (lambda: gx.reduce_on_plateau(mode="lowest"), "mode"),
    (lambda: gx.reduce_on_plateau(threshold_mode="relative"), "threshold_mode"),
    (lambda: gx.reduce_on_plateau(min_scale=-0.1), "min_scale"),
])
def test_bad_arguments(make, message):
  with pytest.raises((TypeError, ValueError)) as error:
    make()
  assert "reduce_on_plateau" in str(error.value) and message in str(error.value)


def test_missing_value_says_how_to_pass_it():
  opt = gx.reduce_on_plateau()
  with pytest.raises(ValueError, match="value=loss"):
    opt.update({"w": jnp.ones(1)}, opt.init({"w": jnp.ones(1)}))


def test_diagnostics_report_the_scale():
  opt = gx.chain(gx.sgd(0.1), gx.reduce_on_plateau(factor=0.5, patience=0))
  params = {"w": jnp.ones(2)}
  state = opt.init(params)
  for loss in (1.0, 2.0, 3.0):
    _, state = opt.update({"w": jnp.ones(2)}, state, params, value=loss)
  found = gx.diagnostics(state)
  assert float(found["1/plateau_scale"]) == 0.25 and float(found["1/plateau_best"]) == 1.0
  assert int(found["1/plateau_num_bad_steps"]) == 0
