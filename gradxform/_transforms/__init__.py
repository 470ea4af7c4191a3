"""Primitive transforms shared by many optimizers: accumulators (``trace``, ``ema``), scaling,
clipping, weight decay, gradient hygiene and parameter groups (``masked``, ``partition``).

May import: ``_core`` and ``schedules``.
"""
