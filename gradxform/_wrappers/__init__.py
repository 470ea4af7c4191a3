"""Wrappers around another optimizer: ``apply_if_finite``, ``accumulate``, ``lookahead``,
``ema_params``; they hold an inner transform and its state.

May import: ``_core``, ``schedules``, ``_transforms`` and ``_optimizers``.
"""
