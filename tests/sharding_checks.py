"""Multi-device checks on 8 simulated CPU devices, run by ``tests/test_sharding.py``.

XLA's device count is fixed when JAX starts, so these checks run in their own
process (``python tests/sharding_checks.py``), all in one run; the pytest
module reads the result of each from the last line of the output
(``RESULTS {json}``). Each check runs on a mesh with ``Auto`` axes
(``jax.sharding.Mesh``: sharding propagation by XLA) and with ``Explicit``
axes (``jax.make_mesh``'s default: shardings in the types), and compares the
sharded results with the same computation on one device.
"""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    + ["--xla_force_host_platform_device_count=8"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402


ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gradxform as gx  # noqa: E402
from tests.helpers import compile_counter  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
# float32: a sum split over devices is added in another order; atol is relative to the leaf's largest value
RTOL, ATOL = 1e-5, 1e-6

CHECKS = {}


def check(fn):
  CHECKS[fn.__name__] = fn
  return fn


def meshes(shape, names):
  devices = np.array(jax.devices()).reshape(shape)
  return {"auto": Mesh(devices, names), "explicit": jax.make_mesh(shape, names)}


def single_device(tree):
  """The same values on device 0 only: the reference computation."""
  return jax.tree.map(lambda x: jax.device_put(np.asarray(x), jax.devices()[0]), tree)


def assert_close(actual, expected, what, rtol=RTOL, atol=ATOL):
  flat_a, tree_a = jax.tree.flatten(actual)
  flat_e, tree_e = jax.tree.flatten(expected)
  assert tree_a == tree_e, f"{what}: structures differ"
  assert flat_a, what
  for a, e in zip(flat_a, flat_e):
    e = np.asarray(e)
    scale = max(1.0, float(np.max(np.abs(e)))) if e.size and np.issubdtype(e.dtype, np.floating) else 1.0
    np.testing.assert_allclose(np.asarray(a), e, rtol=rtol, atol=atol * scale, err_msg=what)


def assert_not_gathered(leaf, what):
  """Each device holds only its block of the array (its shard's shape), never the whole."""
  block = leaf.sharding.shard_shape(leaf.shape)
  for shard in leaf.addressable_shards:
    assert shard.data.shape == block, f"{what}: a device holds {shard.data.shape}, expected {block}"


def same(actual, expected, ndim):
  """Equal placement: both NamedShardings on one mesh, specs equal up to trailing ``None``s."""
  return (isinstance(actual, NamedSharding) and isinstance(expected, NamedSharding)
          and actual.mesh == expected.mesh and actual.is_equivalent_to(expected, ndim))


def keystr(path):
  return jax.tree_util.keystr(tuple(path))


# ------------------------------------------------------------------ model-parallel parameters

OPTIMIZERS = {
    "adam": lambda: gx.adam(1e-2),
    "clip+adamw": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-2, weight_decay=0.1)),
    "sgd-nesterov-wd": lambda: gx.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "rmsprop-centered": lambda: gx.rmsprop(1e-2, centered=True, momentum=0.5),
    "adagrad": lambda: gx.adagrad(0.1, initial_accumulator_value=0.1),
    "adadelta": lambda: gx.adadelta(1.0),
    "nadam": lambda: gx.nadam(1e-2),
    "radam": lambda: gx.radam(1e-2),
    "adamax": lambda: gx.adamax(1e-2),
    "lion": lambda: gx.lion(1e-3, weight_decay=0.1),
    "amsgrad": lambda: gx.adam(1e-2, amsgrad=True),
}
# Whole jitted steps: Adam, a global norm, a Nesterov trace, a centered RMS, Lion's sign.
JITTED = ("clip+adamw", "sgd-nesterov-wd", "rmsprop-centered", "lion")


def model_parallel_params(mesh):
  """A two-layer net with parameters split over 'data' (4) and 'model' (2) in several ways."""
  rng = np.random.default_rng(0)
  shapes_specs = {
      "embed": ((32, 16), P("data", None)),
      "w1": ((16, 8), P(None, "model")),
      "b1": ((8,), P("model")),
      "w2": ((8, 6), P("model", None)),
      "b2": ((6,), P()),
      "scale": ((16, 8), P("data", "model")),
  }
  params = {k: jax.device_put(jnp.asarray(rng.normal(size=s) * 0.3, jnp.float32), NamedSharding(mesh, spec))
            for k, (s, spec) in shapes_specs.items()}
  batch = (jax.device_put(jnp.asarray(rng.normal(size=(16, 16)), jnp.float32), NamedSharding(mesh, P("data"))),
           jax.device_put(jnp.asarray(rng.normal(size=(16, 6)), jnp.float32), NamedSharding(mesh, P("data"))))
  return params, batch


def contract_model(h, w):
  """``h @ w`` over the 'model' axis; Explicit axes need to be told the result's sharding."""
  if jax.sharding.AxisType.Explicit in jax.typeof(h).sharding.mesh.axis_types:
    return jnp.matmul(h, w, out_sharding=NamedSharding(jax.typeof(h).sharding.mesh, P("data")))
  return h @ w


def mp_loss(params, batch):
  x, y = batch
  h = jnp.tanh(x @ params["w1"] + params["b1"]) + 0.5 * jnp.tanh(x @ params["scale"])
  out = contract_model(h, params["w2"]) + params["b2"]
  return jnp.mean((out - y) ** 2) + 1e-2 * jnp.mean(params["embed"] ** 2)


def make_step(opt):
  def step(params, state, batch):
    grads = jax.grad(mp_loss)(params, batch)
    updates, state = opt.update(grads, state, params)
    return gx.apply_updates(params, updates), state
  return step


def per_parameter_leaves(state, params, like=None):
  """(path, leaf, param) for each leaf whose path ends with a parameter's key and has its shape.

  ``like`` (a tree of arrays with the structure of ``state``) gives the shapes
  when ``state`` holds shardings.
  """
  out = []
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  shapes = [jnp.shape(x) for x in jax.tree.leaves(like if like is not None else state)]
  for (path, leaf), shape in zip(flat, shapes):
    key = path[-1] if path else None
    if isinstance(key, jax.tree_util.DictKey) and key.key in params and shape == params[key.key].shape:
      out.append((keystr(path), leaf, params[key.key]))
  return out


@check
def init_keeps_parameter_sharding():
  """Eager init on sharded params: every moment has its parameter's NamedSharding, block by block."""
  for mode, mesh in meshes((4, 2), ("data", "model")).items():
    params, _ = model_parallel_params(mesh)
    for name, make in OPTIMIZERS.items():
      opt = make()
      state = opt.init(params)
      leaves = per_parameter_leaves(state, params)
      assert len(leaves) >= len(params), f"{mode}/{name}: only {len(leaves)} per-parameter leaves"
      expected = gx.state_shardings(opt, params)
      for (path, leaf, param), (_, want, _) in zip(leaves, per_parameter_leaves(expected, params, state)):
        assert same(leaf.sharding, param.sharding, param.ndim), f"{mode}/{name} {path}: {leaf.sharding}"
        assert same(want, param.sharding, param.ndim), f"{mode}/{name} {path}: state_shardings gave {want}"
        assert_not_gathered(leaf, f"{mode}/{name} {path}")
      if name not in JITTED:
        continue
      # jit(init) with the derived out_shardings places the state the same way
      jitted = jax.jit(opt.init, out_shardings=expected)(params)
      for (path, leaf, param) in per_parameter_leaves(jitted, params):
        assert same(leaf.sharding, param.sharding, param.ndim), f"{mode}/{name} jit(init) {path}"
      assert_close(jitted, state, f"{mode}/{name} jit(init) values", 0, 0)


@check
def jitted_update_keeps_sharding_and_matches_one_device():
  """jit with no in/out shardings: compiled outputs keep the params' shardings; values = 1 device.

  The optimizers go through one jitted function (one compilation): first the
  update alone, with gradients laid out as the parameters, for every
  optimizer (on the Auto mesh, where XLA's propagation chooses the output
  shardings; with Explicit axes they are part of the types), then a whole
  training step (gradients computed from a batch split over 'data') for a
  few, on both meshes.
  """
  optimizers = {name: make() for name, make in OPTIMIZERS.items()}

  def update_all(params, states, grads):
    out = {}
    for name, opt in optimizers.items():
      updates, state = opt.update(grads, states[name], params)
      out[name] = (gx.apply_updates(params, updates), state)
    return out

  def step_all(params, states, batch):
    out = {}
    for name in JITTED:
      grads = jax.grad(mp_loss)(params[name], batch)
      updates, state = optimizers[name].update(grads, states[name], params[name])
      out[name] = (gx.apply_updates(params[name], updates), state)
    return out

  step_all = jax.jit(step_all)
  expected = None
  for mode, mesh in meshes((4, 2), ("data", "model")).items():
    params, batch = model_parallel_params(mesh)
    states = {name: opt.init(params) for name, opt in optimizers.items()}
    grads = jax.tree.map(lambda p: p * 0.5 + 0.1, params)
    compiled = jax.jit(update_all).lower(params, states, grads).compile() if mode == "auto" else None
    for name, (out_params, out_state) in (compiled.output_shardings.items() if compiled else ()):
      for key, param in params.items():
        assert same(out_params[key], param.sharding, param.ndim), f"{mode}/{name} update: params[{key}]"
      for (path, sharding, param) in per_parameter_leaves(out_state, params, states[name]):
        assert same(sharding, param.sharding, param.ndim), f"{mode}/{name} update: state{path}: {sharding}"
    many = {name: params for name in JITTED}
    states = {name: states[name] for name in JITTED}
    compiled = step_all.lower(many, states, batch).compile()
    for name, (out_params, out_state) in compiled.output_shardings.items():
      for key, param in params.items():
        assert same(out_params[key], param.sharding, param.ndim), f"{mode}/{name} step: params[{key}]"
      for (path, sharding, param) in per_parameter_leaves(out_state, params, states[name]):
        assert same(sharding, param.sharding, param.ndim), f"{mode}/{name} step: state{path}: {sharding}"
    p, s = many, states
    for _ in range(3):
      out = compiled(p, s, batch)
      p, s = {k: v[0] for k, v in out.items()}, {k: v[1] for k, v in out.items()}
    for name in JITTED:
      for (path, leaf, param) in per_parameter_leaves((p[name], s[name]), params):
        assert same(leaf.sharding, param.sharding, param.ndim), f"{mode}/{name} returned {path}"
    if expected is None:  # the same steps on one device
      p1, s1 = single_device((many, states))
      batch1 = single_device(batch)
      for _ in range(3):
        out = step_all(p1, s1, batch1)
        p1, s1 = {k: v[0] for k, v in out.items()}, {k: v[1] for k, v in out.items()}
      expected = (p1, s1)
    for name in JITTED:
      assert_close((p[name], s[name]), (expected[0][name], expected[1][name]),
                   f"{mode}/{name}: sharded vs one device")


# ------------------------------------------------------------------ data parallel and ZeRO-1


def mlp_params():
  rng = np.random.default_rng(1)
  return {"w0": jnp.asarray(rng.normal(size=(64, 64)) / 8, jnp.float32), "b0": jnp.zeros(64, jnp.float32),
          "w1": jnp.asarray(rng.normal(size=(64, 10)) / 8, jnp.float32), "b1": jnp.zeros(10, jnp.float32)}


def mlp_loss(params, x, y):
  logits = jnp.tanh(x @ params["w0"] + params["b0"]) @ params["w1"] + params["b1"]
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def mlp_batches(steps, size=64):
  rng = np.random.default_rng(2)
  return (jnp.asarray(rng.normal(size=(steps, size, 64)), jnp.float32),
          jnp.asarray(rng.integers(0, 10, size=(steps, size)), jnp.int32))


@check
def data_parallel_and_zero1_match_one_device():
  """Replicated params, batch split over 'data'; state replicated (DP) or split over 'data' (ZeRO-1)."""
  opt = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(3e-3, weight_decay=0.1))

  def step(params, state, x, y):
    grads = jax.grad(mlp_loss)(params, x, y)
    updates, state = opt.update(grads, state, params)
    return gx.apply_updates(params, updates), state

  xs, ys = mlp_batches(4)
  p1, s1 = single_device(mlp_params()), opt.init(single_device(mlp_params()))
  for t in range(4):
    p1, s1 = jax.jit(step)(p1, s1, xs[t], ys[t])
  expected_zero = {"w0": P("data", None), "b0": P("data"), "w1": P("data", None), "b1": P()}  # 10 % 8 != 0
  for mode, mesh in meshes((8,), ("data",)).items():
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    params = jax.device_put(mlp_params(), replicated)
    param_shardings = jax.tree.map(lambda p: p.sharding, params)
    for zero in (None, "data"):
      shardings = gx.state_shardings(opt, params, mesh, zero_axis=zero)
      adam = shardings[1][0]
      for key, spec in expected_zero.items():
        want = NamedSharding(mesh, spec if zero else P())
        ndim = params[key].ndim
        assert same(adam.nu[key], want, ndim) and same(adam.numerator.ema[key], want, ndim),\
            f"{mode}/{zero} {key}: {adam.nu[key]}"
      step_fn = jax.jit(step, out_shardings=(param_shardings, shardings))
      p, s = params, jax.jit(opt.init, out_shardings=shardings)(params)
      for t in range(4):
        p, s = step_fn(p, s, jax.device_put(xs[t], split), jax.device_put(ys[t], split))
      for key in params:
        assert same(p[key].sharding, replicated, p[key].ndim), f"{mode}/{zero} params[{key}]: {p[key].sharding}"
        assert same(s[1][0].nu[key].sharding, adam.nu[key], p[key].ndim), f"{mode}/{zero} nu[{key}]"
        assert_not_gathered(s[1][0].nu[key], f"{mode}/{zero} nu[{key}]")
      if zero:
        assert s[1][0].nu["w0"].addressable_shards[0].data.shape == (8, 64)  # 1/8 of the moment per device
      assert_close((p, s), (p1, s1), f"{mode}/zero={zero}: sharded vs one device")


# ------------------------------------------------------------------ populations over devices


def pop_loss(params, batch):
  x, y = batch
  return jnp.mean((jnp.tanh(x @ params["w"] + params["b"]) - y) ** 2)


def pop_data(steps=5):
  rng = np.random.default_rng(3)
  params = {"w": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32), "b": jnp.zeros(4, jnp.float32)}
  batches = (jnp.asarray(rng.normal(size=(steps, 8, 6)), jnp.float32),
             jnp.asarray(rng.normal(size=(steps, 8, 4)), jnp.float32))
  return params, batches


@check
def population_split_over_devices_matches_one_device():
  """16 members on 8 devices (2 each): outputs stay split, equal the 1-device population and separate runs."""
  size = 16
  pop = gx.Population(lambda lr, b1: gx.adam(lr, b1=b1),
                   {"lr": np.logspace(-3, -0.5, size), "b1": np.linspace(0.0, 0.95, size)})
  params0, batches = pop_data()
  stacked_params, stacked_state = pop.init(params0)
  ref_params, ref_state, ref_losses = pop.train(pop_loss)(
      *single_device((pop.hyperparams, stacked_params, stacked_state)), single_device(batches))
  for i in (0, 7, 15):  # and each of these equals its own run
    opt, p = gx.adam(float(pop.hyperparams["lr"][i]), b1=float(pop.hyperparams["b1"][i])), params0
    s = opt.init(p)
    for t in range(batches[0].shape[0]):
      updates, s = opt.update(jax.grad(pop_loss)(p, (batches[0][t], batches[1][t])), s, p)
      p = gx.apply_updates(p, updates)
    assert_close(jax.tree.map(lambda x: x[i], ref_params), p, f"member {i} vs its separate run")
  for mode, mesh in meshes((8,), ("members",)).items():
    sharding = NamedSharding(mesh, P("members"))
    tree = (pop.hyperparams, stacked_params, stacked_state)
    hyperparams, params, state = jax.device_put(tree, gx.member_shardings(tree, mesh, "members"))
    train = pop.train(pop_loss, member_sharding=sharding)
    compiled = train.lower(hyperparams, params, state, batches).compile()
    out_p, out_s, out_l = compiled.output_shardings
    for got, leaf in zip(jax.tree.leaves((out_p, out_s)), jax.tree.leaves((params, state))):
      assert same(got, sharding, leaf.ndim), f"{mode}: {got}"
    assert same(out_l, NamedSharding(mesh, P(None, "members")), 2), f"{mode}: {out_l}"
    p, s, losses = train(hyperparams, params, state, batches)
    for path, leaf in jax.tree_util.tree_flatten_with_path((p, s))[0]:
      assert same(leaf.sharding, sharding, leaf.ndim), f"{mode} {keystr(path)}: {leaf.sharding}"
      assert_not_gathered(leaf, f"{mode} {keystr(path)}")
      assert leaf.addressable_shards[0].data.shape[0] == 2  # two members per device
    assert_close((p, s, losses), (ref_params, ref_state, ref_losses), f"{mode}: split vs one device")
    # Without member_sharding the member-dependent leaves still stay split (no resharding).
    plain = pop.step(pop_loss).lower(hyperparams, params, state, (batches[0][0], batches[1][0])).compile()
    assert all(same(plain.output_shardings[0][k], sharding, params[k].ndim) for k in params0), mode
    # A round of PBT keeps the split and reuses the compiled train.
    events, stop = compile_counter()
    try:
      winners, losers = gx.truncation_selection(losses[-1])
      hyperparams2, p2, s2 = gx.exploit((hyperparams, p, s), winners, losers)
      hyperparams2 = gx.perturb(jax.random.key(0), hyperparams2, losers, names=["lr"])
      events.clear()  # exploit and perturb compiled once
      out = train(hyperparams2, p2, s2, batches)
      assert events == [], f"{mode}: train compiled again after exploit/perturb"
    finally:
      stop()
    for path, leaf in jax.tree_util.tree_flatten_with_path((hyperparams2, p2, s2, out[:2]))[0]:
      assert same(leaf.sharding, sharding, leaf.ndim), f"{mode} after PBT {keystr(path)}: {leaf.sharding}"
    np.testing.assert_array_equal(np.asarray(p2["w"])[losers], np.asarray(p["w"])[winners])


@check
def member_shardings_rejects_indivisible_populations():
  mesh = Mesh(np.array(jax.devices()), ("members",))
  try:
    gx.member_shardings({"lr": jnp.ones(12)}, mesh, "members")
  except ValueError as error:
    assert "['lr'] has shape (12,)" in str(error) and "multiple of 8" in str(error), error
  else:
    raise AssertionError("no error for 12 members on 8 devices")


@check
def multi_device_doc_snippets_run():
  """The Python blocks of the README's populations and multi-device sections run as written, on 8 devices."""
  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  text = readme[readme.index("## Populations and population-based training"):readme.index("## Second order")]
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  assert blocks, "no python blocks"
  namespace = {}
  for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own docs


def main():
  assert len(jax.devices()) == 8, jax.devices()
  names = sys.argv[1:] or list(CHECKS)
  results = {}
  for name in names:
    try:
      CHECKS[name]()
      results[name] = "ok"
      print(f"CHECK {name}: ok", flush=True)
    except Exception:  # noqa: BLE001 - report every check
      results[name] = traceback.format_exc()
      print(f"CHECK {name}: FAILED\n{results[name]}", flush=True)
  print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
  main()
