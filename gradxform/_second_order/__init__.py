"""Methods that use the loss value or curvature: Hessian-vector products, the curvature step,
Newton, L-BFGS, line searches, Polyak steps, Sophia, and the ``step``/``minimize`` drivers.

May import: ``_core``, ``schedules``, ``_transforms``, ``_optimizers`` and ``_wrappers``.
"""
