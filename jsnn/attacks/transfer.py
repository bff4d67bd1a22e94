"""Transfer (black-box) attack: craft on a source model, evaluate on the target.

``x_adv = attack(source_logits_fn, x, y, key_craft, **kwargs)``, then the target judges it
over ``draws`` fresh draws (:func:`jsnn.attacks.eot.robust_accuracy`). A white-box attack on
the target that does *worse* than a transfer attack is a sign of gradient masking
(Athalye et al. 2018), which the evaluation suite checks.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax

from jsnn.attacks import common
from jsnn.attacks.eot import correct_draws


class TransferResult(NamedTuple):
    """``x_adv`` crafted on the source; target ``accuracy`` (mean over draws) and ``accuracy_all_draws``."""

    x_adv: jax.Array
    accuracy: jax.Array
    accuracy_all_draws: jax.Array


def transfer(attack: Callable, source_logits_fn: Callable, target_logits_fn: Callable, x, y, key, *,
             draws: int = 1, chunk: Optional[int] = None, **attack_kwargs) -> TransferResult:
    """Crafts ``x_adv`` with ``attack`` on the source model and judges it on the target.

    Args:
      attack: any attack of :mod:`jsnn.attacks` (``attack(logits_fn, x, y, key, **kw) -> x_adv``).
      source_logits_fn: forward the attack differentiates (e.g. an ANN or another SNN).
      target_logits_fn: forward of the attacked model (judged, never differentiated).
      x, y, key: clean images in [0, 1], labels, PRNG key.
      draws: fresh draws of the target to judge on (1 for a deterministic target).
      chunk: chunk size of the judgement draws.
      **attack_kwargs: forwarded to ``attack`` (``eps`` required by every attack).

    Example:
        The target is the source with scaled logits (same decisions), so FGSM crafted on the
        source transfers fully: the first image is fooled, the second is out of reach:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import fgsm, transfer
        >>> W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])
        >>> source, target = (lambda x, key: x @ W), (lambda x, key: 3 * x @ W)
        >>> x, y = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]), jnp.array([0, 0])
        >>> res = transfer(fgsm, source, target, x, y, jax.random.key(0), eps=0.15)
        >>> float(res.accuracy), res.x_adv.shape
        (0.5, (2, 4))
    """
    x, y = common.check_inputs(x, y)
    k_craft, k_judge = jax.random.split(key)
    x_adv = attack(source_logits_fn, x, y, k_craft, **attack_kwargs)
    c = correct_draws(target_logits_fn, x_adv, y, k_judge, draws=draws, chunk=chunk)
    return TransferResult(x_adv, c.mean(), c.all(0).mean())
