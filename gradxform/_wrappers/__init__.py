"""Wrappers around another optimizer: ``apply_if_finite``, ``accumulate``, ``lookahead``, ``mechanize``,
``ema_params``; they hold an inner transform and its state.

May import: ``_core``, ``schedules``, ``_transforms`` and ``_optimizers``.
"""
