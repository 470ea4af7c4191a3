"""gradxform: functional optimizer transforms for JAX.

An optimizer is a pure ``(init, update)`` pair and a pytree whose numeric
hyperparameters are leaves: it composes with :func:`chain`, crosses ``jax.jit``
without recompiling when a learning rate changes, and ``jax.vmap``-s over
populations of settings. Defaults reproduce ``torch.optim``'s update rules.
"""

from importlib import metadata as _metadata

from gradxform import schedules as schedules

# _core/: the protocol and its helpers
from gradxform._core.base import apply_updates as apply_updates
from gradxform._core.base import EmptyState as EmptyState
from gradxform._core.base import GradientTransformation as GradientTransformation
from gradxform._core.base import identity as identity
from gradxform._core.base import stateless as stateless
from gradxform._core.chain import chain as chain
from gradxform._core.inspect import hyperparams as hyperparams
from gradxform._core.inspect import tree_get as tree_get
from gradxform._core.inspect import tree_set as tree_set
from gradxform._core.module import static_field as static_field

# _transforms/: primitive transforms
from gradxform._transforms.accumulators import ema as ema
from gradxform._transforms.accumulators import EmaState as EmaState
from gradxform._transforms.accumulators import trace as trace
from gradxform._transforms.accumulators import TraceState as TraceState
from gradxform._transforms.clipping import adaptive_grad_clip as adaptive_grad_clip
from gradxform._transforms.clipping import clip as clip
from gradxform._transforms.clipping import clip_by_block_rms as clip_by_block_rms
from gradxform._transforms.clipping import clip_by_global_norm as clip_by_global_norm
from gradxform._transforms.clipping import ClipState as ClipState
from gradxform._transforms.decay import add_decayed_weights as add_decayed_weights
from gradxform._transforms.decay import AddDecayedWeightsState as AddDecayedWeightsState
from gradxform._transforms.groups import freeze as freeze
from gradxform._transforms.groups import masked as masked
from gradxform._transforms.groups import MaskedState as MaskedState
from gradxform._transforms.groups import partition as partition
from gradxform._transforms.groups import PartitionState as PartitionState
from gradxform._transforms.groups import set_to_zero as set_to_zero
from gradxform._transforms.hygiene import add_noise as add_noise
from gradxform._transforms.hygiene import AddNoiseState as AddNoiseState
from gradxform._transforms.hygiene import centralize as centralize
from gradxform._transforms.hygiene import zero_nans as zero_nans
from gradxform._transforms.hygiene import ZeroNansState as ZeroNansState
from gradxform._transforms.scaling import scale as scale
from gradxform._transforms.scaling import scale_by_learning_rate as scale_by_learning_rate
from gradxform._transforms.scaling import scale_by_schedule as scale_by_schedule
from gradxform._transforms.scaling import scale_by_sign as scale_by_sign
from gradxform._transforms.scaling import ScaleState as ScaleState

# _optimizers/: named optimizers, one file per family (with their scale_by_* primitives)
from gradxform._optimizers.adadelta import adadelta
from gradxform._optimizers.adadelta import scale_by_adadelta
from gradxform._optimizers.adadelta import ScaleByAdadeltaState
from gradxform._optimizers.adagrad import adagrad
from gradxform._optimizers.adagrad import scale_by_adagrad
from gradxform._optimizers.adagrad import ScaleByAdagradState
from gradxform._optimizers.adam import adam
from gradxform._optimizers.adam import adamw
from gradxform._optimizers.adam import scale_by_adam
from gradxform._optimizers.adamax import adamax
from gradxform._optimizers.adamax import scale_by_adamax
from gradxform._optimizers.adamax import ScaleByAdamaxState
from gradxform._optimizers.lion import lion
from gradxform._optimizers.lion import scale_by_lion
from gradxform._optimizers.lion import ScaleByLionState
from gradxform._optimizers.nadam import nadam
from gradxform._optimizers.nadam import scale_by_nadam
from gradxform._optimizers.nadam import ScaleByNadamState
from gradxform._optimizers.radam import radam
from gradxform._optimizers.radam import scale_by_radam
from gradxform._optimizers.radam import ScaleByRadamState
from gradxform._optimizers.rmsprop import rmsprop
from gradxform._optimizers.rmsprop import scale_by_rms
from gradxform._optimizers.rmsprop import ScaleByRmsState
from gradxform._optimizers.sgd import sgd

# _wrappers/: wrappers around an optimizer
from gradxform._wrappers.accumulation import accumulate as accumulate
from gradxform._wrappers.accumulation import AccumulateState as AccumulateState
from gradxform._wrappers.averaging import averaged_params as averaged_params
from gradxform._wrappers.averaging import ema_params as ema_params
from gradxform._wrappers.averaging import EmaParamsState as EmaParamsState
from gradxform._wrappers.averaging import lookahead as lookahead
from gradxform._wrappers.averaging import LookaheadState as LookaheadState
from gradxform._wrappers.finite import apply_if_finite as apply_if_finite
from gradxform._wrappers.finite import ApplyIfFiniteState as ApplyIfFiniteState

# _second_order/: second order, line searches, drivers
from gradxform._second_order.curvature import curvature_descent as curvature_descent
from gradxform._second_order.curvature import scale_by_curvature_step as scale_by_curvature_step
from gradxform._second_order.curvature import ScaleByCurvatureStepState as ScaleByCurvatureStepState
from gradxform._second_order.hvp import grad_and_hvp as grad_and_hvp
from gradxform._second_order.hvp import hutchinson_diagonal as hutchinson_diagonal
from gradxform._second_order.hvp import hvp as hvp
from gradxform._second_order.lbfgs import lbfgs as lbfgs
from gradxform._second_order.lbfgs import scale_by_lbfgs as scale_by_lbfgs
from gradxform._second_order.lbfgs import ScaleByLbfgsState as ScaleByLbfgsState
from gradxform._second_order.linesearch import LinesearchState as LinesearchState
from gradxform._second_order.linesearch import scale_by_backtracking_linesearch as scale_by_backtracking_linesearch
from gradxform._second_order.minimize import minimize as minimize
from gradxform._second_order.minimize import MinimizeResult as MinimizeResult
from gradxform._second_order.minimize import step as step
from gradxform._second_order.newton import hessian_matrix as hessian_matrix
from gradxform._second_order.newton import newton as newton
from gradxform._second_order.newton import scale_by_newton as scale_by_newton
from gradxform._second_order.newton import ScaleByNewtonState as ScaleByNewtonState
from gradxform._second_order.polyak import polyak_sgd as polyak_sgd
from gradxform._second_order.polyak import scale_by_polyak as scale_by_polyak
from gradxform._second_order.polyak import ScaleByPolyakState as ScaleByPolyakState
from gradxform._second_order.sophia import scale_by_sophia as scale_by_sophia
from gradxform._second_order.sophia import ScaleBySophiaState as ScaleBySophiaState
from gradxform._second_order.sophia import sophia as sophia
from gradxform._second_order.zoom import scale_by_zoom_linesearch as scale_by_zoom_linesearch

# _scale_out/: scale-out: populations, sharding, packing, low-bit state
from gradxform._scale_out.packed import packed as packed
from gradxform._scale_out.packer import Packer as Packer
from gradxform._scale_out.population import exploit as exploit
from gradxform._scale_out.population import perturb as perturb
from gradxform._scale_out.population import Population as Population
from gradxform._scale_out.population import truncation_selection as truncation_selection
from gradxform._scale_out.quantize import dequantize_blockwise as dequantize_blockwise
from gradxform._scale_out.quantize import dynamic_map as dynamic_map
from gradxform._scale_out.quantize import quantize_blockwise as quantize_blockwise
from gradxform._scale_out.quantize import Quantized as Quantized
from gradxform._scale_out.quantized import adam_8bit as adam_8bit
from gradxform._scale_out.quantized import adamw_8bit as adamw_8bit
from gradxform._scale_out.quantized import scale_by_adam_8bit as scale_by_adam_8bit
from gradxform._scale_out.quantized import ScaleByAdam8bitState as ScaleByAdam8bitState
from gradxform._scale_out.sharding import member_shardings as member_shardings
from gradxform._scale_out.sharding import state_shardings as state_shardings

# optax_like/: optax's names, defaults and variants (a second public place, on purpose: see its docstring)
from gradxform import optax_like as optax_like

try:
  __version__ = _metadata.version("gradxform")
except _metadata.PackageNotFoundError:  # running from a source checkout
  __version__ = "0.1.0"
