"""Independent NumPy references, written from the papers' equations (and torch.optim's docs).

Each reference is a small stateful object: ``ref(grads, params) -> updates`` for
lists of float64 arrays. Elementwise rules keep one state per leaf. None of this
code imports gradxform.

The Adam family, ``Ema`` and ``RMSProp`` take ``store``: how a moment is kept
between steps (e.g. rounded to bfloat16). The update is computed from the
moments as stored, as optax and torch do with low-precision state.
"""

import math

import numpy as np


class _PerLeaf:
  """Runs an elementwise rule ``rule(g, p, state, t) -> (u, state)`` on each leaf."""

  def __init__(self, store=None):
    self.t = 0
    self.states = None
    self.store = store or (lambda x: x)

  def __call__(self, grads, params):
    self.t += 1
    if self.states is None:
      self.states = [self.init(g) for g in grads]
    out = []
    for i, (g, p) in enumerate(zip(grads, params)):
      u, self.states[i] = self.rule(g, p, self.states[i], self.t)
      out.append(u)
    return out

  def init(self, g):
    return None


class Scale(_PerLeaf):
  def __init__(self, step_size):
    super().__init__(); self.s = step_size

  def rule(self, g, p, s, t):
    return self.s * g, s


class LearningRate(_PerLeaf):
  def __init__(self, lr):
    super().__init__(); self.lr = lr

  def rule(self, g, p, s, t):
    lr = self.lr(t - 1) if callable(self.lr) else self.lr
    return -lr * g, s


class Sign(_PerLeaf):
  def rule(self, g, p, s, t):
    return np.sign(g), s


class Clip(_PerLeaf):
  def __init__(self, delta):
    super().__init__(); self.delta = delta

  def rule(self, g, p, s, t):
    return np.minimum(np.maximum(g, -self.delta), self.delta), s


class ClipByGlobalNorm:
  """torch.nn.utils.clip_grad_norm_: coef = min(1, c / (||g|| + 1e-6))."""

  def __init__(self, max_norm):
    self.c = max_norm

  def __call__(self, grads, params):
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    coef = min(1.0, self.c / (norm + 1e-6))
    return [g * coef for g in grads]


class DecayedWeights(_PerLeaf):
  def __init__(self, wd, mask=None):
    super().__init__(); self.wd = wd; self.mask = mask; self.i = 0

  def __call__(self, grads, params):
    mask = self.mask or [True] * len(grads)
    return [g + self.wd * p if m else g for g, p, m in zip(grads, params, mask)]


class Momentum(_PerLeaf):
  """Sutskever et al. 2013 in torch's form: b = mu b + g; u = b or g + mu b."""

  def __init__(self, mu, nesterov=False):
    super().__init__(); self.mu = mu; self.nesterov = nesterov

  def init(self, g):
    return None  # torch: the first buffer is g itself

  def rule(self, g, p, buf, t):
    buf = g.copy() if buf is None else self.mu * buf + g
    return (g + self.mu * buf if self.nesterov else buf), buf


class Ema(_PerLeaf):
  def __init__(self, decay, debias=True, store=None):
    super().__init__(store); self.d = decay; self.debias = debias

  def init(self, g):
    return np.zeros_like(g)

  def rule(self, g, p, m, t):
    m = self.store(self.d * m + (1 - self.d) * g)
    return (m / (1 - self.d ** t) if self.debias else m), m


class RMSProp(_PerLeaf):
  """Tieleman & Hinton 2012 / Graves 2013 (centered), torch's eps placement."""

  def __init__(self, alpha, eps, centered=False, eps_root=0.0, store=None):
    super().__init__(store); self.a = alpha; self.eps = eps; self.centered = centered; self.eps_root = eps_root

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    v, gbar = s
    v = self.store(self.a * v + (1 - self.a) * g ** 2)
    gbar = self.store(self.a * gbar + (1 - self.a) * g)
    var = v - gbar ** 2 if self.centered else v
    return g / (np.sqrt(var + self.eps_root) + self.eps), (v, gbar)


class Adam(_PerLeaf):
  """Kingma & Ba 2015, Algorithm 1 with eps added to sqrt(v_hat); AMSGrad as torch (max of raw v)."""

  def __init__(self, b1, b2, eps, eps_root=0.0, amsgrad=False, store=None):
    super().__init__(store)
    self.b1, self.b2, self.eps, self.eps_root, self.amsgrad = b1, b2, eps, eps_root, amsgrad

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, v, vmax = s
    m = self.store(self.b1 * m + (1 - self.b1) * g)
    v = self.store(self.b2 * v + (1 - self.b2) * g * g)
    vmax = np.maximum(vmax, v)
    m_hat = m / (1 - self.b1 ** t)
    v_hat = (vmax if self.amsgrad else v) / (1 - self.b2 ** t)
    return m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps), (m, v, vmax)


class Adamax(_PerLeaf):
  """Kingma & Ba 2015, Algorithm 2, with torch's u = max(b2 u, |g| + eps)."""

  def __init__(self, b1, b2, eps, store=None):
    super().__init__(store); self.b1, self.b2, self.eps = b1, b2, eps

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, u = s
    m = self.store(self.b1 * m + (1 - self.b1) * g)
    u = self.store(np.maximum(self.b2 * u, np.abs(g) + self.eps))
    return m / ((1 - self.b1 ** t) * u), (m, u)


class NAdam(_PerLeaf):
  """Dozat 2016 with torch's schedule mu_t = b1 (1 - 0.5 * 0.96^(t psi))."""

  def __init__(self, b1, b2, eps, psi, store=None):
    super().__init__(store); self.b1, self.b2, self.eps, self.psi = b1, b2, eps, psi

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, v = s
    mu = lambda k: self.b1 * (1 - 0.5 * 0.96 ** (k * self.psi))
    prod = math.prod(mu(k) for k in range(1, t + 1))
    m = self.store(self.b1 * m + (1 - self.b1) * g)
    v = self.store(self.b2 * v + (1 - self.b2) * g * g)
    denom = np.sqrt(v / (1 - self.b2 ** t)) + self.eps
    u = (1 - mu(t)) / (1 - prod) * g / denom + mu(t + 1) / (1 - prod * mu(t + 1)) * m / denom
    return u, (m, v)


class RAdam(_PerLeaf):
  """Liu et al. 2020, Algorithm 2, rectifying when rho_t > 5 and with eps on sqrt(v), as torch."""

  def __init__(self, b1, b2, eps, store=None):
    super().__init__(store); self.b1, self.b2, self.eps = b1, b2, eps

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, v = s
    m = self.store(self.b1 * m + (1 - self.b1) * g)
    v = self.store(self.b2 * v + (1 - self.b2) * g * g)
    m_hat = m / (1 - self.b1 ** t)
    rho_inf = 2 / (1 - self.b2) - 1
    rho = rho_inf - 2 * t * self.b2 ** t / (1 - self.b2 ** t)
    if rho > 5:
      r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
      return m_hat * r * math.sqrt(1 - self.b2 ** t) / (np.sqrt(v) + self.eps), (m, v)
    return m_hat, (m, v)


class Adagrad(_PerLeaf):
  """Duchi et al. 2011 diagonal form, torch's eps placement."""

  def __init__(self, initial, eps, eps_root=0.0):
    super().__init__(); self.initial, self.eps, self.eps_root = initial, eps, eps_root

  def init(self, g):
    return np.full_like(g, self.initial)

  def rule(self, g, p, G, t):
    G = G + g * g
    return g / (np.sqrt(G + self.eps_root) + self.eps), G


class Adadelta(_PerLeaf):
  """Zeiler 2012, Algorithm 1."""

  def __init__(self, rho, eps):
    super().__init__(); self.rho, self.eps = rho, eps

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    eg, ex = s
    eg = self.rho * eg + (1 - self.rho) * g * g
    dx = np.sqrt(ex + self.eps) / np.sqrt(eg + self.eps) * g
    ex = self.rho * ex + (1 - self.rho) * dx * dx
    return dx, (eg, ex)


class Lion(_PerLeaf):
  """Chen et al. 2023, Algorithm 2 (direction only)."""

  def __init__(self, b1, b2, store=None):
    super().__init__(store); self.b1, self.b2 = b1, b2

  def init(self, g):
    return np.zeros_like(g)

  def rule(self, g, p, m, t):
    u = np.sign(self.b1 * m + (1 - self.b1) * g)
    return u, self.store(self.b2 * m + (1 - self.b2) * g)


class Chain:
  def __init__(self, *refs):
    self.refs = refs

  def __call__(self, grads, params):
    for ref in self.refs:
      grads = ref(grads, params)
    return grads
