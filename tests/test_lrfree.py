"""Learning-rate-free methods against optax.contrib, step by step in float64, plus errors, jit and state.

Prodigy, D-Adaptation, DoG, DoWG, Mechanic, COCOB, MoMo and MoMo-Adam: each entry of
``CASES`` pairs a gradxform optimizer with the optax.contrib one it reproduces. They run
35 steps on a tree with a vector, a matrix and a scalar leaf (step 3's gradient is all
zeros), with off-default hyperparameters, in float64, and every step's update must agree
to 1e-9 relative. The catalogue (tests/catalogue_lrfree.py) runs the NumPy references from
the papers and the dtype / jit / donation checks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from tests.helpers import assert_trees_close, cast

STEPS = 35


def _stream(steps=STEPS, seed=0, zero_at=3):
  rng = np.random.default_rng(seed)
  out = []
  for t in range(steps):
    scale = 0.0 if t == zero_at else float(10.0 ** rng.uniform(-1, 1))
    out.append({"b": scale * rng.normal(size=(5,)), "s": scale * rng.normal(), "w": scale * rng.normal(size=(3, 4))})
  return out


def _params(seed=1):
  rng = np.random.default_rng(seed)
  return {"b": rng.normal(size=(5,)), "s": np.float64(rng.normal()), "w": rng.normal(size=(3, 4))}


def _loss(params):
  """The loss MoMo is told (``value=``): positive, and it changes with the parameters."""
  return 0.5 * sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(params)) + 0.3


def _optax_table():
  optax = pytest.importorskip("optax")
  c = optax.contrib
  decay = lambda n: 0.7 * (1 - 0.5 * jnp.minimum(jnp.asarray(n, jnp.float64), 20.0) / 20.0)  # a schedule
  return {
      "prodigy": (lambda: gx.prodigy(0.7, b1=0.8, b2=0.9, b3=0.95, eps=1e-3, estim_lr0=1e-3, estim_lr_coef=2.0,
                                     weight_decay=0.1),
                  lambda: c.prodigy(0.7, betas=(0.8, 0.9), beta3=0.95, eps=1e-3, estim_lr0=1e-3, estim_lr_coef=2.0,
                                    weight_decay=0.1)),
      "prodigy_safeguard_schedule": (lambda: gx.prodigy(decay, b1=0.8, b2=0.9, estim_lr0=1e-3, safeguard_warmup=True),
                                     lambda: c.prodigy(decay, betas=(0.8, 0.9), estim_lr0=1e-3,
                                                       safeguard_warmup=True)),
      "prodigy_defaults": (gx.prodigy, c.prodigy),
      "dadapt_adamw": (lambda: gx.dadapt_adamw(0.7, b1=0.8, b2=0.9, eps=1e-3, estim_lr0=1e-3, weight_decay=0.1),
                       lambda: c.dadapt_adamw(0.7, betas=(0.8, 0.9), eps=1e-3, estim_lr0=1e-3, weight_decay=0.1)),
      "dadapt_adamw_schedule": (lambda: gx.dadapt_adamw(decay, estim_lr0=1e-3),
                                lambda: c.dadapt_adamw(decay, estim_lr0=1e-3)),
      "dadapt_adamw_defaults": (gx.dadapt_adamw, c.dadapt_adamw),
      "dog_distance": (lambda: gx.dog(0.5, init_step=("distance", 1e-2), eps=1e-3, weight_decay=0.1),
                       lambda: c.dog(0.5, init_step=("distance", 1e-2), eps=1e-3, weight_decay=0.1)),
      "dog_learning_rate": (lambda: gx.dog(0.5, init_step=("learning_rate", 1e-2)),
                            lambda: c.dog(0.5, init_step=("learning_rate", 1e-2))),
      "dog_heuristic": (lambda: gx.dog(decay, init_step=("heuristic", 1e-3), eps=1e-6),
                        lambda: c.dog(decay, init_step=("heuristic", 1e-3), eps=1e-6)),
      "dog_defaults": (gx.dog, c.dog),
      "dowg": (lambda: gx.dowg(0.5, init_estim_sq_dist=1e-2, eps=1e-3, weight_decay=0.1),
               lambda: c.dowg(0.5, init_estim_sq_dist=1e-2, eps=1e-3, weight_decay=0.1)),
      "dowg_defaults": (gx.dowg, c.dowg),
      "mechanize_adam": (lambda: gx.mechanize(gx.adam(0.5, b1=0.8, b2=0.9), weight_decay=0.05, eps=1e-6,
                                              s_init=1e-3, num_betas=4),
                         lambda: c.mechanize(optax.adam(0.5, b1=0.8, b2=0.9), weight_decay=0.05, eps=1e-6,
                                             s_init=1e-3, num_betas=4)),
      "mechanize_sgd_defaults": (lambda: gx.mechanize(gx.sgd(1.0, momentum=0.9)),
                                 lambda: c.mechanize(optax.sgd(1.0, momentum=0.9))),
      # an optax optimizer inside gradxform's wrapper
      "mechanize_optax_lion": (lambda: gx.mechanize(optax.lion(0.1), s_init=1e-2),
                               lambda: c.mechanize(optax.lion(0.1), s_init=1e-2)),
      "cocob": (lambda: gx.cocob(0.5, alpha=20.0, eps=1e-3, weight_decay=0.1),
                lambda: c.cocob(0.5, alpha=20.0, eps=1e-3, weight_decay=0.1)),
      "cocob_defaults": (gx.cocob, c.cocob),
      "momo": (lambda: gx.momo(0.3, b1=0.8, lower_bound=-0.5, weight_decay=0.1),
               lambda: c.momo(0.3, beta=0.8, lower_bound=-0.5, weight_decay=0.1)),
      "momo_adapt_lower_bound": (lambda: gx.momo(0.3, b1=0.8, lower_bound=-0.5, weight_decay=0.1,
                                                 adapt_lower_bound=True),
                                 lambda: c.momo(0.3, beta=0.8, lower_bound=-0.5, weight_decay=0.1,
                                                adapt_lower_bound=True)),
      "momo_defaults": (gx.momo, c.momo),
      "momo_adam": (lambda: gx.momo_adam(0.3, b1=0.8, b2=0.9, eps=1e-3, lower_bound=-0.5, weight_decay=0.1),
                    lambda: c.momo_adam(0.3, b1=0.8, b2=0.9, eps=1e-3, lower_bound=-0.5, weight_decay=0.1)),
      "momo_adam_adapt_lower_bound": (lambda: gx.momo_adam(0.3, b1=0.8, b2=0.9, eps=1e-3, lower_bound=-0.5,
                                                           weight_decay=0.1, adapt_lower_bound=True),
                                      lambda: c.momo_adam(0.3, b1=0.8, b2=0.9, eps=1e-3, lower_bound=-0.5,
                                                          weight_decay=0.1, adapt_lower_bound=True)),
      "momo_adam_defaults": (gx.momo_adam, c.momo_adam),
  }


NAMES = ["prodigy", "prodigy_safeguard_schedule", "prodigy_defaults", "dadapt_adamw", "dadapt_adamw_schedule",
         "dadapt_adamw_defaults", "dog_distance", "dog_learning_rate", "dog_heuristic", "dog_defaults", "dowg",
         "dowg_defaults", "mechanize_adam", "mechanize_sgd_defaults", "mechanize_optax_lion", "cocob",
         "cocob_defaults", "momo", "momo_adapt_lower_bound", "momo_defaults", "momo_adam",
         "momo_adam_adapt_lower_bound", "momo_adam_defaults"]


def _run(opt, stream):
  """Updates per step, final params and state of ``opt`` in float64 (jitted), with ``value=`` the loss."""
  params = cast(_params(), jnp.float64)
  state = opt.init(params)
  step = jax.jit(lambda g, s, p: opt.update(g, s, p, value=_loss(p)))
  seen = []
  for grads in stream:
    updates, state = step(cast(grads, jnp.float64), state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    seen.append(updates)
  return seen, params, state


# name -> (gradxform's estimate in its state, optax's, the gx.diagnostics key that reports it)
_ESTIMATES = {
    "prodigy": (lambda s: s[0].d, lambda s: s.estim_lr, "0/d"),
    "dadapt_adamw": (lambda s: s[0].d, lambda s: s.estim_lr, "0/d"),
    "dog_distance": (lambda s: s[-2].max_dist, lambda s: s[1].max_dist, "1/max_dist"),
    "dowg": (lambda s: s[-2].estim_sq_dist, lambda s: s[1].estim_sq_dist, "1/estim_sq_dist"),
    "mechanize_adam": (lambda s: s.s, lambda s: s.s, "step_size"),
    "momo_adapt_lower_bound": (lambda s: s[0].lb, lambda s: s.lb, "0/lb"),
}


def reported_value(estimate):
  """What gx.diagnostics reports for an estimate: Mechanic's is the sum of its scales."""
  return jnp.sum(estimate)


def _rel_close(got, expected, what):
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    g, e = np.asarray(g, np.float64), np.asarray(e, np.float64)
    scale = max(float(np.max(np.abs(e))), 1e-300)
    assert float(np.max(np.abs(g - e))) <= 1e-9 * scale + 1e-300, (what, g, e)


def test_the_table_names_every_case():
  assert sorted(NAMES) == sorted(_optax_table())


@pytest.mark.parametrize("name", NAMES)
def test_matches_optax_contrib_float64(name):
  make, make_optax = _optax_table()[name]
  stream = _stream()
  assert not any(np.any(x) for x in jax.tree.leaves(stream[3]))
  with jax.enable_x64(True):
    got, got_params, state = _run(make(), stream)
  # optax mixes int32 counts with float64 values: it needs standard dtype promotion (the suite's is strict)
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    expected, expected_params, optax_state = _run(make_optax(), stream)
  assert any(float(np.max(np.abs(x))) > 0 for x in jax.tree.leaves(got[-1])), f"{name}: the last step is zero"
  for step, (g, e) in enumerate(zip(got, expected)):
    _rel_close(g, e, f"{name} step {step}")
  _rel_close(got_params, expected_params, f"{name} params")
  if name in _ESTIMATES:  # the estimated step size is a documented state field, and gx.diagnostics reports it
    mine, theirs, reported = _ESTIMATES[name]
    _rel_close(mine(state), theirs(optax_state), f"{name} estimate")
    with jax.enable_x64(True):
      _rel_close(gx.diagnostics(state)[reported], reported_value(mine(state)), f"{name} diagnostics")


def test_estimates_grow_from_their_initial_under_estimates():
  """On a quadratic, Prodigy's and D-Adaptation's d and DoG's distance grow by orders of magnitude from d_0 / r_ε."""
  loss = lambda p: 0.5 * jnp.sum((p["w"] - 3.0) ** 2)
  params = {"w": jnp.ones(4)}
  for opt, read in [(gx.prodigy(), lambda s: s[0].d), (gx.dog(), lambda s: s[0].max_dist),
                    (gx.dadapt_adamw(), lambda s: s[0].d)]:
    def body(carry, _, opt=opt):
      p, state = carry
      updates, state = opt.update(jax.grad(loss)(p), state, p)
      return (gx.apply_updates(p, updates), state), None

    state = opt.init(params)
    first = float(read(state))
    (p, state), _ = jax.jit(lambda c: jax.lax.scan(body, c, length=200))((params, state))
    assert float(read(state)) > 1e3 * first, (opt, first, float(read(state)))
    assert float(loss(p)) < 1e-3 * float(loss(params))


def test_all_zero_first_gradient_keeps_d_finite():
  """optax's Prodigy and D-Adaptation divide 0 by 0 here (d becomes NaN); gradxform keeps d_0."""
  params = {"w": jnp.ones(3)}
  zero, g = {"w": jnp.zeros(3)}, {"w": jnp.array([1.0, -2.0, 0.5])}
  for opt in (gx.prodigy(estim_lr0=1e-3), gx.dadapt_adamw(estim_lr0=1e-3)):
    state = opt.init(params)
    updates, state = opt.update(zero, state, params)
    assert float(state[0].d) == pytest.approx(1e-3) and float(jnp.max(jnp.abs(updates["w"]))) == 0.0
    updates, state = opt.update(g, state, params)
    assert bool(jnp.all(jnp.isfinite(updates["w"]))) and bool(jnp.isfinite(state[0].d))


def test_momo_needs_the_loss():
  params = {"w": jnp.ones(3)}
  for opt in (gx.momo(), gx.momo_adam()):
    with pytest.raises(TypeError, match="scale_by_momo.*value"):
      opt.update(params, opt.init(params), params)
  # gx.step passes the loss
  opt = gx.momo(1.0)
  loss = lambda p: jnp.sum(p["w"] ** 2)
  state = opt.init(params)
  params2, state = gx.step(opt, loss, params, state)[:2]
  assert float(loss(params2)) < float(loss(params))


# ---- errors ----

@pytest.mark.parametrize("make,transform,name", [
    (lambda: gx.prodigy(b1=1.0), "scale_by_prodigy", "b1"),
    (lambda: gx.prodigy(b3=-0.1), "scale_by_prodigy", "b3"),
    (lambda: gx.prodigy(estim_lr0=0.0), "scale_by_prodigy", "estim_lr0"),
    (lambda: gx.prodigy(estim_lr_coef=-1.0), "scale_by_prodigy", "estim_lr_coef"),
    (lambda: gx.prodigy(weight_decay=-0.1), "scale_by_prodigy", "weight_decay"),
    (lambda: gx.prodigy(safeguard_warmup="yes"), "scale_by_prodigy", "safeguard_warmup"),
    (lambda: gx.dadapt_adamw(learning_rate=-1.0), "scale_by_dadapt_adamw", "learning_rate"),
    (lambda: gx.dadapt_adamw(b2=1.5), "scale_by_dadapt_adamw", "b2"),
    (lambda: gx.dadapt_adamw(eps=-1.0), "scale_by_dadapt_adamw", "eps"),
    (lambda: gx.dog(init_step=("sqrt", 1e-6)), "scale_by_dog", "init_step"),
    (lambda: gx.dog(init_step=("distance", 0.0)), "scale_by_dog", "init_step"),
    (lambda: gx.dog(eps=0.0), "scale_by_dog", "eps"),
    (lambda: gx.dog(weight_decay=-1.0), "add_decayed_weights", "weight_decay"),
    (lambda: gx.dowg(init_estim_sq_dist=-1.0), "scale_by_dowg", "init_estim_sq_dist"),
    (lambda: gx.dowg(eps=0.0), "scale_by_dowg", "eps"),
    (lambda: gx.mechanize(gx.adam(1.0), weight_decay=-0.1), "mechanize", "weight_decay"),
    (lambda: gx.mechanize(gx.adam(1.0), s_init=0.0), "mechanize", "s_init"),
    (lambda: gx.mechanize(gx.adam(1.0), num_betas=0), "mechanize", "num_betas"),
    (lambda: gx.mechanize(3.0), "mechanize", "gradient transformation"),
    (lambda: gx.cocob(alpha=0.0), "scale_by_cocob", "alpha"),
    (lambda: gx.cocob(eps=-1.0), "scale_by_cocob", "eps"),
    (lambda: gx.cocob(learning_rate=-1.0), "cocob", "learning_rate"),
    (lambda: gx.momo(b1=1.0), "scale_by_momo", "b1"),
    (lambda: gx.momo(learning_rate=-1.0), "scale_by_momo", "learning_rate"),
    (lambda: gx.momo(adapt_lower_bound=1), "scale_by_momo", "adapt_lower_bound"),
    (lambda: gx.momo_adam(b2=1.0), "scale_by_momo_adam", "b2"),
    (lambda: gx.momo_adam(weight_decay=-1.0), "scale_by_momo_adam", "weight_decay"),
])
def test_bad_hyperparameters_are_named(make, transform, name):
  with pytest.raises((ValueError, TypeError)) as error:
    make()
  assert transform in str(error.value) and name in str(error.value), str(error.value)


def test_state_needs_params():
  p = {"w": jnp.ones(3)}
  with pytest.raises(ValueError, match="scale_by_dog: params are required"):
    gx.dog().init(None)
  for opt, who in [(gx.prodigy(), "scale_by_prodigy"), (gx.dowg(), "scale_by_dowg"), (gx.cocob(), "scale_by_cocob"),
                   (gx.mechanize(gx.sgd(1.0)), "mechanize")]:
    with pytest.raises(ValueError, match=f"{who}: params are required"):
      opt.update(p, opt.init(p))


# ---- jit: hyperparameters are leaves ----

_RETUNE = [
    ("prodigy", lambda v: gx.prodigy(v, b1=0.9 - v, b3=0.9 + v, eps=v, estim_lr0=v, estim_lr_coef=1 + v,
                                     weight_decay=v)),
    ("dadapt_adamw", lambda v: gx.dadapt_adamw(v, b2=0.99 - v, estim_lr0=v, weight_decay=v)),
    ("dog", lambda v: gx.dog(v, init_step=("learning_rate", v), eps=v, weight_decay=v)),
    ("dowg", lambda v: gx.dowg(v, init_estim_sq_dist=v, eps=v, weight_decay=v)),
    ("mechanize", lambda v: gx.mechanize(gx.adam(v), weight_decay=v, eps=v, s_init=v)),
    ("cocob", lambda v: gx.cocob(v, alpha=100 * v, eps=v, weight_decay=v)),
    ("momo", lambda v: gx.momo(v, b1=0.9 - v, lower_bound=-v, weight_decay=v, adapt_lower_bound=True)),
    ("momo_adam", lambda v: gx.momo_adam(v, b1=0.9 - v, b2=0.99 - v, eps=v, lower_bound=-v, weight_decay=v)),
]


@pytest.mark.parametrize("name,make", _RETUNE, ids=[n for n, _ in _RETUNE])
def test_new_hyperparameter_values_do_not_recompile(name, make):
  traces = []

  @jax.jit
  def step(opt, grads, state, params):
    traces.append(1)
    return opt.update(grads, state, params, value=_loss(params))

  params = cast(_params(), jnp.float32)
  state = make(0.01).init(params)
  outs = []
  for value, grads in zip([0.01, 0.02, 0.03], _stream(steps=3, zero_at=-1)):
    updates, state = step(make(value), cast(grads, jnp.float32), state, params)
    outs.append(updates)
  assert len(traces) == 1, name
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(outs))


@pytest.mark.parametrize("make", [gx.prodigy, gx.dog, lambda lr: gx.mechanize(gx.sgd(lr))],
                         ids=["prodigy", "dog", "mechanize"])
def test_vmap_over_learning_rate_equals_separate_runs(make):
  params, stream = cast(_params(), jnp.float32), [cast(g, jnp.float32) for g in _stream(steps=3)]

  def train(lr):
    opt = make(lr)
    p, state = params, opt.init(params)
    for grads in stream:
      updates, state = opt.update(grads, state, p)
      p = gx.apply_updates(p, updates)
    return p

  lrs = jnp.array([0.3, 1.0, 2.0])
  together, alone = jax.jit(jax.vmap(train))(lrs), jax.jit(train)
  for i, lr in enumerate(lrs):
    assert_trees_close(jax.tree.map(lambda x: x[i], together), alone(lr), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [gx.momo, lambda: gx.momo_adam(1.0)], ids=["momo", "momo_adam"])
@pytest.mark.parametrize("problem", ["quadratic", "ravine"])
def test_momo_reaches_the_minimum_with_the_loss_value(make, problem):
  """MoMo needs ``value=``, which the catalogue's convergence test does not pass: its convergence is checked here."""
  from tests.problems import PROBLEMS
  loss, start, minimizer = PROBLEMS[problem]
  opt = make()

  def body(carry, _):
    x, state = carry
    value, grad = jax.value_and_grad(loss)(x)
    updates, state = opt.update(grad, state, x, value=value)
    return (gx.apply_updates(x, updates), state), None

  x = jnp.asarray(start, jnp.float32)
  (x, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, length=1000))((x, opt.init(x)))
  assert np.linalg.norm(np.asarray(x) - minimizer) < 1e-5, (problem, x)
