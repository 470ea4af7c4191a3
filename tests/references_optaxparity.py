"""Independent NumPy references for the optimizers that reproduce optax, written from their papers.

Same protocol as tests/references.py: ``ref(grads, params) -> updates`` for
lists of float64 arrays, one state per leaf. Where optax departs from the
paper (bias corrections, the decay convention) the reference follows the
paper's algorithm box with optax's choice written out and named. None of this
code imports gradxform.
"""

import math

import numpy as np

from tests.references import _PerLeaf


def _norm(x):
  return math.sqrt(float(np.sum(np.square(x))))


class TrustRatio(_PerLeaf):
  """You et al. 2017 (LARS), eq. 6: local LR c ||w|| / (||g|| + eps) per layer; 1 if a norm is 0 (optax)."""

  def __init__(self, min_norm=0.0, coef=1.0, eps=0.0):
    super().__init__(); self.min_norm, self.coef, self.eps = min_norm, coef, eps

  def rule(self, g, p, s, t):
    wn, gn = max(_norm(p), self.min_norm), max(_norm(g), self.min_norm)
    ratio = 1.0 if wn == 0 or gn == 0 else self.coef * wn / (gn + self.eps)
    return ratio * g, s


class ParamBlockNorm(_PerLeaf):
  def __init__(self, min_scale, rms=False):
    super().__init__(); self.min_scale, self.rms = min_scale, rms

  def rule(self, g, p, s, t):
    size = _norm(p) / math.sqrt(max(p.size, 1)) if self.rms else _norm(p)
    return g * max(size, self.min_scale), s


class NormalizeByUpdateNorm:
  """u = s g / (||g|| + eps), the norm over all leaves together."""

  def __init__(self, scale, eps):
    self.scale, self.eps = scale, eps

  def __call__(self, grads, params):
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    return [self.scale * g / (norm + self.eps) for g in grads]


class AdaBelief(_PerLeaf):
  """Zhuang et al. 2020, Algorithm 2 (eps_root added to s_t at every step, as its code); Nesterov as Dozat 2016."""

  def __init__(self, b1, b2, eps, eps_root, nesterov=False):
    super().__init__(); self.b1, self.b2, self.eps, self.eps_root, self.nesterov = b1, b2, eps, eps_root, nesterov

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, st, t):
    m, s = st
    b1, b2 = self.b1, self.b2
    m = b1 * m + (1 - b1) * g
    s = b2 * s + (1 - b2) * (g - m) ** 2 + self.eps_root
    if self.nesterov:
      m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1 ** t)
    else:
      m_hat = m / (1 - b1 ** t)
    return m_hat / (np.sqrt(s / (1 - b2 ** t)) + self.eps), (m, s)


class Yogi(_PerLeaf):
  """Zaheer et al. 2018, Algorithm 2, with optax's start v_0 = m_0 = v_init and Adam's bias corrections."""

  def __init__(self, b1, b2, eps, eps_root=0.0, initial=1e-6):
    super().__init__(); self.b1, self.b2, self.eps, self.eps_root, self.initial = b1, b2, eps, eps_root, initial

  def init(self, g):
    return (np.full_like(g, self.initial), np.full_like(g, self.initial))

  def rule(self, g, p, st, t):
    m, v = st
    m = self.b1 * m + (1 - self.b1) * g
    v = v - (1 - self.b2) * np.sign(v - g * g) * g * g
    u = (m / (1 - self.b1 ** t)) / (np.sqrt(v / (1 - self.b2 ** t) + self.eps_root) + self.eps)
    return u, (m, v)


class Adan(_PerLeaf):
  """Xie et al. 2022, Algorithm 1, in the paper's weights beta_k = 1 - b_k (b: optax's decays).

  The authors' code's (and optax's) choices: the moments start at 0 and are
  bias-corrected (the paper's box starts m and n at the first gradient); the first
  gradient difference is 0. ``legacy_optax``: optax 0.2.8 weights the difference by
  beta2 where the paper has 1 - beta2.
  """

  def __init__(self, b1, b2, b3, eps, eps_root=0.0, legacy_optax=False):
    super().__init__()
    self.legacy = legacy_optax
    self.beta1, self.beta2, self.beta3 = 1 - b1, 1 - b2, 1 - b3
    self.eps, self.eps_root = eps, eps_root

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g), np.zeros_like(g), None)

  def rule(self, g, p, st, t):
    m, v, n, g_prev = st
    diff = np.zeros_like(g) if g_prev is None else g - g_prev
    m = (1 - self.beta1) * m + self.beta1 * g
    v = (1 - self.beta2) * v + self.beta2 * diff
    weight = self.beta2 if self.legacy else 1 - self.beta2
    n = (1 - self.beta3) * n + self.beta3 * (g + weight * diff) ** 2
    m_hat = m / (1 - (1 - self.beta1) ** t)
    v_hat = v / (1 - (1 - self.beta2) ** t)
    n_hat = n / (1 - (1 - self.beta3) ** t)
    u = (m_hat + weight * v_hat) / (np.sqrt(n_hat + self.eps_root) + self.eps)
    return u, (m, v, n, g.copy())


class NovoGrad(_PerLeaf):
  """Ginsburg et al. 2019, Algorithm 1: v_1 = ||g_1||^2, then an EMA; m_t = b1 m + g/(sqrt(v)+eps) + wd w."""

  def __init__(self, b1, b2, eps, eps_root=0.0, wd=0.0):
    super().__init__(); self.b1, self.b2, self.eps, self.eps_root, self.wd = b1, b2, eps, eps_root, wd

  def init(self, g):
    return (np.zeros_like(g), None)

  def rule(self, g, p, st, t):
    m, v = st
    sq = float(np.sum(g * g))
    v = sq if v is None else self.b2 * v + (1 - self.b2) * sq
    m = self.b1 * m + g / (math.sqrt(v + self.eps_root) + self.eps) + self.wd * p
    return m.copy(), (m, v)


class Optimistic(_PerLeaf):
  """Mokhtari et al. 2019, eq. (OGDA) generalized: u = (alpha + beta) g_t - beta g_{t-1}, g_0 := g_1."""

  def __init__(self, alpha, beta):
    super().__init__(); self.alpha, self.beta = alpha, beta

  def rule(self, g, p, prev, t):
    prev = g if prev is None else prev
    return (self.alpha + self.beta) * g - self.beta * prev, g.copy()


class NesterovAdam(_PerLeaf):
  """Dozat 2016 (optax's form): m_hat = b1 m_t / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t)."""

  def __init__(self, b1, b2, eps, eps_root=0.0):
    super().__init__(); self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, st, t):
    m, v = st
    b1, b2 = self.b1, self.b2
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1 ** t)
    return m_hat / (np.sqrt(v / (1 - b2 ** t) + self.eps_root) + self.eps), (m, v)


class SM3(_PerLeaf):
  """Anil et al. 2019, SM3-II (Algorithm 2) with the cover {rows of each axis}, an EMA option and momentum.

  nu'(i) = c g(i)^2 + b2 min_{r ∋ i} mu(r); mu(r) = max_{i ∈ r} nu'(i); c = 1 if b2 = 1 else 1 - b2.
  Leaves with fewer than two axes: one set per coordinate (Adagrad). Then m = b1 m + (1 - b1) g / sqrt(nu' + eps).
  """

  def __init__(self, b1, b2, eps):
    super().__init__(); self.b1, self.b2, self.eps = b1, b2, eps

  def init(self, g):
    mu = [np.zeros_like(g)] if g.ndim < 2 else [np.zeros(n) for n in g.shape]
    return (mu, np.zeros_like(g))

  def rule(self, g, p, st, t):
    mu, m = st
    c = 1.0 if self.b2 == 1.0 else 1.0 - self.b2
    if g.ndim < 2:
      cover = mu[0]
    else:
      cover = np.empty_like(g)
      for index in np.ndindex(g.shape):
        cover[index] = min(mu[axis][i] for axis, i in enumerate(index))
    nu = c * g * g + self.b2 * cover
    if g.ndim < 2:
      mu = [nu]
    else:
      mu = [np.array([nu.take(r, axis=axis).max() for r in range(n)]) for axis, n in enumerate(g.shape)]
    scaled = np.where(nu > 0, g / np.sqrt(np.where(nu > 0, nu, 1.0) + self.eps), 0.0)
    m = self.b1 * m + (1 - self.b1) * scaled
    return m.copy(), (mu, m)


class FromageStep(_PerLeaf):
  """Bernstein et al. 2020, Algorithm 1's last line: w <- (w - lr d) / sqrt(1 + lr^2), as an update w_new - w."""

  def __init__(self, lr):
    super().__init__(); self.lr = lr

  def rule(self, d, p, s, t):
    return (p - self.lr * d) / math.sqrt(1 + self.lr ** 2) - p, s


class DistanceOverGradients:
  """Ivgi et al. 2023, layer-wise DoG: eta = s rbar / sqrt(G + eps), rbar = max(r_eps (1 + ||x0||), ||x - x0||)."""

  def __init__(self, reps_rel, eps, scale):
    self.reps_rel, self.eps, self.scale = reps_rel, eps, scale
    self.x0 = self.rbar = self.G = None

  def __call__(self, grads, params):
    if self.x0 is None:
      self.x0 = [p.copy() for p in params]
      self.rbar = [self.reps_rel * (1 + _norm(p)) for p in params]
      self.G = [0.0] * len(params)
    out = []
    for i, (g, p) in enumerate(zip(grads, params)):
      self.rbar[i] = max(self.rbar[i], _norm(p - self.x0[i]))
      self.G[i] += float(np.sum(g * g))
      out.append(self.scale * self.rbar[i] / math.sqrt(self.G[i] + self.eps) * g)
    return out
