"""Named optimizers, one file per family named after it (``adam.py``, ``sgd.py``, ...): each file
holds the family's ``scale_by_*`` primitive (its math, written once) and the named chains.

May import: ``_core``, ``schedules``, ``_transforms`` and other files of this folder.
"""
