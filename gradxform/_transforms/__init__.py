"""Primitive transforms shared by many optimizers: accumulators (``trace``, ``ema``), scaling, clipping,
weight decay, gradient hygiene, parameter groups (``masked``, ``partition``), trust ratios, plateau-driven
scaling (``reduce_on_plateau``), per-example clipping for differential privacy, Newton-Schulz
orthogonalization (Muon) and the Kronecker-factor statistics and blocking that Shampoo and SOAP share.

May import: ``_core`` and ``schedules``.
"""
