"""Adafactor's catalogue entries: its primitives, torch's rule and optax's variant (params {"b": (5,), "w": (3, 4)})."""

import gradxform as gx
from tests import references_adafactor as ref
from tests.catalogue import Case, _converge, _torch

PRIMITIVES = [
    Case("scale_by_factored_rms", lambda: gx.scale_by_factored_rms(-0.6, eps=0.3),
         lambda: ref.FactoredRms(-0.6, 0.3)),
    Case("scale_by_factored_rms_optax", lambda: gx.scale_by_factored_rms(
        -0.7, eps=0.0, eps_root=0.1, factor_axes="largest", min_dim_size_to_factor=3),
         lambda: ref.FactoredRms(-0.7, 0.0, eps_root=0.1, rule="largest", min_dim=3)),
    Case("scale_by_param_block_rms", lambda: gx.scale_by_param_block_rms(0.9), lambda: ref.ParamBlockRms(0.9)),
    Case("scale_by_relative_step", lambda: gx.scale_by_relative_step(0.6), lambda: ref.RelativeStep(0.6)),
]

OPTIMIZERS = [
    Case("adafactor", lambda: gx.adafactor(0.3, beta2_decay=-0.6, eps=(1e-3, 0.5), d=1.2, weight_decay=0.1),
         lambda: ref.TorchAdafactor(0.3, -0.6, 1e-3, 0.5, 1.2, 0.1),
         torch=_torch("Adafactor", lr=0.3, beta2_decay=-0.6, eps=(1e-3, 0.5), d=1.2, weight_decay=0.1)),
    Case("adafactor_defaults_maximize", lambda: gx.adafactor(maximize=True),
         lambda: ref.TorchAdafactor(maximize=True), torch=_torch("Adafactor", maximize=True)),
    Case("adafactor_optax", lambda: gx.adafactor(
        0.05, beta2_decay=-0.7, eps=(0.0, 1e-3), d=0.8, weight_decay=0.01, relative_step=False, momentum=0.6,
        factor_axes="largest", min_dim_size_to_factor=3, eps_root=1e-20),
         lambda: ref.OptaxAdafactor(0.05, 0.7, min_dim=3, eps=1e-20, clip=0.8, momentum=0.6, weight_decay=0.01)),
]

# the relative step min(lr, 1/sqrt(t)) decays, so Rosenbrock's curved valley takes long
CONVERGE = {
    "adafactor": _converge(gx.adafactor, (0.1, 1000, 1e-3), (0.1, 5000, 1e-3), (1.0, 20000, 2e-2)),
}
