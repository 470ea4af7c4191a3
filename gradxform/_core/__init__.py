"""The protocol and its helpers: the pytree module base, ``GradientTransformation``, ``chain``,
tree utilities, hyperparameter checks and scheduling, state inspection, the objective plumbing.

May import: nothing else of gradxform (this is the bottom layer).
"""
