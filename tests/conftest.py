"""Test configuration: strict dtype promotion, so any implicit mixing of dtypes fails."""

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
