"""Catalogue entries for SAM (the default, alternating mode) and its normalize; references in references_sam.py."""

import gradxform as gx
from tests import references as ref
from tests import references_sam as rs
from tests.catalogue import Case

_LR = ref.LearningRate

PRIMITIVES = [
    Case("sam_normalize", gx.normalize, rs.Normalize),
]

# The gradient stream's step 3 is all zeros: a descent step with sync_period=2, an ascent step with 3.
OPTIMIZERS = [
    Case("sam_paper", lambda: gx.sam(gx.sgd(0.1, momentum=0.8), gx.chain(gx.normalize(), gx.sgd(0.3))),
         lambda: rs.Sam(ref.Chain(ref.Momentum(0.8), _LR(0.1)), lambda: ref.Chain(rs.Normalize(), _LR(0.3)), 2),
         bf16_atol=0.5),
    # reset_state=False is compared with optax in tests/test_sam.py (a donated step copies the adversary's
    # state then: the descent branch passes it through)
    Case("sam_adam_sync3",
         lambda: gx.sam(gx.adam(0.05, b1=0.8, b2=0.9, eps=0.3), gx.sgd(0.2, momentum=0.5), sync_period=3),
         lambda: rs.Sam(ref.Chain(ref.Adam(0.8, 0.9, 0.3), _LR(0.05)),
                        lambda: ref.Chain(ref.Momentum(0.5), _LR(0.2)), 3),
         bf16_atol=0.5),
]
