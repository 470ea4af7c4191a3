"""NumPy references for the learning-rate-free methods, written from the papers' algorithm boxes.

Same protocol as tests/references.py: ``ref(grads, params) -> updates`` for lists of
float64 arrays (the params are the current iterate; the first call's are ``x_0``). The
norms of DoG, DoWG, Prodigy and D-Adaptation are over all leaves together. None of this
code imports gradxform.
"""

import math

import numpy as np

from tests.references import _PerLeaf


def _sq_norm(leaves):
  return float(sum(np.sum(x * x) for x in leaves))


class _Global:
  """A whole-tree method: keeps ``x_0`` and a step counter."""

  def __init__(self):
    self.t, self.x0 = 0, None

  def __call__(self, grads, params):
    self.t += 1
    if self.x0 is None:
      self.x0 = [p.copy() for p in params]
      self.start(params)
    return self.step(grads, params)

  def start(self, params):
    pass


class Dog(_Global):
  """Ivgi et al. 2023, Algorithm 1: η_t = max_{k≤t} ‖x_k − x_0‖ (from r_ε) / sqrt(Σ_{k≤t} ‖g_k‖² + ε)."""

  def __init__(self, kind, value, eps):
    super().__init__(); self.kind, self.value, self.eps = kind, value, eps

  def start(self, params):
    self.r = {"distance": self.value, "learning_rate": 0.0,
              "heuristic": self.value * (1 + math.sqrt(_sq_norm(params)))}[self.kind]
    self.sum_sq = 0.0

  def step(self, grads, params):
    self.r = max(self.r, math.sqrt(_sq_norm([p - p0 for p, p0 in zip(params, self.x0)])))
    self.sum_sq += _sq_norm(grads)
    eta = self.r / math.sqrt(self.sum_sq + self.eps)
    if self.kind == "learning_rate" and self.t == 1:
      eta = self.value
    return [eta * g for g in grads]


class Dowg(_Global):
  """Khaled et al. 2023, Algorithm 1: r̄² = max(r̄², ‖x − x_0‖²), v += r̄²‖g‖², η = r̄² / (sqrt(v) + ε)."""

  def __init__(self, r0_sq, eps):
    super().__init__(); self.r2, self.eps, self.v = (eps if r0_sq is None else r0_sq), eps, 0.0

  def step(self, grads, params):
    self.r2 = max(self.r2, _sq_norm([p - p0 for p, p0 in zip(params, self.x0)]))
    self.v += self.r2 * _sq_norm(grads)
    eta = self.r2 / (math.sqrt(self.v) + self.eps)
    return [eta * g for g in grads]


class Prodigy(_Global):
  """Mishchenko & Defazio 2023, Algorithm 4 (Adam version), with the authors' code's conventions.

  The code (prodigyopt, which optax follows) bias-corrects Adam's step, weights each
  step's contribution to r and s by d_k·d̂_k/d_0 (d̂ = d·lr·sqrt(1−β₂ᵏ)/(1−β₁ᵏ)), uses
  β₃ (default sqrt(β₂)) without the (1 − β₃) factor, puts the new d in ε's scale and
  adds decoupled weight decay d̂·λ·x. Returns the update (the negated step).
  """

  def __init__(self, lr, b1, b2, b3, eps, d0, coef, wd, safeguard=False):
    super().__init__()
    self.lr, self.b1, self.b2, self.eps, self.d0, self.coef, self.wd = lr, b1, b2, eps, d0, coef, wd
    self.b3 = math.sqrt(b2) if b3 is None else b3
    self.safeguard, self.d, self.r = safeguard, d0, 0.0

  def start(self, params):
    self.m = [np.zeros_like(p) for p in params]
    self.v = [np.zeros_like(p) for p in params]
    self.s = [np.zeros_like(p) for p in params]

  def step(self, grads, params):
    k, d = self.t, self.d
    dhat = d * self.lr * math.sqrt(1 - self.b2 ** k) / (1 - self.b1 ** k)
    self.r = self.b3 * self.r + (d / self.d0) * dhat * sum(
        float(np.sum(g * (p0 - p))) for g, p, p0 in zip(grads, params, self.x0))
    weight = d if self.safeguard else dhat
    for i, g in enumerate(grads):
      self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * d * g
      self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * (d * g) ** 2
      self.s[i] = self.b3 * self.s[i] + weight * d * g / self.d0
    l1 = sum(float(np.sum(np.abs(s))) for s in self.s)
    if l1 > 0:
      self.d = max(d, self.coef * self.r / l1)
    return [-dhat * (m / (np.sqrt(v) + self.d * self.eps) + self.wd * p)
            for m, v, p in zip(self.m, self.v, params)]


class DadaptAdamw(_Global):
  """Defazio & Mishchenko 2023, Algorithm 4 (D-Adapted Adam), with the authors' code's bias correction and decay.

  β = sqrt(β₂); r += (1−β) d̂ ⟨g, s/(sqrt(v)+ε)⟩ from the previous s and v; m, s accumulate
  d̂·g; d = max(d, r / ((1−β)‖s‖₁)); the step is m/(sqrt(v)+ε) + λ d̂ x (negated here).
  """

  def __init__(self, lr, b1, b2, eps, d0, wd):
    super().__init__()
    self.lr, self.b1, self.b2, self.eps, self.d, self.wd, self.r = lr, b1, b2, eps, d0, wd, 0.0

  def start(self, params):
    self.m = [np.zeros_like(p) for p in params]
    self.v = [np.zeros_like(p) for p in params]
    self.s = [np.zeros_like(p) for p in params]

  def step(self, grads, params):
    k, beta = self.t, math.sqrt(self.b2)
    dhat = self.d * self.lr * math.sqrt(1 - self.b2 ** k) / (1 - self.b1 ** k)
    inner = sum(float(np.sum(g * s / (np.sqrt(v) + self.eps))) for g, s, v in zip(grads, self.s, self.v))
    self.r = beta * self.r + (1 - beta) * dhat * inner
    out = []
    for i, (g, p) in enumerate(zip(grads, params)):
      self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * dhat * g
      self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
      self.s[i] = beta * self.s[i] + (1 - beta) * dhat * g
      out.append(-(self.m[i] / (np.sqrt(self.v[i]) + self.eps) + self.wd * dhat * p))
    l1 = sum(float(np.sum(np.abs(s))) for s in self.s)
    if l1 > 0:
      self.d = max(self.d, self.r / ((1 - beta) * l1))
    return out


class Cocob(_PerLeaf):
  """Orabona & Tommasi 2017, Algorithm 2 (COCOB-Backprop), per coordinate; returns x_{t+1} − x_t."""

  def __init__(self, alpha, eps):
    super().__init__(); self.alpha, self.eps = alpha, eps

  def init(self, g):
    return None

  def rule(self, g, p, s, t):
    if s is None:  # first call: x_0 = p, L = eps, G = R = theta = 0
      s = (p.copy(), np.full_like(p, self.eps), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p))
    x0, big_l, big_g, reward, theta = s
    big_l = np.maximum(big_l, np.abs(g))
    big_g = big_g + np.abs(g)
    reward = np.maximum(reward - g * (p - x0), 0.0)
    theta = theta - g
    new_x = x0 + theta / (big_l * np.maximum(big_g + big_l, self.alpha * big_l)) * (big_l + reward)
    return new_x - p, (x0, big_l, big_g, reward, theta)
