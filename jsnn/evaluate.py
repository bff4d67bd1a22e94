"""Robustness report of a trained run: the attack suite, sanity checks, JSON + plot.

``evaluate_workdir(workdir)`` (``python -m launch.evaluate --workdir=DIR``) restores the run of
``launch.train``, runs the configured suite on the first ``num_examples`` test images and writes

* ``DIR/robustness.json`` — one record per attack under ``records[name]`` (name, attack, norm,
  ε, steps, EOT, estimator, ``accuracy`` = mean over M judgement draws, ``accuracy_all_draws`` =
  fraction correct in every draw, seconds, and the ``settings`` needed to rerun it), the sanity
  checks, QTE and the worst case;
* ``DIR/robustness.png`` — accuracy vs ε per attack.

The suite (``config.evaluate.*``, defaults from :func:`default_eval_config`, so configs of
older runs work): clean, FGSM and PGD-N over the ε list, APGD-CE and APGD-DLR, Square and
AutoAttack at the main ε (AutoAttack ``rand`` automatically when the model is stochastic),
the worst case over the surrogate/BPTR estimator ensemble (spiking models, SR protocol), an
optional transfer attack from another run, and PGD at a large ε for the sanity check.
Stochastic models are attacked with EOT and judged over ``draws`` = M fresh draws.

Sanity checks (Athalye et al. 2018; Carlini et al. 2019, "On evaluating adversarial
robustness"), each a flag in the JSON, printed at the end:

* ``large_eps``: accuracy at the large ε is ≈ 0 (≤ ``sanity.large_eps_max_accuracy``);
* ``monotone_eps`` / ``monotone_steps`` / ``monotone_eot``: accuracy does not rise with ε,
  with the number of PGD steps, or with EOT draws (slack ``sanity.tolerance``);
* ``whitebox_le_blackbox``: the best white-box attack at the main ε is at least as strong as
  Square and transfer;
* ``zero_gradients``: the fraction of examples whose input gradient (CE, the model's own
  estimator) is exactly zero is ≤ ``sanity.zero_grad_max_fraction``.

A model that fails any check is reported as "possible gradient masking".

Resume: the JSON is rewritten atomically after every record; a rerun skips records whose
settings are unchanged. QTE (RSC-SNN's trade-off measure) is the trapezoid area under
accuracy vs ε from ε = 0 (clean) to the largest ε of the list, also divided by that ε.
"""

from __future__ import annotations

import fractions
import functools
import json
import math
import os
import re
import time
import types
import zlib
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.tree_util import Partial

from jsnn import attacks, checkpoint, io, models, parallel
from jsnn import config as cfg_lib
from jsnn import data as data_lib
from jsnn.attacks import gradients as gradients_lib
from jsnn.models import SpikingModel

ROBUSTNESS = "robustness.json"
PLOT = "robustness.png"
ATTACKS = ("clean", "fgsm", "pgd<N>", "apgd-ce", "apgd-dlr", "square", "autoattack", "ensemble", "transfer")
EVAL_DEFAULT_SUITE = "clean,fgsm,pgd10,pgd50,apgd-ce,apgd-dlr,square,autoattack,ensemble"
_PGD = re.compile(r"^pgd(\d+)$")
FUNCTIONS = {"clean": "jsnn.attacks.correct_draws", "fgsm": "jsnn.attacks.fgsm", "pgd": "jsnn.attacks.pgd",
             "apgd-ce": "jsnn.attacks.apgd", "apgd-dlr": "jsnn.attacks.apgd", "square": "jsnn.attacks.square.square",
             "autoattack": "jsnn.attacks.autoattack.autoattack",
             "ensemble": "jsnn.attacks.ensemble_attack(jsnn.attacks.pgd, ...)",
             "transfer": "jsnn.attacks.pgd on the source, judged on the target"}
KEYS = ("record key = fold_in(PRNGKey(seed), crc32(name)); batch b of batch_size images uses fold_in(record key, b), "
        "split into (attack key, judgement key); the last batch is padded by repeating its last image")


def default_eval_config() -> ml_collections.ConfigDict:
    """Defaults of ``config.evaluate.*`` (runs whose config lacks a field get these)."""
    c = ml_collections.ConfigDict()
    c.attacks = EVAL_DEFAULT_SUITE  # comma list: clean, fgsm, pgd<N>, apgd-ce, apgd-dlr, square, autoattack,
    #                                 ensemble, transfer
    c.norm = "linf"  # linf | l2
    c.eps = "2/255,4/255,8/255,16/255"  # ε sweep of FGSM / PGD (pixel units; fractions allowed)
    c.main_eps = "8/255"  # ε of APGD, Square, AutoAttack, the ensemble and transfer
    c.large_eps = "0.5"  # sanity: PGD accuracy at this ε must be ≈ 0 ("" to skip)
    c.num_examples = 1000  # first N images of the split (0 = all)
    c.split = "test"
    c.batch_size = 128
    c.seed = 0
    c.pgd_step_size = 0.0  # 0 = 2.5·ε/steps
    c.pgd_restarts = 1
    c.apgd_steps = 100  # APGD and AutoAttack iterations
    c.apgd_restarts = 1
    c.square_queries = 5000
    c.autoattack_version = "auto"  # auto (rand if stochastic) | standard | rand
    c.eot = 0  # EOT draws per gradient; 0 = auto (1 deterministic, 20 stochastic)
    c.eot_chunk = 0  # run EOT draws in chunks of this size (0 = all at once)
    c.draws = 10  # M fresh draws judging a stochastic model (deterministic models: 1)
    c.ensemble = "triangle:1,sigmoid:4,atan:2,bptr"  # SR protocol estimators
    c.ensemble_steps = 10  # PGD steps of each ensemble member
    c.transfer_from = ""  # workdir of a source run for the transfer attack
    c.transfer_steps = 10
    c.sanity = ml_collections.ConfigDict()
    c.sanity.large_eps_max_accuracy = 0.1
    c.sanity.tolerance = 0.02
    c.sanity.zero_grad_max_fraction = 0.1
    return c


# ----------------------------------------------------------------------------- config


def _parse_number(text, field: str) -> float:
    try:
        v = float(fractions.Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"evaluate.{field}: {text!r} is not a number (e.g. 8/255 or 0.03)") from None
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"evaluate.{field}: must be >= 0, got {text!r}")
    return v


def _parse_list(text) -> List[str]:
    if isinstance(text, (list, tuple)):
        return [str(t).strip() for t in text if str(t).strip()]
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _merge(base: ml_collections.ConfigDict, update, where: str) -> None:
    allowed = set(base.keys())
    for key, value in (update.items() if update else ()):
        head, _, rest = key.partition(".")
        if head not in allowed:
            raise ValueError(f"{where}.{key}: unknown field; allowed: {', '.join(sorted(allowed))}")
        if rest:
            _merge(base[head], {rest: value}, f"{where}.{head}")
        elif isinstance(base[head], ml_collections.ConfigDict):
            _merge(base[head], dict(value), f"{where}.{head}")
        else:
            default = base[head]
            if isinstance(default, bool) or default is None or isinstance(value, type(default)):
                base[head] = value
            elif isinstance(default, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool):
                if isinstance(default, int) and not float(value).is_integer():
                    raise ValueError(f"{where}.{key}: expected an integer, got {value!r}")
                base[head] = type(default)(value)
            elif isinstance(default, str):
                base[head] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            else:
                raise ValueError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")


def resolve_eval_config(run_config=None, overrides=None, num_examples: Optional[int] = None):
    """Defaults ← the run's ``config.evaluate`` ← ``overrides`` (flat dotted keys or nested) ← ``num_examples``.

    Unknown fields and bad values are ``ValueError`` naming ``evaluate.<field>``.
    """
    ev = default_eval_config()
    stored = None
    if run_config is not None:
        stored = run_config.get("evaluate") if hasattr(run_config, "get") else None
    if stored:
        _merge(ev, cfg_lib.flatten(stored), "evaluate")
    if overrides:
        ov = overrides.to_dict() if hasattr(overrides, "to_dict") else dict(overrides)
        _merge(ev, cfg_lib.flatten(ov), "evaluate")
    if num_examples is not None:
        ev.num_examples = int(num_examples)
    validate_eval_config(ev)
    return ev


def validate_eval_config(ev) -> None:
    """Checks every field of ``config.evaluate`` with errors naming the field."""
    for name in _parse_list(ev.attacks):
        if name not in ATTACKS and not _PGD.match(name):
            raise ValueError(f"evaluate.attacks: unknown attack {name!r}; allowed: {', '.join(ATTACKS)}")
        m = _PGD.match(name)
        if m and int(m.group(1)) < 1:
            raise ValueError(f"evaluate.attacks: {name!r} needs at least one step")
    if not _parse_list(ev.attacks):
        raise ValueError("evaluate.attacks: empty; allowed: " + ", ".join(ATTACKS))
    if ev.norm not in attacks.common.NORMS:
        _bad("norm", ev.norm, ", ".join(attacks.common.NORMS))
    eps = [_parse_number(e, "eps") for e in _parse_list(ev.eps)]
    if not eps:
        raise ValueError("evaluate.eps: needs at least one ε")
    _parse_number(ev.main_eps, "main_eps")
    if str(ev.large_eps).strip():
        _parse_number(ev.large_eps, "large_eps")
    for field, minimum in (("num_examples", 0), ("batch_size", 1), ("pgd_restarts", 1), ("apgd_steps", 1),
                           ("apgd_restarts", 1), ("square_queries", 2), ("eot", 0), ("eot_chunk", 0),
                           ("draws", 1), ("ensemble_steps", 1), ("transfer_steps", 1)):
        v = ev[field]
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ValueError(f"evaluate.{field}: must be an integer >= {minimum}, got {v!r}")
    if not (isinstance(ev.pgd_step_size, (int, float)) and ev.pgd_step_size >= 0):
        raise ValueError(f"evaluate.pgd_step_size: must be >= 0 (0 = 2.5·ε/steps), got {ev.pgd_step_size!r}")
    if ev.autoattack_version not in ("auto", "standard", "rand"):
        _bad("autoattack_version", ev.autoattack_version, "auto, standard, rand")
    for spec in _parse_list(ev.ensemble):
        try:
            gradients_lib.parse(spec)
        except ValueError as e:
            raise ValueError(f"evaluate.ensemble: {e}") from None
    for field in ("large_eps_max_accuracy", "tolerance", "zero_grad_max_fraction"):
        v = ev.sanity[field]
        if not (isinstance(v, (int, float)) and 0 <= v <= 1):
            raise ValueError(f"evaluate.sanity.{field}: must lie in [0, 1], got {v!r}")


def _bad(field, value, allowed):
    raise ValueError(f"evaluate.{field}: {value!r}; allowed: {allowed}")


# ----------------------------------------------------------------------------- the plan


def _eps_label(eps: float) -> str:
    k = eps * 255
    if abs(k - round(k)) < 1e-6 and eps > 0:
        return f"{int(round(k))}/255"
    return f"{eps:g}"


def plan(ev, *, stochastic: bool, spiking: bool) -> List[Dict[str, Any]]:
    """The records the suite will produce: ``[{name, attack, norm, eps, steps, eot, estimator, ...}]``.

    Example:
        A stochastic spiking model gets EOT 20 everywhere, the estimator ensemble at the main ε,
        and two sanity records (the same PGD without EOT, and PGD at a large ε):

        >>> from jsnn import evaluate
        >>> ev = evaluate.default_eval_config()
        >>> ev.attacks, ev.eps, ev.main_eps = "clean,pgd10,ensemble", "0.05,0.1", "0.1"
        >>> for r in evaluate.plan(ev, stochastic=True, spiking=True):
        ...     print(r["name"], r["eot"], r["purpose"])
        clean None suite
        pgd10-linf-eps0.05 20 suite
        pgd10-linf-eps0.1 20 suite
        ensemble-pgd10-linf-eps0.1 20 suite
        pgd10-linf-eps0.1-eot1 1 sanity: eot
        pgd10-linf-eps0.5-large 20 sanity: large eps
    """
    norm = ev.norm
    eps_list = [_parse_number(e, "eps") for e in _parse_list(ev.eps)]
    main = _parse_number(ev.main_eps, "main_eps")
    eot = ev.eot or (20 if stochastic else 1)
    draws = ev.draws if stochastic else 1
    common = dict(norm=norm, draws=draws, num_examples=ev.num_examples, split=ev.split, seed=ev.seed)
    out = []

    def add(name, attack, eps, rec_steps=None, rec_eot=None, estimator="model", purpose="suite", **settings):
        out.append(dict(name=name, attack=attack, function=FUNCTIONS[attack], eps=float(eps),
                        eps_label=_eps_label(eps), steps=rec_steps, eot=rec_eot, estimator=estimator,
                        purpose=purpose, settings=dict(common, batch_size=ev.batch_size, **settings)))

    pgd_steps = []
    for a in _parse_list(ev.attacks):
        if a == "clean":
            add("clean", "clean", 0.0)
        elif a == "fgsm":
            for e in eps_list:
                add(f"fgsm-{norm}-eps{_eps_label(e)}", "fgsm", e, 1, eot, eot=eot, chunk=ev.eot_chunk)
        elif _PGD.match(a):
            n = int(_PGD.match(a).group(1))
            pgd_steps.append(n)
            for e in eps_list:
                add(f"{a}-{norm}-eps{_eps_label(e)}", "pgd", e, n, eot, eot=eot, steps=n,
                    step_size=ev.pgd_step_size, restarts=ev.pgd_restarts, chunk=ev.eot_chunk)
        elif a in ("apgd-ce", "apgd-dlr"):
            add(f"{a}-{norm}-eps{_eps_label(main)}", a, main, ev.apgd_steps, eot, eot=eot, steps=ev.apgd_steps,
                restarts=ev.apgd_restarts, loss=a.split("-")[1], chunk=ev.eot_chunk)
        elif a == "square":
            add(f"square-linf-eps{_eps_label(main)}", "square", main, ev.square_queries, eot, eot=eot,
                n_queries=ev.square_queries, norm_required="linf")
        elif a == "autoattack":
            version = ev.autoattack_version if ev.autoattack_version != "auto" else (
                "rand" if stochastic else "standard")
            add(f"autoattack-{version}-{norm}-eps{_eps_label(main)}", "autoattack", main, ev.apgd_steps,
                eot if stochastic else 1, version=version, steps=ev.apgd_steps, n_queries=ev.square_queries,
                eot=eot if stochastic else 1)
        elif a == "ensemble":
            specs = [gradients_lib.parse(s).name for s in _parse_list(ev.ensemble)]
            add(f"ensemble-pgd{ev.ensemble_steps}-{norm}-eps{_eps_label(main)}", "ensemble", main,
                ev.ensemble_steps, eot, estimator="worst of " + ", ".join(specs), eot=eot,
                steps=ev.ensemble_steps, estimators=list(_parse_list(ev.ensemble)), chunk=ev.eot_chunk,
                spiking_only=True)
        elif a == "transfer":
            add(f"transfer-pgd{ev.transfer_steps}-{norm}-eps{_eps_label(main)}", "transfer", main,
                ev.transfer_steps, 1, estimator="source: " + str(ev.transfer_from), steps=ev.transfer_steps,
                source=str(ev.transfer_from))
    n = max(pgd_steps) if pgd_steps else 10
    if stochastic and eot > 1:  # accuracy must not rise with EOT: the same PGD with one draw
        add(f"pgd{n}-{norm}-eps{_eps_label(main)}-eot1", "pgd", main, n, 1, purpose="sanity: eot", eot=1,
            steps=n, step_size=ev.pgd_step_size, restarts=ev.pgd_restarts, chunk=0)
    if str(ev.large_eps).strip():
        large = _parse_number(ev.large_eps, "large_eps")
        add(f"pgd{n}-{norm}-eps{_eps_label(large)}-large", "pgd", large, n, eot, purpose="sanity: large eps",
            eot=eot, steps=n, step_size=ev.pgd_step_size, restarts=ev.pgd_restarts, chunk=ev.eot_chunk)
    for r in out:
        if r["settings"].get("spiking_only") and not spiking:
            r["skip"] = "not a spiking model: one estimator only"
        if r["settings"].get("norm_required") and r["settings"]["norm_required"] != norm:
            r["skip"] = f"implemented for {r['settings']['norm_required']} only"
        if r["attack"] == "autoattack" and r["settings"]["version"] == "standard" and norm != "linf":
            r["skip"] = "AutoAttack standard (FAB-T, Square) is implemented for linf only"
        if r["attack"] == "transfer" and not r["settings"]["source"]:
            r["skip"] = "evaluate.transfer_from is empty"
    return out


# ----------------------------------------------------------------------------- running


def _estimator(model, variables, surrogate, gradient):
    return models.logits_fn(model, variables, surrogate=surrogate, gradient=gradient)


def estimator_factory(model, variables) -> Partial:
    """``make_logits_fn(surrogate, gradient)`` for :func:`jsnn.attacks.ensemble`."""
    return Partial(functools.partial(_estimator, model), variables)


def is_stochastic(model, fn, x) -> bool:
    """The model says so (``SpikingModel.stochastic``), or its logits change with the key."""
    if getattr(model, "stochastic", False):
        return True
    a = jax.jit(fn)(x, jax.random.PRNGKey(1))
    b = jax.jit(fn)(x, jax.random.PRNGKey(2))
    return not bool(jnp.array_equal(a, b))


def _record_key(seed: int, name: str):
    return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def _batches(n: int, bs: int):
    for start in range(0, n, bs):
        idx = np.arange(start, min(start + bs, n))
        yield idx, np.concatenate([idx, np.full(bs - len(idx), idx[-1])])  # pad: one compile per attack


@jax.jit
def _grad_stats(fn, x, y, key):
    g = jax.grad(lambda xx: attacks.losses.ce(fn(xx, key), y).sum())(x)
    flat = g.reshape(g.shape[0], -1)
    return jnp.sum(flat == 0, axis=1), jnp.all(flat == 0, axis=1)


def _attack_batch(rec, fn, make, source_fn, x, y, key, ev):
    """→ (correct [M, B] bool, extra dict) for one batch."""
    s = rec["settings"]
    draws = s["draws"]
    chunk = s.get("chunk") or None
    eps = rec["eps"]
    k_attack, k_judge = jax.random.split(key)
    extra = {}
    a = rec["attack"]
    if a == "clean":
        x_adv = x
    elif a == "fgsm":
        x_adv = attacks.fgsm(fn, x, y, k_attack, eps=eps, norm=s["norm"], eot=s["eot"], eot_chunk=chunk)
    elif a == "pgd":
        x_adv = attacks.pgd(fn, x, y, k_attack, eps=eps, norm=s["norm"], steps=s["steps"],
                            step_size=s["step_size"] or None, restarts=s["restarts"], eot=s["eot"], eot_chunk=chunk)
    elif a in ("apgd-ce", "apgd-dlr"):
        x_adv = attacks.apgd(fn, x, y, k_attack, eps=eps, norm=s["norm"], steps=s["steps"],
                             restarts=s["restarts"], loss=s["loss"], eot=s["eot"], eot_chunk=chunk)
    elif a == "square":
        from jsnn.attacks.square import square

        x_adv = square(fn, x, y, k_attack, eps=eps, queries=s["n_queries"], eot=s["eot"])
    elif a == "ensemble":
        ests = [gradients_lib.parse(e) for e in s["estimators"]]
        _, res = attacks.ensemble(attacks.pgd, ests, make, draws=draws)(
            make(None, None), x, y, key, eps=eps, norm=s["norm"], steps=s["steps"], eot=s["eot"], eot_chunk=chunk,
            full_output=True)
        extra["per_estimator_correct"] = np.asarray(res["correct"])  # [E, M, B]
        return np.asarray(res["robust"]), extra
    elif a == "transfer":
        x_adv = attacks.pgd(source_fn, x, y, k_attack, eps=eps, norm=s["norm"], steps=s["steps"])
    else:  # pragma: no cover - plan() only emits the names above
        raise ValueError(f"evaluate: unknown attack {a!r}")
    return np.asarray(attacks.correct_draws(fn, x_adv, y, k_judge, draws=draws)), extra


def _run_record(rec, fn, make, source_fn, images, labels, ev, index, total, mesh=None):
    s = rec["settings"]
    key = _record_key(s["seed"], rec["name"])
    n = len(labels)
    t0 = time.time()
    extra_out = {}
    if rec["attack"] == "autoattack":
        from jsnn.attacks.autoattack import autoattack

        k_attack, k_judge = jax.random.split(key)
        from jsnn.attacks.autoattack import summary

        x_aa, info = autoattack(norm=s["norm"], version=s["version"], eot=s["eot"], steps=s["steps"],
                                queries=s["n_queries"], draws=s["draws"], batch_size=ev.batch_size, verbose=True)(
            fn, jnp.asarray(images), jnp.asarray(labels), k_attack, eps=rec["eps"], full_output=True)
        res = types.SimpleNamespace(x_adv=x_aa, robust=info["robust"], log=summary(info))
        correct = np.zeros((s["draws"], n), bool)
        for idx, padded in _batches(n, ev.batch_size):
            c = attacks.correct_draws(fn, jnp.asarray(res.x_adv[padded]), jnp.asarray(labels[padded]),
                                      jax.random.fold_in(k_judge, int(idx[0])), draws=s["draws"])
            correct[:, idx] = np.asarray(c)[:, :len(idx)]
        extra_out = {"autoattack_log": {k: float(v) for k, v in res.log.items()},
                     "autoattack_majority_vote_accuracy": float(np.mean(res.robust))}
    else:
        correct = np.zeros((s["draws"], n), bool)
        per_est = None
        nb = math.ceil(n / ev.batch_size)
        for b, (idx, padded) in enumerate(_batches(n, ev.batch_size)):
            xb, yb = images[padded], labels[padded]
            xb, yb = (jnp.asarray(xb), jnp.asarray(yb)) if mesh is None else parallel.shard_batch((xb, yb), mesh)
            c, extra = _attack_batch(rec, fn, make, source_fn, xb, yb, jax.random.fold_in(key, b), ev)
            correct[:, idx] = c[:, :len(idx)]
            if "per_estimator_correct" in extra:
                pe = extra["per_estimator_correct"][:, :, :len(idx)]
                per_est = pe if per_est is None else np.concatenate([per_est, pe], axis=2)
            done = int(idx[-1]) + 1
            el = time.time() - t0
            logging.info("[%d/%d] %s: batch %d/%d, accuracy so far %.4f, %.1fs, ETA %.0fs", index, total,
                         rec["name"], b + 1, nb, correct[:, :done].mean(), el, el / done * (n - done))
        if per_est is not None:
            names = [gradients_lib.parse(e).name for e in s["estimators"]]
            extra_out["per_estimator_accuracy"] = {nm: float(per_est[i].mean()) for i, nm in enumerate(names)}
    out = {k: v for k, v in rec.items() if k != "skip"}
    out.update(accuracy=float(correct.mean()), accuracy_all_draws=float(correct.all(0).mean()),
               num_examples=n, seconds=time.time() - t0, **extra_out)
    return out


# ----------------------------------------------------------------------------- sanity, QTE, plot


def _families(records: Dict[str, dict]):
    """``{family: [(ε, accuracy), ...]}`` for attacks run over the ε list (clean as ε = 0)."""
    fam: Dict[str, list] = {}
    clean = records.get("clean")
    for r in records.values():
        if r.get("purpose", "suite") != "suite" or r["attack"] not in ("fgsm", "pgd"):
            continue
        f = r["name"].split("-")[0]
        fam.setdefault(f, []).append((r["eps"], r["accuracy"]))
    for f in fam:
        fam[f].sort()
        if clean is not None:
            fam[f] = [(0.0, clean["accuracy"])] + fam[f]
    return fam


def qte(records: Dict[str, dict]) -> Dict[str, dict]:
    """Trapezoid area under accuracy vs ε per attack family, raw and divided by the largest ε.

    Example:
        >>> from jsnn import evaluate
        >>> ev = evaluate.default_eval_config()
        >>> ev.attacks, ev.eps, ev.main_eps = "clean,pgd10", "0.05,0.1", "0.1"
        >>> plan = evaluate.plan(ev, stochastic=False, spiking=False)
        >>> records = {r["name"]: dict(r, accuracy=a) for r, a in zip(plan, [1.0, 0.8, 0.4, 0.0])}
        >>> q = evaluate.qte(records)["pgd10"]  # area of (0, 1.0), (0.05, 0.8), (0.1, 0.4)
        >>> round(q["area"], 4), round(q["normalized"], 4)  # 0.05·(1.0+0.8)/2 + 0.05·(0.8+0.4)/2
        (0.075, 0.75)
    """
    out = {}
    for f, pts in _families(records).items():
        if len(pts) < 2:
            continue
        e, a = np.array(pts).T
        area = float(np.trapezoid(a, e))
        out[f] = {"area": area, "normalized": area / float(e[-1]) if e[-1] > 0 else None,
                  "eps": e.tolist(), "accuracy": a.tolist()}
    return out


def sanity_checks(records: Dict[str, dict], grad_stats: Optional[dict], ev) -> Dict[str, Any]:
    """The gradient-masking checks; every flag is ``{"passed": bool | None, "detail": str}``.

    Example:
        Accuracy that *rises* with ε, or stays high at a large ε, is flagged:

        >>> from jsnn import evaluate
        >>> ev = evaluate.default_eval_config()
        >>> ev.attacks, ev.eps, ev.main_eps = "clean,pgd10", "0.05,0.1", "0.1"
        >>> plan = evaluate.plan(ev, stochastic=False, spiking=False)
        >>> records = {r["name"]: dict(r, accuracy=a) for r, a in zip(plan, [1.0, 0.4, 0.6, 0.3])}
        >>> s = evaluate.sanity_checks(records, None, ev)
        >>> s["failed"], s["verdict"]
        (['large_eps', 'monotone_eps'], 'possible gradient masking')
    """
    tol = float(ev.sanity.tolerance)
    flags = {}
    suite = {k: r for k, r in records.items() if not r.get("skip")}
    large = [r for r in suite.values() if r.get("purpose") == "sanity: large eps"]
    if large:
        acc = large[0]["accuracy"]
        flags["large_eps"] = {"passed": acc <= ev.sanity.large_eps_max_accuracy,
                              "detail": f"accuracy {acc:.4f} at eps={large[0]['eps_label']} "
                                        f"(must be <= {ev.sanity.large_eps_max_accuracy})"}
    else:
        flags["large_eps"] = {"passed": None, "detail": "not run"}
    bad = []
    for f, pts in _families(suite).items():
        for (e0, a0), (e1, a1) in zip(pts, pts[1:]):
            if a1 > a0 + tol:
                bad.append(f"{f}: {a0:.4f} at eps={e0:g} → {a1:.4f} at eps={e1:g}")
    flags["monotone_eps"] = {"passed": not bad if _families(suite) else None,
                             "detail": "; ".join(bad) or "accuracy never rises with eps"}
    pgd = {}
    for r in suite.values():
        if r["attack"] == "pgd" and r.get("purpose", "suite") == "suite":
            pgd.setdefault(r["eps"], []).append((r["steps"], r["accuracy"]))
    bad = []
    for e, pts in pgd.items():
        pts.sort()
        for (s0, a0), (s1, a1) in zip(pts, pts[1:]):
            if a1 > a0 + tol:
                bad.append(f"eps={e:g}: PGD-{s0} {a0:.4f} → PGD-{s1} {a1:.4f}")
    multi = any(len(p) > 1 for p in pgd.values())
    flags["monotone_steps"] = {"passed": (not bad) if multi else None,
                               "detail": "; ".join(bad) or ("accuracy never rises with steps" if multi else "not run")}
    eot1 = [r for r in suite.values() if r.get("purpose") == "sanity: eot"]
    if eot1:
        r1 = eot1[0]
        match = [r for r in suite.values() if r["attack"] == "pgd" and r.get("purpose", "suite") == "suite"
                 and r["eps"] == r1["eps"] and r["steps"] == r1["steps"]]
        if match:
            ok = match[0]["accuracy"] <= r1["accuracy"] + tol
            flags["monotone_eot"] = {"passed": ok, "detail": f"PGD-{r1['steps']} eot=1 {r1['accuracy']:.4f}, "
                                                             f"eot={match[0]['eot']} {match[0]['accuracy']:.4f}"}
        else:
            flags["monotone_eot"] = {"passed": None, "detail": "no matching EOT run"}
    else:
        flags["monotone_eot"] = {"passed": None, "detail": "deterministic model"}
    main = [r for r in suite.values() if r["attack"] in ("pgd", "fgsm", "apgd-ce", "apgd-dlr", "ensemble")
            and r.get("purpose", "suite") == "suite"]
    black = [r for r in suite.values() if r["attack"] in ("square", "transfer")]
    if black and main:
        bad = []
        for b in black:
            white = [w["accuracy"] for w in main if abs(w["eps"] - b["eps"]) < 1e-12]
            if white and min(white) > b["accuracy"] + tol:
                bad.append(f"{b['name']} {b['accuracy']:.4f} < best white-box {min(white):.4f}")
        flags["whitebox_le_blackbox"] = {"passed": not bad, "detail": "; ".join(bad) or
                                         "white-box attacks are at least as strong as black-box ones"}
    else:
        flags["whitebox_le_blackbox"] = {"passed": None, "detail": "not run"}
    if grad_stats:
        frac = grad_stats["zero_gradient_examples"]
        flags["zero_gradients"] = {"passed": frac <= ev.sanity.zero_grad_max_fraction,
                                   "detail": f"{frac:.4f} of examples have an all-zero input gradient; "
                                             f"{grad_stats['zero_gradient_entries']:.4f} of gradient entries are 0"}
    else:
        flags["zero_gradients"] = {"passed": None, "detail": "not run"}
    failed = [k for k, v in flags.items() if v["passed"] is False]
    return {"flags": flags, "failed": failed,
            "verdict": "possible gradient masking" if failed else "no sign of gradient masking"}


def plot(records: Dict[str, dict], path: str, title: str = "") -> None:
    """Accuracy vs ε per attack family (lines) and single-ε attacks (markers)."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for f, pts in _families(records).items():
        e, a = np.array(pts).T
        ax.plot(e, a, marker="o", label=f)
    for r in records.values():
        if r.get("skip") or r["attack"] in ("fgsm", "pgd", "clean") or r.get("purpose", "suite") != "suite":
            continue
        ax.scatter([r["eps"]], [r["accuracy"]], marker="x", label=r["name"].split("-eps")[0])
    ax.set_xlabel("ε (pixel units)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- entry point


def _same_settings(old: dict, new: dict) -> bool:
    return old.get("settings") == new["settings"] and old.get("attack") == new["attack"] and "accuracy" in old


def evaluate_workdir(workdir: str, overrides=None, num_examples: Optional[int] = None,
                     output: str = ROBUSTNESS) -> Dict[str, Any]:
    """Runs the robustness suite on a trained run and writes ``robustness.json`` / ``.png``; resumable.

    Example:
        Needs a trained run (see :func:`jsnn.train.train_and_evaluate`); ``tests/test_evaluate.py``
        runs this on one, so it is skipped here:

        >>> from jsnn import evaluate
        >>> doc = evaluate.evaluate_workdir("/tmp/jsnn/default",  # doctest: +SKIP
        ...                                 overrides={"attacks": "clean,pgd20,autoattack", "eps": "0.1"})
        >>> doc["records"]["pgd20-linf-eps0.1"]["accuracy"], doc["sanity"]["verdict"]  # doctest: +SKIP
        (0.69..., 'no sign of gradient masking')

    Args:
      workdir: directory of a ``launch.train`` run.
      overrides: ``config.evaluate`` fields to change (flat dotted keys or nested dict).
      num_examples: overrides ``evaluate.num_examples``.
      output: JSON file name inside ``workdir`` (the PNG takes the same stem).

    Returns:
      The dict written to ``workdir/output``.
    """

    config, model, variables, *_ = checkpoint.load_run(workdir)
    ev = resolve_eval_config(config, overrides, num_examples)
    mesh = parallel.data_mesh()  # attack batches are split over every device, parameters replicated
    parallel.check_divisible(ev.batch_size, mesh, "evaluate.batch_size")
    variables = parallel.replicate(variables, mesh)
    images, labels = data_lib.eval_arrays(config.data, ev.split, ev.batch_size, ev.num_examples or None,
                                          field="evaluate.split")
    fn = models.logits_fn(model, variables)
    make = estimator_factory(model, variables)
    stochastic = is_stochastic(model, fn, jnp.asarray(images[: min(len(images), 16)]))
    spiking = isinstance(model, SpikingModel)
    records_plan = plan(ev, stochastic=stochastic, spiking=spiking)
    path = os.path.join(workdir, output)
    previous = {}
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f).get("records", {})
    records = dict(previous)
    source_fn = None
    t_start = time.time()
    grad_stats = _gradient_stats(fn, images, labels, ev)
    logging.info("input gradients: %.4f of examples all-zero, %.4f of entries zero",
                 grad_stats["zero_gradient_examples"], grad_stats["zero_gradient_entries"])

    def document():
        current = {r["name"]: records[r["name"]] for r in records_plan if r["name"] in records}
        doc = {
            "workdir": os.path.abspath(workdir),
            "model": {"name": config.model.name, "T": int(getattr(model, "T", 0)),
                      "encoder": getattr(getattr(model, "encoder", None), "_asdict", dict)(),
                      "neuron": getattr(getattr(model, "neuron", None), "kind", None)},
            "stochastic": stochastic, "spiking": spiking,
            "draws": ev.draws if stochastic else 1, "eot": ev.eot or (20 if stochastic else 1),
            "num_examples": int(len(labels)),
            "settings": ev.to_dict(), "keys": KEYS, "records": records, "suite": [r["name"] for r in records_plan],
            "gradients": grad_stats,
            "qte": qte(current),
            "worst_case": _worst_case(current, _parse_number(ev.main_eps, "main_eps")),
            "sanity": sanity_checks(current, grad_stats, ev),
            "environment": io.environment(),
        }
        doc["possible_gradient_masking"] = bool(doc["sanity"]["failed"])
        return doc

    for i, rec in enumerate(records_plan, 1):
        name = rec["name"]
        if rec.get("skip"):
            logging.info("[%d/%d] %s: skipped (%s)", i, len(records_plan), name, rec["skip"])
            records[name] = dict(rec)
            continue
        if name in previous and _same_settings(previous[name], rec):
            logging.info("[%d/%d] %s: done already (accuracy %.4f), skipping", i, len(records_plan), name,
                         previous[name]["accuracy"])
            continue
        if rec["attack"] == "transfer" and source_fn is None:
            _, src_model, src_vars, *_ = checkpoint.load_run(rec["settings"]["source"])
            source_fn = models.logits_fn(src_model, src_vars)
        logging.info("[%d/%d] %s: running on %d examples", i, len(records_plan), name, len(labels))
        records[name] = _run_record(rec, fn, make, source_fn, images, labels, ev, i, len(records_plan), mesh)
        logging.info("[%d/%d] %s: accuracy %.4f (all draws %.4f) in %.1fs", i, len(records_plan), name,
                     records[name]["accuracy"], records[name]["accuracy_all_draws"], records[name]["seconds"])
        io.write_json(path, document())

    doc = document()
    io.write_json(path, doc)
    current = {r["name"]: records[r["name"]] for r in records_plan if r["name"] in records}
    plot(current, os.path.splitext(path)[0] + ".png",
         title=f"{config.model.name} T={getattr(model, 'T', '?')} ({ev.norm}, {len(labels)} examples)")
    for k, v in doc["sanity"]["flags"].items():
        status = {True: "ok", False: "FAILED", None: "n/a"}[v["passed"]]
        logging.info("sanity %-22s %-6s %s", k, status, v["detail"])
    logging.info("verdict: %s (%.0fs)", doc["sanity"]["verdict"], time.time() - t_start)
    return doc


def _worst_case(records: Dict[str, dict], eps: float) -> Dict[str, Any]:
    """The strongest attack at the main ε: per-draw mean accuracy, and the lowest all-draws accuracy."""
    at = [r for r in records.values() if not r.get("skip") and r["attack"] != "clean"
          and r.get("purpose", "suite") == "suite" and abs(r["eps"] - eps) < 1e-12]
    if not at:
        return {}
    worst = min(at, key=lambda r: r["accuracy"])
    return {"eps": eps, "accuracy": worst["accuracy"], "accuracy_all_draws": min(r["accuracy_all_draws"] for r in at),
            "attack": worst["name"]}


def _gradient_stats(fn, images, labels, ev) -> Dict[str, float]:
    n = len(labels)
    zero_entries = zero_examples = 0
    key = jax.random.PRNGKey(ev.seed)
    for b, (idx, padded) in enumerate(_batches(n, ev.batch_size)):
        e, z = _grad_stats(fn, jnp.asarray(images[padded]), jnp.asarray(labels[padded]), jax.random.fold_in(key, b))
        zero_entries += int(np.asarray(e)[: len(idx)].sum())
        zero_examples += int(np.asarray(z)[: len(idx)].sum())
    d = int(np.prod(images.shape[1:]))
    return {"zero_gradient_entries": zero_entries / (n * d), "zero_gradient_examples": zero_examples / n}
