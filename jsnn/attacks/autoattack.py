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

* Concrete inputs: the stages run one after the other from the host, and each attack gets
  only the still-robust examples (``active``), compacted into bucketed batches
  (:mod:`~jsnn.attacks.compact`); APGD-T and FAB-T also compact between their targets, as the
  reference cascade does. The cost of a stage follows the number of examples left.
  ``batch_size=n`` cuts the batch into chunks of ``n`` first (memory; the last one padded).
* Traced inputs (the attack called inside a jit): the whole cascade is one jitted
  computation on the whole batch (a stage is skipped by ``lax.cond`` when nothing is left).
  Its keys are those of the host cascade's chunk 0, so with ``batch_size=None`` both give the
  same verdicts (deterministic models; APGD-T and FAB-T return the first fooling target's
  point on the host, the highest-loss one in the jit).

Stages run elsewhere (``stages={name: Stage(key, x_adv, fooled)}`` at call time): a stage's key
can be given (it is split into (attack key, judgement key) as :mod:`jsnn.evaluate.suite` splits a
record's batch key), and with it the stage's outcome on every example, which is then used instead
of running the stage. The cascade's verdict is unchanged by this: an example is robust iff no
stage fools it, and with the compaction's per-example draws (above) a stage run on the still-robust
examples fools exactly those the same stage run on every example with the same key fools
(deterministic models, up to the floating-point effects of the batch size; a stochastic model's
noise is drawn for the batch it runs on, so there the two agree within Monte Carlo error). This
is how the evaluation suite runs AutoAttack's APGD-CE and Square once when it also reports them.

Judging (METHODS.md: "judge the final example over several fresh draws, not one"): a point is
judged on ``draws`` fresh draws of the model's noise (default 1 for "standard", 10 for
"rand"); it counts as correctly classified iff more than half of the draws predict ``y``.
With ``full_output=True`` the attack also returns the judged masks (nothing needs judging
twice): ``info["robust"]`` ``[B]`` (robust after every attack), ``info["clean"]`` ``[B]``,
``info["stages"][name]`` ``[B]`` (robust after that stage), ``info["draw_accuracy"]`` ``[B]``
(fraction of fresh draws correct at ``x_adv``), ``info["all_draws"]`` ``[B]`` (correct in every
draw) and, in the host cascade, ``info["seconds"]`` per stage. :func:`summary` turns an
info into the robust accuracy after each stage.
"""

from __future__ import annotations

import functools
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
from jsnn.config import check_int

VERSIONS = ("standard", "rand")


class Stage(NamedTuple):
    """A stage's key and, optionally, its outcome on every example, computed elsewhere."""

    key: jax.Array  # split into (attack key, judgement key); chunk c > 0 of batch_size uses fold_in(key, c)
    x_adv: Optional[np.ndarray] = None  # [B, ...] the stage's attack points on every example of the batch
    fooled: Optional[np.ndarray] = None  # [B] bool: judged misclassified at x_adv

ATTACKS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"), "rand": ("apgd-ce", "apgd-dlr")}


def _suite(version: str, *, norm: str, steps: int, num_targets: int, queries: int, eot: int,
           eot_chunk: Optional[int]) -> List[Tuple[str, Callable]]:
    """The attacks of ``version`` as ``(name, attack(logits_fn, x, y, key, eps, active) -> x_adv)``."""
    kw = dict(norm=norm, steps=steps, eot=eot, eot_chunk=eot_chunk)
    suite = {
        "apgd-ce": lambda f, x, y, k, e, a: apgd(f, x, y, k, eps=e, loss="ce", restarts=1, active=a, **kw),
        "apgd-dlr": lambda f, x, y, k, e, a: apgd(f, x, y, k, eps=e, loss="dlr", restarts=1, active=a, **kw),
        "apgd-t": lambda f, x, y, k, e, a: apgd_targeted(f, x, y, k, eps=e, num_targets=num_targets, restarts=1,
                                                         active=a, **kw),
        "fab-t": lambda f, x, y, k, e, a: fab_t(f, x, y, k, eps=e, steps=steps, num_targets=num_targets, active=a),
        "square": lambda f, x, y, k, e, a: square(f, x, y, k, eps=e, queries=queries, eot=eot, active=a),
    }
    return [(name, suite[name]) for name in ATTACKS[version]]


def stages_of(version: str) -> Tuple[str, ...]:
    """The attacks of ``version`` in cascade order.

    Example:
        >>> from jsnn.attacks.autoattack import stages_of
        >>> stages_of("rand")
        ('apgd-ce', 'apgd-dlr')
    """
    if version not in VERSIONS:
        raise ValueError(f"autoattack version: {version!r}; allowed: {', '.join(VERSIONS)}")
    return ATTACKS[version]


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
def _cascade(fn, x, y, key, eps, stage_keys, *, version, norm, steps, num_targets, queries, eot, draws, eot_chunk):
    """The whole cascade on one batch in one jit (traced inputs; keys as the host cascade's chunk 0)."""
    suite = _suite(version, norm=norm, steps=steps, num_targets=num_targets, queries=queries, eot=eot,
                   eot_chunk=eot_chunk)
    bcast = (-1,) + (1,) * (x.ndim - 1)
    robust = _judge(fn, x, y, common.fold(common.fold(key, 0), 0), draws, eot_chunk) > 0.5
    clean, stages, x_adv = robust, {}, x
    for i, (name, attack) in enumerate(suite, start=1):
        k_attack, k_judge = jax.random.split(_stage_key(key, stage_keys.get(name), i, 0))

        def stage(carry, attack=attack, k_attack=k_attack, k_judge=k_judge):
            x_adv, robust = carry
            xa = attack(fn, x, y, k_attack, eps, None)
            fooled = robust & (_judge(fn, xa, y, k_judge, draws, eot_chunk) <= 0.5)
            return jnp.where(fooled.reshape(bcast), xa, x_adv), robust & ~fooled

        x_adv, robust = jax.lax.cond(jnp.any(robust), stage, lambda c: c, (x_adv, robust))
        stages[name] = robust
    final = _judge(fn, x_adv, y, common.fold(common.fold(key, len(suite) + 1), 0), draws, eot_chunk)
    return x_adv, {"robust": robust, "clean": clean, "stages": stages, "draw_accuracy": final,
                   "all_draws": final == 1.0}


def _stage_key(key, given, i, c):
    """Stage ``i``'s key on chunk ``c``: ``fold_in(fold_in(key, i), c)``, or the given one (chunk c > 0: folded)."""
    if given is None:
        return common.fold(key, i, c)
    return given if c == 0 else jax.random.fold_in(given, c)


def _host(fn, x, y, key, eps, given_stages, *, version, norm, steps, num_targets, queries, eot, draws, eot_chunk,
          batch_size, verbose):
    """The cascade on the host: each stage attacks only the still-robust examples, compacted.

    The batch is cut into position chunks of ``batch_size`` (default: one chunk, the whole batch;
    the last chunk padded by repetition); stage ``i`` on chunk ``c`` uses ``fold_in(fold_in(key, i), c)``
    as :func:`_cascade` (chunk 0), and each attack compacts the chunk's robust examples itself
    (``active``; random draws made for the whole chunk, so with one chunk an example's result is
    that of :func:`_cascade`, for deterministic models).
    """
    n = x.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    x_np, y_np = np.asarray(x), np.asarray(y)
    eps_v = np.asarray(eps)
    parts = []
    for c, start in enumerate(range(0, n, bs)):
        sel = np.arange(start, min(start + bs, n))
        pad = np.resize(sel, bs)  # one shape per attack
        parts.append((c, sel, pad, jnp.asarray(x_np[pad]), jnp.asarray(y_np[pad]),
                      jnp.asarray(eps_v[pad] if eps_v.ndim else eps_v, x.dtype)))

    def judge(xb, yb, k):
        return np.asarray(_judge(fn, xb, yb, k, draws, eot_chunk))

    t0 = time.perf_counter()
    frac = np.zeros(n, np.float32)
    for c, sel, pad, xb, yb, _ in parts:
        frac[sel] = judge(xb, yb, common.fold(common.fold(key, 0), c))[:len(sel)]
    robust = frac > 0.5
    clean, stages, seconds = robust.copy(), {}, {"clean": time.perf_counter() - t0}
    suite = _suite(version, norm=norm, steps=steps, num_targets=num_targets, queries=queries, eot=eot,
                   eot_chunk=eot_chunk)
    x_adv = x_np.copy()
    for i, (name, attack) in enumerate(suite, start=1):
        t0, attacked = time.perf_counter(), int(robust.sum())
        given = given_stages.get(name)
        if given is not None and given.fooled is not None:  # run elsewhere: its outcome on the still-robust ones
            fooled = robust & np.asarray(given.fooled, bool)
            x_adv[fooled] = np.asarray(given.x_adv)[fooled]
            robust &= ~fooled
        for c, sel, pad, xb, yb, eb in parts if given is None or given.fooled is None else ():
            active = robust[pad] & (np.arange(bs) < len(sel))
            if not active.any():
                continue
            k_attack, k_judge = jax.random.split(_stage_key(key, None if given is None else given.key, i, c))
            xa = attack(fn, xb, yb, k_attack, eb, active)
            fooled = (active & (judge(xa, yb, k_judge) <= 0.5))[:len(sel)]
            x_adv[sel[fooled]] = np.asarray(xa)[:len(sel)][fooled]
            robust[sel[fooled]] = False
        stages[name] = robust.copy()
        seconds[name] = time.perf_counter() - t0
        if verbose:
            logging.info("autoattack %s: robust accuracy %.4f (%d images %s, %.1f s)", name, robust.mean(), attacked,
                         "attacked" if given is None or given.fooled is None else "judged by the given outcome",
                         seconds[name])
    final = np.zeros(n, np.float32)
    k_final = common.fold(key, len(suite) + 1)
    for c, sel, pad, _, yb, _ in parts:
        final[sel] = judge(jnp.asarray(x_adv[pad]), yb, common.fold(k_final, c))[:len(sel)]
    return jnp.asarray(x_adv), {"robust": robust, "clean": clean, "stages": stages, "draw_accuracy": final,
                                "all_draws": final == 1.0, "seconds": seconds}


def _check_stages(stages, version, batch) -> Dict[str, Stage]:
    """Validates ``stages``: names of ``version``'s attacks; an outcome's shapes match the batch."""
    stages = dict(stages or {})
    for name, g in stages.items():
        if name not in ATTACKS[version]:
            raise ValueError(f"autoattack stages: {name!r} is not a stage of version {version!r}; "
                             f"allowed: {', '.join(ATTACKS[version])}")
        if not isinstance(g, Stage):
            raise ValueError(f"autoattack stages[{name!r}]: expected an autoattack.Stage, got {type(g).__name__}")
        if (g.x_adv is None) != (g.fooled is None):
            raise ValueError(f"autoattack stages[{name!r}]: give both x_adv and fooled, or neither")
        if g.fooled is not None and (np.shape(g.fooled) != (batch,) or np.shape(g.x_adv)[:1] != (batch,)):
            raise ValueError(f"autoattack stages[{name!r}]: expected x_adv [{batch}, ...] and fooled [{batch}], got "
                             f"{np.shape(g.x_adv)} and {np.shape(g.fooled)}")
    return stages


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
      batch_size: ``None``: the whole batch at once; an integer: chunks of that many examples
        (stage ``i`` on chunk ``c`` uses ``fold_in(fold_in(key, i), c)``); host cascade only.
      verbose: log robust accuracy, time and throughput of each stage (host cascade).

    Returns:
      The attack; with ``full_output=True`` it returns ``(x_adv, info)`` (see the module docstring);
      ``stages={name: Stage(...)}`` gives stages' keys and outcomes computed elsewhere (module docstring).

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
    stages_of(version)  # validates the version
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

    def attack(logits_fn, x, y, key, *, eps, full_output: bool = False, stages: Optional[Dict[str, Stage]] = None):
        x, y = common.check_inputs(x, y, key, logits_fn)
        common.check_eps(eps, batch=x.shape[0])
        stages = _check_stages(stages, version, x.shape[0])
        fn = common.as_partial(logits_fn)
        targets = num_targets
        if targets is None:
            targets = min(9, jax.eval_shape(fn, x[:1], key).shape[-1] - 1)
        if common._concrete((x, y, key, eps)):
            x_adv, info = _host(fn, x, y, key, eps, stages, num_targets=targets, batch_size=batch_size,
                                verbose=verbose, **settings)
        else:
            if any(g.fooled is not None for g in stages.values()):
                raise ValueError("autoattack stages: given outcomes need concrete inputs (the host cascade); "
                                 "inside a jit give keys only")
            x_adv, info = _cascade(fn, x, y, key, jnp.asarray(eps, x.dtype), {k: g.key for k, g in stages.items()},
                                   num_targets=targets, **settings)
        return (x_adv, info) if full_output else x_adv

    attack.__name__ = f"autoattack_{version}"
    return attack
