"""One catalogue of transforms under test, each with its reference and tolerances.

Every test that runs "for every primitive and optimizer" is parametrized over
``CASES``. An entry carries what is special about it (tolerances, whether it
needs params, a torch.optim counterpart, settings for the convergence tests),
so no test body lists names.
"""

import dataclasses
import importlib
import pathlib
import pkgutil
from typing import Any, Callable, Optional

import numpy as np

import gradxform as gx
from tests import references as ref


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  make: Callable[[], Any]              # () -> gx transform
  reference: Callable[[], Any]         # () -> references.* object
  rtol32: float = 2e-5                 # float32 run vs float64 reference
  atol32: float = 1e-6
  torch: Optional[Callable] = None     # (torch, params) -> torch.optim optimizer
  converge: Optional[dict] = None      # problem -> (() -> gx optimizer, steps, tolerance)
  bf16_atol: float = 0.05              # bfloat16 run vs float32 run, relative to the step size

  def __str__(self):
    return self.id


def _torch(cls, **kw):
  return lambda torch, params: getattr(torch.optim, cls)(params, **kw)


# Large eps (0.3) and non-default decays make every term of a rule visible.
PRIMITIVES = [
    Case("scale", lambda: gx.scale(-0.7), lambda: ref.Scale(-0.7)),
    Case("scale_by_learning_rate", lambda: gx.scale_by_learning_rate(0.3), lambda: ref.LearningRate(0.3)),
    Case("scale_by_schedule", lambda: gx.scale_by_schedule(lambda c: 1.0 / (1.0 + c.astype(float))),
         lambda: ref.LearningRate(lambda c: -1.0 / (1.0 + c))),
    Case("scale_by_sign", gx.scale_by_sign, ref.Sign, atol32=0.0),
    Case("clip", lambda: gx.clip(0.5), lambda: ref.Clip(0.5)),
    Case("clip_by_global_norm", lambda: gx.clip_by_global_norm(1.5), lambda: ref.ClipByGlobalNorm(1.5)),
    Case("add_decayed_weights", lambda: gx.add_decayed_weights(0.3), lambda: ref.DecayedWeights(0.3)),
    Case("add_decayed_weights_mask", lambda: gx.add_decayed_weights(0.3, mask={"b": False, "w": True}),
         lambda: ref.DecayedWeights(0.3, mask=[False, True])),
    Case("trace", lambda: gx.trace(0.8), lambda: ref.Momentum(0.8)),
    Case("trace_nesterov", lambda: gx.trace(0.8, nesterov=True), lambda: ref.Momentum(0.8, nesterov=True)),
    Case("ema", lambda: gx.ema(0.7), lambda: ref.Ema(0.7)),
    Case("ema_biased", lambda: gx.ema(0.7, debias=False), lambda: ref.Ema(0.7, debias=False)),
    Case("scale_by_rms", lambda: gx.scale_by_rms(0.9, eps=0.3), lambda: ref.RMSProp(0.9, 0.3)),
    Case("scale_by_rms_centered", lambda: gx.scale_by_rms(0.9, eps=0.3, eps_root=0.1, centered=True),
         lambda: ref.RMSProp(0.9, 0.3, centered=True, eps_root=0.1)),
    Case("scale_by_adagrad", lambda: gx.scale_by_adagrad(0.2, eps=0.3, eps_root=0.1),
         lambda: ref.Adagrad(0.2, 0.3, eps_root=0.1)),
    Case("scale_by_adadelta", lambda: gx.scale_by_adadelta(0.8, eps=0.1), lambda: ref.Adadelta(0.8, 0.1)),
    Case("scale_by_adam", lambda: gx.scale_by_adam(0.8, 0.9, eps=0.3, eps_root=0.1),
         lambda: ref.Adam(0.8, 0.9, 0.3, eps_root=0.1)),
    Case("scale_by_adam_amsgrad", lambda: gx.scale_by_adam(0.8, 0.9, eps=0.3, amsgrad=True),
         lambda: ref.Adam(0.8, 0.9, 0.3, amsgrad=True)),
    Case("scale_by_adamax", lambda: gx.scale_by_adamax(0.8, 0.9, eps=0.3), lambda: ref.Adamax(0.8, 0.9, 0.3)),
    Case("scale_by_nadam", lambda: gx.scale_by_nadam(0.8, 0.9, eps=0.3, momentum_decay=0.1),
         lambda: ref.NAdam(0.8, 0.9, 0.3, 0.1)),
    Case("scale_by_radam", lambda: gx.scale_by_radam(0.8, 0.9, eps=0.3), lambda: ref.RAdam(0.8, 0.9, 0.3)),
    Case("scale_by_lion", lambda: gx.scale_by_lion(0.8, 0.9), lambda: ref.Lion(0.8, 0.9), atol32=0.0),
]

_LR = ref.LearningRate
OPTIMIZERS = [
    Case("sgd", lambda: gx.sgd(0.1), lambda: _LR(0.1), torch=_torch("SGD", lr=0.1)),
    Case("sgd_momentum", lambda: gx.sgd(0.1, momentum=0.8, weight_decay=0.05),
         lambda: ref.Chain(ref.DecayedWeights(0.05), ref.Momentum(0.8), _LR(0.1)),
         torch=_torch("SGD", lr=0.1, momentum=0.8, weight_decay=0.05)),
    Case("sgd_nesterov", lambda: gx.sgd(0.1, momentum=0.8, nesterov=True),
         lambda: ref.Chain(ref.Momentum(0.8, nesterov=True), _LR(0.1)),
         torch=_torch("SGD", lr=0.1, momentum=0.8, nesterov=True)),
    Case("adagrad", lambda: gx.adagrad(0.1, initial_accumulator_value=0.2, eps=0.3),
         lambda: ref.Chain(ref.Adagrad(0.2, 0.3), _LR(0.1)),
         torch=_torch("Adagrad", lr=0.1, initial_accumulator_value=0.2, eps=0.3)),
    Case("adadelta", lambda: gx.adadelta(1.0, rho=0.8, eps=0.1), lambda: ref.Chain(ref.Adadelta(0.8, 0.1), _LR(1.0)),
         torch=_torch("Adadelta", lr=1.0, rho=0.8, eps=0.1)),
    Case("rmsprop", lambda: gx.rmsprop(0.05, decay=0.9, eps=0.3), lambda: ref.Chain(ref.RMSProp(0.9, 0.3), _LR(0.05)),
         torch=_torch("RMSprop", lr=0.05, alpha=0.9, eps=0.3)),
    Case("rmsprop_centered_momentum", lambda: gx.rmsprop(0.05, decay=0.9, eps=0.3, centered=True, momentum=0.5),
         lambda: ref.Chain(ref.RMSProp(0.9, 0.3, centered=True), ref.Momentum(0.5), _LR(0.05)),
         torch=_torch("RMSprop", lr=0.05, alpha=0.9, eps=0.3, centered=True, momentum=0.5)),
    Case("adam", lambda: gx.adam(0.05, b1=0.8, b2=0.9, eps=0.3), lambda: ref.Chain(ref.Adam(0.8, 0.9, 0.3), _LR(0.05)),
         torch=_torch("Adam", lr=0.05, betas=(0.8, 0.9), eps=0.3)),
    Case("adam_amsgrad", lambda: gx.adam(0.05, b1=0.8, b2=0.9, eps=0.3, amsgrad=True),
         lambda: ref.Chain(ref.Adam(0.8, 0.9, 0.3, amsgrad=True), _LR(0.05)),
         torch=_torch("Adam", lr=0.05, betas=(0.8, 0.9), eps=0.3, amsgrad=True)),
    Case("adamw", lambda: gx.adamw(0.05, b1=0.8, b2=0.9, eps=0.3, weight_decay=0.5),
         lambda: ref.Chain(ref.Adam(0.8, 0.9, 0.3), ref.DecayedWeights(0.5), _LR(0.05)),
         torch=_torch("AdamW", lr=0.05, betas=(0.8, 0.9), eps=0.3, weight_decay=0.5)),
    Case("nadam", lambda: gx.nadam(0.05, b1=0.8, b2=0.9, eps=0.3, momentum_decay=0.1),
         lambda: ref.Chain(ref.NAdam(0.8, 0.9, 0.3, 0.1), _LR(0.05)),
         torch=_torch("NAdam", lr=0.05, betas=(0.8, 0.9), eps=0.3, momentum_decay=0.1)),
    Case("radam", lambda: gx.radam(0.05, b1=0.8, b2=0.9, eps=0.3), lambda: ref.Chain(ref.RAdam(0.8, 0.9, 0.3), _LR(0.05)),
         torch=_torch("RAdam", lr=0.05, betas=(0.8, 0.9), eps=0.3)),
    Case("radam_defaults", lambda: gx.radam(0.05), lambda: ref.Chain(ref.RAdam(0.9, 0.999, 1e-8), _LR(0.05)),
         torch=_torch("RAdam", lr=0.05)),
    Case("adamax", lambda: gx.adamax(0.05, b1=0.8, b2=0.9, eps=0.3), lambda: ref.Chain(ref.Adamax(0.8, 0.9, 0.3), _LR(0.05)),
         torch=_torch("Adamax", lr=0.05, betas=(0.8, 0.9), eps=0.3)),
    Case("lion", lambda: gx.lion(0.05, b1=0.8, b2=0.9, weight_decay=0.1),
         lambda: ref.Chain(ref.Lion(0.8, 0.9), ref.DecayedWeights(0.1), _LR(0.05))),
]



def _converge(make, quadratic, ravine, rosenbrock=None):
  """Settings per problem: (learning rate, steps, distance to the minimizer allowed)."""
  settings = {"quadratic": quadratic, "ravine": ravine, "rosenbrock": rosenbrock}
  return {problem: ((lambda lr=lr: make(lr)), steps, tol)
          for problem, (lr, steps, tol) in ((p, s) for p, s in settings.items() if s)}


# Optimizers with the hyperparameters a user would pick (defaults), tuned learning rates.
_CONVERGE = {
    "sgd": _converge(gx.sgd, (0.5, 200, 1e-5), (0.01, 2000, 1e-5), (1e-3, 20000, 2e-3)),
    "sgd_nesterov": _converge(lambda lr: gx.sgd(lr, momentum=0.9, nesterov=True),
                              (0.5, 500, 1e-5), (0.01, 500, 1e-5), (1e-3, 4000, 1e-3)),
    "sgd_momentum": _converge(lambda lr: gx.sgd(lr, momentum=0.9),
                              (0.5, 500, 1e-5), (0.02, 500, 1e-5), (1e-3, 4000, 1e-3)),
    "adagrad": _converge(gx.adagrad, (1.0, 500, 1e-4), (1.0, 500, 1e-4), (0.5, 20000, 1e-3)),
    # with torch's defaults Adadelta keeps oscillating across the ravine's floor (~0.03): a larger eps damps it
    "adadelta": {**_converge(gx.adadelta, (1.0, 1000, 1e-3), None, (0.02, 20000, 1e-2)),
                 **_converge(lambda lr: gx.adadelta(lr, rho=0.95, eps=1e-4), None, (1.0, 1000, 1e-3))},
    "rmsprop": _converge(gx.rmsprop, (0.01, 1000, 2e-2), (0.01, 1000, 2e-2), (1e-3, 20000, 5e-3)),
    "adam": _converge(gx.adam, (0.1, 1000, 1e-3), (0.1, 1000, 1e-3), (0.05, 5000, 1e-3)),
    "adam_amsgrad": _converge(lambda lr: gx.adam(lr, amsgrad=True), (0.1, 1000, 1e-3), (0.1, 1000, 1e-3),
                              (0.05, 5000, 1e-3)),
    # decoupled weight decay pulls towards 0: only the ravine keeps its minimizer (the origin)
    "adamw": {"ravine": _converge(gx.adamw, None, (0.1, 1000, 1e-3))["ravine"]},
    "nadam": _converge(gx.nadam, (0.1, 1000, 1e-3), (0.1, 1000, 1e-3), (3e-3, 20000, 2e-3)),
    "radam": _converge(gx.radam, (0.1, 1000, 1e-3), (0.05, 2000, 1e-3), (3e-3, 20000, 1e-3)),
    "adamax": _converge(gx.adamax, (0.1, 1000, 1e-3), (0.1, 1000, 1e-3), (0.05, 10000, 1e-3)),
    "lion": {"ravine": _converge(gx.lion, None, (0.1, 1000, 1e-3))["ravine"],
             **_converge(gx.lion, (0.1, 1000, 1e-3), None, (1e-3, 20000, 5e-3))},
}

# Each optimizer family's own entries live in tests/catalogue_<family>.py (PRIMITIVES, OPTIMIZERS and
# CONVERGE lists/dicts of the same shape as above); they join the one catalogue here.
for _info in sorted(pkgutil.iter_modules([str(pathlib.Path(__file__).parent)]), key=lambda i: i.name):
  if _info.name.startswith("catalogue_"):
    _module = importlib.import_module(f"tests.{_info.name}")
    PRIMITIVES += getattr(_module, "PRIMITIVES", [])
    OPTIMIZERS += getattr(_module, "OPTIMIZERS", [])
    _CONVERGE.update(getattr(_module, "CONVERGE", {}))

CASES = PRIMITIVES + OPTIMIZERS
CONVERGENCE = [(name, problem, setting) for name, settings in _CONVERGE.items()
               for problem, setting in settings.items()]


def gradient_stream(steps=8, seed=0):
  """Gradients for two leaves; step 3 is all zeros, magnitudes vary over steps."""
  rng = np.random.default_rng(seed)
  stream = []
  for t in range(steps):
    scale = 0.0 if t == 3 else float(10.0 ** rng.uniform(-1, 1))
    stream.append({"b": scale * rng.normal(size=(5,)), "w": scale * rng.normal(size=(3, 4))})
  return stream


def initial_params(seed=1):
  rng = np.random.default_rng(seed)
  return {"b": rng.normal(size=(5,)), "w": rng.normal(size=(3, 4))}
