"""Gradient attacks on (spiking) classifiers: pure, jit-compiled functions.

Every attack is ``attack(logits_fn, x, y, key, *, eps, ...) -> x_adv`` where
``logits_fn(x, key) -> logits`` closes over the model and its parameters (the key feeds
stochastic encoders and layers; deterministic models ignore it). Images are in [0, 1];
``x_adv`` stays in the ε-ball and in [0, 1] and has the dtype and shape of ``x``.

Signatures (0.2; the same keyword names everywhere — ``steps``, ``restarts``, ``eot``,
``eot_chunk``, ``full_output``; ``queries`` for query budgets, ``num_targets`` for target
counts, ``draws`` for judging; ``full_output=True`` returns ``(x_adv, info)``)::

    fgsm(logits_fn, x, y, key, *, eps, norm="linf", loss="ce", target=None, eot=1, eot_chunk=None)
    rfgsm(logits_fn, x, y, key, *, eps, alpha=None, norm="linf", loss="ce", target=None, eot=1, eot_chunk=None)
    pgd(logits_fn, x, y, key, *, eps, norm="linf", steps=10, step_size=None, restarts=1, loss="ce",
        target=None, random_start=True, eot=1, eot_chunk=None, restart_chunk=None, full_output=False)
    apgd(logits_fn, x, y, key, *, eps, norm="linf", steps=100, restarts=1, loss="ce", target=None, eot=1,
         random_start=True, rho=0.75, eot_chunk=None, restart_chunk=None, full_output=False)
    apgd_targeted(logits_fn, x, y, key, *, eps, norm="linf", steps=100, num_targets=9, restarts=1,
                  loss="dlr_targeted", eot=1, random_start=True, rho=0.75, eot_chunk=None, target_chunk=None,
                  full_output=False)
    sapgd(logits_fn, x, y, key, *, eps, norm="linf", steps=100, restarts=1, loss="ce", target=None, eot=1,
          random_start=True, schedule="always", rho=0.75, beta1=0.5, beta2=0.8, init_step=1.0, eot_chunk=None,
          restart_chunk=None, full_output=False)  # ASSG + SA-PGD with logits_fn = adaptive.assg(f)
    square(logits_fn, x, y, key, *, eps, queries=5000, p_init=0.8, eot=1, full_output=False)
    fab_t(logits_fn, x, y, key, *, eps, steps=100, num_targets=9, restarts=1, alpha_max=0.1, eta=1.05,
          beta=0.9, full_output=False)
    # combinators: each returns attack(logits_fn, x, y, key, *, eps, full_output=False, ...) -> x_adv
    autoattack(*, version="standard", norm="linf", eot=None, steps=100, num_targets=None, queries=5000,
               draws=None, eot_chunk=None, batch_size=None, verbose=False)
        # info: robust [B], clean [B], stages {name: [B]}, draw_accuracy [B], all_draws [B]
        # (+ seconds with batch_size); autoattack_summary(info) -> {"clean": a0, "apgd-ce": a1, ...}
        # call: aa(logits_fn, x, y, key, *, eps, full_output=False, stages={name: AutoAttackStage(key, x_adv, fooled)})
    ensemble(attack, estimators, make_logits_fn, *, draws=1, chunk=None, search_examples=32, full=None)
        # call: ens(logits_fn, x, y, key, *, eps, full_output=False, **attack_kwargs); logits_fn judges;
        # estimators: Estimators, specs or presets ("sr", "tmlr", "strong"; gradients.expand);
        # info: x_adv [E, B, ...], correct [E, M, B], robust [M, B], accuracy, accuracy_all_draws,
        # per_estimator [E], worst [B], names [E], search {name: grid, accuracy, chosen, width, cost}
    transfer(attack, source_logits_fn, *, draws=1, chunk=None)
        # info: correct [M, B], accuracy, accuracy_all_draws
    # event frames (values k/m): at most `budget` added/removed events, output on the lattice
    event_attack(logits_fn, x, y, key, *, budget, max_count=1, steps=10, per_step=None, restarts=1, loss="ce",
                 target=None, eot=1, eot_chunk=None, restart_chunk=None, full_output=False)
    random_events(logits_fn, x, y, key, *, budget, max_count=1, restarts=1, loss="ce", target=None, eot=1,
                  eot_chunk=None, restart_chunk=None, full_output=False)
    # judging, separate from attacking:
    correct_draws(logits_fn, x, y, key, *, draws=10, chunk=None) -> [M, B] bool
    robust_accuracy(logits_fn, x_adv, y, key, *, draws=10, chunk=None) -> (mean, all_draws)

Concrete inputs are validated at the boundary (one-line ``ValueError``): images finite and in
[0, 1], integer labels in ``[0, K)``, a PRNG key (``jax.random.key`` or ``PRNGKey``), ``eps`` a
number ≥ 0 or a ``[B]`` vector (fgsm / pgd / apgd); traced inputs inside a jit pass through.

Modules: :mod:`~jsnn.attacks.common` (projection, random starts, best tracking),
:mod:`~jsnn.attacks.adaptive` (PDSG and ASSG: surrogates from the layer's membrane potential),
:mod:`~jsnn.attacks.losses` (CE, CW, DLR, targeted), :mod:`~jsnn.attacks.eot` (EOT oracle,
final judgement over draws), :mod:`~jsnn.attacks.gradients` (gradient estimators: surrogates,
BPTR, RGA, HART, the ANN proxy; presets and their registry), :mod:`~jsnn.attacks.ensemble`
(the worst case over estimators), and the attacks below.

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

from jsnn.attacks import adaptive, common, eot, gradients, losses
from jsnn.attacks.apgd import apgd, apgd_targeted, checkpoints as apgd_checkpoints, target_classes
from jsnn.attacks.autoattack import Stage as AutoAttackStage, autoattack, stages_of as autoattack_stages
from jsnn.attacks.autoattack import summary as autoattack_summary
from jsnn.attacks.eot import correct_draws, robust_accuracy
from jsnn.attacks.events import event_attack, random_events
from jsnn.attacks.fab import fab_t, projection_linf
from jsnn.attacks.fgsm import fgsm, rfgsm
from jsnn.attacks.ensemble import ensemble
from jsnn.attacks.gradients import Estimator, sr_ensemble
from jsnn.attacks.pgd import pgd
from jsnn.attacks.sapgd import sapgd
from jsnn.attacks.square import square
from jsnn.attacks.transfer import transfer

__all__ = [
    "adaptive", "common", "eot", "gradients", "losses", "sapgd",
    "apgd", "apgd_targeted", "apgd_checkpoints", "target_classes",
    "correct_draws", "robust_accuracy", "fgsm", "rfgsm", "pgd", "transfer",
    "Estimator", "ensemble", "sr_ensemble",
    "square", "fab_t", "projection_linf", "autoattack", "autoattack_summary", "autoattack_stages", "AutoAttackStage",
    "event_attack", "random_events",
]
