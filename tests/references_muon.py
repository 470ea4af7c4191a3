"""NumPy reference of Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/), written from the
algorithm (torch.optim.Muon's docs), for leaves in JAX's ``(fan_in, fan_out)`` layout. No gradxform import."""

import math

import numpy as np

from tests.references import _PerLeaf


def newton_schulz(g, coefficients, eps, clamp=True):
  """X ← aX + (bA + cA²)X with A = XXᵀ, on the orientation with fewer rows, after X = G/max(‖G‖_F, ε)."""
  transpose = g.shape[0] > g.shape[1]
  x = g.T if transpose else g
  norm = np.linalg.norm(x)
  x = x / (max(norm, eps) if clamp else norm + eps)
  for a, b, c in coefficients:
    gram = x @ x.T
    x = a * x + (b * gram + c * gram @ gram) @ x
  return x.T if transpose else x


class Muon(_PerLeaf):
  """Momentum m ← μm + (1−μ)g; Nesterov d = μm + (1−μ)g; u = s·NS(d), s = √max(1, fan_out/fan_in) ("original")
  or rms·√max(fan_in, fan_out) ("match_rms_adamw")."""

  def __init__(self, momentum, nesterov=True, coefficients=((3.4445, -4.775, 2.0315),) * 5, eps=1e-7,
               adjust_lr="original", rms=0.2):
    super().__init__()
    self.mu, self.nesterov, self.coefficients, self.eps = momentum, nesterov, coefficients, eps
    self.adjust_lr, self.rms = adjust_lr, rms

  def init(self, g):
    return np.zeros_like(g)

  def rule(self, g, p, m, t):
    m = self.mu * m + (1 - self.mu) * g
    d = self.mu * m + (1 - self.mu) * g if self.nesterov else m
    fan_in, fan_out = g.shape
    if self.adjust_lr == "original":
      scale = math.sqrt(max(1.0, fan_out / fan_in))
    elif self.adjust_lr == "match_rms_adamw":
      scale = self.rms * math.sqrt(max(fan_in, fan_out))
    else:
      scale = 1.0
    return scale * newton_schulz(d, self.coefficients, self.eps), m


class SplitByRank:
  """Runs ``matrices`` on the 2-D leaves and ``others`` on the rest (Muon's partition into Muon and AdamW)."""

  def __init__(self, matrices, others):
    self.matrices, self.others = matrices, others

  def __call__(self, grads, params):
    is_matrix = [np.ndim(g) == 2 for g in grads]
    pick = lambda xs, want: [x for x, m in zip(xs, is_matrix) if m == want]
    a = iter(self.matrices(pick(grads, True), pick(params, True)) if any(is_matrix) else [])
    b = iter(self.others(pick(grads, False), pick(params, False)) if not all(is_matrix) else [])
    return [next(a) if m else next(b) for m in is_matrix]


class PassThrough:
  def __call__(self, grads, params):
    return list(grads)
