"""Muon (Jordan et al. 2024): momentum orthogonalized by Newton-Schulz, with AdamW for non-matrix leaves."""

from __future__ import annotations

import math
import re
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax

from gradxform._core import tree as _tree
from gradxform._core.base import GradientTransformation
from gradxform._core.chain import chain
from gradxform._core.hyperparams import Transform, check_betas, check_hyperparameter, is_literal_zero, named
from gradxform._core.module import static_field
from gradxform._optimizers.adam import scale_by_adam
from gradxform._optimizers.rmsprop import _ScaleByRms
from gradxform._transforms.decay import add_decayed_weights
from gradxform._transforms.groups import partition, path_str
from gradxform._transforms.scaling import scale_by_learning_rate

__all__ = ["MuonDimensionNumbers", "muon", "newton_schulz", "scale_by_muon"]

_NAME = "scale_by_muon"
_ADJUST_LR = ("original", "match_rms_adamw", None)
_EPS_MODES = ("clamp", "add")
EMBEDDING_PATHS = r"(?i)(embed|wte|wpe|lm_head|unembed)"


class MuonDimensionNumbers(NamedTuple):
  """Which axes of a leaf are the matrix's rows (``fan_in``) and columns (``fan_out``); the others are batch.

  A leaf ``x`` is read as ``x @ W = y``: ``reduction_axis`` is summed over
  (fan_in), ``output_axis`` is kept (fan_out), every other axis is a batch axis
  whose matrices are orthogonalized independently (``jax.vmap``). A Flax
  ``Dense`` kernel ``(in, out)`` is ``(0, 1)``; stacked layers ``(L, in, out)``
  are ``(1, 2)``; a Flax conv kernel ``(h, w, in, out)`` flattened as Keller
  Jordan's Muon does (torch's ``weight.view(out, -1)``) is ``((0, 1, 2), 3)``.
  Same names and meaning as ``optax.contrib.MuonDimensionNumbers``.
  """

  reduction_axis: Union[int, Sequence[int]] = 0
  output_axis: Union[int, Sequence[int]] = 1


def _default_dims(leaf: Any) -> Optional[MuonDimensionNumbers]:
  """The default rule: the last two axes are ``(fan_in, fan_out)``, leading axes are batch; <2-D: none."""
  ndim = jnp.ndim(leaf)
  return None if ndim < 2 else MuonDimensionNumbers(ndim - 2, ndim - 1)


def _user_dims(spec: Any, path: str, leaf: Any, fallback: Callable = _default_dims):
  """Dimension numbers for one leaf from ``spec`` (None, MuonDimensionNumbers, fn(path, leaf), or rules)."""
  if spec is None:
    return fallback(leaf)
  if isinstance(spec, MuonDimensionNumbers):
    return spec if jnp.ndim(leaf) >= 2 else fallback(leaf)
  if callable(spec):
    return spec(path, leaf)
  for pattern, dims in spec:
    if re.search(pattern, path):
      return dims
  return fallback(leaf)


def _freeze_dims(spec: Any) -> Any:
  """Rules become a tuple of pairs (hashable static field); other forms stay as they are."""
  if spec is None or callable(spec) or isinstance(spec, MuonDimensionNumbers):
    return spec
  try:
    rules = tuple((str(pattern), dims) for pattern, dims in spec)
  except (TypeError, ValueError):
    raise TypeError(
        f"{_NAME}: dimension_numbers must be None, a MuonDimensionNumbers, a function fn(path, leaf) "
        "-> MuonDimensionNumbers | None, or a list of (regex, MuonDimensionNumbers | None) rules; got "
        f"{type(spec).__name__}.") from None
  for _, dims in rules:
    if dims is not None and not isinstance(dims, MuonDimensionNumbers):
      raise TypeError(f"{_NAME}: each rule maps a regex to a MuonDimensionNumbers or None, got {dims!r}.")
  return rules


def _axes(where: str, dims: MuonDimensionNumbers, shape: tuple) -> tuple[tuple, tuple, tuple]:
  """(batch, reduction, output) axes, checked against the leaf's shape."""
  ndim = len(shape)
  as_tuple = lambda a: (a,) if isinstance(a, int) else tuple(a)
  red, out = as_tuple(dims.reduction_axis), as_tuple(dims.output_axis)
  if not red or not out or any(not -ndim <= a < ndim for a in red + out):
    raise ValueError(f"{_NAME}: the parameter at {where} of shape {shape} does not fit {dims}. Give "
                     "non-empty reduction and output axes within the leaf's dimensions.")
  red, out = tuple(a % ndim for a in red), tuple(a % ndim for a in out)
  if set(red) & set(out) or len(set(red)) < len(red) or len(set(out)) < len(out):
    raise ValueError(f"{_NAME}: for the parameter at {where} of shape {shape}, {dims} names an axis twice; "
                     "reduction and output axes must be distinct.")
  batch = tuple(a for a in range(ndim) if a not in red + out)
  return batch, red, out


def newton_schulz(x: jax.Array, coefficients: Sequence[tuple], eps: Any, eps_mode: str = "clamp",
                  dtype: Optional[Any] = None) -> jax.Array:
  """Approximately orthogonalizes the matrix ``x`` (``U S Vᵀ -> U S' Vᵀ``, ``S' ≈ 1``) by quintic Newton-Schulz.

  .. math::

     X_0 = G / \\max(\\|G\\|_F, \\epsilon), \\qquad
     A_k = X_k X_k^\\top, \\quad X_{k+1} = a_k X_k + (b_k A_k + c_k A_k^2) X_k

  computed on the orientation with fewer rows (``x`` is transposed when it has
  more rows than columns, as torch). ``coefficients`` is one ``(a, b, c)`` per
  iteration. ``eps_mode="add"`` divides by ``‖G‖_F + ε`` instead (optax).
  The iterates are stored in ``dtype`` (default: ``x``'s); products and sums
  accumulate in at least float32. ``dtype=jnp.bfloat16`` is torch.optim.Muon's
  precision.
  """
  dtype = jnp.dtype(dtype or x.dtype)
  acc = _tree.compute_dtype(dtype)
  out_dtype = x.dtype
  transpose = x.shape[0] > x.shape[1]
  x = (x.T if transpose else x).astype(dtype)

  def mm(a, b, contract_b=0):  # a @ b (or a @ b.T when contract_b=1), accumulated in `acc`
    return lax.dot_general(a, b, (((1,), (contract_b,)), ((), ())), preferred_element_type=acc)

  norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(acc)))).astype(dtype).astype(acc)
  eps = jnp.asarray(eps, acc)
  denominator = jnp.maximum(norm, eps) if eps_mode == "clamp" else norm + eps
  x = (x.astype(acc) / denominator).astype(dtype)
  for a, b, c in coefficients:
    gram = mm(x, x, contract_b=1).astype(dtype)
    poly = (b * gram.astype(acc) + c * mm(gram, gram)).astype(dtype)
    x = (a * x.astype(acc) + mm(poly, x)).astype(dtype)
  return (x.T if transpose else x).astype(out_dtype)


def _orthogonalize(g: jax.Array, axes: tuple, coefficients, eps, eps_mode, dtype) -> jax.Array:
  """Newton-Schulz on every matrix of ``g``: batch axes vmapped, reduction/output axes flattened."""
  batch, red, out = axes
  order = batch + red + out
  sizes = lambda ax: tuple(g.shape[a] for a in ax)
  matrices = jnp.transpose(g, order).reshape(math.prod(sizes(batch)), math.prod(sizes(red)),
                                             math.prod(sizes(out)))
  ns = lambda m: newton_schulz(m, coefficients, eps, eps_mode, dtype)
  result = jax.vmap(ns)(matrices).reshape(sizes(batch) + sizes(red) + sizes(out))
  return jnp.transpose(result, tuple(order.index(a) for a in range(g.ndim)))


def _lr_factor(adjust_lr: Optional[str], fan_in: int, fan_out: int) -> float:
  """torch's shape adjustment with ``(A, B) = (fan_out, fan_in)`` (consistent_rms applied separately)."""
  if adjust_lr == "original":
    return math.sqrt(max(1.0, fan_out / fan_in))
  if adjust_lr == "match_rms_adamw":
    return math.sqrt(max(fan_in, fan_out))
  return 1.0


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
      fan_in = math.prod(g.shape[a] for a in axes[1])
      fan_out = math.prod(g.shape[a] for a in axes[2])
      factor = _lr_factor(self.adjust_lr, fan_in, fan_out)
      if self.adjust_lr == "match_rms_adamw":
        factor = factor * consistent_rms
      return u * factor, mu

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


class _MuonLabels:
  """``fn(path, leaf) -> "muon" | "adam"`` for :func:`muon`'s partition (hashable: a static field)."""

  def __init__(self, dimension_numbers: Any, adam_paths: Optional[str]) -> None:
    self.dimension_numbers, self.adam_paths = dimension_numbers, adam_paths

  def fallback(self, path: str, leaf: Any) -> Optional[MuonDimensionNumbers]:
    if self.adam_paths is not None and re.search(self.adam_paths, path):
      return None
    return _default_dims(leaf)

  def __call__(self, path: str, leaf: Any) -> str:
    dims = _user_dims(self.dimension_numbers, path, leaf, lambda x: self.fallback(path, x))
    return "adam" if dims is None else "muon"

  def _key(self):
    return (self.dimension_numbers, self.adam_paths)

  def __eq__(self, other):
    return isinstance(other, _MuonLabels) and self._key() == other._key()

  def __hash__(self):
    return hash(self._key())


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
  last two axes (stacked layers). For a Flax conv kernel ``(h, w, in, out)``
  give ``[(r"conv", MuonDimensionNumbers((0, 1, 2), 3))]``. The split is in
  the state: ``state.inner_states["muon"]`` and ``["adam"]`` hold ``None`` for
  the other group's leaves.

  **optax.contrib.muon** (0.2.8) is reproduced by ``muon(lr, weight_decay=0.0,
  eps=1e-8, eps_mode="add", debias=True, adam_paths=None, adam_nesterov=True)``
  with ``adjust_lr="match_rms_adamw", consistent_rms=c`` for its
  ``consistent_rms=c`` and ``adaptive=True`` for its ``adaptive``; its
  ``preconditioning`` other than 'frobenius' is not offered.

  Args:
    learning_rate: ``η`` of the Muon leaves.
    momentum, nesterov, ns_coefficients, ns_steps, eps, adjust_lr,
      consistent_rms, debias, eps_mode, adaptive, ns_dtype, mu_dtype,
      dimension_numbers: see :func:`scale_by_muon`.
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
  frozen = _freeze_dims(dimension_numbers)
  muon_stages = [scale_by_muon(momentum, nesterov, ns_coefficients, ns_steps, eps, adjust_lr,
                               consistent_rms=consistent_rms, debias=debias, eps_mode=eps_mode,
                               adaptive=adaptive, ns_dtype=ns_dtype, mu_dtype=mu_dtype,
                               dimension_numbers=frozen)]
  if not is_literal_zero(weight_decay):
    muon_stages.append(add_decayed_weights(weight_decay))
  muon_stages.append(scale_by_learning_rate(learning_rate))
  adam_lr = learning_rate if adam_learning_rate is None else adam_learning_rate
  check_betas("adam", adam_b1, adam_b2, adam_eps)
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
