"""Bad inputs are refused clearly: the exception type, the transform the user called, the hyperparameter.

The tables cover every public constructor's numeric hyperparameters (one bad value each: NaN, a
negative, a value that overflows float32, a string or a boolean), values that are valid in float64
but break in float32 (the dtype they are computed in), every dtype argument, every option flag,
wrappers given a wrong state, non-scalar hyperparameters and failing schedules at the update.
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

NAN = math.nan


def _build(name, **kwargs):
  """Calls ``gx.<name>`` with a learning rate when it needs one, and ``kwargs``."""
  fn = getattr(gx, name)
  needs_lr = "learning_rate" in inspect.signature(fn).parameters and (
      inspect.signature(fn).parameters["learning_rate"].default is inspect.Parameter.empty)
  if needs_lr and "learning_rate" not in kwargs:
    kwargs = {"learning_rate": 0.1, **kwargs}
  return fn(**kwargs)


def _names(error, *words):
  message = str(error.value)
  for word in words:
    assert word in message, f"{word!r} is not named in: {message}"


# (constructor, hyperparameter, bad value, exception): one bad value per numeric hyperparameter of every
# public constructor whose only required argument is (at most) the learning rate.
HYPERPARAMETERS = [
    ("adabelief", "learning_rate", NAN, ValueError), ("adabelief", "b1", -1.0, ValueError),
    ("adabelief", "b2", 1e40, ValueError), ("adabelief", "eps", "0.1", TypeError),
    ("adabelief", "eps_root", True, TypeError),
    ("adadelta", "learning_rate", NAN, ValueError), ("adadelta", "rho", -1.0, ValueError),
    ("adadelta", "eps", 1e40, ValueError), ("adadelta", "weight_decay", "0.1", TypeError),
    ("adafactor", "learning_rate", True, TypeError), ("adafactor", "beta2_decay", NAN, ValueError),
    ("adafactor", "d", -1.0, ValueError), ("adafactor", "weight_decay", 1e40, ValueError),
    ("adafactor", "min_dim_size_to_factor", "0.1", ValueError), ("adafactor", "eps_root", True, TypeError),
    ("adafactor", "step_offset", NAN, ValueError),
    ("adagrad", "learning_rate", -1.0, ValueError), ("adagrad", "initial_accumulator_value", 1e40, ValueError),
    ("adagrad", "eps", "0.1", TypeError), ("adagrad", "lr_decay", True, TypeError),
    ("adagrad", "weight_decay", NAN, ValueError),
    ("adam", "learning_rate", -1.0, ValueError), ("adam", "b1", 1e40, ValueError),
    ("adam", "b2", "0.1", TypeError), ("adam", "eps", True, TypeError), ("adam", "weight_decay", NAN, ValueError),
    ("adam_8bit", "learning_rate", -1.0, ValueError), ("adam_8bit", "b1", 1e40, ValueError),
    ("adam_8bit", "b2", "0.1", TypeError), ("adam_8bit", "eps", True, TypeError),
    ("adam_8bit", "block_size", NAN, TypeError), ("adam_8bit", "min_size", -1.0, ValueError),
    ("adamax", "learning_rate", 1e40, ValueError), ("adamax", "b1", "0.1", TypeError),
    ("adamax", "b2", True, TypeError), ("adamax", "eps", NAN, ValueError),
    ("adamax", "weight_decay", -1.0, ValueError),
    ("adamaxw", "learning_rate", 1e40, ValueError), ("adamaxw", "b1", "0.1", TypeError),
    ("adamaxw", "b2", True, TypeError), ("adamaxw", "eps", NAN, ValueError),
    ("adamaxw", "weight_decay", -1.0, ValueError),
    ("adamw", "learning_rate", 1e40, ValueError), ("adamw", "b1", "0.1", TypeError),
    ("adamw", "b2", True, TypeError), ("adamw", "eps", NAN, ValueError),
    ("adamw", "weight_decay", -1.0, ValueError),
    ("adamw_8bit", "learning_rate", 1e40, ValueError), ("adamw_8bit", "b1", "0.1", TypeError),
    ("adamw_8bit", "b2", True, TypeError), ("adamw_8bit", "eps", NAN, ValueError),
    ("adamw_8bit", "weight_decay", -1.0, ValueError), ("adamw_8bit", "block_size", 1e40, TypeError),
    ("adamw_8bit", "min_size", "0.1", ValueError),
    ("adan", "learning_rate", True, TypeError), ("adan", "b1", NAN, ValueError), ("adan", "b2", -1.0, ValueError),
    ("adan", "b3", 1e40, ValueError), ("adan", "eps", "0.1", TypeError), ("adan", "eps_root", True, TypeError),
    ("adan", "weight_decay", NAN, ValueError),
    ("add_decayed_weights", "weight_decay", -1.0, ValueError),
    ("ademamix", "learning_rate", 1e40, ValueError), ("ademamix", "b1", "0.1", TypeError),
    ("ademamix", "b2", True, TypeError), ("ademamix", "b3", NAN, ValueError),
    ("ademamix", "alpha", -1.0, ValueError), ("ademamix", "eps", 1e40, ValueError),
    ("ademamix", "eps_root", "0.1", TypeError), ("ademamix", "weight_decay", True, TypeError),
    ("adopt", "learning_rate", NAN, ValueError), ("adopt", "b1", -1.0, ValueError),
    ("adopt", "b2", 1e40, ValueError), ("adopt", "eps", "0.1", TypeError),
    ("amsgrad", "learning_rate", True, TypeError), ("amsgrad", "b1", NAN, ValueError),
    ("amsgrad", "b2", -1.0, ValueError), ("amsgrad", "eps", 1e40, ValueError),
    ("amsgrad", "weight_decay", "0.1", TypeError),
    ("asgd", "learning_rate", True, TypeError), ("asgd", "lambd", NAN, ValueError),
    ("asgd", "alpha", -1.0, ValueError), ("asgd", "t0", 1e40, ValueError),
    ("asgd", "weight_decay", "0.1", TypeError),
    ("cocob", "learning_rate", True, TypeError), ("cocob", "alpha", NAN, ValueError),
    ("cocob", "eps", -1.0, ValueError), ("cocob", "weight_decay", 1e40, ValueError),
    ("curvature_descent", "learning_rate", "0.1", TypeError),
    ("curvature_descent", "fallback_step", True, TypeError), ("curvature_descent", "max_step", NAN, ValueError),
    ("dadapt_adamw", "learning_rate", -1.0, ValueError), ("dadapt_adamw", "b1", 1e40, ValueError),
    ("dadapt_adamw", "b2", "0.1", TypeError), ("dadapt_adamw", "eps", True, TypeError),
    ("dadapt_adamw", "estim_lr0", NAN, ValueError), ("dadapt_adamw", "weight_decay", -1.0, ValueError),
    ("dog", "learning_rate", 1e40, ValueError), ("dog", "eps", "0.1", TypeError),
    ("dog", "weight_decay", True, TypeError),
    ("dowg", "learning_rate", NAN, ValueError), ("dowg", "eps", -1.0, ValueError),
    ("dowg", "weight_decay", 1e40, ValueError),
    ("ema", "decay", "0.1", TypeError),
    ("fromage", "learning_rate", True, TypeError), ("fromage", "min_norm", NAN, ValueError),
    ("lamb", "learning_rate", -1.0, ValueError), ("lamb", "b1", 1e40, ValueError),
    ("lamb", "b2", "0.1", TypeError), ("lamb", "eps", True, TypeError), ("lamb", "eps_root", NAN, ValueError),
    ("lamb", "weight_decay", -1.0, ValueError),
    ("laprop", "learning_rate", 1e40, ValueError), ("laprop", "b1", "0.1", TypeError),
    ("laprop", "b2", True, TypeError), ("laprop", "eps", NAN, ValueError),
    ("laprop", "weight_decay", -1.0, ValueError),
    ("lars", "learning_rate", 1e40, ValueError), ("lars", "weight_decay", "0.1", TypeError),
    ("lars", "trust_coefficient", True, TypeError), ("lars", "eps", NAN, ValueError),
    ("lars", "momentum", -1.0, ValueError),
    ("lbfgs", "learning_rate", 1e40, ValueError), ("lbfgs", "memory_size", "0.1", ValueError),
    ("lion", "learning_rate", True, TypeError), ("lion", "b1", NAN, ValueError), ("lion", "b2", -1.0, ValueError),
    ("lion", "weight_decay", 1e40, ValueError),
    ("mars", "learning_rate", "0.1", TypeError), ("mars", "b1", True, TypeError), ("mars", "b2", NAN, ValueError),
    ("mars", "eps", -1.0, ValueError), ("mars", "weight_decay", 1e40, ValueError),
    ("mars", "gamma", "0.1", TypeError), ("mars", "max_norm", True, TypeError),
    ("momo", "learning_rate", NAN, ValueError), ("momo", "b1", -1.0, ValueError),
    ("momo", "lower_bound", 1e40, ValueError), ("momo", "weight_decay", "0.1", TypeError),
    ("momo_adam", "learning_rate", True, TypeError), ("momo_adam", "b1", NAN, ValueError),
    ("momo_adam", "b2", -1.0, ValueError), ("momo_adam", "eps", 1e40, ValueError),
    ("momo_adam", "lower_bound", "0.1", TypeError), ("momo_adam", "weight_decay", True, TypeError),
    ("muon", "learning_rate", NAN, ValueError), ("muon", "momentum", -1.0, ValueError),
    ("muon", "weight_decay", 1e40, ValueError), ("muon", "ns_steps", "0.1", ValueError),
    ("muon", "eps", True, TypeError), ("muon", "adam_b1", NAN, ValueError), ("muon", "adam_b2", -1.0, ValueError),
    ("muon", "adam_eps", 1e40, ValueError), ("muon", "adam_eps_root", "0.1", TypeError),
    ("muon", "adam_weight_decay", True, TypeError),
    ("nadam", "learning_rate", NAN, ValueError), ("nadam", "b1", -1.0, ValueError),
    ("nadam", "b2", 1e40, ValueError), ("nadam", "eps", "0.1", TypeError),
    ("nadam", "momentum_decay", True, TypeError), ("nadam", "weight_decay", NAN, ValueError),
    ("nadamw", "learning_rate", -1.0, ValueError), ("nadamw", "b1", 1e40, ValueError),
    ("nadamw", "b2", "0.1", TypeError), ("nadamw", "eps", True, TypeError),
    ("nadamw", "momentum_decay", NAN, ValueError), ("nadamw", "weight_decay", -1.0, ValueError),
    ("newton", "learning_rate", 1e40, ValueError), ("newton", "damping", "0.1", TypeError),
    ("newton", "eigenvalue_floor", True, TypeError), ("newton", "max_parameters", NAN, ValueError),
    ("noisy_sgd", "learning_rate", -1.0, ValueError), ("noisy_sgd", "eta", 1e40, ValueError),
    ("noisy_sgd", "gamma", "0.1", TypeError), ("noisy_sgd", "seed", True, TypeError),
    ("normalize_by_update_norm", "scale_factor", NAN, ValueError),
    ("normalize_by_update_norm", "eps", -1.0, ValueError),
    ("novograd", "learning_rate", 1e40, ValueError), ("novograd", "b1", "0.1", TypeError),
    ("novograd", "b2", True, TypeError), ("novograd", "eps", NAN, ValueError),
    ("novograd", "eps_root", -1.0, ValueError), ("novograd", "weight_decay", 1e40, ValueError),
    ("optimistic_adam", "learning_rate", "0.1", TypeError), ("optimistic_adam", "b1", True, TypeError),
    ("optimistic_adam", "b2", NAN, ValueError), ("optimistic_adam", "eps", -1.0, ValueError),
    ("optimistic_adam", "eps_root", 1e40, ValueError),
    ("optimistic_adam_v2", "learning_rate", "0.1", TypeError), ("optimistic_adam_v2", "alpha", True, TypeError),
    ("optimistic_adam_v2", "beta", NAN, ValueError), ("optimistic_adam_v2", "b1", -1.0, ValueError),
    ("optimistic_adam_v2", "b2", 1e40, ValueError), ("optimistic_adam_v2", "eps", "0.1", TypeError),
    ("optimistic_adam_v2", "eps_root", True, TypeError),
    ("optimistic_gradient_descent", "learning_rate", NAN, ValueError),
    ("optimistic_gradient_descent", "alpha", "0.1", TypeError),
    ("optimistic_gradient_descent", "beta", 1e40, ValueError),
    ("polyak_sgd", "max_learning_rate", "0.1", TypeError), ("polyak_sgd", "f_min", True, TypeError),
    ("polyak_sgd", "eps", NAN, ValueError),
    ("prodigy", "learning_rate", -1.0, ValueError), ("prodigy", "b1", 1e40, ValueError),
    ("prodigy", "b2", "0.1", TypeError), ("prodigy", "eps", True, TypeError),
    ("prodigy", "estim_lr0", NAN, ValueError), ("prodigy", "estim_lr_coef", -1.0, ValueError),
    ("prodigy", "weight_decay", 1e40, ValueError),
    ("radam", "learning_rate", "0.1", TypeError), ("radam", "b1", True, TypeError),
    ("radam", "b2", NAN, ValueError), ("radam", "eps", -1.0, ValueError),
    ("radam", "weight_decay", 1e40, ValueError),
    ("reduce_on_plateau", "factor", "0.1", TypeError), ("reduce_on_plateau", "patience", True, ValueError),
    ("reduce_on_plateau", "threshold", NAN, ValueError), ("reduce_on_plateau", "cooldown", -1.0, ValueError),
    ("reduce_on_plateau", "min_scale", 1e40, ValueError), ("reduce_on_plateau", "eps", "0.1", TypeError),
    ("rmsprop", "learning_rate", True, TypeError), ("rmsprop", "decay", NAN, ValueError),
    ("rmsprop", "eps", -1.0, ValueError), ("rmsprop", "momentum", 1e40, ValueError),
    ("rmsprop", "weight_decay", "0.1", TypeError), ("rmsprop", "initial_scale", True, TypeError),
    ("rprop", "learning_rate", NAN, ValueError), ("rprop", "eta_minus", -1.0, ValueError),
    ("rprop", "eta_plus", 1e40, ValueError), ("rprop", "min_step_size", "0.1", TypeError),
    ("rprop", "max_step_size", True, TypeError),
    ("scale_by_adadelta", "rho", NAN, ValueError), ("scale_by_adadelta", "eps", -1.0, ValueError),
    ("scale_by_adagrad", "initial_accumulator_value", 1e40, ValueError),
    ("scale_by_adagrad", "eps", "0.1", TypeError), ("scale_by_adagrad", "eps_root", True, TypeError),
    ("scale_by_adagrad", "lr_decay", NAN, ValueError),
    ("scale_by_adam", "b1", -1.0, ValueError), ("scale_by_adam", "b2", 1e40, ValueError),
    ("scale_by_adam", "eps", "0.1", TypeError), ("scale_by_adam", "eps_root", True, TypeError),
    ("scale_by_adam_8bit", "b1", NAN, ValueError), ("scale_by_adam_8bit", "b2", -1.0, ValueError),
    ("scale_by_adam_8bit", "eps", 1e40, ValueError), ("scale_by_adam_8bit", "block_size", "0.1", TypeError),
    ("scale_by_adam_8bit", "min_size", True, ValueError),
    ("scale_by_adamax", "b1", NAN, ValueError), ("scale_by_adamax", "b2", -1.0, ValueError),
    ("scale_by_adamax", "eps", 1e40, ValueError),
    ("scale_by_adan", "b1", "0.1", TypeError), ("scale_by_adan", "b2", True, TypeError),
    ("scale_by_adan", "b3", NAN, ValueError), ("scale_by_adan", "eps", -1.0, ValueError),
    ("scale_by_adan", "eps_root", 1e40, ValueError),
    ("scale_by_ademamix", "b1", "0.1", TypeError), ("scale_by_ademamix", "b2", True, TypeError),
    ("scale_by_ademamix", "b3", NAN, ValueError), ("scale_by_ademamix", "alpha", -1.0, ValueError),
    ("scale_by_ademamix", "eps", 1e40, ValueError), ("scale_by_ademamix", "eps_root", "0.1", TypeError),
    ("scale_by_adopt", "b1", True, TypeError), ("scale_by_adopt", "b2", NAN, ValueError),
    ("scale_by_adopt", "eps", -1.0, ValueError),
    ("scale_by_asgd", "learning_rate", 1e40, ValueError), ("scale_by_asgd", "lambd", "0.1", TypeError),
    ("scale_by_asgd", "alpha", True, TypeError), ("scale_by_asgd", "t0", NAN, ValueError),
    ("scale_by_backtracking_linesearch", "c1", -1.0, ValueError),
    ("scale_by_backtracking_linesearch", "decrease_factor", 1e40, ValueError),
    ("scale_by_backtracking_linesearch", "initial_step", "0.1", TypeError),
    ("scale_by_backtracking_linesearch", "max_evaluations", True, ValueError),
    ("scale_by_belief", "b1", NAN, ValueError), ("scale_by_belief", "b2", -1.0, ValueError),
    ("scale_by_belief", "eps", 1e40, ValueError), ("scale_by_belief", "eps_root", "0.1", TypeError),
    ("scale_by_cocob", "alpha", True, TypeError), ("scale_by_cocob", "eps", NAN, ValueError),
    ("scale_by_curvature_step", "fallback_step", -1.0, ValueError),
    ("scale_by_curvature_step", "max_step", 1e40, ValueError),
    ("scale_by_dadapt_adamw", "learning_rate", "0.1", TypeError), ("scale_by_dadapt_adamw", "b1", True, TypeError),
    ("scale_by_dadapt_adamw", "b2", NAN, ValueError), ("scale_by_dadapt_adamw", "eps", -1.0, ValueError),
    ("scale_by_dadapt_adamw", "estim_lr0", 1e40, ValueError),
    ("scale_by_dadapt_adamw", "weight_decay", "0.1", TypeError),
    ("scale_by_distance_over_gradients", "reps_rel", True, TypeError),
    ("scale_by_distance_over_gradients", "eps", NAN, ValueError),
    ("scale_by_distance_over_gradients", "global_scale", "0.1", TypeError),
    ("scale_by_dog", "eps", 1e40, ValueError),
    ("scale_by_dowg", "eps", "0.1", TypeError),
    ("scale_by_factored_rms", "beta2_decay", True, TypeError),
    ("scale_by_factored_rms", "eps_root", NAN, ValueError),
    ("scale_by_factored_rms", "min_dim_size_to_factor", -1.0, ValueError),
    ("scale_by_factored_rms", "step_offset", 1e40, ValueError),
    ("scale_by_laprop", "b1", "0.1", TypeError), ("scale_by_laprop", "b2", True, TypeError),
    ("scale_by_laprop", "eps", NAN, ValueError),
    ("scale_by_lbfgs", "memory_size", -1.0, ValueError),
    ("scale_by_learning_rate", "learning_rate", 1e40, ValueError),
    ("scale_by_lion", "b1", "0.1", TypeError), ("scale_by_lion", "b2", True, TypeError),
    ("scale_by_mars", "b1", NAN, ValueError), ("scale_by_mars", "b2", -1.0, ValueError),
    ("scale_by_mars", "eps", 1e40, ValueError), ("scale_by_mars", "gamma", "0.1", TypeError),
    ("scale_by_mars", "max_norm", True, TypeError),
    ("scale_by_momo", "learning_rate", NAN, ValueError), ("scale_by_momo", "b1", -1.0, ValueError),
    ("scale_by_momo", "lower_bound", 1e40, ValueError), ("scale_by_momo", "weight_decay", "0.1", TypeError),
    ("scale_by_momo_adam", "learning_rate", True, TypeError), ("scale_by_momo_adam", "b1", NAN, ValueError),
    ("scale_by_momo_adam", "b2", -1.0, ValueError), ("scale_by_momo_adam", "eps", 1e40, ValueError),
    ("scale_by_momo_adam", "lower_bound", "0.1", TypeError),
    ("scale_by_momo_adam", "weight_decay", True, TypeError),
    ("scale_by_muon", "momentum", NAN, ValueError), ("scale_by_muon", "ns_steps", -1.0, ValueError),
    ("scale_by_muon", "eps", 1e40, ValueError),
    ("scale_by_nadam", "b1", "0.1", TypeError), ("scale_by_nadam", "b2", True, TypeError),
    ("scale_by_nadam", "eps", NAN, ValueError), ("scale_by_nadam", "momentum_decay", -1.0, ValueError),
    ("scale_by_newton", "damping", 1e40, ValueError), ("scale_by_newton", "eigenvalue_floor", "0.1", TypeError),
    ("scale_by_newton", "max_parameters", -1.0, ValueError),
    ("scale_by_novograd", "b1", NAN, ValueError), ("scale_by_novograd", "b2", -1.0, ValueError),
    ("scale_by_novograd", "eps", 1e40, ValueError), ("scale_by_novograd", "eps_root", "0.1", TypeError),
    ("scale_by_novograd", "weight_decay", True, TypeError),
    ("scale_by_optimistic_gradient", "alpha", NAN, ValueError),
    ("scale_by_optimistic_gradient", "beta", "0.1", TypeError),
    ("scale_by_param_block_norm", "min_scale", 1e40, ValueError),
    ("scale_by_param_block_rms", "min_scale", "0.1", TypeError),
    ("scale_by_polyak", "f_min", True, TypeError), ("scale_by_polyak", "max_learning_rate", NAN, ValueError),
    ("scale_by_polyak", "eps", -1.0, ValueError),
    ("scale_by_prodigy", "learning_rate", 1e40, ValueError), ("scale_by_prodigy", "b1", "0.1", TypeError),
    ("scale_by_prodigy", "b2", True, TypeError), ("scale_by_prodigy", "eps", NAN, ValueError),
    ("scale_by_prodigy", "estim_lr0", -1.0, ValueError), ("scale_by_prodigy", "estim_lr_coef", 1e40, ValueError),
    ("scale_by_prodigy", "weight_decay", "0.1", TypeError),
    ("scale_by_radam", "b1", True, TypeError), ("scale_by_radam", "b2", NAN, ValueError),
    ("scale_by_radam", "eps", -1.0, ValueError),
    ("scale_by_relative_step", "learning_rate", 1e40, ValueError),
    ("scale_by_rms", "decay", "0.1", TypeError), ("scale_by_rms", "eps", True, TypeError),
    ("scale_by_rms", "eps_root", NAN, ValueError), ("scale_by_rms", "initial_scale", -1.0, ValueError),
    ("scale_by_rprop", "learning_rate", 1e40, ValueError), ("scale_by_rprop", "eta_minus", "0.1", TypeError),
    ("scale_by_rprop", "eta_plus", True, TypeError), ("scale_by_rprop", "min_step_size", NAN, ValueError),
    ("scale_by_rprop", "max_step_size", -1.0, ValueError),
    ("scale_by_simplified_ademamix", "b1", 1e40, ValueError),
    ("scale_by_simplified_ademamix", "b2", "0.1", TypeError),
    ("scale_by_simplified_ademamix", "alpha", True, TypeError),
    ("scale_by_simplified_ademamix", "eps", NAN, ValueError),
    ("scale_by_simplified_ademamix", "eps_root", -1.0, ValueError),
    ("scale_by_sm3", "b1", 1e40, ValueError), ("scale_by_sm3", "b2", "0.1", TypeError),
    ("scale_by_sm3", "eps", True, TypeError),
    ("scale_by_sophia", "b1", NAN, ValueError), ("scale_by_sophia", "b2", -1.0, ValueError),
    ("scale_by_sophia", "rho", 1e40, ValueError), ("scale_by_sophia", "eps", "0.1", TypeError),
    ("scale_by_sophia", "update_every", True, ValueError), ("scale_by_sophia", "seed", NAN, TypeError),
    ("scale_by_trust_ratio", "min_norm", -1.0, ValueError),
    ("scale_by_trust_ratio", "trust_coefficient", 1e40, ValueError),
    ("scale_by_trust_ratio", "eps", "0.1", TypeError),
    ("scale_by_yogi", "b1", True, TypeError), ("scale_by_yogi", "b2", NAN, ValueError),
    ("scale_by_yogi", "eps", -1.0, ValueError), ("scale_by_yogi", "eps_root", 1e40, ValueError),
    ("scale_by_yogi", "initial_accumulator_value", "0.1", TypeError),
    ("scale_by_zoom_linesearch", "c1", True, TypeError), ("scale_by_zoom_linesearch", "c2", NAN, ValueError),
    ("scale_by_zoom_linesearch", "initial_step", -1.0, ValueError),
    ("scale_by_zoom_linesearch", "increase_factor", 1e40, ValueError),
    ("scale_by_zoom_linesearch", "max_step", "0.1", TypeError),
    ("scale_by_zoom_linesearch", "max_evaluations", True, ValueError),
    ("schedule_free_adamw", "learning_rate", NAN, ValueError), ("schedule_free_adamw", "b1", -1.0, ValueError),
    ("schedule_free_adamw", "b2", 1e40, ValueError), ("schedule_free_adamw", "eps", "0.1", TypeError),
    ("schedule_free_adamw", "weight_decay", True, TypeError),
    ("schedule_free_adamw", "weight_lr_power", NAN, ValueError),
    ("schedule_free_radam", "learning_rate", -1.0, ValueError), ("schedule_free_radam", "b1", 1e40, ValueError),
    ("schedule_free_radam", "b2", "0.1", TypeError), ("schedule_free_radam", "eps", True, TypeError),
    ("schedule_free_radam", "weight_decay", NAN, ValueError),
    ("schedule_free_radam", "weight_lr_power", -1.0, ValueError),
    ("schedule_free_sgd", "learning_rate", 1e40, ValueError), ("schedule_free_sgd", "b1", "0.1", TypeError),
    ("schedule_free_sgd", "weight_decay", True, TypeError),
    ("schedule_free_sgd", "weight_lr_power", NAN, ValueError),
    ("sgd", "learning_rate", -1.0, ValueError), ("sgd", "momentum", 1e40, ValueError),
    ("sgd", "weight_decay", "0.1", TypeError), ("sgd", "dampening", True, TypeError),
    ("sign_sgd", "learning_rate", NAN, ValueError),
    ("signum", "learning_rate", -1.0, ValueError), ("signum", "momentum", 1e40, ValueError),
    ("simplified_ademamix", "learning_rate", "0.1", TypeError), ("simplified_ademamix", "b1", True, TypeError),
    ("simplified_ademamix", "b2", NAN, ValueError), ("simplified_ademamix", "alpha", -1.0, ValueError),
    ("simplified_ademamix", "eps", 1e40, ValueError), ("simplified_ademamix", "eps_root", "0.1", TypeError),
    ("simplified_ademamix", "weight_decay", True, TypeError),
    ("sm3", "learning_rate", NAN, ValueError), ("sm3", "momentum", -1.0, ValueError),
    ("sophia", "learning_rate", 1e40, ValueError), ("sophia", "b1", "0.1", TypeError),
    ("sophia", "b2", True, TypeError), ("sophia", "rho", NAN, ValueError), ("sophia", "eps", -1.0, ValueError),
    ("sophia", "weight_decay", 1e40, ValueError), ("sophia", "update_every", "0.1", ValueError),
    ("sophia", "seed", True, TypeError),
    ("trace", "decay", NAN, ValueError), ("trace", "dampening", -1.0, ValueError),
    ("yogi", "learning_rate", 1e40, ValueError), ("yogi", "b1", "0.1", TypeError), ("yogi", "b2", True, TypeError),
    ("yogi", "eps", NAN, ValueError),
]


@pytest.mark.parametrize("name,hyper,value,error", HYPERPARAMETERS,
                         ids=[f"{n}-{h}-{v}" for n, h, v, _ in HYPERPARAMETERS])
def test_bad_hyperparameter_value(name, hyper, value, error):
  with pytest.raises(error) as caught:
    _build(name, **{hyper: value})
  _names(caught, name, hyper)


# Valid as Python (float64) numbers, but computed in float32: they become 1.0 (a decay of 1: NaN from
# the bias correction 1 - 1^t) or inf. The message gives the nearest safe value.
FLOAT32 = [
    ("adam", "b1", 0.99999999), ("adam", "b2", 0.99999999), ("adamw", "b2", 1 - 1e-9),
    ("nadam", "b2", 0.99999999), ("radam", "b1", 0.99999999), ("adamax", "b2", 0.99999999),
    ("ema", "decay", 1 - 1e-9), ("rmsprop", "decay", 0.99999999), ("lion", "b1", 0.99999999),
    ("nadam", "b1", 0.99999999), ("sgd", "learning_rate", 1e40), ("adamw", "weight_decay", 1e39),
    ("adam", "eps", 1e39), ("scale_by_rms", "decay", 0.99999999), ("clip_by_global_norm", "max_norm", 1e39),
    ("scale_by_learning_rate", "learning_rate", 1e40), ("add_decayed_weights", "weight_decay", 1e39),
    ("adabelief", "b2", 0.99999999), ("laprop", "b2", 0.99999999), ("adopt", "b2", 0.99999999),
]


@pytest.mark.parametrize("name,hyper,value", FLOAT32, ids=[f"{n}-{h}" for n, h, _ in FLOAT32])
def test_value_broken_in_float32_is_refused_with_nearest_safe_value(name, hyper, value):
  kwargs = {"max_norm": value} if name == "clip_by_global_norm" else {hyper: value}
  with pytest.raises(ValueError) as caught:
    _build(name, **kwargs)
  _names(caught, name, hyper, "float32", "nearest safe value")


def test_nearest_safe_value_is_safe():
  with pytest.raises(ValueError, match=r"nearest safe value is 0\.99999994") as caught:
    gx.adam(1e-3, b2=0.99999999)
  safe = float(str(caught.value).split("nearest safe value is ")[1].split(". ")[0])
  gx.adam(1e-3, b2=safe)  # accepted
  assert np.float32(safe) < 1


def test_float64_array_under_x64_is_checked_in_float64():
  with jax.enable_x64(True):
    gx.adam(1e-3, b2=np.float64(0.99999999))  # used in float64: fine
    with pytest.raises(ValueError, match="b2.*float32.*jax_enable_x64"):
      gx.adam(1e-3, b2=0.99999999)  # a Python float is still float32 for float32 parameters


def test_bfloat16_hyperparameter_is_checked_as_bfloat16():
  with pytest.raises(ValueError, match="b2=1.0 is out of range"):
    gx.adam(1e-3, b2=jnp.asarray(0.9999, jnp.bfloat16))  # rounds to 1.0 in bfloat16


# Every dtype argument must be a floating dtype.
DTYPES = [
    ("adabelief", "mu_dtype"), ("adabelief", "nu_dtype"), ("adafactor", "nu_dtype"), ("adafactor", "mu_dtype"),
    ("adam", "mu_dtype"), ("adam", "nu_dtype"), ("adamax", "mu_dtype"), ("adamax", "nu_dtype"),
    ("adamaxw", "mu_dtype"), ("adamaxw", "nu_dtype"), ("adamw", "mu_dtype"), ("adamw", "nu_dtype"),
    ("ademamix", "mu_dtype"), ("ademamix", "nu_dtype"), ("adopt", "mu_dtype"), ("amsgrad", "mu_dtype"),
    ("amsgrad", "nu_dtype"), ("ema", "dtype"), ("laprop", "mu_dtype"), ("laprop", "nu_dtype"),
    ("lion", "mu_dtype"), ("mars", "mu_dtype"), ("muon", "ns_dtype"), ("muon", "mu_dtype"), ("nadam", "mu_dtype"),
    ("nadam", "nu_dtype"), ("nadamw", "mu_dtype"), ("nadamw", "nu_dtype"), ("optimistic_adam", "mu_dtype"),
    ("optimistic_adam_v2", "mu_dtype"), ("radam", "mu_dtype"), ("radam", "nu_dtype"),
    ("rmsprop", "accumulator_dtype"), ("scale_by_adam", "mu_dtype"), ("scale_by_adam", "nu_dtype"),
    ("scale_by_adamax", "mu_dtype"), ("scale_by_adamax", "nu_dtype"), ("scale_by_ademamix", "mu_dtype"),
    ("scale_by_ademamix", "nu_dtype"), ("scale_by_adopt", "mu_dtype"), ("scale_by_belief", "mu_dtype"),
    ("scale_by_belief", "nu_dtype"), ("scale_by_distance_over_gradients", "param_dtype"),
    ("scale_by_factored_rms", "dtype"), ("scale_by_laprop", "mu_dtype"), ("scale_by_laprop", "nu_dtype"),
    ("scale_by_lion", "mu_dtype"), ("scale_by_mars", "mu_dtype"), ("scale_by_muon", "ns_dtype"),
    ("scale_by_muon", "mu_dtype"), ("scale_by_nadam", "mu_dtype"), ("scale_by_nadam", "nu_dtype"),
    ("scale_by_novograd", "mu_dtype"), ("scale_by_radam", "mu_dtype"), ("scale_by_radam", "nu_dtype"),
    ("scale_by_rms", "dtype"), ("schedule_free_adamw", "state_dtype"), ("schedule_free_radam", "state_dtype"),
    ("schedule_free_sgd", "state_dtype"), ("sgd", "accumulator_dtype"), ("signum", "mu_dtype"),
    ("trace", "accumulator_dtype"),
]


@pytest.mark.parametrize("name,arg", DTYPES, ids=[f"{n}-{a}" for n, a in DTYPES])
@pytest.mark.parametrize("dtype", [jnp.int8, "int32"])
def test_dtype_argument_must_be_floating(name, arg, dtype):
  with pytest.raises(TypeError) as caught:
    _build(name, **{arg: dtype})
  _names(caught, name, arg)


def test_floating_dtype_argument_is_accepted():
  params = {"w": jnp.ones(3)}
  for name, arg in DTYPES[:10]:
    _build(name, **{arg: jnp.float32}).init(params)


# Every option flag must be a bool: "false" is truthy and would silently turn the option on.
FLAGS = [
    ("adabelief", "nesterov"), ("adadelta", "maximize"), ("adafactor", "maximize"), ("adafactor", "relative_step"),
    ("adafactor", "multiply_by_parameter_scale"), ("adafactor", "factored"), ("adagrad", "maximize"),
    ("adam", "amsgrad"), ("adam", "decoupled_weight_decay"), ("adam", "maximize"), ("adam", "nesterov"),
    ("adamax", "maximize"), ("adamw", "amsgrad"), ("adamw", "maximize"), ("adamw", "nesterov"),
    ("adan", "paper_weighting"), ("adopt", "nesterov"), ("amsgrad", "debias_before_max"), ("amsgrad", "maximize"),
    ("asgd", "maximize"), ("ema", "debias"), ("lars", "nesterov"), ("momo", "adapt_lower_bound"),
    ("momo_adam", "adapt_lower_bound"), ("muon", "nesterov"), ("muon", "debias"), ("muon", "adaptive"),
    ("muon", "adam_nesterov"), ("nadam", "decoupled_weight_decay"), ("nadam", "maximize"), ("nadamw", "maximize"),
    ("optimistic_adam", "nesterov"), ("optimistic_adam_v2", "nesterov"), ("prodigy", "safeguard_warmup"),
    ("radam", "decoupled_weight_decay"), ("radam", "maximize"), ("rmsprop", "centered"), ("rmsprop", "maximize"),
    ("rmsprop", "nesterov"), ("rmsprop", "eps_in_sqrt"), ("rmsprop", "bias_correction"), ("rprop", "maximize"),
    ("scale_by_adam", "amsgrad"), ("scale_by_adam", "nesterov"), ("scale_by_adam", "debias_before_max"),
    ("scale_by_adan", "paper_weighting"), ("scale_by_adopt", "nesterov"), ("scale_by_belief", "nesterov"),
    ("scale_by_factored_rms", "factored"), ("scale_by_lbfgs", "scale_init_precond"),
    ("scale_by_momo", "adapt_lower_bound"), ("scale_by_momo_adam", "adapt_lower_bound"),
    ("scale_by_muon", "nesterov"), ("scale_by_muon", "debias"), ("scale_by_muon", "adaptive"),
    ("scale_by_prodigy", "safeguard_warmup"), ("scale_by_rms", "centered"), ("scale_by_rms", "debias"),
    ("scale_by_rms", "amsgrad"), ("scale_by_rms", "debias_before_max"),
    ("schedule_free_radam", "silent_sgd_phase"), ("sgd", "nesterov"), ("sgd", "maximize"), ("trace", "nesterov"),
]


@pytest.mark.parametrize("name,flag", FLAGS, ids=[f"{n}-{f}" for n, f in FLAGS])
def test_flag_must_be_bool(name, flag):
  with pytest.raises(TypeError) as caught:
    _build(name, **{flag: "false"})
  _names(caught, name, flag)


# Non-scalar hyperparameters are found at the update; the message gives the public name.
SHAPED = [("adam", "b1"), ("adam", "b2"), ("adamw", "b1"), ("sgd", "momentum"), ("rmsprop", "momentum"),
          ("adamax", "b1"), ("scale_by_adam", "b1"), ("scale_by_adam", "b2"), ("lars", "momentum"),
          ("adam", "learning_rate"), ("ema", "decay"), ("trace", "decay")]


@pytest.mark.parametrize("name,hyper", SHAPED, ids=[f"{n}-{h}" for n, h in SHAPED])
def test_non_scalar_hyperparameter_names_public_name(name, hyper):
  opt = _build(name, **{hyper: jnp.asarray([0.5, 0.25])})
  params = {"w": jnp.ones(3)}
  with pytest.raises(ValueError, match=rf"hyperparameter {hyper} has shape \(2,\)"):
    opt.update(params, opt.init(params), params)


def _raises(count):
  raise ValueError("boom")


SCHEDULES = [(lambda c: None, TypeError, "returned NoneType"), (_raises, ValueError, "failed: ValueError: boom"),
             (lambda c: "0.1", TypeError, "returned str")]


@pytest.mark.parametrize("name,hyper", [("adam", "learning_rate"), ("sgd", "learning_rate"), ("ema", "decay"),
                                        ("adam", "b1")])
@pytest.mark.parametrize("schedule,error,match", SCHEDULES, ids=["none", "raises", "string"])
def test_schedule_failure_names_transform_and_hyperparameter(name, hyper, schedule, error, match):
  opt = _build(name, **{hyper: schedule})
  params = {"w": jnp.ones(3)}
  with pytest.raises(error, match=match) as caught:
    opt.init(params)
  _names(caught, f"schedule given as {hyper}")


def _inner():
  return gx.sgd(0.1, momentum=0.9)


WRAPPERS = {
    "masked": lambda: gx.masked(_inner(), {"a": True, "b": False}),
    "partition": lambda: gx.partition({"x": _inner(), "y": gx.sgd(0.1)}, {"a": "x", "b": "y"}),
    "accumulate": lambda: gx.accumulate(_inner(), 2),
    "lookahead": lambda: gx.lookahead(_inner()),
    "ema_params": lambda: gx.ema_params(_inner()),
    "cautious": lambda: gx.cautious(_inner()),
    "apply_if_finite": lambda: gx.apply_if_finite(_inner(), 3),
    "kahan_summation": lambda: gx.kahan_summation(_inner()),
    "monitor": lambda: gx.monitor(_inner()),
    "swa": lambda: gx.swa(_inner()),
    "schedule_free": lambda: gx.schedule_free(_inner(), 0.1),
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
@pytest.mark.parametrize("state", ["tuple", "dict", "inner"])
def test_wrapper_checks_its_state_type(name, state):
  params = {"a": jnp.ones(3), "b": jnp.ones(2)}
  bad = {"tuple": (), "dict": {"x": 1}, "inner": _inner().init(params)}[state]
  with pytest.raises(TypeError) as caught:
    WRAPPERS[name]().update(params, bad, params)
  _names(caught, name, "state")


def test_traced_mask_gets_the_library_message():
  params = {"a": jnp.ones(3), "b": jnp.ones(2)}
  init = jax.jit(lambda m: gx.masked(_inner(), {"a": m, "b": False}).init(params))
  with pytest.raises(TypeError, match="masked: mask values must be Python booleans"):
    init(True)


# Wrappers' own hyperparameters.
WRAPPER_HYPERPARAMETERS = [
    (lambda: gx.lookahead(_inner(), sync_period=0), ValueError, "lookahead", "sync_period"),
    (lambda: gx.lookahead(_inner(), slow_step_size=1.5), ValueError, "lookahead", "slow_step_size"),
    (lambda: gx.lookahead(_inner(), slow_step_size=NAN), ValueError, "lookahead", "slow_step_size"),
    (lambda: gx.accumulate(_inner(), 0), ValueError, "accumulate", "every_k"),
    (lambda: gx.accumulate(_inner(), 2.5), ValueError, "accumulate", "every_k"),
    (lambda: gx.accumulate(_inner(), 2, acc_dtype=jnp.int32), TypeError, "accumulate", "acc_dtype"),
    (lambda: gx.ema_params(_inner(), decay=1.5), ValueError, "ema_params", "decay"),
    (lambda: gx.ema_params(_inner(), decay=1 - 1e-9), ValueError, "ema_params", "decay"),
    (lambda: gx.ema_params(_inner(), dtype=jnp.int8), TypeError, "ema_params", "dtype"),
    (lambda: gx.kahan_summation(_inner(), dtype=jnp.int8), TypeError, "kahan_summation", "dtype"),
    (lambda: gx.schedule_free(_inner(), 0.1, b1=1.5), ValueError, "schedule_free", "b1"),
    (lambda: gx.schedule_free(_inner(), 0.1, state_dtype=jnp.int8), TypeError, "schedule_free", "state_dtype"),
]


@pytest.mark.parametrize("build,error,name,hyper", WRAPPER_HYPERPARAMETERS,
                         ids=[f"{n}-{h}-{i}" for i, (_, _, n, h) in enumerate(WRAPPER_HYPERPARAMETERS)])
def test_wrapper_hyperparameter(build, error, name, hyper):
  with pytest.raises(error) as caught:
    build()
  _names(caught, name, hyper)


def test_table_size():
  # the issue asks for at least 150 bad inputs
  assert len(HYPERPARAMETERS) + len(FLOAT32) + 2 * len(DTYPES) + len(FLAGS) >= 150
