"""SWA against torch.optim.swa_utils (AveragedModel, SWALR) in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

A = np.random.default_rng(0).normal(size=(6, 6))
H = A @ A.T / 6 + 0.1 * np.eye(6)
P0 = np.random.default_rng(1).normal(size=6)


def grad_at(p, t):  # a quadratic, with one all-zero gradient step
  return np.zeros_like(p) if t == 3 else H @ p + np.sin(t) * 0.3


def torch_run(steps, lr, start, every, ema_decay=None, swa_value=None, anneal_steps=None, anneal="cos"):
  torch = pytest.importorskip("torch")
  from torch.optim import swa_utils
  model = torch.nn.Module()
  model.p = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float64))
  opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.5)
  avg_fn = swa_utils.get_ema_avg_fn(ema_decay) if ema_decay is not None else None
  averaged = swa_utils.AveragedModel(model, avg_fn=avg_fn)
  scheduler = swa_utils.SWALR(opt, swa_lr=swa_value, anneal_epochs=anneal_steps, anneal_strategy=anneal) \
      if swa_value is not None else None
  lrs = []
  for t in range(steps):
    lrs.append(opt.param_groups[0]["lr"])
    model.p.grad = torch.tensor(grad_at(model.p.detach().numpy(), t))
    opt.step()
    if t >= start and (t - start) % every == 0:
      averaged.update_parameters(model)
    if scheduler is not None:
      scheduler.step()
  return averaged.module.p.detach().numpy(), int(averaged.n_averaged), np.asarray(lrs), model.p.detach().numpy()


def gx_run(steps, opt):
  with jax.enable_x64(True):
    params = {"p": jnp.asarray(P0)}
    state = opt.init(params)
    step = jax.jit(opt.update)
    for t in range(steps):
      updates, state = step({"p": jnp.asarray(grad_at(np.asarray(params["p"]), t))}, state, params)
      params = gx.apply_updates(params, updates)
    return np.asarray(gx.swa_params(state)["p"]), int(jax.tree.leaves(
        state, is_leaf=lambda x: isinstance(x, gx.SwaState))[0].n_averaged), np.asarray(params["p"])


@pytest.mark.parametrize("start, every", [(0, 1), (10, 1), (7, 4)])
def test_equal_average_matches_torch_averaged_model(start, every):
  expected, n, _, final = torch_run(40, 0.05, start, every)
  got, got_n, got_final = gx_run(40, gx.swa(gx.sgd(0.05, momentum=0.5), start_step=start, update_every=every))
  assert got_n == n
  np.testing.assert_allclose(got_final, final, rtol=1e-10)
  np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_custom_average_function_matches_torch_ema():
  expected, n, _, _ = torch_run(35, 0.05, 5, 2, ema_decay=0.8)
  got, got_n, _ = gx_run(35, gx.swa(gx.sgd(0.05, momentum=0.5), start_step=5, update_every=2,
                                    avg_fn=lambda a, p, n: 0.8 * a + 0.2 * p))
  assert got_n == n
  np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("swa_value, anneal_steps, anneal", [(0.01, 5, "cos"), (0.2, 7, "linear"), (0.02, 0, "cos")])
def test_swa_lr_matches_torch_swalr(swa_value, anneal_steps, anneal):
  _, _, lrs, final = torch_run(20, 0.05, 0, 1, swa_value=swa_value, anneal_steps=anneal_steps, anneal=anneal)
  schedule = gx.schedules.swa_lr(0.05, swa_value, anneal_steps, anneal)
  with jax.enable_x64(True):
    np.testing.assert_allclose([float(schedule(t)) for t in range(20)], lrs, rtol=1e-12)
  _, _, got_final = gx_run(20, gx.swa(gx.sgd(schedule, momentum=0.5)))
  np.testing.assert_allclose(got_final, final, rtol=1e-10)


def test_bfloat16_params_with_float32_average():
  opt = gx.swa(gx.sgd(0.1), dtype=jnp.float32)
  params = {"p": jnp.ones(4, jnp.bfloat16)}
  state = opt.init(params)
  assert state.average["p"].dtype == jnp.float32
  updates, state = opt.update({"p": jnp.ones(4, jnp.bfloat16)}, state, params)
  assert updates["p"].dtype == jnp.bfloat16 and int(state.n_averaged) == 1


@pytest.mark.parametrize("make, message", [
    (lambda: gx.swa(gx.sgd(0.1), start_step=-1), "start_step"),
    (lambda: gx.swa(gx.sgd(0.1), update_every=0), "update_every"),
    (lambda: gx.swa(gx.sgd(0.1), avg_fn=3), "avg_fn"),
    (lambda: gx.swa(gx.sgd(0.1), dtype=jnp.int8), "dtype"),
    (lambda: gx.schedules.swa_lr(0.1, 0.01, -1), "anneal_steps"),
    (lambda: gx.schedules.swa_lr(0.1, 0.01, 5, "exp"), "anneal"),
])
def test_bad_arguments(make, message):
  with pytest.raises((TypeError, ValueError)) as error:
    make()
  assert message in str(error.value) and "swa" in str(error.value)


def test_swa_params_needs_one_swa_state():
  with pytest.raises(ValueError, match="gx.swa"):
    gx.swa_params(gx.sgd(0.1).init({"p": jnp.ones(2)}))


def test_diagnostics_report_the_number_averaged():
  opt = gx.swa(gx.sgd(0.1), start_step=2, update_every=2)
  params = {"w": jnp.ones(2)}
  state = opt.init(params)
  for _ in range(7):  # averaged after updates 2, 4 and 6 (0-based)
    updates, state = opt.update({"w": jnp.ones(2)}, state, params)
    params = gx.apply_updates(params, updates)
  assert int(gx.diagnostics(state)["n_averaged"]) == 3
