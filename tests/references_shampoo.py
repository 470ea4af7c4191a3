"""Independent NumPy references for Shampoo and SOAP, written from the algorithm boxes (no gradxform import).

Same protocol as tests/references.py: ``ref(grads, params) -> updates`` on lists of
float64 arrays. Blocks are taken by slicing (no padding), factors are updated
with ``np.tensordot``, and matrix functions use ``np.linalg.eigh`` / ``qr``.

* ``Soap``: Vyas et al. 2024, Algorithm 3, with the step semantics of the
  reference code (github.com/nikhilvyas/SOAP): the first call only sets up the
  factors and eigenbases (zero update); later calls project, run Adam, project
  back, then add the gradient to the factors and, every ``frequency`` steps,
  refresh the bases by one power iteration + QR (columns and ``v`` re-sorted by
  the estimated eigenvalues).
* ``SoapStep``: ``p ← (p − η u)(1 − η λ)`` from the second call on.
* ``Shampoo``: Gupta et al. 2018, Algorithm 2 (one factor per axis, root
  ``-1/(2k)``), with Anil et al. 2020's blocks, roots recomputed every
  ``frequency`` steps from ``start`` on, and per-block grafting.
"""

import itertools
import math

import numpy as np

from tests.references import _PerLeaf


def _merge(shape, max_dim):
  """SOAP's merge_dims rule (reference code), written from its description."""
  out, cur = [], 1
  for d in shape:
    if cur * d > max_dim:
      if cur > 1:
        out.append(cur); cur = d
      else:
        out.append(d); cur = 1
    else:
      cur *= d
  if cur > 1 or not out:
    out.append(cur)
  return tuple(out)


def _gram(x, axis):
  other = [a for a in range(x.ndim) if a != axis]
  return np.tensordot(x, x, axes=(other, other))


def _mode_multiply(x, m, axis):
  """y = x ×_axis m : y[..., j, ...] = Σ_i m[j, i] x[..., i, ...]."""
  return np.moveaxis(np.tensordot(m, x, axes=([1], [axis])), 0, axis)


class Soap(_PerLeaf):
  def __init__(self, b1, b2, eps, shampoo_beta=None, frequency=10, max_dim=10000, merge_dims=False,
               precondition_1d=False, normalize_grads=False, correct_bias=True):
    super().__init__()
    self.b1, self.b2, self.eps = b1, b2, eps
    self.sb = b2 if shampoo_beta is None else shampoo_beta
    self.f, self.max_dim, self.merge, self.p1d = frequency, max_dim, merge_dims, precondition_1d
    self.normalize, self.correct_bias = normalize_grads, correct_bias

  def init(self, g):
    shape = _merge(g.shape, self.max_dim) if (self.merge and g.ndim >= 2) else g.shape
    if g.ndim == 0 or (g.ndim == 1 and not self.p1d):
      use = [False] * len(shape)
    else:
      use = [d <= self.max_dim for d in shape]
    facs = [np.zeros((d, d)) if u else None for d, u in zip(shape, use)]
    return {"shape": shape, "F": facs, "Q": None, "m": np.zeros_like(g), "v": np.zeros_like(g), "step": 0}

  def _rotate(self, x, s, back):
    """Q_a applied (back) or Q_aᵀ applied to each preconditioned axis of x (leaf shape)."""
    y = x.reshape(s["shape"])
    for a, q in enumerate(s["Q"]):
      if q is not None:
        y = _mode_multiply(y, q if back else q.T, a)
    return y.reshape(x.shape)

  def _accumulate(self, g, s):
    gm = g.reshape(s["shape"])
    s["F"] = [None if f is None else self.sb * f + (1 - self.sb) * _gram(gm, a) for a, f in enumerate(s["F"])]

  def rule(self, g, p, s, t):
    if s["Q"] is None:  # first call: set up the preconditioner, no step
      self._accumulate(g, s)
      s["Q"] = [None if f is None else np.linalg.eigh(f + 1e-30 * np.eye(len(f)))[1][:, ::-1] for f in s["F"]]
      return np.zeros_like(g), s
    s["step"] += 1
    k = s["step"]
    gp = self._rotate(g, s, back=False)
    s["m"] = self.b1 * s["m"] + (1 - self.b1) * gp
    s["v"] = self.b2 * s["v"] + (1 - self.b2) * gp * gp
    d = self._rotate(s["m"] / (np.sqrt(s["v"]) + self.eps), s, back=True)
    if self.normalize:
      d = d / (1e-30 + np.sqrt(np.mean(d * d)))
    if self.correct_bias:
      d = d * math.sqrt(1 - self.b2 ** k) / (1 - self.b1 ** k)
    # after the step: m back to the parameter space, factors, maybe new bases, m into the basis
    m = self._rotate(s["m"], s, back=True)
    self._accumulate(g, s)
    if k % self.f == 0:
      v = s["v"].reshape(s["shape"])
      for a, (f, q) in enumerate(zip(s["F"], s["Q"])):
        if f is None:
          continue
        estimate = np.diag(q.T @ f @ q)
        order = np.argsort(-estimate, kind="stable")
        v = np.take(v, order, axis=a)
        s["Q"][a] = np.linalg.qr(f @ q[:, order])[0]
      s["v"] = v.reshape(g.shape)
    s["m"] = self._rotate(m, s, back=False)
    return d, s


class SoapStep(_PerLeaf):
  """-η u (1 - η λ) - η λ p from the second call on (p ← (p − η u)(1 − η λ)); -η u on the first."""

  def __init__(self, lr, wd):
    super().__init__(); self.lr, self.wd = lr, wd

  def rule(self, u, p, s, t):
    decay = self.lr * self.wd if t > 1 else 0.0
    return -self.lr * u * (1 - decay) - decay * p, s


def _blocks(shape, size):
  """Slices of every block of a tensor whose axes are split into pieces of at most ``size``."""
  if size is None or all(d <= size for d in shape):
    return [tuple(slice(None) for _ in shape)]
  per_axis = [[slice(i, min(i + size, d)) for i in range(0, d, size)] for d in shape]
  return list(itertools.product(*per_axis))


def _inverse_root(f, p, eps):
  w, q = np.linalg.eigh(f)
  return (q * (np.maximum(w, 0.0) + eps) ** (-1.0 / p)) @ q.T


class Shampoo(_PerLeaf):
  def __init__(self, b2, eps, matrix_eps, block_size=None, frequency=10, start=1, graft="adam",
               exponent=None):
    super().__init__()
    self.b2, self.eps, self.matrix_eps = b2, eps, matrix_eps
    self.block_size, self.f, self.start, self.graft, self.exponent = block_size, frequency, start, graft, exponent

  def init(self, g):
    s = {"v": np.zeros_like(g)}
    if g.ndim >= 2:
      blocks = _blocks(g.shape, self.block_size)
      s["blocks"] = blocks
      s["F"] = [[np.zeros((len(range(*b[a].indices(g.shape[a]))),) * 2) for a in range(g.ndim)] for b in blocks]
      s["roots"] = [[None] * g.ndim for _ in blocks]
    return s

  def rule(self, g, p, s, t):
    if self.graft == "sgd":
      graft = g
    else:
      if self.graft == "adagrad":
        s["v"] = s["v"] + g * g
      else:
        s["v"] = self.b2 * s["v"] + (1 - self.b2) * g * g
      v = s["v"] / (1 - self.b2 ** t) if self.graft == "adam" else s["v"]
      graft = g / (np.sqrt(v) + self.eps)
    if g.ndim < 2:
      return graft, s
    c = 1.0 if self.b2 == 1.0 else 1 - self.b2
    p_root = self.exponent or 2 * g.ndim
    refresh = t >= self.start and (t - self.start) % self.f == 0
    out = np.zeros_like(g)
    for i, b in enumerate(s["blocks"]):
      gb = g[b]
      s["F"][i] = [self.b2 * f + c * _gram(gb, a) for a, f in enumerate(s["F"][i])]
      if refresh:
        s["roots"][i] = [_inverse_root(f, p_root, self.matrix_eps) for f in s["F"][i]]
      if t < self.start:
        out[b] = graft[b]
        continue
      pre = gb
      for a, r in enumerate(s["roots"][i]):
        pre = _mode_multiply(pre, r, a)
      norm = np.linalg.norm(pre)
      out[b] = pre * (np.linalg.norm(graft[b]) / norm) if norm > 0 else 0.0
    return out, s
