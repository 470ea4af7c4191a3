"""NumPy references for Adafactor (Shazeer & Stern 2018), written from the algorithm boxes.

``TorchAdafactor`` follows torch.optim.Adafactor's documented algorithm (its
docstring's box and the eps1 note) as one rule; ``OptaxAdafactor`` follows
optax's ``adafactor`` (factored statistics with eps added to g², the row and
column factors applied separately, clipping, parameter scale, momentum, decay).
Neither imports gradxform, and neither is split into gradxform's stages.
"""

import math

import numpy as np

from tests.references import _PerLeaf


def _rms(x):
  return math.sqrt(float(np.mean(np.square(x)))) if x.size else 0.0


def _axes(shape, rule, min_dim):
  if len(shape) < 2:
    return None
  if rule == "last":
    row, col = len(shape) - 2, len(shape) - 1
  else:  # the two largest axes; ties keep the earlier axis first
    order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
    row, col = order[-2], order[-1]
  return None if min(shape[row], shape[col]) < min_dim else (row, col)


class FactoredRms(_PerLeaf):
  """Paper §3 with torch's eps placement: V = R C / max(mean R, eps1), u = g / max(sqrt V, eps1).

  ``eps_root`` is added to g² before averaging (optax's eps).
  """

  def __init__(self, beta2_decay, eps1, eps_root=0.0, rule="last", min_dim=1):
    super().__init__()
    self.tau, self.eps1, self.eps_root, self.axes_rule, self.min_dim = beta2_decay, eps1, eps_root, rule, min_dim

  def init(self, g):
    return None

  def rule(self, g, p, s, t):
    axes = _axes(g.shape, self.axes_rule, self.min_dim)
    w = t ** self.tau  # 1 - beta_t
    g2 = g * g + self.eps_root
    if axes is None:
      v = (1 - w) * (np.zeros_like(g) if s is None else s) + w * g2
      estimate, s = v, v
    else:
      r, c = axes
      R0, C0 = s if s is not None else (0.0, 0.0)
      R = (1 - w) * R0 + w * g2.mean(axis=c, keepdims=True)
      C = (1 - w) * C0 + w * g2.mean(axis=r, keepdims=True)
      estimate = R * C / np.maximum(R.mean(axis=r, keepdims=True), self.eps1)
      s = (R, C)
    return g / np.maximum(np.sqrt(estimate), self.eps1), s


class ParamBlockRms(_PerLeaf):
  def __init__(self, min_scale):
    super().__init__(); self.min_scale = min_scale

  def rule(self, g, p, s, t):
    return g * max(self.min_scale, _rms(p)), s


class RelativeStep(_PerLeaf):
  """The factor min(1, 1/(lr sqrt t)) that turns a later learning rate lr into min(lr, 1/sqrt t)."""

  def __init__(self, lr):
    super().__init__(); self.lr = lr

  def rule(self, g, p, s, t):
    return g * min(self.lr, 1 / math.sqrt(t)) / self.lr, s


class TorchAdafactor(_PerLeaf):
  """torch.optim.Adafactor's algorithm box, as the change of the parameters (one rule per leaf)."""

  def __init__(self, lr=1e-2, beta2_decay=-0.8, eps1=None, eps2=1e-3, d=1.0, weight_decay=0.0, maximize=False):
    super().__init__()
    self.lr, self.eps2, self.d, self.wd, self.maximize = lr, eps2, d, weight_decay, maximize
    self.factored = FactoredRms(beta2_decay, np.finfo(np.float64).eps if eps1 is None else eps1)

  def rule(self, g, p, s, t):
    g = -g if self.maximize else g
    rho = min(self.lr, 1 / math.sqrt(t))
    alpha = max(self.eps2, _rms(p)) * rho
    u, s = self.factored.rule(g, p, s, t)
    u = u / max(1.0, _rms(u) / self.d)
    return -self.lr * self.wd * p - alpha * u, s


class OptaxAdafactor(_PerLeaf):
  """optax.adafactor: g² + eps averaged, u = g (R / mean R)^-1/2 C^-1/2, clip, lr, parameter scale, momentum, decay."""

  def __init__(self, lr=None, decay_rate=0.8, min_dim=128, eps=1e-30, clip=1.0, scale_by_param=True,
               momentum=None, weight_decay=None):
    super().__init__()
    self.lr, self.decay_rate, self.min_dim, self.eps, self.clip = lr, decay_rate, min_dim, eps, clip
    self.scale_by_param, self.momentum, self.wd = scale_by_param, momentum, weight_decay

  def rule(self, g, p, s, t):
    stats, m = s if s is not None else (None, 0.0)
    beta = 1 - t ** -self.decay_rate
    axes = _axes(g.shape, "largest", self.min_dim)
    g2 = g * g + self.eps
    if axes is None:
      stats = beta * (0.0 if stats is None else stats) + (1 - beta) * g2
      u = g / np.sqrt(stats)
    else:
      r, c = axes
      R0, C0 = stats if stats is not None else (0.0, 0.0)
      R = beta * R0 + (1 - beta) * g2.mean(axis=c, keepdims=True)
      C = beta * C0 + (1 - beta) * g2.mean(axis=r, keepdims=True)
      u = g * (R / R.mean(axis=r, keepdims=True)) ** -0.5 * C ** -0.5
      stats = (R, C)
    if self.clip is not None:
      u = u / max(1.0, _rms(u) / self.clip)
    if self.lr is not None:
      u = self.lr * u
    if self.scale_by_param:
      u = u * max(1e-3, _rms(p))
    if self.momentum is not None:
      m = self.momentum * m + (1 - self.momentum) * u
      u = m
    if self.wd is not None:
      u = u + self.wd * p
    return -u, (stats, m)
