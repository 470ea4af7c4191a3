"""Independent NumPy references for torch.optim's options and optax's variants (no gradxform import).

Written from the algorithm boxes in torch.optim's documentation (SGD with dampening,
Adagrad with lr_decay, Rprop, ASGD) and from optax's documented formulas (Adam with
Nesterov, AMSGrad with the maximum of v̂, RMSProp with initial_scale / eps in the root /
bias correction). Same protocol as tests/references.py: ``ref(grads, params) -> updates``.
"""

import numpy as np

from tests.references import _PerLeaf


class DampedMomentum(_PerLeaf):
  """torch.optim.SGD's buffer: b_1 = g; b_t = mu b_{t-1} + (1 - d) g."""

  def __init__(self, mu, dampening):
    super().__init__(); self.mu, self.d = mu, dampening

  def rule(self, g, p, buf, t):
    buf = g.copy() if buf is None else self.mu * buf + (1 - self.d) * g
    return buf, buf


class AdagradLrDecay(_PerLeaf):
  """torch.optim.Adagrad's direction with clr = 1 / (1 + (t - 1) lr_decay) folded in."""

  def __init__(self, initial, eps, lr_decay):
    super().__init__(); self.initial, self.eps, self.lr_decay = initial, eps, lr_decay

  def init(self, g):
    return np.full_like(g, self.initial)

  def rule(self, g, p, G, t):
    G = G + g * g
    return g / (np.sqrt(G) + self.eps) / (1 + (t - 1) * self.lr_decay), G


class Rprop(_PerLeaf):
  """Riedmiller & Braun 1993 as torch.optim.Rprop (iRprop-): the step *along* the gradient."""

  def __init__(self, lr, eta_minus, eta_plus, lo, hi):
    super().__init__(); self.lr, self.em, self.ep, self.lo, self.hi = lr, eta_minus, eta_plus, lo, hi

  def init(self, g):
    return (np.full_like(g, self.lr), np.zeros_like(g))

  def rule(self, g, p, s, t):
    step, prev = s
    step, g = step.copy(), g.copy()
    for i in np.ndindex(g.shape):
      product = g[i] * prev[i]
      if product > 0:
        step[i] = min(step[i] * self.ep, self.hi)
      elif product < 0:
        step[i] = max(step[i] * self.em, self.lo)
        g[i] = 0.0
      else:
        step[i] = min(max(step[i], self.lo), self.hi)
    return np.sign(g) * step, (step, g)


class Asgd:
  """torch.optim.ASGD (Polyak & Juditsky 1992): returns the descent step; ``ax`` holds the average."""

  def __init__(self, lr, lambd, alpha, t0):
    self.lr, self.lambd, self.alpha, self.t0 = lr, lambd, alpha, t0
    self.t, self.eta, self.mu, self.ax = 0, lr, 1.0, None

  def __call__(self, grads, params):
    self.t += 1
    if self.ax is None:
      self.ax = [p.copy() for p in params]
    updates = []
    for i, (g, p) in enumerate(zip(grads, params)):
      new_p = p * (1 - self.lambd * self.eta) - self.eta * g
      self.ax[i] = new_p.copy() if self.mu == 1 else self.ax[i] + self.mu * (new_p - self.ax[i])
      updates.append(new_p - p)
    self.eta = self.lr / (1 + self.lambd * self.lr * self.t) ** self.alpha
    self.mu = 1 / max(1, self.t - self.t0)
    return updates


class AdamOptax(_PerLeaf):
  """optax.scale_by_adam's formulas: ``nesterov`` numerator; ``amsgrad`` as optax.scale_by_amsgrad (max of v̂)."""

  def __init__(self, b1, b2, eps, nesterov=False, amsgrad=False):
    super().__init__(); self.b1, self.b2, self.eps, self.nesterov, self.amsgrad = b1, b2, eps, nesterov, amsgrad

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, v, vmax = s
    b1, b2 = self.b1, self.b2
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    if self.nesterov:
      m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1 ** t)
    else:
      m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    vmax = np.maximum(vmax, v_hat)
    return m_hat / (np.sqrt(vmax if self.amsgrad else v_hat) + self.eps), (m, v, vmax)


class RMSPropOptax(_PerLeaf):
  """optax.scale_by_rms / scale_by_stddev: v_0 = initial_scale, optional bias correction and eps in the root."""

  def __init__(self, decay, eps, initial_scale=0.0, eps_in_sqrt=True, bias_correction=False, centered=False):
    super().__init__()
    self.d, self.eps, self.v0, self.inside, self.debias, self.centered = (
        decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered)

  def init(self, g):
    return (np.full_like(g, self.v0), np.zeros_like(g))

  def rule(self, g, p, s, t):
    v, m = s
    v = self.d * v + (1 - self.d) * g * g
    m = self.d * m + (1 - self.d) * g
    c = 1 - self.d ** t if self.debias else 1.0
    var = v / c - (m / c) ** 2 if self.centered else v / c
    denom = np.sqrt(var + self.eps) if self.inside else np.sqrt(var) + self.eps
    return g / denom, (v, m)
