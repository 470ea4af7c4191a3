"""Primitive transforms shared by many optimizers: accumulators (``trace``, ``ema``), scaling,
clipping, weight decay, gradient hygiene, parameter groups (``masked``, ``partition``), plateau-driven
scaling (``reduce_on_plateau``) and per-example clipping for differential privacy.

May import: ``_core`` and ``schedules``.
"""
