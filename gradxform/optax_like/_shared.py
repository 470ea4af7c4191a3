"""Names whose numbers and signatures are the same in optax and gradxform: the same objects in both places."""

import gradxform as gx

__all__ = ["EmptyState", "GradientTransformation", "adabelief", "adamaxw", "adan", "apply_if_finite",
           "apply_updates", "chain", "clip", "clip_by_block_rms", "freeze", "fromage", "identity", "lamb",
           "lars", "normalize_by_update_norm", "novograd", "optimistic_adam_v2",
           "optimistic_gradient_descent", "per_example_global_norm_clip", "per_example_layer_norm_clip",
           "rprop", "scale", "scale_by_adan", "scale_by_belief", "scale_by_distance_over_gradients",
           "scale_by_novograd", "scale_by_optimistic_gradient",
           "scale_by_param_block_norm", "scale_by_param_block_rms", "scale_by_rprop", "scale_by_schedule",
           "scale_by_sign", "scale_by_sm3", "scale_by_trust_ratio", "scale_by_yogi", "set_to_zero",
           "sign_sgd", "skip_large_updates", "skip_not_finite", "sm3", "yogi", "zero_nans"]

GradientTransformation = gx.GradientTransformation
EmptyState = gx.EmptyState
adabelief = gx.adabelief
adamaxw = gx.adamaxw
adan = gx.adan
apply_if_finite = gx.apply_if_finite
apply_updates = gx.apply_updates
chain = gx.chain
clip = gx.clip
clip_by_block_rms = gx.clip_by_block_rms
freeze = gx.freeze
fromage = gx.fromage
identity = gx.identity
lamb = gx.lamb
lars = gx.lars
normalize_by_update_norm = gx.normalize_by_update_norm
novograd = gx.novograd
optimistic_adam_v2 = gx.optimistic_adam_v2
optimistic_gradient_descent = gx.optimistic_gradient_descent
per_example_global_norm_clip = gx.per_example_global_norm_clip
per_example_layer_norm_clip = gx.per_example_layer_norm_clip
rprop = gx.rprop
scale = gx.scale
scale_by_adan = gx.scale_by_adan
scale_by_belief = gx.scale_by_belief
scale_by_distance_over_gradients = gx.scale_by_distance_over_gradients
scale_by_novograd = gx.scale_by_novograd
scale_by_optimistic_gradient = gx.scale_by_optimistic_gradient
scale_by_param_block_norm = gx.scale_by_param_block_norm
scale_by_param_block_rms = gx.scale_by_param_block_rms
scale_by_rprop = gx.scale_by_rprop
scale_by_schedule = gx.scale_by_schedule
scale_by_sign = gx.scale_by_sign
scale_by_sm3 = gx.scale_by_sm3
scale_by_trust_ratio = gx.scale_by_trust_ratio
scale_by_yogi = gx.scale_by_yogi
set_to_zero = gx.set_to_zero
sign_sgd = gx.sign_sgd
skip_large_updates = gx.skip_large_updates
skip_not_finite = gx.skip_not_finite
sm3 = gx.sm3
yogi = gx.yogi
zero_nans = gx.zero_nans
