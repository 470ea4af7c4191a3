"""Catalogue entries of the Muon family (gradxform/_optimizers/muon.py); references in tests/references_muon.py."""

import gradxform as gx
from tests import references as ref
from tests import references_muon as mref
from tests.catalogue import Case, _converge

_PS = ((3.2, -3.6, 1.3), (3.0, -3.2, 1.2), (2.5, -2.0, 0.8))  # per-step coefficients (off-default)

PRIMITIVES = [
    # the catalogue's tree has a vector "b": scale_by_muon acts on the matrix "w" only
    Case("scale_by_muon", lambda: gx.masked(gx.scale_by_muon(0.8, eps=0.1), {"b": False, "w": True}),
         lambda: mref.SplitByRank(mref.Muon(0.8, eps=0.1), mref.PassThrough()), rtol32=1e-4, atol32=1e-5),
    Case("scale_by_muon_plain_per_step_rms",
         lambda: gx.masked(gx.scale_by_muon(0.7, nesterov=False, ns_coefficients=_PS, adjust_lr="match_rms_adamw",
                                            consistent_rms=0.3), {"b": False, "w": True}),
         lambda: mref.SplitByRank(mref.Muon(0.7, nesterov=False, coefficients=_PS, adjust_lr="match_rms_adamw",
                                            rms=0.3), mref.PassThrough()), rtol32=1e-4, atol32=1e-5),
]

OPTIMIZERS = [
    Case("muon", lambda: gx.muon(0.05, momentum=0.8, weight_decay=0.2, ns_steps=4, adam_learning_rate=0.01,
                                 adam_b1=0.8, adam_b2=0.9, adam_eps=0.3, adam_weight_decay=0.5),
         lambda: mref.SplitByRank(
             ref.Chain(mref.Muon(0.8, coefficients=((3.4445, -4.775, 2.0315),) * 4), ref.DecayedWeights(0.2),
                       ref.LearningRate(0.05)),
             ref.Chain(ref.Adam(0.8, 0.9, 0.3), ref.DecayedWeights(0.5), ref.LearningRate(0.01))),
         rtol32=1e-4, atol32=1e-5),
]

# a quadratic on matrices: Muon's fixed-size steps need a decaying learning rate to settle
CONVERGE = {}
