"""AutoAttack (Croce & Hein, ICML 2020): a fixed, parameter-free ensemble of attacks.

Reference: F. Croce, M. Hein, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", arXiv 2003.01690, and ``autoattack/autoattack.py``.

* ``version="standard"`` (deterministic models): APGD-CE (1 restart), APGD-T (targeted DLR,
  9 targets), FAB-T (9 targets), Square (5000 queries), 100 iterations each, L∞.
* ``version="rand"`` (randomized defenses): APGD-CE and APGD-DLR, 100 iterations, EOT over
  20 draws per gradient, L∞ or L2.

:func:`autoattack` is a combinator: ``aa = autoattack(version=...)`` is an attack,
``aa(logits_fn, x, y, key, *, eps, full_output=False) -> x_adv``. The attacks run in sequence;
each one only changes the examples still robust after the previous ones, and a robust
example's returned point is the clean image (as in the reference).

* ``batch_size=None`` (default): the whole cascade on the given batch is one jitted
  computation (a stage is skipped by ``lax.cond`` when nothing is left to attack), so a
  runner can shard batches over devices.
* ``batch_size=n``: the still-robust examples are gathered on the host and processed in
  chunks of ``n`` (the last chunk padded by repetition), so the cost of each stage follows
  the number of examples left (the 0.1 behaviour, same results and keys).

Judging (METHODS.md: "judge the final example over several fresh draws, not one"): a point is
judged on ``draws`` fresh draws of the model's noise (default 1 for "standard", 10 for
"rand"); it counts as correctly classified iff more than half of the draws predict ``y``.
With ``full_output=True`` the attack also returns the judged masks (nothing needs judging
twice): ``info["robust"]`` ``[B]`` (robust after every attack), ``info["clean"]`` ``[B]``,
``info["stages"][name]`` ``[B]`` (robust after that stage), ``info["draw_accuracy"]`` ``[B]``
(fraction of fresh draws correct at ``x_adv``), ``info["all_draws"]`` ``[B]`` (correct in every
draw) and, in the host-batched mode, ``info["seconds"]`` per stage. :func:`summary` turns an
info into the robust accuracy after each stage.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jsnn.attacks import common
from jsnn.attacks.apgd import apgd, apgd_targeted
from jsnn.attacks.eot import check_eot, correct_draws
from jsnn.attacks.fab import fab_t
from jsnn.attacks.square import square
from jsnn.config import check_int

VERSIONS = ("standard", "rand")
ATTACKS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}


def _suite(version: str, *, eps, norm: str, steps: int, num_targets: int, queries: int, eot: int,
           eot_chunk: Optional[int]) -> List[Tuple[str, Callable]]:
    """The attacks of ``version`` as ``(name, attack(logits_fn, x, y, key) -> x_adv)``."""
    kw = dict(eps=eps, norm=norm, steps=steps, eot=eot, eot_chunk=eot_chunk)
    suite = {
        "apgd-ce": lambda f, x, y, k: apgd(f, x, y, k, loss="ce", restarts=1, **kw),
        "apgd-dlr": lambda f, x, y, k: apgd(f, x, y, k, loss="dlr", restarts=1, **kw),
        "apgd-t": lambda f, x, y, k: apgd_targeted(f, x, y, k, num_targets=num_targets, restarts=1, **kw),
        "fab-t": lambda f, x, y, k: fab_t(f, x, y, k, eps=eps, steps=steps, num_targets=num_targets),
        "square": lambda f, x, y, k: square(f, x, y, k, eps=eps, queries=queries, eot=eot),
    }
    return [(name, suite[name]) for name in ATTACKS[version]]


def summary(info: Dict) -> Dict[str, float]:
    """Robust accuracy after each stage, ``{"clean": a₀, "apgd-ce": a₁, ...}``, from a ``full_output`` info."""
    out = {"clean": float(np.mean(np.asarray(info["clean"])))}
    out.update({name: float(np.mean(np.asarray(r))) for name, r in info["stages"].items()})
    return out


def _judge(fn, x, y, key, draws, eot_chunk):
    """Fraction of ``draws`` fresh draws classifying correctly, ``[B]``."""
    return correct_draws(fn, x, y, key, draws=draws, chunk=eot_chunk).mean(0)


@functools.partial(jax.jit, static_argnames=("version", "norm", "steps", "num_targets", "queries", "eot",
                                             "draws", "eot_chunk"))
def _cascade(fn, x, y, key, eps, *, version, norm, steps, num_targets, queries, eot, draws, eot_chunk):
    """The whole cascade on one batch (keys as the host-batched mode's chunk 0)."""
    suite = _suite(version, eps=eps, norm=norm, steps=steps, num_targets=num_targets, queries=queries,
                   eot=eot, eot_chunk=eot_chunk)
    bcast = (-1,) + (1,) * (x.ndim - 1)
    robust = _judge(fn, x, y, common.fold(common.fold(key, 0), 0), draws, eot_chunk) > 0.5
    clean, stages, x_adv = robust, {}, x
    for i, (name, attack) in enumerate(suite, start=1):
        k_attack, k_judge = jax.random.split(common.fold(key, i, 0))

        def stage(carry, attack=attack, k_attack=k_attack, k_judge=k_judge):
            x_adv, robust = carry
            xa = attack(fn, x, y, k_attack)
            fooled = robust & (_judge(fn, xa, y, k_judge, draws, eot_chunk) <= 0.5)
            return jnp.where(fooled.reshape(bcast), xa, x_adv), robust & ~fooled

        x_adv, robust = jax.lax.cond(jnp.any(robust), stage, lambda c: c, (x_adv, robust))
        stages[name] = robust
    final = _judge(fn, x_adv, y, common.fold(common.fold(key, len(suite) + 1), 0), draws, eot_chunk)
    return x_adv, {"robust": robust, "clean": clean, "stages": stages, "draw_accuracy": final,
                   "all_draws": final == 1.0}


def _batched(fn, x, y, key, eps, *, version, norm, steps, num_targets, queries, eot, draws, eot_chunk,
             batch_size, verbose):
    """The cascade with host-side gathering of the still-robust examples in chunks of ``batch_size``."""
    n = x.shape[0]
    chunk = min(batch_size, n)

    def chunks(indices):
        for c, start in enumerate(range(0, len(indices), chunk)):
            sel = indices[start:start + chunk]
            yield c, sel, np.resize(sel, chunk)  # pad by repetition: one shape per attack

    def judge(xb, yb, k):
        return np.asarray(_judge(fn, xb, yb, k, draws, eot_chunk))

    t0 = time.perf_counter()
    frac = np.zeros(n, np.float32)
    k_clean = common.fold(key, 0)
    for c, sel, pad in chunks(np.arange(n)):
        frac[sel] = judge(x[pad], y[pad], common.fold(k_clean, c))[:len(sel)]
    robust = frac > 0.5
    clean, stages, seconds = robust.copy(), {}, {"clean": time.perf_counter() - t0}
    suite = _suite(version, eps=eps, norm=norm, steps=steps, num_targets=num_targets, queries=queries,
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
        stages[name] = robust.copy()
        seconds[name] = time.perf_counter() - t0
        if verbose:
            logging.info("autoattack %s: robust accuracy %.4f (%d images attacked, %.1f s, %.1f images/s)",
                         name, robust.mean(), len(remaining), seconds[name],
                         len(remaining) / max(seconds[name], 1e-9))
    final = np.zeros(n, np.float32)
    k_final = common.fold(key, len(suite) + 1)
    for c, sel, pad in chunks(np.arange(n)):
        final[sel] = judge(jnp.asarray(x_adv[pad]), y[pad], common.fold(k_final, c))[:len(sel)]
    return x_adv, {"robust": robust, "clean": clean, "stages": stages, "draw_accuracy": final,
                   "all_draws": final == 1.0, "seconds": seconds}


def autoattack(*, version: str = "standard", norm: str = "linf", eot: Optional[int] = None, steps: int = 100,
               num_targets: Optional[int] = None, queries: int = 5000, draws: Optional[int] = None,
               eot_chunk: Optional[int] = None, batch_size: Optional[int] = None,
               verbose: bool = False) -> Callable:
    """AutoAttack ``version`` as an attack ``aa(logits_fn, x, y, key, *, eps, full_output=False) -> x_adv``.

    Args:
      version: ``"standard"`` or ``"rand"``.
      norm: ``"linf"`` (``"l2"`` only with version "rand").
      eot: EOT draws per gradient / Square query; default 1 ("standard"), 20 ("rand").
      steps: iterations of APGD and FAB (100).
      num_targets: targets of APGD-T and FAB-T; default ``min(9, K − 1)``.
      queries: Square's query budget (5000).
      draws: fresh draws judging each point (majority vote); default 1 / 10.
      eot_chunk: run EOT draws (and judging draws) in ``lax.map`` chunks of this size (memory).
      batch_size: ``None``: one jitted cascade per batch; an integer: host-side chunks of the
        still-robust examples (stage ``i`` on chunk ``c`` uses ``fold_in(fold_in(key, i), c)``).
      verbose: log robust accuracy, time and throughput of each stage (host-batched mode).

    Returns:
      The attack; with ``full_output=True`` it returns ``(x_adv, info)`` (see the module docstring).

    Example:
        A tiny budget on a linear 4-class model: the first image is fooled by APGD-CE, the
        second is misclassified from the start, so the later attacks have nothing left to do:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks.autoattack import autoattack, summary
        >>> W = jnp.array([[1., 0., 0., 0.], [0., 1., 0., 0.], [1., 0., 0., 0.], [0., 1., 0., 0.]])
        >>> logits_fn = lambda x, key: x.reshape(x.shape[0], -1) @ W
        >>> x = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]).reshape(2, 2, 2, 1)
        >>> aa = autoattack(steps=5)
        >>> x_adv, info = aa(logits_fn, x, jnp.array([0, 1]), jax.random.key(0), eps=0.15, full_output=True)
        >>> summary(info)
        {'clean': 0.5, 'apgd-ce': 0.0, 'apgd-t': 0.0, 'fab-t': 0.0, 'square': 0.0}
        >>> info["robust"].tolist(), bool(jnp.all(jnp.abs(x_adv - x) <= 0.15 + 1e-6))
        ([False, False], True)
    """
    eot = (20 if version == "rand" else 1) if eot is None else eot
    draws = (10 if version == "rand" else 1) if draws is None else draws
    common.check_norm(norm)
    if version not in VERSIONS:
        raise ValueError(f"autoattack version: {version!r}; allowed: {', '.join(VERSIONS)}")
    if version == "standard" and norm != "linf":
        raise ValueError(f"autoattack norm: {norm!r} with version 'standard'; FAB-T and Square are "
                         f"implemented for 'linf' only (version 'rand' allows 'linf' and 'l2')")
    check_int(steps, "steps", where="attack ")
    check_int(queries, "queries", 2, where="attack ")
    check_eot(eot)
    check_int(draws, "draws", where="attack ")
    check_int(batch_size, "batch_size", allow_none=True, where="attack ")
    check_int(num_targets, "num_targets", allow_none=True, where="attack ")
    settings = dict(version=version, norm=norm, steps=steps, queries=queries, eot=eot, draws=draws,
                    eot_chunk=eot_chunk)

    def attack(logits_fn, x, y, key, *, eps, full_output: bool = False):
        x, y = common.check_inputs(x, y, key, logits_fn)
        common.check_eps(eps, batch=x.shape[0])
        fn = common.as_partial(logits_fn)
        targets = num_targets
        if targets is None:
            targets = min(9, jax.eval_shape(fn, x[:1], key).shape[-1] - 1)
        if batch_size is None:
            x_adv, info = _cascade(fn, x, y, key, jnp.asarray(eps, x.dtype), num_targets=targets, **settings)
        else:
            x_adv, info = _batched(fn, x, y, key, eps, num_targets=targets, batch_size=batch_size,
                                   verbose=verbose, **settings)
        return (x_adv, info) if full_output else x_adv

    attack.__name__ = f"autoattack_{version}"
    return attack
