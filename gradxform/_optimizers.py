"""Named optimizers: each is one ``chain`` of primitives, with torch.optim's defaults.

The update rules are documented once, on the primitives; each optimizer below
says which chain it is. For the same hyperparameters each reproduces the
corresponding ``torch.optim`` class step for step. Adam-family optimizers take
keyword-only ``mu_dtype``/``nu_dtype`` (the dtypes of the stored moments, e.g.
float32 moments for bfloat16 parameters; default: the parameters' dtype). The
rules run in at least float32 and use the moments as stored (rounded to their
dtype), as torch does with low-precision state and optax with ``mu_dtype``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from gradxform._accumulators import trace
from gradxform._adam_variants import scale_by_adamax, scale_by_lion, scale_by_nadam, scale_by_radam
from gradxform._adaptive import scale_by_adadelta, scale_by_adagrad, scale_by_adam, scale_by_rms
from gradxform._base import GradientTransformation
from gradxform._chain import chain
from gradxform._decay import add_decayed_weights
from gradxform._scaling import scale_by_learning_rate

__all__ = ["adadelta", "adagrad", "adam", "adamax", "adamw", "lion", "nadam", "radam", "rmsprop", "sgd"]


def _named(optimizer: Callable[..., GradientTransformation]) -> Callable[..., GradientTransformation]:
  """Prefixes construction errors with the optimizer's name: ``adam: scale_by_adam: b1=1.5 ...``."""

  @functools.wraps(optimizer)
  def build(*args, **kwargs):
    try:
      return optimizer(*args, **kwargs)
    except (TypeError, ValueError) as error:
      message = str(error)
      if message.startswith(f"{optimizer.__name__}:"):
        raise
      raise type(error)(f"{optimizer.__name__}: {message}") from None

  return build


def _is_literal_zero(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


@_named
def sgd(learning_rate: Any, momentum: Any = 0.0, nesterov: bool = False,
        weight_decay: Any = 0.0) -> GradientTransformation:
  """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

  ``chain(add_decayed_weights(weight_decay), trace(momentum, nesterov),
  scale_by_learning_rate(learning_rate))``: ``g ← g + λp``; ``b ← μb + g``;
  ``p ← p − η·b`` (or ``p ← p − η(g + μb)`` with Nesterov).

  A stage whose coefficient is the literal Python number 0 is left out (no
  momentum buffer is allocated, as in torch). To sweep or differentiate the
  momentum or the weight decay, pass a non-zero value or an array.

  References:
    Robbins & Monro, 1951; Polyak, 1964; Sutskever et al., 2013,
    http://proceedings.mlr.press/v28/sutskever13.html
  """
  if nesterov and _is_literal_zero(momentum):
    raise ValueError("sgd: nesterov=True needs a momentum > 0 (with momentum=0 Nesterov is plain SGD). "
                     "Pass e.g. momentum=0.9.")
  stages = []
  if not _is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  if not _is_literal_zero(momentum):
    stages.append(trace(momentum, nesterov=nesterov))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)


@_named
def adagrad(learning_rate: Any, initial_accumulator_value: Any = 0.0,
            eps: Any = 1e-10) -> GradientTransformation:
  """Adagrad, as ``torch.optim.Adagrad``: ``chain(scale_by_adagrad(...), scale_by_learning_rate(lr))``.

  optax's variant (accumulator starting at 0.1, eps 1e-7 inside the root) is
  ``chain(scale_by_adagrad(0.1, eps=0.0, eps_root=1e-7), scale_by_learning_rate(lr))``.

  References:
    Duchi, Hazan & Singer, 2011, https://jmlr.org/papers/v12/duchi11a.html
  """
  return chain(scale_by_adagrad(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))


@_named
def adadelta(learning_rate: Any = 1.0, rho: Any = 0.9, eps: Any = 1e-6) -> GradientTransformation:
  """Adadelta, as ``torch.optim.Adadelta``: ``chain(scale_by_adadelta(rho, eps), scale_by_learning_rate(lr))``.

  Zeiler's rule is ``lr = 1``. (optax's ``adadelta`` with its default
  ``learning_rate=None`` never negates the direction: it ascends.)

  References:
    Zeiler, 2012, https://arxiv.org/abs/1212.5701
  """
  return chain(scale_by_adadelta(rho, eps), scale_by_learning_rate(learning_rate))


@_named
def rmsprop(learning_rate: Any, decay: Any = 0.99, eps: Any = 1e-8, centered: bool = False,
            momentum: Any = 0.0) -> GradientTransformation:
  """RMSProp, as ``torch.optim.RMSprop`` (``decay`` is torch's ``alpha``).

  ``chain(scale_by_rms(decay, eps, centered=centered), trace(momentum),
  scale_by_learning_rate(lr))``: the momentum buffer holds ``g/(√v + ε)`` and
  the learning rate is applied outside it, as torch. (A literal 0 momentum
  leaves the trace out.) optax's default rmsprop (eps inside the root, decay
  0.9) is ``chain(scale_by_rms(0.9, eps=0.0, eps_root=1e-8), scale_by_learning_rate(lr))``.

  References:
    Tieleman & Hinton, 2012; Graves, 2013 (centered), https://arxiv.org/abs/1308.0850
  """
  stages = [scale_by_rms(decay, eps, centered=centered)]
  if not _is_literal_zero(momentum):
    stages.append(trace(momentum))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)


@_named
def adam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
         amsgrad: bool = False, *, mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """Adam, as ``torch.optim.Adam``: ``chain(scale_by_adam(b1, b2, eps, amsgrad=amsgrad), scale_by_learning_rate(lr))``.

  References:
    Kingma & Ba, 2015, https://arxiv.org/abs/1412.6980; Reddi et al., 2018
    (AMSGrad), https://openreview.net/forum?id=ryQu7f-RZ
  """
  return chain(scale_by_adam(b1, b2, eps, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
               scale_by_learning_rate(learning_rate))


@_named
def adamw(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
          weight_decay: Any = 1e-2, amsgrad: bool = False, *, mu_dtype: Any = None,
          nu_dtype: Any = None) -> GradientTransformation:
  """AdamW, as ``torch.optim.AdamW`` (default ``weight_decay=1e-2``; optax's is 1e-4).

  ``chain(scale_by_adam(...), add_decayed_weights(weight_decay), scale_by_learning_rate(lr))``:
  ``p ← p − η(û + λp)``, which equals torch's ``p ← p(1 − ηλ)`` followed by the Adam step.

  References:
    Loshchilov & Hutter, 2019, https://arxiv.org/abs/1711.05101
  """
  return chain(scale_by_adam(b1, b2, eps, amsgrad=amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
               add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate))


@_named
def nadam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
          momentum_decay: Any = 4e-3, *, mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """NAdam, as ``torch.optim.NAdam``: ``chain(scale_by_nadam(...), scale_by_learning_rate(lr))``.

  References:
    Dozat, 2016, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
  """
  return chain(scale_by_nadam(b1, b2, eps, momentum_decay, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
               scale_by_learning_rate(learning_rate))


@_named
def radam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *,
          mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """RAdam, as ``torch.optim.RAdam``: ``chain(scale_by_radam(b1, b2, eps), scale_by_learning_rate(lr))``.

  References:
    Liu et al., 2020, https://arxiv.org/abs/1908.03265
  """
  return chain(scale_by_radam(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
               scale_by_learning_rate(learning_rate))


@_named
def adamax(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, *,
           mu_dtype: Any = None, nu_dtype: Any = None) -> GradientTransformation:
  """Adamax, as ``torch.optim.Adamax``: ``chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(lr))``.

  References:
    Kingma & Ba, 2015, Section 7.1, https://arxiv.org/abs/1412.6980
  """
  return chain(scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
               scale_by_learning_rate(learning_rate))


@_named
def lion(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.99, weight_decay: Any = 0.0, *,
         mu_dtype: Any = None) -> GradientTransformation:
  """Lion (Chen et al. 2023): ``chain(scale_by_lion(b1, b2), add_decayed_weights(wd), scale_by_learning_rate(lr))``.

  ``p ← p − η(sign(β₁m + (1−β₁)g) + λp)``, decoupled weight decay as in the
  paper. (A literal 0 weight decay leaves that stage out.)

  References:
    Chen et al., 2023, https://arxiv.org/abs/2302.06675
  """
  stages = [scale_by_lion(b1, b2, mu_dtype=mu_dtype)]
  if not _is_literal_zero(weight_decay):
    stages.append(add_decayed_weights(weight_decay))
  stages.append(scale_by_learning_rate(learning_rate))
  return chain(*stages)
