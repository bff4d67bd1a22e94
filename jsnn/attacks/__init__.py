"""Gradient attacks on (spiking) classifiers: pure, jit-compiled functions.

Every attack is ``attack(logits_fn, x, y, key, *, eps, ...) -> x_adv`` where
``logits_fn(x, key) -> logits`` closes over the model and its parameters (the key feeds
stochastic encoders and layers). Images are in [0, 1]; ``x_adv`` stays in the ε-ball and
in [0, 1]. Shared helpers (projection, best tracking) live in :mod:`jsnn.attacks.common`,
losses in :mod:`jsnn.attacks.losses`, EOT in :mod:`jsnn.attacks.eot`.
"""

from jsnn.attacks import common, eot, losses
from jsnn.attacks.apgd import apgd, apgd_targeted, checkpoints as apgd_checkpoints, target_classes

__all__ = ["common", "eot", "losses", "apgd", "apgd_targeted", "apgd_checkpoints", "target_classes"]
