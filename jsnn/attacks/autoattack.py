"""AutoAttack (Croce & Hein, ICML 2020): a fixed, parameter-free ensemble of attacks.

Reference: F. Croce, M. Hein, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", arXiv 2003.01690, and ``autoattack/autoattack.py``.

* ``version="standard"`` (deterministic models): APGD-CE (1 restart), APGD-T (targeted DLR,
  9 targets), FAB-T (9 targets), Square (5000 queries), 100 iterations each, L∞.
* ``version="rand"`` (randomized defenses): APGD-CE and APGD-DLR, 100 iterations, EOT over
  20 draws per gradient, L∞ or L2.

The attacks run in sequence; each one only attacks the examples still robust after the
previous ones, and a robust example's returned point is the clean image (as in the
reference). Here the still-robust examples are gathered on the host and processed in
chunks of ``batch_size`` (the last chunk padded by repetition), so each attack is one jitted
computation compiled once per chunk shape, and its cost follows the number of examples left.

Judging (METHODS.md: "judge the final example over several fresh draws, not one"): a point is
judged on ``judge_draws`` fresh draws of the model's noise (default 1 for "standard", 10 for
"rand"); it counts as correctly classified iff more than half of the draws predict ``y``. The
clean accuracy and every attack's output are judged this way; an example is fooled by an
attack iff its point is judged misclassified. ``draw_accuracy`` additionally reports the mean
per-draw accuracy of the final points (the expected accuracy of the stochastic classifier)
and ``all_draws_accuracy`` the fraction correct in every draw.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jsnn.attacks import common
from jsnn.attacks.apgd import apgd, apgd_targeted
from jsnn.attacks.eot import check_eot, correct_draws
from jsnn.attacks.fab import fab_t
from jsnn.attacks.square import square

VERSIONS = ("standard", "rand")
ATTACKS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}


class AutoAttackResult(NamedTuple):
    """Output of :func:`autoattack`.

    Attributes:
      x_adv: ``[B, ...]``: the first attack's point that fooled the example, else the clean image.
      robust: ``[B]`` bool, still correctly classified after every attack (majority of draws).
      log: robust accuracy after each stage, in order: ``{"clean": a₀, "apgd-ce": a₁, ...}``.
      seconds: wall time of each stage (compilation included).
      draw_accuracy: mean over examples and ``judge_draws`` fresh draws of ``argmax = y`` at
        ``x_adv`` (equals ``log[last]`` for deterministic models).
      all_draws_accuracy: fraction of examples correct at ``x_adv`` in every one of
        ``judge_draws`` fresh draws (cf. :func:`jsnn.attacks.eot.robust_accuracy`).
    """

    x_adv: np.ndarray
    robust: np.ndarray
    log: Dict[str, float]
    seconds: Dict[str, float]
    draw_accuracy: float
    all_draws_accuracy: float


def _suite(version: str, *, eps, norm: str, steps: int, num_targets: int, n_queries: int, eot: int,
           eot_chunk: Optional[int]) -> List[Tuple[str, Callable]]:
    """The attacks of ``version`` as ``(name, attack(logits_fn, x, y, key) -> x_adv)``."""
    kw = dict(eps=eps, norm=norm, steps=steps, eot=eot, chunk=eot_chunk)
    suite = {
        "apgd-ce": lambda f, x, y, k: apgd(f, x, y, k, loss="ce", restarts=1, **kw),
        "apgd-dlr": lambda f, x, y, k: apgd(f, x, y, k, loss="dlr", restarts=1, **kw),
        "apgd-t": lambda f, x, y, k: apgd_targeted(f, x, y, k, num_targets=num_targets, restarts=1, **kw),
        "fab-t": lambda f, x, y, k: fab_t(f, x, y, k, eps=eps, n_iter=steps, n_target_classes=num_targets),
        "square": lambda f, x, y, k: square(f, x, y, k, eps=eps, n_queries=n_queries, eot=eot),
    }
    return [(name, suite[name]) for name in ATTACKS[version]]


def _check(x, y, eps, norm, version, steps, num_targets, n_queries, eot, judge_draws, batch_size):
    x, y = common.check_inputs(x, y)
    common.check_eps(eps)
    common.check_norm(norm)
    if version not in VERSIONS:
        raise ValueError(f"autoattack version: {version!r}; allowed: {', '.join(VERSIONS)}")
    if version == "standard" and norm != "linf":
        raise ValueError(f"autoattack norm: {norm!r} with version 'standard'; FAB-T and Square are "
                         f"implemented for 'linf' only (version 'rand' allows 'linf' and 'l2')")
    common.check_positive_int(steps, "steps")
    common.check_positive_int(n_queries, "n_queries", minimum=2)
    check_eot(eot)
    common.check_positive_int(judge_draws, "judge_draws")
    common.check_positive_int(batch_size, "batch_size")
    if num_targets is not None:
        common.check_positive_int(num_targets, "num_targets")
    return x, y


def autoattack(logits_fn, x, y, key, *, eps, norm: str = "linf", version: str = "standard",
               eot: Optional[int] = None, steps: int = 100, num_targets: Optional[int] = None,
               n_queries: int = 5000, judge_draws: Optional[int] = None, batch_size: int = 256,
               eot_chunk: Optional[int] = None, verbose: bool = False) -> AutoAttackResult:
    """Runs AutoAttack ``version`` and returns the adversarial points with a per-attack log.

    Args:
      logits_fn: ``logits_fn(x, key) -> logits [B, K]`` (a function or ``jax.tree_util.Partial``).
      x: clean images ``[B, H, W, C]`` in ``[0, 1]``.
      y: labels ``[B]``.
      key: PRNG key; attack ``i`` on chunk ``c`` uses ``fold_in(fold_in(key, i), c)``.
      eps: radius in pixel units.
      norm: ``"linf"`` (``"l2"`` only with version "rand").
      version: ``"standard"`` or ``"rand"``.
      eot: EOT draws per gradient / Square query; default 1 ("standard"), 20 ("rand").
      steps: iterations of APGD and FAB (100).
      num_targets: targets of APGD-T and FAB-T; default ``min(9, K − 1)``.
      n_queries: Square's query budget (5000).
      judge_draws: fresh draws judging each point (majority vote); default 1 / 10.
      batch_size: chunk size of every attack (one compilation per attack and chunk shape).
      eot_chunk: run EOT draws in ``lax.map`` chunks of this size (memory).
      verbose: log robust accuracy, time and throughput of each stage (absl logging).

    Returns:
      An :class:`AutoAttackResult`.

    Example:
        A tiny budget on a linear 4-class model: the first image is fooled by APGD-CE, the
        second is misclassified from the start, so the later attacks have nothing left to do:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import autoattack
        >>> W = jnp.array([[1., 0., 0., 0.], [0., 1., 0., 0.], [1., 0., 0., 0.], [0., 1., 0., 0.]])
        >>> logits_fn = lambda x, key: x.reshape(x.shape[0], -1) @ W
        >>> x = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]).reshape(2, 2, 2, 1)
        >>> res = autoattack(logits_fn, x, jnp.array([0, 1]), jax.random.key(0), eps=0.15, steps=5)
        >>> res.log
        {'clean': 0.5, 'apgd-ce': 0.0, 'apgd-t': 0.0, 'fab-t': 0.0, 'square': 0.0}
        >>> res.robust.tolist(), bool(jnp.all(jnp.abs(res.x_adv - x) <= 0.15 + 1e-6))
        ([False, False], True)
    """
    eot = (20 if version == "rand" else 1) if eot is None else eot
    judge_draws = (10 if version == "rand" else 1) if judge_draws is None else judge_draws
    x, y = _check(x, y, eps, norm, version, steps, num_targets, n_queries, eot, judge_draws, batch_size)
    fn = common.as_partial(logits_fn)
    n = x.shape[0]
    chunk = min(batch_size, n)

    def chunks(indices):
        for c, start in enumerate(range(0, len(indices), chunk)):
            sel = indices[start:start + chunk]
            yield c, sel, np.resize(sel, chunk)  # pad by repetition: one shape per attack

    def judge(xb, yb, k):  # fraction of fresh draws classifying correctly, [chunk]
        return np.asarray(correct_draws(fn, xb, yb, k, draws=judge_draws, chunk=eot_chunk).mean(0))

    t0 = time.perf_counter()
    frac = np.zeros(n, np.float32)
    k_clean = common.fold(key, 0)
    for c, sel, pad in chunks(np.arange(n)):
        frac[sel] = judge(x[pad], y[pad], common.fold(k_clean, c))[:len(sel)]
    robust = frac > 0.5
    log = {"clean": float(robust.mean())}
    seconds = {"clean": time.perf_counter() - t0}
    if num_targets is None:
        k_classes = jax.eval_shape(fn, x[:1], key).shape[-1]
        num_targets = min(9, k_classes - 1)
    suite = _suite(version, eps=eps, norm=norm, steps=steps, num_targets=num_targets, n_queries=n_queries,
                   eot=eot, eot_chunk=eot_chunk)
    x_adv = np.array(x)
    for i, (name, attack) in enumerate(suite, start=1):
        t0 = time.perf_counter()
        remaining = np.flatnonzero(robust)
        for c, sel, pad in chunks(remaining):
            k_attack, k_judge = jax.random.split(common.fold(key, i, c))
            xb, yb = x[pad], y[pad]
            xa = attack(fn, xb, yb, k_attack)
            fooled = judge(xa, yb, k_judge)[:len(sel)] <= 0.5
            x_adv[sel[fooled]] = np.asarray(xa)[:len(sel)][fooled]
            robust[sel[fooled]] = False
        log[name] = float(robust.mean())
        seconds[name] = time.perf_counter() - t0
        if verbose:
            logging.info("autoattack %s: robust accuracy %.4f (%d images attacked, %.1f s, %.1f images/s)",
                         name, log[name], len(remaining), seconds[name],
                         len(remaining) / max(seconds[name], 1e-9))
    final = np.zeros(n, np.float32)
    k_final = common.fold(key, len(suite) + 1)
    for c, sel, pad in chunks(np.arange(n)):
        final[sel] = judge(jnp.asarray(x_adv[pad]), y[pad], common.fold(k_final, c))[:len(sel)]
    return AutoAttackResult(x_adv, robust, log, seconds, float(final.mean()), float((final == 1.0).mean()))
