"""gradxform: functional optimizer transforms for JAX.

An optimizer is a pure ``(init, update)`` pair and a pytree whose numeric
hyperparameters are leaves: it composes with :func:`chain`, crosses ``jax.jit``
without recompiling when a learning rate changes, and ``jax.vmap``-s over
populations of settings. Defaults reproduce ``torch.optim``'s update rules.
"""

from importlib import metadata as _metadata

from gradxform import schedules as schedules
from gradxform._accumulation import accumulate as accumulate
from gradxform._accumulation import AccumulateState as AccumulateState
from gradxform._accumulators import ema as ema
from gradxform._accumulators import EmaState as EmaState
from gradxform._accumulators import trace as trace
from gradxform._accumulators import TraceState as TraceState
from gradxform._adam_variants import scale_by_adamax as scale_by_adamax
from gradxform._adam_variants import scale_by_lion as scale_by_lion
from gradxform._adam_variants import scale_by_nadam as scale_by_nadam
from gradxform._adam_variants import scale_by_radam as scale_by_radam
from gradxform._adam_variants import ScaleByAdamaxState as ScaleByAdamaxState
from gradxform._adam_variants import ScaleByLionState as ScaleByLionState
from gradxform._adam_variants import ScaleByNadamState as ScaleByNadamState
from gradxform._adam_variants import ScaleByRadamState as ScaleByRadamState
from gradxform._adaptive import scale_by_adadelta as scale_by_adadelta
from gradxform._adaptive import scale_by_adagrad as scale_by_adagrad
from gradxform._adaptive import scale_by_adam as scale_by_adam
from gradxform._adaptive import scale_by_rms as scale_by_rms
from gradxform._adaptive import ScaleByAdadeltaState as ScaleByAdadeltaState
from gradxform._adaptive import ScaleByAdagradState as ScaleByAdagradState
from gradxform._adaptive import ScaleByRmsState as ScaleByRmsState
from gradxform._averaging import averaged_params as averaged_params
from gradxform._averaging import ema_params as ema_params
from gradxform._averaging import EmaParamsState as EmaParamsState
from gradxform._averaging import lookahead as lookahead
from gradxform._averaging import LookaheadState as LookaheadState
from gradxform._base import apply_updates as apply_updates
from gradxform._base import EmptyState as EmptyState
from gradxform._base import GradientTransformation as GradientTransformation
from gradxform._base import identity as identity
from gradxform._base import stateless as stateless
from gradxform._chain import chain as chain
from gradxform._clipping import adaptive_grad_clip as adaptive_grad_clip
from gradxform._clipping import clip as clip
from gradxform._clipping import clip_by_block_rms as clip_by_block_rms
from gradxform._clipping import clip_by_global_norm as clip_by_global_norm
from gradxform._clipping import ClipState as ClipState
from gradxform._curvature import curvature_descent as curvature_descent
from gradxform._curvature import scale_by_curvature_step as scale_by_curvature_step
from gradxform._curvature import ScaleByCurvatureStepState as ScaleByCurvatureStepState
from gradxform._decay import add_decayed_weights as add_decayed_weights
from gradxform._decay import AddDecayedWeightsState as AddDecayedWeightsState
from gradxform._finite import apply_if_finite as apply_if_finite
from gradxform._finite import ApplyIfFiniteState as ApplyIfFiniteState
from gradxform._groups import freeze as freeze
from gradxform._groups import masked as masked
from gradxform._groups import MaskedState as MaskedState
from gradxform._groups import partition as partition
from gradxform._groups import PartitionState as PartitionState
from gradxform._groups import set_to_zero as set_to_zero
from gradxform._hvp import grad_and_hvp as grad_and_hvp
from gradxform._hvp import hutchinson_diagonal as hutchinson_diagonal
from gradxform._hvp import hvp as hvp
from gradxform._hygiene import add_noise as add_noise
from gradxform._hygiene import AddNoiseState as AddNoiseState
from gradxform._hygiene import centralize as centralize
from gradxform._hygiene import zero_nans as zero_nans
from gradxform._hygiene import ZeroNansState as ZeroNansState
from gradxform._inspect import hyperparams as hyperparams
from gradxform._inspect import tree_get as tree_get
from gradxform._inspect import tree_set as tree_set
from gradxform._lbfgs import lbfgs as lbfgs
from gradxform._lbfgs import scale_by_lbfgs as scale_by_lbfgs
from gradxform._lbfgs import ScaleByLbfgsState as ScaleByLbfgsState
from gradxform._linesearch import LinesearchState as LinesearchState
from gradxform._linesearch import scale_by_backtracking_linesearch as scale_by_backtracking_linesearch
from gradxform._minimize import minimize as minimize
from gradxform._minimize import MinimizeResult as MinimizeResult
from gradxform._minimize import step as step
from gradxform._module import static_field as static_field
from gradxform._newton import hessian_matrix as hessian_matrix
from gradxform._newton import newton as newton
from gradxform._newton import scale_by_newton as scale_by_newton
from gradxform._newton import ScaleByNewtonState as ScaleByNewtonState
from gradxform._optimizers import adadelta as adadelta
from gradxform._optimizers import adagrad as adagrad
from gradxform._optimizers import adam as adam
from gradxform._optimizers import adamax as adamax
from gradxform._optimizers import adamw as adamw
from gradxform._optimizers import lion as lion
from gradxform._optimizers import nadam as nadam
from gradxform._optimizers import radam as radam
from gradxform._optimizers import rmsprop as rmsprop
from gradxform._optimizers import sgd as sgd
from gradxform._packed import packed as packed
from gradxform._packer import Packer as Packer
from gradxform._polyak import polyak_sgd as polyak_sgd
from gradxform._polyak import scale_by_polyak as scale_by_polyak
from gradxform._polyak import ScaleByPolyakState as ScaleByPolyakState
from gradxform._population import exploit as exploit
from gradxform._population import perturb as perturb
from gradxform._population import Population as Population
from gradxform._population import truncation_selection as truncation_selection
from gradxform._quantize import dequantize_blockwise as dequantize_blockwise
from gradxform._quantize import dynamic_map as dynamic_map
from gradxform._quantize import quantize_blockwise as quantize_blockwise
from gradxform._quantize import Quantized as Quantized
from gradxform._quantized import adam_8bit as adam_8bit
from gradxform._quantized import adamw_8bit as adamw_8bit
from gradxform._quantized import scale_by_adam_8bit as scale_by_adam_8bit
from gradxform._quantized import ScaleByAdam8bitState as ScaleByAdam8bitState
from gradxform._scaling import scale as scale
from gradxform._scaling import scale_by_learning_rate as scale_by_learning_rate
from gradxform._scaling import scale_by_schedule as scale_by_schedule
from gradxform._scaling import scale_by_sign as scale_by_sign
from gradxform._scaling import ScaleState as ScaleState
from gradxform._sharding import member_shardings as member_shardings
from gradxform._sharding import state_shardings as state_shardings
from gradxform._sophia import scale_by_sophia as scale_by_sophia
from gradxform._sophia import ScaleBySophiaState as ScaleBySophiaState
from gradxform._sophia import sophia as sophia
from gradxform._zoom import scale_by_zoom_linesearch as scale_by_zoom_linesearch

try:
  __version__ = _metadata.version("gradxform")
except _metadata.PackageNotFoundError:  # running from a source checkout
  __version__ = "0.1.0"
