"""Gradient attacks on (spiking) classifiers: pure, jit-compiled functions.

Every attack is ``attack(logits_fn, x, y, key, *, eps, ...) -> x_adv`` where
``logits_fn(x, key) -> logits`` closes over the model and its parameters (the key feeds
stochastic encoders and layers; deterministic models ignore it). Images are in [0, 1];
``x_adv`` stays in the ε-ball and in [0, 1] and has the dtype and shape of ``x``.

Modules: :mod:`~jsnn.attacks.common` (projection, random starts, best tracking),
:mod:`~jsnn.attacks.losses` (CE, CW, DLR, targeted), :mod:`~jsnn.attacks.eot` (EOT oracle,
final judgement over draws), :mod:`~jsnn.attacks.gradients` (surrogate/BPTR estimators and
the worst case over an ensemble), and the attacks below.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import attacks
    >>> W = jnp.array([[1., -1.], [-1., 1.], [2., 0.]])
    >>> logits_fn = lambda x, key: x @ W  # a deterministic model ignores the key
    >>> x, y = jnp.array([[0.05, 0.98, 0.5], [0.2, 0.7, 0.4]]), jnp.array([0, 1])  # the box binds
    >>> for attack in (attacks.fgsm, attacks.pgd):
    ...     x_adv = attack(logits_fn, x, y, jax.random.key(0), eps=0.1)
    ...     in_ball = bool(jnp.all(jnp.abs(x_adv - x) <= 0.1 + 1e-6))
    ...     in_box = bool(jnp.all((x_adv >= 0) & (x_adv <= 1)))
    ...     print(attack.__name__, x_adv.shape, x_adv.dtype, in_ball, in_box)
    fgsm (2, 3) float32 True True
    pgd (2, 3) float32 True True
"""

from jsnn.attacks import common, eot, gradients, losses
from jsnn.attacks.apgd import apgd, apgd_targeted, checkpoints as apgd_checkpoints, target_classes
from jsnn.attacks.autoattack import AutoAttackResult, autoattack
from jsnn.attacks.eot import correct_draws, robust_accuracy
from jsnn.attacks.fab import fab_t, projection_linf
from jsnn.attacks.fgsm import fgsm, rfgsm
from jsnn.attacks.gradients import EnsembleResult, Estimator, ensemble_attack, sr_ensemble
from jsnn.attacks.pgd import pgd
from jsnn.attacks.square import square
from jsnn.attacks.transfer import TransferResult, transfer

__all__ = [
    "common", "eot", "gradients", "losses",
    "apgd", "apgd_targeted", "apgd_checkpoints", "target_classes",
    "correct_draws", "robust_accuracy", "fgsm", "rfgsm", "pgd", "transfer", "TransferResult",
    "EnsembleResult", "Estimator", "ensemble_attack", "sr_ensemble",
    "square", "fab_t", "projection_linf", "autoattack", "AutoAttackResult",
]
