"""optax's names, signatures, defaults and variants, built from gradxform's transforms.

``from gradxform import optax_like as optax`` turns a search-and-replace port of
optax code into the same numbers: ``optax.adamw(1e-3)`` here decays by 1e-4 as
optax does (``gx.adamw`` follows ``torch.optim.AdamW``: 1e-2), ``rmsprop`` puts
``eps`` inside the root with decay 0.9, ``adagrad`` starts its accumulator at
0.1 with ``eps`` 1e-7 in the root, ``lion`` decays by 1e-3, ``clip_by_global_norm``
has no ``1e-6`` in its denominator. Every function returns an ordinary
gradxform chain (hyperparameters are pytree leaves; states are gradxform's).

This is a second public place for these names on purpose: the default
namespace ``gradxform`` keeps ``torch.optim``'s variants and defaults, and a
port from optax should not silently change the algorithm. Names that exist in
both places with identical numbers (``chain``, ``masked``, ``apply_updates``,
``scale``, ``clip``, ...) are the same objects. ``amsgrad`` takes the max of the
bias-corrected ``v̂`` as optax; ``adam(nesterov=True)`` is optax's; ``nadam``
and ``nadamw`` keep ``b1`` constant (optax's NAdam; ``gx.nadam`` is torch's,
with its momentum-decay schedule); ``radam`` rectifies from ``threshold`` with
``eps`` on ``√v̂`` (optax's rule). Not here yet: ``lbfgs`` (optax's own zoom
search and initial scaling); calling it raises and names ``gx.lbfgs``.

May import: everything in gradxform (it sits above every layer).
"""

from gradxform.optax_like._aliases import adadelta as adadelta
from gradxform.optax_like._aliases import adagrad as adagrad
from gradxform.optax_like._aliases import adam as adam
from gradxform.optax_like._aliases import adamax as adamax
from gradxform.optax_like._aliases import adamw as adamw
from gradxform.optax_like._aliases import add_decayed_weights as add_decayed_weights
from gradxform.optax_like._aliases import amsgrad as amsgrad
from gradxform.optax_like._aliases import clip_by_global_norm as clip_by_global_norm
from gradxform.optax_like._aliases import lbfgs as lbfgs
from gradxform.optax_like._aliases import lion as lion
from gradxform.optax_like._aliases import nadam as nadam
from gradxform.optax_like._aliases import nadamw as nadamw
from gradxform.optax_like._aliases import radam as radam
from gradxform.optax_like._aliases import rmsprop as rmsprop
from gradxform.optax_like._aliases import scale_by_adadelta as scale_by_adadelta
from gradxform.optax_like._aliases import scale_by_adam as scale_by_adam
from gradxform.optax_like._aliases import scale_by_adamax as scale_by_adamax
from gradxform.optax_like._aliases import scale_by_learning_rate as scale_by_learning_rate
from gradxform.optax_like._aliases import scale_by_lion as scale_by_lion
from gradxform.optax_like._aliases import scale_by_radam as scale_by_radam
from gradxform.optax_like._aliases import scale_by_rms as scale_by_rms
from gradxform.optax_like._aliases import scale_by_stddev as scale_by_stddev
from gradxform.optax_like._aliases import sgd as sgd
from gradxform.optax_like._aliases import trace as trace
from gradxform.optax_like._aliases import ema as ema

# the same numbers in both places: the same objects
from gradxform.optax_like._aliases import apply_if_finite as apply_if_finite
from gradxform.optax_like._aliases import apply_updates as apply_updates
from gradxform.optax_like._aliases import chain as chain
from gradxform.optax_like._aliases import clip as clip
from gradxform.optax_like._aliases import identity as identity
from gradxform.optax_like._aliases import masked as masked
from gradxform.optax_like._aliases import scale as scale
from gradxform.optax_like._aliases import scale_by_sign as scale_by_sign
from gradxform.optax_like._aliases import set_to_zero as set_to_zero
from gradxform.optax_like._aliases import schedules as schedules
