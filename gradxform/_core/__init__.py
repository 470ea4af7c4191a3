"""The protocol and its helpers: the pytree module base, ``GradientTransformation``, ``chain``,
tree utilities, hyperparameter checks and scheduling, hyperparameters as state inputs (``inject``),
state inspection, the objective plumbing, optax interop (``to_optax``).

May import: nothing else of gradxform (this is the bottom layer).
"""
