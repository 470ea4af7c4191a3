"""Schedules: a hyperparameter as a function of the step count.

A schedule is a :class:`Schedule` (a pytree module) called as ``schedule(count)``
with ``count`` the number of updates applied so far (0 at the first update, as
in optax). Any hyperparameter of a transform can be one:
``gx.sgd(gx.schedules.cosine_decay(0.1, 1000))``; the transform's state then
records the value used at the last update in ``hyperparams``.

Numeric arguments (initial, peak and end values, rates, exponents, scales, the
schedules joined by :func:`join`) are pytree leaves, so a schedule crosses
``jax.jit`` without recompiling when a value changes, ``jax.vmap``-s over
stacked values and is differentiable with respect to them. Step counts,
boundaries and string options are static. The result is a scalar floating
array whose dtype follows the numeric arguments (Python numbers give jax's
default float: float32 unless x64 is enabled).
"""

from gradxform.schedules._base import Schedule as Schedule
from gradxform.schedules._decay import constant as constant
from gradxform.schedules._decay import exponential_decay as exponential_decay
from gradxform.schedules._decay import linear as linear
from gradxform.schedules._decay import piecewise_constant as piecewise_constant
from gradxform.schedules._decay import polynomial as polynomial
from gradxform.schedules._cosine import cosine_decay as cosine_decay
from gradxform.schedules._cosine import one_cycle as one_cycle
from gradxform.schedules._cosine import one_cycle_momentum as one_cycle_momentum
from gradxform.schedules._cosine import warmup_cosine_decay as warmup_cosine_decay
from gradxform.schedules._cosine import warmup_stable_decay as warmup_stable_decay
from gradxform.schedules._join import join as join
from gradxform.schedules._cyclic import cosine_warm_restarts as cosine_warm_restarts
from gradxform.schedules._cyclic import cyclic as cyclic
from gradxform.schedules._cyclic import sgdr as sgdr
from gradxform.schedules._piecewise import cosine_onecycle as cosine_onecycle
from gradxform.schedules._piecewise import inverse_sqrt as inverse_sqrt
from gradxform.schedules._stepwise import lambda_schedule as lambda_schedule
from gradxform.schedules._piecewise import linear_onecycle as linear_onecycle
from gradxform.schedules._stepwise import multiplicative as multiplicative
from gradxform.schedules._stepwise import multistep_decay as multistep_decay
from gradxform.schedules._piecewise import piecewise_interpolate as piecewise_interpolate
from gradxform.schedules._stepwise import step_decay as step_decay
from gradxform.schedules._piecewise import swa_lr as swa_lr
from gradxform.schedules._piecewise import warmup_constant as warmup_constant
from gradxform.schedules._piecewise import warmup_exponential_decay as warmup_exponential_decay
