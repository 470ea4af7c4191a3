"""NumPy references for the Adam relatives and their wrappers, written from the papers' algorithm boxes and code.

Same protocol as tests/references.py: ``ref(grads, params) -> updates`` for lists
of float64 arrays. No gradxform import.
"""

import math

import numpy as np

from tests.references import _PerLeaf


class Adopt(_PerLeaf):
  """Taniguchi et al. 2024, ADOPT with clipping: v_0 = g_0^2, then m_t = b1 m + (1-b1) clip(g_t / max(sqrt(v_{t-1}), eps), t^p)."""

  def __init__(self, b1, b2, eps, clip_power=0.25, nesterov=False):
    super().__init__(); self.b1, self.b2, self.eps, self.p, self.nesterov = b1, b2, eps, clip_power, nesterov

  def init(self, g):
    return (np.zeros_like(g), None)

  def rule(self, g, p, s, t):
    m, v = s
    if v is None:  # the first gradient only sets v_0
      return np.zeros_like(g), (m, g * g)
    k = t - 1  # updates since the first
    n = g / np.maximum(np.sqrt(v), self.eps)
    if self.p is not None:
      n = np.clip(n, -k ** self.p, k ** self.p)
    m = self.b1 * m + (1 - self.b1) * n
    u = self.b1 * m + (1 - self.b1) * n if self.nesterov else m
    return u, (m, self.b2 * v + (1 - self.b2) * g * g)


def _half_life(beta):
  return math.log(0.5) / math.log(beta + 1e-8) - 1


class Ademamix(_PerLeaf):
  """Pagliardini et al. 2024, AdEMAMix with the schedulers of the paper's code (t is the 1-based step)."""

  def __init__(self, b1, b2, b3, alpha, eps, eps_root=0.0, alpha_warmup=None, b3_warmup=None):
    super().__init__()
    self.b1, self.b2, self.b3, self.alpha, self.eps, self.eps_root = b1, b2, b3, alpha, eps, eps_root
    self.alpha_warmup, self.b3_warmup = alpha_warmup, b3_warmup

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m1, m2, v = s
    alpha, b3 = self.alpha, self.b3
    if self.alpha_warmup is not None and t < self.alpha_warmup:
      alpha = self.alpha * t / self.alpha_warmup
    if self.b3_warmup is not None and t < self.b3_warmup:
      a = t / self.b3_warmup
      b3 = 0.5 ** (1 / ((1 - a) * _half_life(self.b1) + a * _half_life(self.b3) + 1))
    m1 = self.b1 * m1 + (1 - self.b1) * g
    m2 = b3 * m2 + (1 - b3) * g
    v = self.b2 * v + (1 - self.b2) * g * g
    denom = np.sqrt(v / (1 - self.b2 ** t) + self.eps_root) + self.eps
    return (m1 / (1 - self.b1 ** t) + alpha * m2) / denom, (m1, m2, v)


class SimplifiedAdemamix(_PerLeaf):
  """Morwani et al. 2025: m = b1 m + g; u = (m + alpha g) / (sqrt(v_hat + eps_root) + eps)."""

  def __init__(self, b1, b2, alpha, eps, eps_root=0.0):
    super().__init__(); self.b1, self.b2, self.alpha, self.eps, self.eps_root = b1, b2, alpha, eps, eps_root

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, v = s
    m = self.b1 * m + g
    v = self.b2 * v + (1 - self.b2) * g * g
    return (m + self.alpha * g) / (np.sqrt(v / (1 - self.b2 ** t) + self.eps_root) + self.eps), (m, v)


class Mars(_PerLeaf):
  """Yuan et al. 2024, MARS-AdamW and MARS-Lion (approx form) with the code's per-tensor clipping of c_t."""

  def __init__(self, b1, b2, eps, gamma, max_norm=1.0, variant="adamw"):
    super().__init__()
    self.b1, self.b2, self.eps, self.gamma, self.max_norm, self.variant = b1, b2, eps, gamma, max_norm, variant

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, v, last = s
    c = g + self.gamma * self.b1 / (1 - self.b1) * (g - last)
    norm = np.linalg.norm(c)
    if self.max_norm is not None and norm > self.max_norm:
      c = c * self.max_norm / norm
    m = self.b1 * m + (1 - self.b1) * c
    if self.variant == "lion":
      return np.sign(m), (m, v, g)
    v = self.b2 * v + (1 - self.b2) * c * c
    # the code's form: m / ((sqrt(v)/sqrt(1-b2^t) + eps)(1-b1^t))
    denom = (np.sqrt(v) / math.sqrt(1 - self.b2 ** t) + self.eps) * (1 - self.b1 ** t)
    return m / denom, (m, v, g)


class Laprop(_PerLeaf):
  """Ziyin et al. 2020, LaProp (the paper's code with a constant learning rate, outside the momentum)."""

  def __init__(self, b1, b2, eps):
    super().__init__(); self.b1, self.b2, self.eps = b1, b2, eps

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, v = s
    v = self.b2 * v + (1 - self.b2) * g * g
    m = self.b1 * m + (1 - self.b1) * g / (np.sqrt(v / (1 - self.b2 ** t)) + self.eps)
    return m / (1 - self.b1 ** t), (m, v)


class CautiousAdam(_PerLeaf):
  """Liang et al. 2024, C-AdamW's direction as their code: mask = (d * g > 0), d * mask * numel / (mask.sum() + 1).

  d is Adam's m_hat / (sqrt(v_hat) + eps) (torch's eps placement; their code puts eps on sqrt(v)).
  """

  def __init__(self, b1, b2, eps):
    super().__init__(); self.b1, self.b2, self.eps = b1, b2, eps

  def init(self, g):
    return (np.zeros_like(g), np.zeros_like(g))

  def rule(self, g, p, s, t):
    m, v = s
    m = self.b1 * m + (1 - self.b1) * g
    v = self.b2 * v + (1 - self.b2) * g * g
    d = m / (1 - self.b1 ** t) / (np.sqrt(v / (1 - self.b2 ** t)) + self.eps)
    mask = (d * g > 0).astype(g.dtype)
    return d * mask * (mask.size / (mask.sum() + 1)), (m, v)


class ScheduleFree:
  """Defazio et al. 2024, Schedule-Free on a base optimizer's step: z += base(g); x = (1-c) x + c z; y = b1 x + (1-b1) z.

  ``base`` is a reference returning the base step (already times -lr); ``lr(k)`` the learning rate used in the
  weights at the (0-based) step k; c = lr_max^r / sum of lr_max^r.
  """

  def __init__(self, base, lr, b1, power=2.0):
    self.base, self.lr, self.b1, self.power = base, lr, b1, power
    self.k, self.z, self.x, self.lr_max, self.weight_sum = 0, None, None, 0.0, 0.0

  def __call__(self, grads, params):
    if self.z is None:
      self.z = [p.copy() for p in params]
      self.x = [p.copy() for p in params]
    lr = self.lr(self.k) if callable(self.lr) else self.lr
    self.k += 1
    self.lr_max = max(self.lr_max, lr)
    weight = self.lr_max ** self.power
    self.weight_sum += weight
    c = weight / self.weight_sum if self.weight_sum > 0 else 0.0
    steps = self.base(grads, params)  # the base optimizer sees the gradient points y
    self.z = [z + s for z, s in zip(self.z, steps)]
    self.x = [(1 - c) * x + c * z for x, z in zip(self.x, self.z)]
    new_y = [self.b1 * x + (1 - self.b1) * z for x, z in zip(self.x, self.z)]
    return [ny - y for ny, y in zip(new_y, params)]


class RectifiedRms(_PerLeaf):
  """Schedule-Free RAdam's base direction (the paper's code): g / (sqrt(v_hat) + eps) once rho_t > 4, else g."""

  def __init__(self, b2, eps):
    super().__init__(); self.b2, self.eps = b2, eps

  def init(self, g):
    return np.zeros_like(g)

  def rule(self, g, p, v, t):
    v = self.b2 * v + (1 - self.b2) * g * g
    if rho(self.b2, t) > 4:
      return g / (np.sqrt(v / (1 - self.b2 ** t)) + self.eps), v
    return g, v


def rho(b2, t):
  rho_inf = 2 / (1 - b2) - 1
  return rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)


def rectified_lr(lr, b2, silent=True):
  """k (0-based step) -> lr * RAdam's rectification at t = k + 1 (0 or 1 while rho_t <= 4)."""
  def schedule(k):
    t, rho_inf = k + 1, 2 / (1 - b2) - 1
    r = rho(b2, t)
    if r > 4:
      return lr * math.sqrt((r - 4) * (r - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * r))
    return 0.0 if silent else lr
  return schedule
