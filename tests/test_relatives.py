"""ADOPT, AdEMAMix, MARS, LaProp, cautious and schedule-free: optax and the papers' code over 35 steps, errors, jit.

The catalogue (tests/catalogue_relatives.py) runs 8-step NumPy references and the
dtype / jit / donation checks; here each optimizer runs 35 steps in float64 with
off-default hyperparameters and an all-zero gradient (step 3) against
``optax.contrib`` or a NumPy transcription of the paper's code, to 1e-9 relative.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests import references as ref
from tests import references_relatives as rr
from tests.catalogue import gradient_stream, initial_params
from tests.helpers import assert_trees_close, cast, run, run_reference

STEPS = 35


# ---- NumPy transcriptions of the papers' code (whole optimizers, on the parameters) ----

class PaperCautiousAdamW(ref._PerLeaf):
  """kyleliang919/C-Optim's C-AdamW step (Transformers' AdamW: eps on sqrt(v), decay of the stepped p)."""

  def __init__(self, lr, b1, b2, eps, wd):
    super().__init__(); self.lr, self.b1, self.b2, self.eps, self.wd = lr, b1, b2, eps, wd

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, v = s
    m = self.b1 * m + (1 - self.b1) * g
    v = self.b2 * v + (1 - self.b2) * g * g
    step_size = self.lr * math.sqrt(1 - self.b2 ** t) / (1 - self.b1 ** t)
    d = m / (np.sqrt(v) + self.eps)
    mask = (d * g > 0).astype(g.dtype)
    d = d * mask * (mask.size / (mask.sum() + 1))
    new_p = p - step_size * d
    new_p = new_p - self.lr * self.wd * new_p
    return new_p - p, (m, v)


class PaperLaprop(ref._PerLeaf):
  """Z-T-WANG/LaProp-Optimizer's step: the learning rate inside the momentum, debiased by its own average."""

  def __init__(self, lr, b1, b2, eps):
    super().__init__(); self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g), 0.0, 0.0)

  def rule(self, g, p, s, t):
    m, v, lr1, lr2 = s
    v = self.b2 * v + (1 - self.b2) * g * g
    lr1 = lr1 * self.b1 + (1 - self.b1) * self.lr
    lr2 = lr2 * self.b2 + (1 - self.b2)
    denom = np.sqrt(v / lr2) + self.eps
    m = self.b1 * m + (1 - self.b1) * self.lr * g / denom
    return -m / (lr1 / self.lr), (m, v, lr1, lr2)


class PaperScheduleFreeRAdam:
  """facebookresearch/schedule_free's RAdamScheduleFree step in its y/z form (x is never formed)."""

  def __init__(self, lr, b1, b2, eps, wd, power, silent=True):
    self.lr, self.b1, self.b2, self.eps, self.wd, self.power, self.silent = lr, b1, b2, eps, wd, power, silent
    self.k, self.lr_max, self.weight_sum, self.z, self.v = 0, -1.0, 0.0, None, None

  def __call__(self, grads, params):
    if self.z is None:
      self.z = [p.copy() for p in params]
      self.v = [np.zeros_like(p) for p in params]
    step = self.k + 1
    rho_inf = 2 / (1 - self.b2) - 1
    rho_t = rho_inf - 2 * step * self.b2 ** step / (1 - self.b2 ** step)
    if rho_t > 4:
      rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    else:
      rect = float(not self.silent)
    lr = self.lr * rect
    self.lr_max = max(lr, self.lr_max)
    weight = self.lr_max ** self.power
    self.weight_sum += weight
    ckp1 = weight / self.weight_sum if self.weight_sum != 0 else 0.0
    adaptive_y_lr = lr * (self.b1 * (1 - ckp1) - 1)
    out = []
    for i, (g, y) in enumerate(zip(grads, params)):
      self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
      d = g / (np.sqrt(self.v[i] / (1 - self.b2 ** step)) + self.eps) if rho_t > 4 else g.copy()
      d = d + self.wd * y
      new_y = y + ckp1 * (self.z[i] - y) + adaptive_y_lr * d
      self.z[i] = self.z[i] - lr * d
      out.append(new_y - y)
    self.k += 1
    return out


def _b3_paper(t, b1, b3, warmup):
  f = lambda beta: math.log(0.5) / math.log(beta + 1e-8) - 1
  if t >= warmup:
    return b3
  a = t / warmup
  return 0.5 ** (1 / ((1 - a) * f(b1) + a * f(b3) + 1))


def _optax_cases():
  optax = pytest.importorskip("optax")
  contrib = optax.contrib
  alpha_warm = lambda c: 3.0 * jnp.minimum((jnp.asarray(c).astype(jnp.float64) + 1) / 12.0, 1.0)  # the paper code's schedulers at t = c + 1
  b3_warm = lambda c: jax.pure_callback(lambda k: np.float64(_b3_paper(int(k) + 1, 0.8, 0.99, 20)),
                                        jax.ShapeDtypeStruct((), jnp.float64), c)
  warm = lambda c: 0.1 * jnp.minimum(jnp.asarray(c).astype(jnp.float64), 7.0) / 7.0  # float64 (optax's is float32)
  return {
      "adopt": (lambda: gx.adopt(0.05, b1=0.8, b2=0.9, eps=1e-3),
                lambda: contrib.adopt(0.05, b1=0.8, b2=0.9, eps=1e-3)),
      "adopt_nesterov": (lambda: gx.adopt(0.05, b1=0.8, b2=0.9, eps=1e-3, nesterov=True),
                         lambda: contrib.adopt(0.05, b1=0.8, b2=0.9, eps=1e-3, nesterov=True)),
      "adopt_unclipped": (lambda: gx.adopt(0.05, b1=0.8, b2=0.9, eps=1e-3, clip_value=None),
                          lambda: contrib.adopt(0.05, b1=0.8, b2=0.9, eps=1e-3, use_clipping=False)),
      "adopt_defaults": (lambda: gx.adopt(0.05), lambda: contrib.adopt(0.05)),
      "ademamix": (lambda: gx.ademamix(0.05, b1=0.8, b2=0.9, b3=0.99, alpha=3.0, eps=0.3, eps_root=0.1,
                                       weight_decay=0.1),
                   lambda: contrib.ademamix(0.05, b1=0.8, b2=0.9, b3=0.99, alpha=3.0, eps=0.3, eps_root=0.1,
                                            weight_decay=0.1)),
      "ademamix_warmup": (lambda: gx.ademamix(0.05, b1=0.8, b2=0.9, b3=0.99, alpha=3.0, eps=0.3, alpha_warmup=12,
                                              b3_warmup=20),
                          lambda: contrib.ademamix(0.05, b1=0.8, b2=0.9, b3=b3_warm, alpha=alpha_warm, eps=0.3)),
      "simplified_ademamix": (lambda: gx.simplified_ademamix(0.01, b1=0.8, b2=0.9, alpha=2.0, eps=0.3, eps_root=0.1,
                                                             weight_decay=0.1),
                              lambda: contrib.simplified_ademamix(0.01, b1=0.8, b2=0.9, alpha=2.0, eps=0.3,
                                                                  eps_root=0.1, weight_decay=0.1)),
      "schedule_free_sgd": (lambda: gx.schedule_free_sgd(0.1, b1=0.8, weight_decay=0.05, weight_lr_power=1.5),
                            lambda: contrib.schedule_free_sgd(0.1, b1=0.8, weight_decay=0.05, weight_lr_power=1.5)),
      "schedule_free_adamw": (lambda: gx.schedule_free_adamw(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.1,
                                                             weight_lr_power=1.0),
                              lambda: contrib.schedule_free_adamw(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.1,
                                                                  weight_lr_power=1.0)),
      "schedule_free_adamw_defaults": (gx.schedule_free_adamw, contrib.schedule_free_adamw),
      # any base optimizer; optax evaluates the wrapper's schedule one step ahead of the base optimizer's
      "schedule_free_warmup": (lambda: gx.schedule_free(gx.sgd(warm), lambda c: warm(c + 1), b1=0.7),
                               lambda: contrib.schedule_free(optax.sgd(warm), warm, b1=0.7)),
      "schedule_free_adam": (lambda: gx.schedule_free(gx.adam(0.05, b1=0.0, b2=0.9, eps=0.3), 0.05, b1=0.7),
                             lambda: contrib.schedule_free(optax.adam(0.05, b1=0.0, b2=0.9, eps=0.3), 0.05, b1=0.7)),
  }


_NUMPY = {
    "mars_defaults": (lambda: gx.mars(0.01),
                      lambda: ref.Chain(rr.Mars(0.95, 0.99, 1e-8, 0.025), ref.LearningRate(0.01))),
    "mars": (lambda: gx.mars(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.1, gamma=0.5, max_norm=3.0),
             lambda: ref.Chain(rr.Mars(0.8, 0.9, 0.3, 0.5, 3.0), ref.DecayedWeights(0.1), ref.LearningRate(0.05))),
    "mars_lion_unclipped": (lambda: gx.mars(0.01, b1=0.8, weight_decay=0.1, gamma=0.5, max_norm=None, variant="lion"),
                            lambda: ref.Chain(rr.Mars(0.8, 0.0, 0.0, 0.5, None, "lion"), ref.DecayedWeights(0.1),
                                              ref.LearningRate(0.01))),
    # eps = 0 and no decay: where the paper's code and torch's AdamW conventions coincide
    "cautious_adamw_paper": (lambda: gx.chain(gx.cautious(gx.scale_by_adam(0.8, 0.9, eps=0.0), negated=False),
                                              gx.scale_by_learning_rate(0.05)),
                             lambda: PaperCautiousAdamW(0.05, 0.8, 0.9, 0.0, 0.0)),
    "cautious_named_adamw": (lambda: gx.cautious(gx.adamw(0.05, b1=0.8, b2=0.9, eps=0.0, weight_decay=0.0)),
                             lambda: PaperCautiousAdamW(0.05, 0.8, 0.9, 0.0, 0.0)),
    "laprop_paper": (lambda: gx.laprop(0.05, b1=0.8, b2=0.9, eps=0.3), lambda: PaperLaprop(0.05, 0.8, 0.9, 0.3)),
    "laprop_defaults": (lambda: gx.laprop(4e-4), lambda: PaperLaprop(4e-4, 0.9, 0.999, 1e-15)),
    "schedule_free_radam": (lambda: gx.schedule_free_radam(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.1,
                                                           weight_lr_power=1.5),
                            lambda: PaperScheduleFreeRAdam(0.05, 0.8, 0.9, 0.3, 0.1, 1.5)),
    "schedule_free_radam_sgd_phase": (lambda: gx.schedule_free_radam(0.05, b1=0.8, b2=0.9, eps=0.3,
                                                                     silent_sgd_phase=False),
                                      lambda: PaperScheduleFreeRAdam(0.05, 0.8, 0.9, 0.3, 0.0, 2.0, silent=False)),
    "schedule_free_radam_defaults": (gx.schedule_free_radam,
                                     lambda: PaperScheduleFreeRAdam(0.0025, 0.9, 0.999, 1e-8, 0.0, 2.0)),
}


def _rel_close(got, expected, what):
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    g, e = np.asarray(g, np.float64), np.asarray(e, np.float64)
    scale = max(float(np.max(np.abs(e))), 1e-300)
    assert float(np.max(np.abs(g - e))) <= 1e-9 * scale + 1e-14, (what, g, e)  # 1e-14: roundoff of a zero step


@pytest.mark.parametrize("name", sorted(["adopt", "adopt_nesterov", "adopt_unclipped", "adopt_defaults", "ademamix",
                                         "ademamix_warmup", "simplified_ademamix", "schedule_free_sgd",
                                         "schedule_free_adamw", "schedule_free_adamw_defaults",
                                         "schedule_free_warmup", "schedule_free_adam"]))
def test_matches_optax_float64(name):
  optax = pytest.importorskip("optax")
  make, make_optax = _optax_cases()[name]
  stream, params = gradient_stream(steps=STEPS), initial_params()
  with jax.enable_x64(True):
    got, got_params, _ = run(make(), params, stream, jnp.float64, jit=True)
  # optax mixes int32 counts with float64 values: it needs standard dtype promotion (the suite's is strict)
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    opt, p = make_optax(), cast(params, jnp.float64)
    state, update = opt.init(p), jax.jit(opt.update)
    for step, grads in enumerate(stream):
      updates, state = update(cast(grads, jnp.float64), state, p)
      p = optax.apply_updates(p, updates)
      _rel_close(got[step], updates, f"{name} step {step}")
    _rel_close(got_params, p, f"{name} params")


@pytest.mark.parametrize("name", sorted(_NUMPY))
def test_matches_paper_code_float64(name):
  make, make_reference = _NUMPY[name]
  stream, params = gradient_stream(steps=STEPS), initial_params()
  expected, expected_params = run_reference(make_reference(), params, stream)
  with jax.enable_x64(True):
    got, got_params, _ = run(make(), params, stream, jnp.float64, jit=True)
  for step, (g, e) in enumerate(zip(got, expected)):
    _rel_close(g, e, f"{name} step {step}")
  _rel_close(got_params, expected_params, name)


def test_schedule_free_named_warmup_matches_optax():
  """optax's own warmup schedule is float32: its numbers agree to float32 precision (a shifted step would not)."""
  optax = pytest.importorskip("optax")
  stream, params = gradient_stream(steps=STEPS), initial_params()
  for make, make_optax in [
      (lambda: gx.schedule_free_sgd(0.1, warmup_steps=7, b1=0.8), lambda: optax.contrib.schedule_free_sgd(
          0.1, warmup_steps=7, b1=0.8)),
      (lambda: gx.schedule_free_adamw(0.05, warmup_steps=5, b2=0.9, weight_decay=0.1),
       lambda: optax.contrib.schedule_free_adamw(0.05, warmup_steps=5, b2=0.9, weight_decay=0.1))]:
    with jax.enable_x64(True):
      _, got, _ = run(make(), params, stream, jnp.float64, jit=True)
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
      opt, p = make_optax(), cast(params, jnp.float64)
      state, update = opt.init(p), jax.jit(opt.update)
      for grads in stream:
        updates, state = update(cast(grads, jnp.float64), state, p)
        p = optax.apply_updates(p, updates)
    assert_trees_close(got, p, rtol=1e-5, atol=1e-7)


def test_schedule_free_eval_params_matches_optax():
  optax = pytest.importorskip("optax")
  stream, params = gradient_stream(steps=10), initial_params()
  with jax.enable_x64(True):
    opt = gx.schedule_free_adamw(0.05, b1=0.8)
    _, y, state = run(opt, params, stream, jnp.float64)
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    o_opt, p = optax.contrib.schedule_free_adamw(0.05, b1=0.8), cast(params, jnp.float64)
    o_state = o_opt.init(p)
    for grads in stream:
      updates, o_state = o_opt.update(cast(grads, jnp.float64), o_state, p)
      p = optax.apply_updates(p, updates)
    expected = optax.contrib.schedule_free_eval_params(o_state, p)
  with jax.enable_x64(True):
    _rel_close(gx.schedule_free_eval_params(state, y), expected, "x")
    # nested in a chain, and before any update (x = y)
    chained = gx.chain(gx.clip_by_global_norm(10.0), gx.schedule_free_sgd(0.1))
    p0 = cast(params, jnp.float64)
    assert_trees_close(gx.schedule_free_eval_params(chained.init(p0), p0), p0, rtol=1e-15, atol=0)


def test_cautious_wraps_an_optax_optimizer():
  optax = pytest.importorskip("optax")
  stream, params = gradient_stream(steps=12), initial_params()
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    got, _, _ = run(gx.cautious(optax.adam(0.05, b1=0.8, b2=0.9, eps=0.3)), params, stream, jnp.float64)
  expected, _ = run_reference(ref.Chain(rr.CautiousAdam(0.8, 0.9, 0.3), ref.LearningRate(0.05)), params, stream)
  for g, e in zip(got, expected):
    assert_trees_close(g, e, rtol=1e-10, atol=1e-13)


def test_cautious_masks_against_the_gradient():
  """A step that opposes the gradient everywhere is zeroed; one that follows −g is kept and scaled by n/(n+1)."""
  g = {"a": jnp.array([1.0, -2.0, 3.0])}
  ascend = gx.cautious(gx.scale(1.0))         # u = +g: disagrees with descent everywhere
  descend = gx.cautious(gx.scale(-1.0))       # u = −g
  u, _ = ascend.update(g, ascend.init(g))
  np.testing.assert_array_equal(u["a"], 0.0)
  u, _ = descend.update(g, descend.init(g))
  np.testing.assert_allclose(u["a"], -np.array([1.0, -2.0, 3.0]) * 3 / 4)
  direction = gx.cautious(gx.scale(1.0), negated=False)
  u, _ = direction.update(g, direction.init(g))
  np.testing.assert_allclose(u["a"], np.array([1.0, -2.0, 3.0]) * 3 / 4)


def test_schedule_free_with_b1_one_averages_the_sgd_iterates():
  """β₁ = 1 makes y = x and weight_lr_power = 0 equal weights: the parameters are the mean of SGD's iterates z."""
  stream, params = gradient_stream(steps=6), initial_params()
  with jax.enable_x64(True):
    _, y, state = run(gx.schedule_free_sgd(0.1, b1=1.0, weight_lr_power=0.0), params, stream, jnp.float64)
    z = state.z
    # with equal weights x is the running mean of z_1..z_t; recompute it from plain SGD iterates on y
    p = cast(params, jnp.float64)
    zk, x = p, p
    for k, grads in enumerate(stream):
      zk = jax.tree.map(lambda a, g: a - 0.1 * g, zk, cast(grads, jnp.float64))
      x = jax.tree.map(lambda xi, zi: xi + (zi - xi) / (k + 1), x, zk)
  # the gradients do not depend on the parameters here, so z is plain SGD on the stream
  assert_trees_close(z, zk, rtol=1e-12, atol=1e-12)
  assert_trees_close(y, x, rtol=1e-12, atol=1e-12)


# ---- errors ----

@pytest.mark.parametrize("make,transform,name", [
    (lambda: gx.adopt(1e-3, b1=1.0), "scale_by_adopt", "b1"),
    (lambda: gx.adopt(1e-3, eps=0.0), "scale_by_adopt", "eps"),
    (lambda: gx.scale_by_adopt(clip_value=-1.0), "scale_by_adopt", "clip_value"),
    (lambda: gx.ademamix(1e-3, b3=1.5), "scale_by_ademamix", "b3"),
    (lambda: gx.ademamix(1e-3, alpha=-1.0), "scale_by_ademamix", "alpha"),
    (lambda: gx.ademamix(1e-3, alpha_warmup=0), "scale_by_ademamix", "alpha_warmup"),
    (lambda: gx.ademamix(1e-3, b3_warmup=-5), "scale_by_ademamix", "b3_warmup"),
    (lambda: gx.simplified_ademamix(1e-3, b2=1.0), "scale_by_simplified_ademamix", "b2"),
    (lambda: gx.mars(1e-3, gamma=-0.1), "scale_by_mars", "gamma"),
    (lambda: gx.mars(1e-3, max_norm=0.0), "scale_by_mars", "max_norm"),
    (lambda: gx.mars(1e-3, variant="shampoo"), "scale_by_mars", "variant"),
    (lambda: gx.laprop(1e-3, b2=1.0), "scale_by_laprop", "b2"),
    (lambda: gx.schedule_free(gx.sgd(0.1), 0.1, b1=0.0), "schedule_free", "b1"),
    (lambda: gx.schedule_free(gx.sgd(0.1), -0.1), "schedule_free", "learning_rate"),
    (lambda: gx.schedule_free_sgd(0.1, weight_lr_power=-1.0), "schedule_free", "weight_lr_power"),
    (lambda: gx.schedule_free_adamw(-1.0), "schedule_free_adamw", "learning_rate"),
    (lambda: gx.schedule_free_radam(b2=1.0), "schedule_free_radam", "b2"),
    (lambda: gx.schedule_free(gx.sgd(0.1), 0.1, state_dtype=jnp.int32), "schedule_free", "state_dtype"),
    (lambda: gx.cautious(gx.adam(0.1), negated="yes"), "cautious", "negated"),
    (lambda: gx.cautious(3.0), "cautious", "gradient transformation"),
])
def test_bad_hyperparameters_are_named(make, transform, name):
  with pytest.raises((ValueError, TypeError)) as error:
    make()
  assert transform in str(error.value) and name in str(error.value), str(error.value)


def test_wrappers_need_params_and_their_state():
  p = {"w": jnp.ones(3)}
  opt = gx.schedule_free_sgd(0.1)
  with pytest.raises(ValueError, match="schedule_free: params are required"):
    opt.init(None)
  state = opt.init(p)
  with pytest.raises(ValueError, match="schedule_free: params are required"):
    opt.update(p, state)
  with pytest.raises(ValueError, match="schedule_free_eval_params: found no ScheduleFreeState"):
    gx.schedule_free_eval_params(gx.adam(0.1).init(p), p)


# ---- jit: hyperparameters are leaves ----

_RETUNE = [
    ("adopt", lambda v: gx.adopt(v, b1=0.9 - v, clip_value=1.0 + v)),
    ("ademamix", lambda v: gx.ademamix(v, alpha=5.0 + v, alpha_warmup=10 + v, b3_warmup=20 + v)),
    ("simplified_ademamix", lambda v: gx.simplified_ademamix(v, alpha=v)),
    ("mars", lambda v: gx.mars(v, gamma=v, max_norm=1.0 + v, weight_decay=v)),
    ("mars_lion", lambda v: gx.mars(v, gamma=v, variant="lion")),
    ("laprop", lambda v: gx.laprop(v, b1=0.9 - v)),
    ("cautious", lambda v: gx.cautious(gx.adamw(v, weight_decay=v))),
    ("schedule_free", lambda v: gx.schedule_free(gx.sgd(v), v, b1=0.9 - v, weight_lr_power=2.0 + v)),
    ("schedule_free_adamw", lambda v: gx.schedule_free_adamw(v, warmup_steps=5, weight_decay=v)),
    ("schedule_free_radam", lambda v: gx.schedule_free_radam(v, b2=0.99 - v)),
]


@pytest.mark.parametrize("name,make", _RETUNE, ids=[n for n, _ in _RETUNE])
def test_new_hyperparameter_values_do_not_recompile(name, make):
  traces = []

  @jax.jit
  def step(opt, grads, state, params):
    traces.append(1)
    return opt.update(grads, state, params)

  params = cast(initial_params(), jnp.float32)
  state = make(0.01).init(params)
  outs = []
  for value, grads in zip([0.01, 0.02, 0.03], gradient_stream(steps=3)):
    updates, state = step(make(value), cast(grads, jnp.float32), state, params)
    outs.append(updates)
  assert len(traces) == 1, name
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(outs))


@pytest.mark.parametrize("make", [lambda lr: gx.mars(lr), lambda lr: gx.schedule_free_adamw(lr),
                                  lambda lr: gx.cautious(gx.laprop(lr))], ids=["mars", "schedule_free_adamw",
                                                                               "cautious_laprop"])
def test_vmap_over_learning_rate_equals_separate_runs(make):
  params, stream = cast(initial_params(), jnp.float32), [cast(g, jnp.float32) for g in gradient_stream(steps=4)]

  def train(lr):
    opt = make(lr)
    p, state = params, opt.init(params)
    for grads in stream:
      updates, state = opt.update(grads, state, p)
      p = gx.apply_updates(p, updates)
    return p

  lrs = jnp.array([0.01, 0.03, 0.1])
  together, alone = jax.jit(jax.vmap(train))(lrs), jax.jit(train)
  for i, lr in enumerate(lrs):
    assert_trees_close(jax.tree.map(lambda x: x[i], together), alone(lr), rtol=1e-5, atol=1e-6)
