"""Transfer (black-box) attack: craft on a source model, evaluate on the target.

:func:`transfer` is a combinator: ``transfer(attack, source_logits_fn)`` is an attack whose
``x_adv = attack(source_logits_fn, x, y, key_craft, **kwargs)``; the target judges it over
``draws`` fresh draws (:func:`jsnn.attacks.eot.correct_draws`). A white-box attack on
the target that does *worse* than a transfer attack is a sign of gradient masking
(Athalye et al. 2018), which the evaluation suite checks.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax

from jsnn.attacks import common
from jsnn.attacks.eot import correct_draws
from jsnn.config import check_int


def transfer(attack: Callable, source_logits_fn: Callable, *, draws: int = 1,
             chunk: Optional[int] = None) -> Callable:
    """``attack`` crafted on a source model, as an attack on the target: ``t(logits_fn, x, y, key, *, eps, ...)``.

    The returned attack ignores the gradients of the ``logits_fn`` it is called with (the
    target): ``x_adv = attack(source_logits_fn, x, y, key_craft, eps=eps, **kwargs)`` with
    ``key_craft, key_judge = split(key)``. With ``full_output=True`` it also judges ``x_adv`` on
    the target over ``draws`` fresh draws (``key_judge``) and returns ``(x_adv, info)`` with
    ``info = {"correct": [M, B], "accuracy": mean, "accuracy_all_draws": fraction correct in
    every draw}``.

    Args:
      attack: any attack of :mod:`jsnn.attacks` (``attack(logits_fn, x, y, key, **kw) -> x_adv``).
      source_logits_fn: forward the attack differentiates (e.g. an ANN or another SNN).
      draws: fresh draws of the target to judge on (1 for a deterministic target).
      chunk: chunk size of the judgement draws.

    Example:
        The target is the source with scaled logits (same decisions), so FGSM crafted on the
        source transfers fully: the first image is fooled, the second is out of reach:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import fgsm, transfer
        >>> W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])
        >>> source, target = (lambda x, key: x @ W), (lambda x, key: 3 * x @ W)
        >>> x, y = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]), jnp.array([0, 0])
        >>> x_adv, info = transfer(fgsm, source)(target, x, y, jax.random.key(0), eps=0.15, full_output=True)
        >>> float(info["accuracy"]), x_adv.shape
        (0.5, (2, 4))
    """
    check_int(draws, "draws", where="transfer ")

    def transfer_attack(logits_fn, x, y, key, *, eps, full_output: bool = False, **attack_kwargs):
        x, y = common.check_inputs(x, y, key, logits_fn)
        k_craft, k_judge = jax.random.split(key)
        x_adv = attack(source_logits_fn, x, y, k_craft, eps=eps, **attack_kwargs)
        if not full_output:
            return x_adv
        c = correct_draws(logits_fn, x_adv, y, k_judge, draws=draws, chunk=chunk)
        return x_adv, {"correct": c, "accuracy": c.mean(), "accuracy_all_draws": c.all(0).mean()}

    transfer_attack.__name__ = f"transfer_{getattr(attack, '__name__', 'attack')}"
    return transfer_attack
