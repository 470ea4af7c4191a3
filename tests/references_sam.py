"""NumPy reference for SAM (Foret et al. 2021) in optax.contrib.sam's alternating form.

Same protocol as tests/references.py: ``ref(grads, params) -> updates`` for lists of float64 arrays.
No gradxform import.
"""

import numpy as np


class Normalize:
  """g / ||g|| over all leaves together (zero for a zero gradient)."""

  def __call__(self, grads, params):
    norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
    return [g / norm if norm > 0 else np.zeros_like(g) for g in grads]


class Sam:
  """Cycles of ``sync_period - 1`` ascent steps ``p <- p - adv(g)`` from the outer parameters ``w`` (kept
  at the cycle's start), then one descent step that moves the parameters to ``w + outer(g, w)``.

  ``make_adv()`` builds a fresh adversary reference (called again after each descent step with
  ``reset_state``); the adversary is not called on descent steps, the outer optimizer only on them.
  """

  def __init__(self, outer, make_adv, sync_period, reset_state=True):
    self.outer, self.make_adv, self.k, self.reset = outer, make_adv, sync_period, reset_state
    self.adv, self.s, self.w = make_adv(), 0, None

  def __call__(self, grads, params):
    if self.s == 0:
      self.w = [p.copy() for p in params]
    if self.s < self.k - 1:
      updates = [-u for u in self.adv(grads, params)]
    else:
      updates = [w - p + u for w, p, u in zip(self.w, params, self.outer(grads, self.w))]
      if self.reset:
        self.adv = self.make_adv()
    self.s = (self.s + 1) % self.k
    return updates
