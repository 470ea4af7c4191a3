"""Catalogue entries for the learning-rate-free methods: DoG, DoWG, Prodigy, D-Adaptation, COCOB.

MoMo needs the loss (``value=``) and Mechanic is a wrapper; both are checked against
optax.contrib in tests/test_lrfree.py instead.
"""

import gradxform as gx
from tests import references as ref
from tests import references_lrfree as rl
from tests.catalogue import Case, _converge

_LR = ref.LearningRate

# Off-default hyperparameters: a large d_0 / r_0 and eps so that the estimates move within 8 steps.
PRIMITIVES = [
    Case("scale_by_dog", lambda: gx.scale_by_dog(("distance", 0.1), eps=1e-3), lambda: rl.Dog("distance", 0.1, 1e-3)),
    Case("scale_by_dog_heuristic", lambda: gx.scale_by_dog(("heuristic", 0.05), eps=1e-3),
         lambda: rl.Dog("heuristic", 0.05, 1e-3)),
    Case("scale_by_dog_learning_rate", lambda: gx.scale_by_dog(("learning_rate", 0.2)),
         lambda: rl.Dog("learning_rate", 0.2, 1e-8)),
    Case("scale_by_dowg", lambda: gx.scale_by_dowg(0.05, eps=1e-3), lambda: rl.Dowg(0.05, 1e-3)),
    Case("scale_by_prodigy", lambda: gx.scale_by_prodigy(0.7, 0.8, 0.9, b3=0.95, eps=1e-3, estim_lr0=1e-2,
                                                         estim_lr_coef=2.0, weight_decay=0.1),
         lambda: ref.Chain(rl.Prodigy(0.7, 0.8, 0.9, 0.95, 1e-3, 1e-2, 2.0, 0.1), ref.Scale(-1.0))),
    Case("scale_by_dadapt_adamw", lambda: gx.scale_by_dadapt_adamw(0.7, 0.8, 0.9, eps=1e-3, estim_lr0=1e-2,
                                                                   weight_decay=0.1),
         lambda: ref.Chain(rl.DadaptAdamw(0.7, 0.8, 0.9, 1e-3, 1e-2, 0.1), ref.Scale(-1.0))),
]

OPTIMIZERS = [
    Case("dog", lambda: gx.dog(0.5, init_step=("distance", 0.1), eps=1e-3, weight_decay=0.1),
         lambda: ref.Chain(ref.DecayedWeights(0.1), rl.Dog("distance", 0.1, 1e-3), _LR(0.5))),
    Case("dowg", lambda: gx.dowg(0.5, init_estim_sq_dist=0.05, eps=1e-3, weight_decay=0.1),
         lambda: ref.Chain(ref.DecayedWeights(0.1), rl.Dowg(0.05, 1e-3), _LR(0.5))),
    Case("prodigy", lambda: gx.prodigy(0.7, b1=0.8, b2=0.9, eps=1e-3, estim_lr0=1e-2, weight_decay=0.1),
         lambda: rl.Prodigy(0.7, 0.8, 0.9, None, 1e-3, 1e-2, 1.0, 0.1)),
    Case("prodigy_safeguard_warmup", lambda: gx.prodigy(0.7, b1=0.8, b2=0.9, estim_lr0=1e-2, safeguard_warmup=True),
         lambda: rl.Prodigy(0.7, 0.8, 0.9, None, 1e-8, 1e-2, 1.0, 0.0, safeguard=True)),
    Case("dadapt_adamw", lambda: gx.dadapt_adamw(0.7, b1=0.8, b2=0.9, eps=1e-3, estim_lr0=1e-2, weight_decay=0.1),
         lambda: rl.DadaptAdamw(0.7, 0.8, 0.9, 1e-3, 1e-2, 0.1)),
    # COCOB keeps running sums (Σg, Σ|g|) in the parameters' dtype, bf16 with bf16 parameters: a coarse bf16 bound.
    # Its step is x_0 + (bet) − x_t, which also undoes the rounding of x_t: with bf16 parameters even a zero
    # gradient gives a nonzero step, so scale_by_cocob alone (no decay) has no catalogue entry; this one covers it.
    Case("cocob", lambda: gx.cocob(0.5, alpha=20.0, eps=1e-3, weight_decay=0.1),
         lambda: ref.Chain(ref.DecayedWeights(0.1), ref.Scale(0.5), rl.Cocob(20.0, 1e-3)), bf16_atol=0.5),
]

# Defaults (the learning rate is a multiplier of the estimated step size: 1.0).
CONVERGE = {
    "dog": _converge(lambda lr: gx.dog(lr), (1.0, 1000, 1e-5), (1.0, 5000, 1e-5)),
    "dowg": _converge(lambda lr: gx.dowg(lr), (1.0, 1000, 1e-5), (1.0, 1000, 1e-5)),
    "prodigy": _converge(lambda lr: gx.prodigy(lr), (1.0, 1000, 1e-5), (1.0, 1000, 1e-5), (1.0, 1000, 2e-3)),
    "dadapt_adamw": _converge(lambda lr: gx.dadapt_adamw(lr), (1.0, 1000, 1e-5), (1.0, 1000, 1e-5)),
    "cocob": _converge(lambda lr: gx.cocob(lr), (1.0, 1000, 1e-5), (1.0, 1000, 1e-5)),
}
