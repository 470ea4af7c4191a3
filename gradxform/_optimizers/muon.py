"""Muon (Jordan et al. 2024): momentum orthogonalized by Newton-Schulz, with AdamW for non-matrix leaves."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_hyperparameter, is_literal_zero, named
from gradxform._core.module import static_field
from gradxform._optimizers.adam import scale_by_adam
from gradxform._optimizers.rmsprop import _ScaleByRms
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.groups import partition, path_str
from gradxform._transforms.orthogonalize import _axes, _default_dims, _freeze_dims, _orthogonalize, _user_dims
from gradxform._transforms.scaling import scale_by_learning_rate
from gradxform._transforms.options import check_dtype_option
from gradxform._transforms.options import check_flag

__all__ = ["muon", "scale_by_muon"]

_NAME = "scale_by_muon"
_ADJUST_LR = ("original", "match_rms_adamw", None)
_EPS_MODES = ("clamp", "add")
EMBEDDING_PATHS = r"(?i)(embed|wte|wpe|lm_head|unembed)"


class ScaleByMuonState(NamedTuple):
  """State of :func:`scale_by_muon`: the momentum ``mu`` (a tree like the parameters)."""

  count: jax.Array  # int32 scalar
  hyperparams: dict
  mu: Any


class _ScaleByMuon(Transform):
  momentum: Any
  eps: Any
  consistent_rms: Any = None
  coefficients: tuple = static_field(default=())
  nesterov: bool = static_field(default=True)
  debias: bool = static_field(default=False)
  adjust_lr: Optional[str] = static_field(default="original")
  eps_mode: str = static_field(default="clamp")
  adaptive: bool = static_field(default=False)
  orthogonalize: bool = static_field(default=True)
  ns_dtype: Optional[Any] = static_field(default=None)
  mu_dtype: Optional[Any] = static_field(default=None)
  dimension_numbers: Any = static_field(default=None)
  name: str = static_field(default=_NAME)
  State = ScaleByMuonState

  def _leaf_axes(self, tree: Any) -> list:
    """(batch, reduction, output) axes of every leaf that is not None, in flattening order."""
    found = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree, is_leaf=_tree.is_none)[0]:
      if leaf is None:
        continue
      where = path_str(path) or "<root>"
      dims = _user_dims(self.dimension_numbers, where, leaf)
      if dims is None:
        raise ValueError(
            f"{self.name}: the parameter at {where!r} has shape {jnp.shape(leaf)}, which is not a matrix: Muon "
            "orthogonalizes matrices. Use gx.muon (which sends such leaves to AdamW), a gx.partition, or give "
            "dimension_numbers for it.")
      found.append(_axes(repr(where), dims, jnp.shape(leaf)))
    return found

  def init_fields(self, params):
    if self.orthogonalize:
      self._leaf_axes(params)
    return {"mu": _tree.zeros_like(self.name, params, self.mu_dtype)}

  def apply(self, updates, state, params, hp, **extra):
    leaf_axes = iter(self._leaf_axes(updates) if self.orthogonalize else ())
    t = (state.count + 1).astype(hp["momentum"].dtype)
    one = jnp.ones_like(hp["momentum"])
    c1 = 1 - hp["momentum"] ** t if self.debias else one            # optax's bias corrections
    c2 = 1 - hp["momentum"] ** (t + 1) if self.debias else one

    def rule(g, mu, momentum, eps, c1, c2, stored, consistent_rms=None):
      mu, = stored(mu + (1 - momentum) * (g - mu))                  # torch: buf.lerp_(g, 1 - μ)
      if self.nesterov:
        direction = momentum * mu / c2 + (1 - momentum) * g / c1    # torch: g.lerp(buf, μ)
      else:
        direction = mu / c1
      if not self.orthogonalize:
        return direction, mu
      axes = next(leaf_axes)                                        # leafwise visits leaves in order
      u = _orthogonalize(direction, axes, self.coefficients, eps, self.eps_mode, self.ns_dtype)
      if self.adaptive:
        u = jnp.sum(direction * u) * u
      fan_in, fan_out = (math.prod(g.shape[a] for a in ax) for ax in axes[1:])  # torch's (B, A)
      if self.adjust_lr == "original":
        u = u * math.sqrt(max(1.0, fan_out / fan_in))
      elif self.adjust_lr == "match_rms_adamw":
        u = u * (math.sqrt(max(fan_in, fan_out)) * consistent_rms)
      return u, mu

    updates, mu = _tree.leafwise(self.name, rule, updates, state.mu, scalars={**hp, "c1": c1, "c2": c2},
                                 check_dtype=(self.mu_dtype is None,), stored=True)
    return updates, {"mu": mu}


def _coefficients(ns_coefficients: Any, ns_steps: Any) -> tuple:
  """One (a, b, c) per iteration: a triple repeated ns_steps times, or a sequence of triples as given."""
  try:
    rows = [tuple(float(v) for v in row) for row in ns_coefficients]
    per_step = True
  except TypeError:
    rows, per_step = [tuple(float(v) for v in ns_coefficients)], False
  if any(len(row) != 3 for row in rows) or not rows:
    raise ValueError(f"{_NAME}: ns_coefficients must be one (a, b, c) triple or a sequence of them (one per "
                     f"iteration), got {ns_coefficients!r}.")
  if per_step:
    return tuple(rows)
  if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or not 0 <= ns_steps < 100:
    raise ValueError(f"{_NAME}: ns_steps={ns_steps!r} must be an integer in [0, 100) (the number of "
                     "Newton-Schulz iterations, 5 by default).")
  return rows * ns_steps


def scale_by_muon(
    momentum: Any = 0.95,
    nesterov: bool = True,
    ns_coefficients: Any = (3.4445, -4.775, 2.0315),
    ns_steps: int = 5,
    eps: Any = 1e-7,
    adjust_lr: Optional[str] = "original",
    *,
    consistent_rms: Any = 0.2,
    debias: bool = False,
    eps_mode: str = "clamp",
    adaptive: bool = False,
    ns_dtype: Optional[Any] = None,
    mu_dtype: Optional[Any] = None,
    dimension_numbers: Any = None,
) -> GradientTransformation:
  """Muon's direction (Jordan et al. 2024): Newton-Schulz-orthogonalized Nesterov momentum.

  .. math::

     m_t = \\mu m_{t-1} + (1-\\mu) g_t, \\qquad
     d_t = \\mu m_t + (1-\\mu) g_t \\;\\text{(Nesterov)} \\;\\text{or}\\; d_t = m_t, \\qquad
     u_t = s(A, B)\\, \\mathrm{NS}^{(a,b,c)}_{k}(d_t)

  with ``NS`` from :func:`newton_schulz` and the shape factor ``s``:
  ``√max(1, A/B)`` ("original") or ``consistent_rms·√max(A, B)``
  ("match_rms_adamw"), where ``(A, B) = (fan_out, fan_in)`` is torch's
  ``weight.shape``. A 2-D leaf is read in JAX's ``(fan_in, fan_out)`` layout
  (Flax ``Dense`` kernel), torch's ``weight`` transposed; the defaults
  reproduce ``torch.optim.Muon`` on ``Wᵀ`` (see :func:`muon`).

  Args:
    momentum: ``μ`` in [0, 1).
    nesterov: use ``d_t = μ m_t + (1−μ) g_t``.
    ns_coefficients: ``(a, b, c)`` for every iteration, or a sequence of
      triples, one per iteration (e.g. the "Polar Express" schedule of Amsel et
      al. 2025); then ``ns_steps`` is ignored. Static: a new value recompiles.
    ns_steps: number of iterations with a single triple.
    eps: ``ε`` of the normalization ``G / max(‖G‖_F, ε)``.
    adjust_lr: "original" (torch's default), "match_rms_adamw" (Moonshot), or
      None (no shape factor).
    consistent_rms: the 0.2 of "match_rms_adamw" (optax's ``consistent_rms``).
    debias: optax's bias-corrected momentum: ``d_t = m_t/(1−μ^t)``, Nesterov
      ``μ m_t/(1−μ^{t+1}) + (1−μ) g_t/(1−μ^t)``.
    eps_mode: "clamp" (torch) or "add" (optax: ``G / (‖G‖_F + ε)``).
    adaptive: optax's ``adaptive``: ``u ← ⟨d_t, u⟩ u`` before the shape factor.
    ns_dtype: dtype of the Newton-Schulz iterates: default the parameters'
      compute precision (at least float32); ``jnp.bfloat16`` is torch's.
    mu_dtype: dtype of the momentum (default: the parameters').
    dimension_numbers: which axes are rows/columns of each leaf: None (2-D
      leaves as ``(fan_in, fan_out)``; >2-D leaves: the last two axes, leading
      axes batch), one :class:`MuonDimensionNumbers` for all leaves,
      ``fn(path, leaf) -> MuonDimensionNumbers``, or a list of
      ``(regex, MuonDimensionNumbers)`` rules on the path (first match wins,
      unmatched leaves follow the default rule). Batch axes are vmapped.

  Returns:
    A transform with state :class:`ScaleByMuonState`.

  References:
    Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural
    networks", https://kellerjordan.github.io/posts/muon/
  """
  nesterov = check_flag("scale_by_muon", "nesterov", nesterov)
  debias = check_flag("scale_by_muon", "debias", debias)
  adaptive = check_flag("scale_by_muon", "adaptive", adaptive)
  ns_dtype = check_dtype_option("scale_by_muon", "ns_dtype", ns_dtype)
  mu_dtype = check_dtype_option("scale_by_muon", "mu_dtype", mu_dtype)
  check_hyperparameter(_NAME, "momentum", momentum, low=0.0, high=1.0, high_open=True,
                       hint="momentum is the decay of the momentum buffer; use a value in [0, 1) such as 0.95.")
  check_hyperparameter(_NAME, "eps", eps, low=0.0, hint="eps must be non-negative (it guards the normalization).")
  if adjust_lr not in _ADJUST_LR:
    raise ValueError(f"{_NAME}: adjust_lr={adjust_lr!r} is not one of {_ADJUST_LR}.")
  if eps_mode not in _EPS_MODES:
    raise ValueError(f"{_NAME}: eps_mode={eps_mode!r} is not one of {_EPS_MODES}.")
  if adjust_lr == "match_rms_adamw":
    check_hyperparameter(_NAME, "consistent_rms", consistent_rms, low=0.0,
                         hint="consistent_rms is the target RMS of the update (0.2 matches AdamW).")
  return _ScaleByMuon(
      momentum, eps, consistent_rms if adjust_lr == "match_rms_adamw" else None,
      coefficients=_coefficients(ns_coefficients, ns_steps), nesterov=bool(nesterov), debias=bool(debias),
      adjust_lr=adjust_lr, eps_mode=eps_mode, adaptive=bool(adaptive),
      ns_dtype=None if ns_dtype is None else jnp.dtype(ns_dtype), mu_dtype=mu_dtype,
      dimension_numbers=_freeze_dims(dimension_numbers))


@dataclasses.dataclass(frozen=True)
class _MuonLabels:
  """``fn(path, leaf) -> "muon" | "adam"`` for :func:`muon`'s partition (frozen: hashable, a static field)."""

  dimension_numbers: Any
  adam_paths: Optional[str]

  def __call__(self, path: str, leaf: Any) -> str:
    by_path = lambda x: None if self.adam_paths and re.search(self.adam_paths, path) else _default_dims(x)
    return "adam" if _user_dims(self.dimension_numbers, path, leaf, by_path) is None else "muon"


@named
def muon(
    learning_rate: Any,
    momentum: Any = 0.95,
    nesterov: bool = True,
    weight_decay: Any = 0.1,
    ns_coefficients: Any = (3.4445, -4.775, 2.0315),
    ns_steps: int = 5,
    eps: Any = 1e-7,
    adjust_lr: Optional[str] = "original",
    *,
    consistent_rms: Any = 0.2,
    debias: bool = False,
    eps_mode: str = "clamp",
    adaptive: bool = False,
    ns_dtype: Optional[Any] = None,
    mu_dtype: Optional[Any] = None,
    dimension_numbers: Any = None,
    adam_paths: Optional[str] = EMBEDDING_PATHS,
    adam_learning_rate: Any = None,
    adam_b1: Any = 0.9,
    adam_b2: Any = 0.999,
    adam_eps: Any = 1e-8,
    adam_eps_root: Any = 0.0,
    adam_weight_decay: Any = 0.0,
    adam_nesterov: bool = False,
) -> GradientTransformation:
  """Muon for matrices, AdamW for every other leaf, as one ``partition``.

  ``partition({"muon": chain(scale_by_muon(...), add_decayed_weights(wd),
  scale_by_learning_rate(lr)), "adam": adamw(adam_learning_rate, ...)}, labels)``.
  On matrices: ``p ← p(1 − η·λ) − η·s(A, B)·NS(d_t)`` (:func:`scale_by_muon`),
  which is ``torch.optim.Muon`` with its defaults on the transposed weight
  (torch's ``weight`` is ``(out, in)``, a JAX kernel ``(in, out)``), except
  that Newton-Schulz runs in the parameters' precision (``ns_dtype=jnp.bfloat16``
  for torch's bfloat16).

  **Which leaves get Muon.** A leaf is a Muon leaf if ``dimension_numbers``
  gives it dimension numbers (a rule mapping to ``None`` sends it to AdamW).
  Leaves no rule matches: those whose path matches ``adam_paths`` (default:
  embeddings and the output head, ``embed|wte|wpe|lm_head|unembed``) and all
  leaves of fewer than 2 dimensions (biases, norm scales, scalars) go to
  AdamW; the others get Muon, >2-D leaves as a batch of matrices over their
  last two axes (stacked layers). (A single MuonDimensionNumbers applies to
  every leaf of ≥ 2 dims, embeddings included.) For a Flax conv kernel ``(h, w, in, out)``
  give ``[(r"conv", MuonDimensionNumbers((0, 1, 2), 3))]``. The split is in
  the state: ``state.inner_states["muon"]`` and ``["adam"]`` hold ``None`` for
  the other group's leaves.

  **optax.contrib.muon** (0.2.8) is reproduced by ``muon(lr, weight_decay=0.0,
  eps=1e-8, eps_mode="add", debias=True, adam_paths=None, adam_nesterov=True)``
  with ``adjust_lr="match_rms_adamw", consistent_rms=c`` for its
  ``consistent_rms=c`` and ``adaptive=True`` for its ``adaptive``; its
  ``preconditioning`` other than 'frobenius' is not offered.

  **Sharding.** The state (``mu``, AdamW's moments) is created with each
  parameter's sharding. Newton-Schulz runs on the sharded matrix as XLA
  partitions it, nothing is gathered: for a matrix split along one axis (its
  longer side after the transpose), ``X Xᵀ`` is a local product plus one
  all-reduce of the small ``m×m`` Gram matrix (``m = min(fan_in, fan_out)``),
  once for the norm and once per iteration (1 + ``ns_steps`` all-reduces of
  ``m²`` values per step), and the other products are local. A matrix split
  along both axes of a 2-D mesh also needs all-gathers (counted in
  ``tests/sharding_checks_muon.py``).

  Args:
    learning_rate: ``η`` of the Muon leaves.
    **options: ``momentum``, ``nesterov``, ``ns_coefficients``, ``ns_steps``, ``eps``,
      ``adjust_lr``, ``consistent_rms``, ``debias``, ``eps_mode``, ``adaptive``,
      ``ns_dtype``, ``mu_dtype``, ``dimension_numbers``: as in :func:`scale_by_muon`.
    weight_decay: decoupled decay ``λ`` of the Muon leaves (torch: 0.1).
    adam_paths: regex on the leaf path sending 2-D leaves to AdamW (None: by
      shape only, as optax).
    adam_learning_rate: AdamW's learning rate (default: ``learning_rate``, as optax).
    adam_b1, adam_b2, adam_eps, adam_eps_root, adam_weight_decay: AdamW's.
    adam_nesterov: optax's Nesterov form of Adam's first moment (optax.contrib.muon
      uses it); default plain AdamW, as torch's Muon docs pair it.

  References:
    Jordan et al., 2024, https://kellerjordan.github.io/posts/muon/; Liu et al.,
    2025, "Muon is Scalable for LLM Training", https://arxiv.org/abs/2502.16982
  """
  nesterov = check_flag("muon", "nesterov", nesterov)
  debias = check_flag("muon", "debias", debias)
  adaptive = check_flag("muon", "adaptive", adaptive)
  adam_nesterov = check_flag("muon", "adam_nesterov", adam_nesterov)
  ns_dtype = check_dtype_option("muon", "ns_dtype", ns_dtype)
  mu_dtype = check_dtype_option("muon", "mu_dtype", mu_dtype)
  frozen = _freeze_dims(dimension_numbers)
  muon_stages = [scale_by_muon(momentum, nesterov, ns_coefficients, ns_steps, eps, adjust_lr,
                               consistent_rms=consistent_rms, debias=debias, eps_mode=eps_mode,
                               adaptive=adaptive, ns_dtype=ns_dtype, mu_dtype=mu_dtype,
                               dimension_numbers=frozen)]
  if not is_literal_zero(weight_decay):
    muon_stages.append(add_decayed_weights(weight_decay))
  muon_stages.append(scale_by_learning_rate(learning_rate))
  adam_lr = learning_rate if adam_learning_rate is None else adam_learning_rate
  for hyper, value, high in (("adam_b1", adam_b1, 1.0), ("adam_b2", adam_b2, 1.0), ("adam_eps", adam_eps, None),
                             ("adam_eps_root", adam_eps_root, None), ("adam_weight_decay", adam_weight_decay, None)):
    check_hyperparameter("muon", hyper, value, low=0.0, high=high, high_open=True,
                         hint=f"{hyper} is the AdamW's (for non-matrix leaves) " + (
                             "moment decay; use a value in [0, 1)." if high else "and must be >= 0."))
  if adam_nesterov:
    first_moment = _ScaleByMuon(adam_b1, 0.0, nesterov=True, debias=True, orthogonalize=False,
                                mu_dtype=mu_dtype, name="adam_nesterov")
    direction = _ScaleByRms(adam_b2, adam_eps, adam_eps_root, first_moment, debias=True, name="adam_nesterov")
  else:
    direction = scale_by_adam(adam_b1, adam_b2, adam_eps, adam_eps_root, mu_dtype=mu_dtype)
  adam_stages = [direction]
  if not is_literal_zero(adam_weight_decay):
    adam_stages.append(add_decayed_weights(adam_weight_decay))
  adam_stages.append(scale_by_learning_rate(adam_lr))
  if adam_paths is not None:
    re.compile(adam_paths)
  return partition({"muon": chain(*muon_stages), "adam": chain(*adam_stages)},
                   _MuonLabels(frozen, adam_paths))
