"""Wrappers around another optimizer, each holding an inner transform and its state: ``apply_if_finite``,
``accumulate``, ``lookahead``, ``ema_params``, ``swa``, ``monitor``, ``cautious``, ``schedule_free``,
``sam``, ``mechanize``, ``kahan_summation``.

May import: ``_core``, ``schedules``, ``_transforms`` and ``_optimizers``.
"""
