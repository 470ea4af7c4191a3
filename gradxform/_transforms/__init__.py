"""Primitive transforms shared by many optimizers: accumulators (``trace``, ``ema``), scaling,
clipping, weight decay, gradient hygiene, parameter groups (``masked``, ``partition``) and the
Kronecker-factor statistics shared by Shampoo and SOAP (``kronecker``).

May import: ``_core`` and ``schedules``.
"""
