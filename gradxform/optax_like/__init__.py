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
both places with identical numbers (``chain``, ``apply_updates``,
``scale``, ``clip``, ...) are the same objects. ``amsgrad`` takes the max of the
bias-corrected ``v̂`` as optax; ``adam(nesterov=True)`` is optax's; ``nadam``
and ``nadamw`` keep ``b1`` constant (optax's NAdam; ``gx.nadam`` is torch's,
with its momentum-decay schedule); ``radam`` rectifies from ``threshold`` with
``eps`` on ``√v̂`` (optax's rule). ``lbfgs``, ``scale_by_zoom_linesearch`` and
``scale_by_backtracking_linesearch`` are optax's: every pair kept in the memory,
the first step capped at length 1, searches that scale the update by ``η``
without negating it, and states with ``learning_rate``, ``value``, ``grad`` and
``info`` (so ``optax.value_and_grad_from_state`` works); ``gx.lbfgs`` and gx's
line searches are torch's and Nocedal & Wright's variants.

Also optax's: ``polyak_sgd`` does not clip ``f − f*`` at 0 (optax's
``variant="sps"``); ``trace``/``sgd`` build the update from the buffer before
rounding it to ``accumulator_dtype``; ``adafactor`` is optax's chain
(``gx.adafactor`` is torch's); ``centralize`` and ``adaptive_grad_clip`` use
optax's units; ``lookahead`` works on optax's ``LookaheadParams(fast, slow)``;
``inject_hyperparams`` holds the factory's numeric arguments in
``state.hyperparams`` (a write takes effect at the next update; floats are kept
in float32 or wider); ``MultiSteps`` is optax's class around
:func:`gradxform.accumulate`; optax's schedule names (``linear_schedule``,
``warmup_cosine_decay_schedule``, ...) are gradxform's schedules (also under
``optax_like.schedules``); ``optax_like.contrib`` holds ``optax.contrib``'s
names. ``key=`` arguments (``add_noise``, ``noisy_sgd``) take an integer or a concrete key.
States are gradxform's, except that Adam's and AMSGrad's moments carry optax's
names (``state[0].mu``, ``.nu``, ``.nu_max``).

Differences kept on purpose: ``rprop`` is torch's (optax 0.2.8 applies each
step's update one step late, optax issue #1725); ``monitor`` is gradxform's;
complex moments (``mu_dtype=jnp.complex64``) are refused, and complex
parameters follow torch's per-component convention where optax uses ``|g|²``.

May import: everything in gradxform (it sits above every layer).
"""

from gradxform.optax_like import contrib as contrib
from gradxform.optax_like import schedules as schedules
from gradxform.optax_like._aliases import adadelta as adadelta
from gradxform.optax_like._aliases import adafactor as adafactor
from gradxform.optax_like._aliases import adagrad as adagrad
from gradxform.optax_like._aliases import adam as adam
from gradxform.optax_like._aliases import adamax as adamax
from gradxform.optax_like._aliases import adamw as adamw
from gradxform.optax_like._aliases import add_decayed_weights as add_decayed_weights
from gradxform.optax_like._aliases import amsgrad as amsgrad
from gradxform.optax_like._aliases import clip_by_global_norm as clip_by_global_norm
from gradxform.optax_like._aliases import ema as ema
from gradxform.optax_like._aliases import lbfgs as lbfgs
from gradxform.optax_like._aliases import lion as lion
from gradxform.optax_like._aliases import masked as masked
from gradxform.optax_like._aliases import nadam as nadam
from gradxform.optax_like._aliases import nadamw as nadamw
from gradxform.optax_like._aliases import noisy_sgd as noisy_sgd
from gradxform.optax_like._aliases import optimistic_adam as optimistic_adam
from gradxform.optax_like._aliases import polyak_sgd as polyak_sgd
from gradxform.optax_like._aliases import radam as radam
from gradxform.optax_like._aliases import rmsprop as rmsprop
from gradxform.optax_like._aliases import scale_by_adadelta as scale_by_adadelta
from gradxform.optax_like._aliases import scale_by_adam as scale_by_adam
from gradxform.optax_like._aliases import scale_by_adamax as scale_by_adamax
from gradxform.optax_like._lbfgs import scale_by_lbfgs as scale_by_lbfgs
from gradxform.optax_like._linesearch import scale_by_backtracking_linesearch as scale_by_backtracking_linesearch
from gradxform.optax_like._aliases import scale_by_learning_rate as scale_by_learning_rate
from gradxform.optax_like._aliases import scale_by_lion as scale_by_lion
from gradxform.optax_like._aliases import scale_by_radam as scale_by_radam
from gradxform.optax_like._aliases import scale_by_rms as scale_by_rms
from gradxform.optax_like._aliases import scale_by_stddev as scale_by_stddev
from gradxform.optax_like._zoom import scale_by_zoom_linesearch as scale_by_zoom_linesearch
from gradxform.optax_like._aliases import sgd as sgd
from gradxform.optax_like._aliases import signum as signum
from gradxform.optax_like._aliases import trace as trace
from gradxform.optax_like._inject import InjectHyperparamsState as InjectHyperparamsState
from gradxform.optax_like._inject import inject_hyperparams as inject_hyperparams
from gradxform.optax_like._states import ScaleByAdamState as ScaleByAdamState
from gradxform.optax_like._states import ScaleByAmsgradState as ScaleByAmsgradState
from gradxform.optax_like._transforms import LookaheadParams as LookaheadParams
from gradxform.optax_like._transforms import LookaheadState as LookaheadState
from gradxform.optax_like._transforms import MultiSteps as MultiSteps
from gradxform.optax_like._transforms import adaptive_grad_clip as adaptive_grad_clip
from gradxform.optax_like._transforms import add_noise as add_noise
from gradxform.optax_like._transforms import centralize as centralize
from gradxform.optax_like._transforms import lookahead as lookahead
from gradxform.optax_like._transforms import multi_transform as multi_transform
from gradxform.optax_like._transforms import partition as partition
from gradxform.optax_like._transforms import scale_by_amsgrad as scale_by_amsgrad
from gradxform.optax_like._transforms import scale_by_factored_rms as scale_by_factored_rms
from gradxform.optax_like._transforms import scale_by_polyak as scale_by_polyak
from gradxform.optax_like._transforms import scale_by_rss as scale_by_rss
from gradxform.optax_like._transforms import stateless as stateless
from gradxform.optax_like.schedules import constant_schedule as constant_schedule
from gradxform.optax_like.schedules import cosine_decay_schedule as cosine_decay_schedule
from gradxform.optax_like.schedules import cosine_onecycle_schedule as cosine_onecycle_schedule
from gradxform.optax_like.schedules import exponential_decay as exponential_decay
from gradxform.optax_like.schedules import join_schedules as join_schedules
from gradxform.optax_like.schedules import linear_onecycle_schedule as linear_onecycle_schedule
from gradxform.optax_like.schedules import linear_schedule as linear_schedule
from gradxform.optax_like.schedules import piecewise_constant_schedule as piecewise_constant_schedule
from gradxform.optax_like.schedules import piecewise_interpolate_schedule as piecewise_interpolate_schedule
from gradxform.optax_like.schedules import polynomial_schedule as polynomial_schedule
from gradxform.optax_like.schedules import sgdr_schedule as sgdr_schedule
from gradxform.optax_like.schedules import warmup_constant_schedule as warmup_constant_schedule
from gradxform.optax_like.schedules import warmup_cosine_decay_schedule as warmup_cosine_decay_schedule
from gradxform.optax_like.schedules import warmup_exponential_decay_schedule as warmup_exponential_decay_schedule

# the same numbers and signatures in both places: the same objects
from gradxform.optax_like._shared import GradientTransformation as GradientTransformation
from gradxform.optax_like._shared import EmptyState as EmptyState
from gradxform.optax_like._shared import adabelief as adabelief
from gradxform.optax_like._shared import adamaxw as adamaxw
from gradxform.optax_like._shared import adan as adan
from gradxform.optax_like._shared import apply_if_finite as apply_if_finite
from gradxform.optax_like._shared import apply_updates as apply_updates
from gradxform.optax_like._shared import chain as chain
from gradxform.optax_like._shared import clip as clip
from gradxform.optax_like._shared import clip_by_block_rms as clip_by_block_rms
from gradxform.optax_like._shared import freeze as freeze
from gradxform.optax_like._shared import fromage as fromage
from gradxform.optax_like._shared import identity as identity
from gradxform.optax_like._shared import lamb as lamb
from gradxform.optax_like._shared import lars as lars
from gradxform.optax_like._shared import normalize_by_update_norm as normalize_by_update_norm
from gradxform.optax_like._shared import novograd as novograd
from gradxform.optax_like._shared import optimistic_adam_v2 as optimistic_adam_v2
from gradxform.optax_like._shared import optimistic_gradient_descent as optimistic_gradient_descent
from gradxform.optax_like._shared import per_example_global_norm_clip as per_example_global_norm_clip
from gradxform.optax_like._shared import per_example_layer_norm_clip as per_example_layer_norm_clip
from gradxform.optax_like._shared import rprop as rprop
from gradxform.optax_like._shared import scale as scale
from gradxform.optax_like._shared import scale_by_adan as scale_by_adan
from gradxform.optax_like._shared import scale_by_belief as scale_by_belief
from gradxform.optax_like._shared import scale_by_distance_over_gradients as scale_by_distance_over_gradients
from gradxform.optax_like._shared import scale_by_novograd as scale_by_novograd
from gradxform.optax_like._shared import scale_by_optimistic_gradient as scale_by_optimistic_gradient
from gradxform.optax_like._shared import scale_by_param_block_norm as scale_by_param_block_norm
from gradxform.optax_like._shared import scale_by_param_block_rms as scale_by_param_block_rms
from gradxform.optax_like._shared import scale_by_rprop as scale_by_rprop
from gradxform.optax_like._shared import scale_by_schedule as scale_by_schedule
from gradxform.optax_like._shared import scale_by_sign as scale_by_sign
from gradxform.optax_like._shared import scale_by_sm3 as scale_by_sm3
from gradxform.optax_like._shared import scale_by_trust_ratio as scale_by_trust_ratio
from gradxform.optax_like._shared import scale_by_yogi as scale_by_yogi
from gradxform.optax_like._shared import set_to_zero as set_to_zero
from gradxform.optax_like._shared import sign_sgd as sign_sgd
from gradxform.optax_like._shared import skip_large_updates as skip_large_updates
from gradxform.optax_like._shared import skip_not_finite as skip_not_finite
from gradxform.optax_like._shared import sm3 as sm3
from gradxform.optax_like._shared import yogi as yogi
from gradxform.optax_like._shared import zero_nans as zero_nans
