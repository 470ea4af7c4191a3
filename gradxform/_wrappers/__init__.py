"""Wrappers around another optimizer, each holding an inner transform and its state: ``apply_if_finite``,
``accumulate``, ``lookahead``, ``ema_params``, ``swa``, ``monitor``, ``cautious``, ``schedule_free`` (and
whatever else wraps an optimizer rather than transforming a gradient).

May import: ``_core``, ``schedules``, ``_transforms`` and ``_optimizers``.
"""
