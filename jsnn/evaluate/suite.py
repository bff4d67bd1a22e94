"""The registry of attack kinds: how each expands into records, runs one batch, and is judged.

A :class:`Kind` declares, for one name of ``evaluate.attacks``:

* ``expand(token, ev, p)`` — the records it contributes (one per ε of the list, or one at the
  main ε), each ``{name, eps, steps, eot, estimator, settings}``;
* ``run(rec, target, x, y, key)`` — one batch: ``(hits [B], extra)`` where ``hits`` counts, per
  example, the judgement draws (out of ``settings.draws``) that classify the attacked point
  correctly, and ``extra`` holds per-example arrays (batch on the last axis) for ``summarize``;
* ``family`` — ``"curve"`` kinds run over the ε list (lines of the plot, QTE), ``"events"`` kinds
  over ``evaluate.event_budgets`` (:mod:`jsnn.evaluate.events`), the others are single points;
  ``box`` — ``"white"``, ``"black"`` or ``None`` (the sanity check
  ``whitebox_le_blackbox`` compares the two); ``skip`` — why a record cannot run here (or None).

A new attack is one entry of :data:`KINDS`. Keys: ``run`` gets the batch key
``fold_in(record key, b)`` and splits it into (attack key, judgement key) itself (the ensemble,
transfer and AutoAttack combinators split it inside).

Computed once: an AutoAttack record whose stage (APGD-CE, APGD-DLR, Square) is also a standalone
record of the suite with the same ε, budget, EOT, draws and batches lists it in
``settings.stages_from``; the stage uses that record's batch keys, and the runner hands the
record's per-example outcome to AutoAttack instead of running the stage again (the same verdicts:
:mod:`jsnn.attacks.autoattack`, "Stages run elsewhere").

Example:
    A stochastic spiking model gets EOT 20 everywhere, the estimator ensemble at the main ε,
    and two sanity records (the same PGD without EOT, and PGD at a large ε):

    >>> from jsnn.evaluate import settings, suite
    >>> ev = settings.default_eval_config()
    >>> ev.attacks, ev.eps, ev.main_eps = "clean,pgd10,ensemble", "0.05,0.1", "0.1"
    >>> for r in suite.plan(ev, stochastic=True, spiking=True):
    ...     print(r["name"], r["eot"], r["purpose"], r["box"])
    clean None suite None
    pgd10-linf-eps0.05 20 suite white
    pgd10-linf-eps0.1 20 suite white
    ensemble-pgd10-linf-eps0.1 20 suite white
    pgd10-linf-eps0.1-eot1 1 sanity: eot white
    pgd10-linf-eps0.5-large 20 sanity: large eps white
"""

from __future__ import annotations

import fractions
import math
import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import jax
import numpy as np

from jsnn import attacks
from jsnn.attacks import gradients as gradients_lib
from jsnn.attacks.ensemble import cascade_stages
from jsnn.evaluate import events as event_kinds

_PGD = re.compile(r"^pgd(\d+)$")
# How records are computed: a robustness.json of another version is not a finished evaluation for a sweep
# (jsnn.sweep.summary.evaluation_complete). Bump it when a kind computes differently under the same settings;
# the records themselves are redone where their settings changed (runner.reusable). 2: a stochastic model's
# ensemble judges the chosen point on fresh draws.
RECORDS_VERSION = 2
SEARCH_EXAMPLES = 32  # images of each batch a searching ensemble member (HART's γ) tries its widths on
ENSEMBLE_UNROLLED = 4  # ensembles of at most this many members unroll PGD's step loop (the SR preset, as before)


# ----------------------------------------------------------------------------- parsing


def parse_number(text, field: str) -> float:
    """``"8/255"`` or ``"0.03"`` → a float ≥ 0; ``ValueError`` naming ``evaluate.<field>`` otherwise."""
    try:
        v = float(fractions.Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"evaluate.{field}: {text!r} is not a number (e.g. 8/255 or 0.03)") from None
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"evaluate.{field}: must be >= 0, got {text!r}")
    return v


def parse_list(text) -> List[str]:
    """A comma list (or a sequence) → its non-empty stripped items."""
    if isinstance(text, (list, tuple)):
        return [str(t).strip() for t in text if str(t).strip()]
    return [t.strip() for t in str(text).split(",") if t.strip()]


def parse_eps(ev) -> List[float]:
    """The ε list of ``evaluate.eps``."""
    return [parse_number(e, "eps") for e in parse_list(ev.eps)]


def eps_label(eps: float) -> str:
    """``8/255`` for multiples of 1/255, else ``%g``."""
    k = eps * 255
    if abs(k - round(k)) < 1e-6 and eps > 0:
        return f"{int(round(k))}/255"
    return f"{eps:g}"


# ----------------------------------------------------------------------------- the kinds


class Target(NamedTuple):
    """What a batch is attacked with: the model's forward, its estimator factory, a transfer source."""

    fn: Callable  # logits_fn(x, key) of the evaluated model (judges every record)
    make: Optional[Callable] = None  # make(surrogate, gradient) -> logits_fn (estimator ensemble)
    source_fn: Optional[Callable] = None  # forward of the transfer source
    stages: Optional[Dict[str, Any]] = None  # this batch's AutoAttack stages run by other records (stages_from)


class Plan(NamedTuple):
    """What an expansion needs besides the config: the suite-wide ε, EOT and draws."""

    norm: str
    eps: List[float]
    main: float
    eot: int
    draws: int
    stochastic: bool
    events: Optional[Dict[str, int]] = None  # {"frames": T, "max_count": m} on event data (events.info_of)


class Kind(NamedTuple):
    """One attack kind of the suite (see the module docstring)."""

    name: str  # as written in evaluate.attacks ("pgd<N>" matches pgd1, pgd10, ...)
    function: str  # the jsnn function it runs (recorded)
    expand: Callable[[str, Any, Plan], List[Dict[str, Any]]]
    run: Callable
    family: str = "point"  # "curve": over the ε list (plot lines, QTE); "point": one ε
    box: Optional[str] = "white"  # "white" | "black" | None (neither, or both)
    skip: Callable[[Dict[str, Any], Any, bool], Optional[str]] = lambda settings, ev, spiking: None
    summarize: Callable[[Dict[str, np.ndarray], Dict[str, Any]], Dict[str, Any]] = lambda extra, rec: {}

    def matches(self, token: str) -> bool:
        return bool(_PGD.match(token)) if self.name == "pgd<N>" else token == self.name


def _judged(fn, x_adv, y, key, draws):
    """``(hits, {"x_adv": x_adv})``: the runner keeps ``x_adv`` (batch first) for records that reuse it."""
    return np.asarray(attacks.correct_draws(fn, x_adv, y, key, draws=draws)).sum(0), {"x_adv": x_adv}


def _chunk(s):
    return s.get("eot_chunk") or None


def _run_clean(rec, t, x, y, key):
    return _judged(t.fn, x, y, jax.random.split(key)[1], rec["settings"]["draws"])


def _run_fgsm(rec, t, x, y, key):
    s, (k_attack, k_judge) = rec["settings"], jax.random.split(key)
    x_adv = attacks.fgsm(t.fn, x, y, k_attack, eps=rec["eps"], norm=s["norm"], eot=s["eot"], eot_chunk=_chunk(s))
    return _judged(t.fn, x_adv, y, k_judge, s["draws"])


def _run_pgd(rec, t, x, y, key):
    s, (k_attack, k_judge) = rec["settings"], jax.random.split(key)
    x_adv = attacks.pgd(t.fn, x, y, k_attack, eps=rec["eps"], norm=s["norm"], steps=s["steps"],
                        step_size=s["step_size"] or None, restarts=s["restarts"], eot=s["eot"], eot_chunk=_chunk(s))
    return _judged(t.fn, x_adv, y, k_judge, s["draws"])


def _run_apgd(rec, t, x, y, key):
    s, (k_attack, k_judge) = rec["settings"], jax.random.split(key)
    x_adv = attacks.apgd(t.fn, x, y, k_attack, eps=rec["eps"], norm=s["norm"], steps=s["steps"],
                         restarts=s["restarts"], loss=s["loss"], eot=s["eot"], eot_chunk=_chunk(s))
    return _judged(t.fn, x_adv, y, k_judge, s["draws"])


def _run_square(rec, t, x, y, key):
    s, (k_attack, k_judge) = rec["settings"], jax.random.split(key)
    x_adv = attacks.square(t.fn, x, y, k_attack, eps=rec["eps"], queries=s["queries"], eot=s["eot"])
    return _judged(t.fn, x_adv, y, k_judge, s["draws"])


def _run_autoattack(rec, t, x, y, key):
    s = rec["settings"]
    aa = attacks.autoattack(version=s["version"], norm=s["norm"], eot=s["eot"], steps=s["steps"],
                            queries=s["queries"], draws=s["draws"], eot_chunk=_chunk(s))
    _, info = aa(t.fn, x, y, key, eps=rec["eps"], full_output=True, stages=t.stages)
    hits = np.rint(np.asarray(info["draw_accuracy"]) * s["draws"]).astype(np.int64)
    extra = {"clean": np.asarray(info["clean"]), "majority": np.asarray(info["robust"])}
    extra.update({f"stage:{k}": np.asarray(v) for k, v in info["stages"].items()})
    return hits, extra


def _sum_autoattack(extra, rec):
    stages = {k.split(":", 1)[1]: v for k, v in extra.items() if k.startswith("stage:")}
    return {"autoattack_log": attacks.autoattack_summary({"clean": extra["clean"], "stages": stages}),
            "autoattack_majority_vote_accuracy": float(np.mean(extra["majority"]))}


def ensemble_members(ensemble, full="all") -> tuple:
    """``(members, k)``: the estimators of ``evaluate.ensemble`` with those of ``evaluate.ensemble_full`` first,
    and how many of them attack every image (``None``: all, no cascade); one-line errors naming the field.

    Example:
        >>> from jsnn.evaluate import suite
        >>> members, k = suite.ensemble_members("strong", "default,sr")
        >>> k, [e.name for e in members][:6], len(members)
        (5, ['default', 'triangle(1)', 'sigmoid(4)', 'atan(2)', 'bptr', 'triangle(2)'], 25)
    """
    members = gradients_lib.expand(parse_list(ensemble) if isinstance(ensemble, str) else ensemble)
    spec = ",".join(full) if isinstance(full, (list, tuple)) else str(full).strip()
    if spec.lower() == "all":
        return members, None
    try:
        first = gradients_lib.expand(parse_list(spec))
    except ValueError as e:
        raise ValueError(f"evaluate.ensemble_full: {e}") from None
    names = {e.name for e in members}
    outside = [e.name for e in first if e.name not in names]
    if not first or outside:
        raise ValueError(f"evaluate.ensemble_full: {spec!r} names {', '.join(outside) or 'no member'} outside "
                         f"evaluate.ensemble; allowed: 'all' or members of the ensemble")
    names = {e.name for e in first}
    return tuple(first) + tuple(e for e in members if e.name not in names), len(first)


def _run_ensemble(rec, t, x, y, key):
    s = rec["settings"]
    members, full = ensemble_members(s["estimators"], s.get("full", "all"))
    ens = attacks.ensemble(attacks.pgd, members, t.make, draws=s["draws"], chunk=_chunk(s),
                           search_examples=SEARCH_EXAMPLES, full=full)
    # Beyond the SR four, PGD's step loop stays rolled: each member group is its own PGD trace in the one
    # program, and unrolled (jsnn.attacks.common.default_unroll) the strong preset's program took minutes and
    # ~16 GB to compile on CPU for the digits model.
    unroll = None if len(members) <= ENSEMBLE_UNROLLED else 1
    _, info = ens(t.fn, x, y, key, eps=rec["eps"], norm=s["norm"], steps=s["steps"], eot=s["eot"],
                  eot_chunk=_chunk(s), unroll=unroll, full_output=True)
    correct = np.asarray(info["correct"])  # [E_full, M, B]
    extra = {"per_estimator": correct.sum(1)}  # [E, B]
    for name, srch in info["search"].items():  # per batch: the width kept (batch on the last axis: [1])
        extra[f"search:{name}"] = np.asarray(srch["width"]).reshape(1)
    names = [e.name for e in members[: len(correct)]]
    x_all = np.asarray(info["x_adv"])
    for p, (preset, specs) in enumerate(gradients_lib.PRESETS.items()):  # a preset among the members on every
        sub = [names.index(e.name) for e in gradients_lib.expand(specs) if e.name in names]  # image: its worst case
        if len(sub) == len(gradients_lib.expand(specs)) < len(names):
            if correct.shape[1] == 1:  # deterministic: broken iff some member's point is
                extra[f"subset:{preset}"] = correct[sub].all(0).sum(0)
                continue
            pick = np.asarray(sub)[correct[sub].sum(1).argmin(0)]  # per example, as the ensemble chooses
            xs = jax.numpy.asarray(x_all[pick, np.arange(x_all.shape[1])])
            extra[f"subset:{preset}"] = np.asarray(attacks.correct_draws(  # the chosen point on fresh draws
                t.fn, xs, y, jax.random.fold_in(key, 7919 + p), draws=s["draws"], chunk=_chunk(s))).sum(0)
    if "cascade" in info:  # robust hits after the members on every image, then after each stage
        extra["cascade_hits"] = np.stack([np.asarray(info["robust_full"]).sum(0)]
                                         + [st["robust"].sum(0) for st in info["cascade"]])
        extra["cascade_attacked"] = np.stack([st["active"] for st in info["cascade"]])
        extra["cascade_seconds"] = np.array([[st["seconds"]] for st in info["cascade"]])
    return np.asarray(info["robust"]).sum(0), extra


def _sum_ensemble(extra, rec):
    s = rec["settings"]
    total = s["draws"] * extra["per_estimator"].shape[-1]
    members, full = ensemble_members(s["estimators"], s.get("full", "all"))
    out = {"per_estimator_accuracy": {e.name: float(h.sum() / total) for e, h in zip(members, extra["per_estimator"])}}
    subsets = {k.split(":", 1)[1]: float(v.sum() / total) for k, v in extra.items() if k.startswith("subset:")}
    if subsets:  # the worst case over a preset's members alone (e.g. the SR four inside strong)
        out["subset_accuracy"] = subsets
    if "cascade_hits" in extra:  # the cascade: accuracy after the members on every image, then after each stage
        stages = cascade_stages(members, full)
        hits, attacked, secs = extra["cascade_hits"], extra["cascade_attacked"], extra["cascade_seconds"]
        out["cascade"] = [{"members": [e.name for e in members[:full]], "attacked": int(hits.shape[-1]),
                           "accuracy": float(hits[0].sum() / total)}] + [
            {"members": [members[i].name for i in idx], "gradient": members[idx[0]].gradient or "default",
             "attacked": int(attacked[j].sum()), "accuracy": float(hits[j + 1].sum() / total),
             "seconds": float(secs[j].sum())} for j, idx in enumerate(stages)]
    searches = {e.name: e for e in members if e.grid}
    if searches:  # the width each batch kept, and the search's cost in member-attacks per batch
        batch = s["batch_size"]  # every batch is padded to it
        out["search"] = {name: {"grid": list(e.grid), "chosen_per_batch": [float(w) for w in extra[f"search:{name}"]],
                                "search_examples": min(SEARCH_EXAMPLES, batch),
                                "relative_cost": len(e.grid) * min(SEARCH_EXAMPLES, batch) / batch}
                         for name, e in searches.items()}
    return out


def _run_transfer(rec, t, x, y, key):
    s = rec["settings"]
    tr = attacks.transfer(attacks.pgd, t.source_fn, draws=s["draws"])
    _, info = tr(t.fn, x, y, key, eps=rec["eps"], norm=s["norm"], steps=s["steps"], full_output=True)
    return np.asarray(info["correct"]).sum(0), {}


def _run_sapgd(rec, t, x, y, key):  # ASSG + SA-PGD (Wang et al. 2025): the attack carries the ASSG state
    s, (k_attack, k_judge) = rec["settings"], jax.random.split(key)
    x_adv = attacks.sapgd(attacks.adaptive.assg(t.fn), x, y, k_attack, eps=rec["eps"], norm=s["norm"],
                          steps=s["steps"], restarts=s["restarts"], loss=s["loss"], eot=s["eot"],
                          schedule=s["schedule"], eot_chunk=_chunk(s))
    return _judged(t.fn, x_adv, y, k_judge, s["draws"])


def _one(name, eps, steps, eot, /, estimator="model", **settings):
    return dict(name=name, eps=eps, steps=steps, eot=eot, estimator=estimator, settings=settings)


def _pgd_settings(ev, steps, eot):
    return dict(eot=eot, steps=steps, step_size=ev.pgd_step_size, restarts=ev.pgd_restarts,
                eot_chunk=ev.eot_chunk if eot > 1 else 0)


def _expand_pgd(token, ev, p):
    n = int(_PGD.match(token).group(1))
    return [_one(f"{token}-{p.norm}-eps{eps_label(e)}", e, n, p.eot, **_pgd_settings(ev, n, p.eot)) for e in p.eps]


def _expand_apgd(token, ev, p):
    return [_one(f"{token}-{p.norm}-eps{eps_label(p.main)}", p.main, ev.apgd_steps, p.eot, eot=p.eot,
                 steps=ev.apgd_steps, restarts=ev.apgd_restarts, loss=token.split("-")[1], eot_chunk=ev.eot_chunk)]


def _expand_autoattack(token, ev, p):
    version = ev.autoattack_version if ev.autoattack_version != "auto" else ("rand" if p.stochastic else "standard")
    eot = p.eot if p.stochastic else 1
    return [_one(f"autoattack-{version}-{p.norm}-eps{eps_label(p.main)}", p.main, ev.apgd_steps, eot,
                 version=version, steps=ev.apgd_steps, queries=ev.square_queries, eot=eot, eot_chunk=ev.eot_chunk)]


def _expand_ensemble(token, ev, p):
    specs = parse_list(ev.ensemble)
    names = ", ".join(e.name for e in gradients_lib.expand(specs))
    full = str(ev.get("ensemble_full", "all")).strip()
    cascade = {} if full.lower() == "all" else {"full": parse_list(full)}  # (absent: records made before it stay valid)
    if p.stochastic:  # the chosen point is judged on fresh draws (records judged per draw over all members are redone)
        cascade["judged"] = "chosen point, fresh draws"
    return [_one(f"ensemble-pgd{ev.ensemble_steps}-{p.norm}-eps{eps_label(p.main)}", p.main, ev.ensemble_steps,
                 p.eot, estimator="worst of " + names, eot=p.eot, steps=ev.ensemble_steps, estimators=specs,
                 eot_chunk=ev.eot_chunk, **cascade)]


def _expand_transfer(token, ev, p):
    return [_one(f"transfer-pgd{ev.transfer_steps}-{p.norm}-eps{eps_label(p.main)}", p.main, ev.transfer_steps, 1,
                 estimator="source: " + str(ev.transfer_from), steps=ev.transfer_steps, source=str(ev.transfer_from))]


def _expand_sapgd(token, ev, p):
    return [_one(f"sapgd{ev.apgd_steps}-assg-{p.norm}-eps{eps_label(p.main)}", p.main, ev.apgd_steps, p.eot,
                 estimator="assg", eot=p.eot, steps=ev.apgd_steps, restarts=ev.apgd_restarts, loss="ce",
                 schedule="always", eot_chunk=ev.eot_chunk)]


KINDS = (
    Kind("clean", "jsnn.attacks.correct_draws", lambda token, ev, p: [_one("clean", 0.0, None, None)], _run_clean,
         box=None),
    Kind("fgsm", "jsnn.attacks.fgsm", lambda token, ev, p: [
        _one(f"fgsm-{p.norm}-eps{eps_label(e)}", e, 1, p.eot, eot=p.eot, eot_chunk=ev.eot_chunk) for e in p.eps],
        _run_fgsm, family="curve"),
    Kind("pgd<N>", "jsnn.attacks.pgd", _expand_pgd, _run_pgd, family="curve"),
    Kind("apgd-ce", "jsnn.attacks.apgd", _expand_apgd, _run_apgd),
    Kind("apgd-dlr", "jsnn.attacks.apgd", _expand_apgd, _run_apgd),
    Kind("square", "jsnn.attacks.square", lambda token, ev, p: [
        _one(f"square-linf-eps{eps_label(p.main)}", p.main, ev.square_queries, p.eot, eot=p.eot,
             queries=ev.square_queries)], _run_square, box="black",
         skip=lambda s, ev, spiking: "implemented for linf only" if s["norm"] != "linf" else None),
    Kind("autoattack", "jsnn.attacks.autoattack", _expand_autoattack, _run_autoattack, box=None,
         skip=lambda s, ev, spiking: ("AutoAttack standard (FAB-T, Square) is implemented for linf only"
                                      if s["version"] == "standard" and s["norm"] != "linf" else None),
         summarize=_sum_autoattack),
    Kind("ensemble", "jsnn.attacks.ensemble(jsnn.attacks.pgd, ...)", _expand_ensemble, _run_ensemble,
         skip=lambda s, ev, spiking: None if spiking else "not a spiking model: one estimator only",
         summarize=_sum_ensemble),
    Kind("transfer", "jsnn.attacks.transfer(jsnn.attacks.pgd, source)", _expand_transfer, _run_transfer,
         box="black", skip=lambda s, ev, spiking: None if s["source"] else "evaluate.transfer_from is empty"),
    Kind("sapgd", "jsnn.attacks.sapgd(jsnn.attacks.adaptive.assg(logits_fn), ...)", _expand_sapgd, _run_sapgd),
    Kind("event-l0", "jsnn.attacks.event_attack", event_kinds.expand_l0, event_kinds.run_l0, family=event_kinds.FAMILY,
         box=None, skip=event_kinds.skip, summarize=event_kinds.summarize),
    Kind("event-random", "jsnn.attacks.random_events", event_kinds.expand_random, event_kinds.run_random,
         family=event_kinds.FAMILY, box=None, skip=event_kinds.skip, summarize=event_kinds.summarize),
)
NAMES = tuple(k.name for k in KINDS)
_BY_NAME = {k.name: k for k in KINDS}


def kind(token: str) -> Kind:
    """The kind that ``token`` (a name of ``evaluate.attacks``) selects; ``ValueError`` listing the known ones."""
    for k in KINDS:
        if k.matches(token):
            return k
    raise ValueError(f"evaluate.attacks: unknown attack {token!r}; allowed: {', '.join(NAMES)}")


def check_attacks(tokens: List[str]) -> None:
    """Every token names a kind (``pgd<N>`` with N ≥ 1), and there is at least one."""
    if not tokens:
        raise ValueError("evaluate.attacks: empty; allowed: " + ", ".join(NAMES))
    for token in tokens:
        kind(token)
        if _PGD.match(token) and int(_PGD.match(token).group(1)) < 1:
            raise ValueError(f"evaluate.attacks: {token!r} needs at least one step")


# ----------------------------------------------------------------------------- the plan


def plan(ev, *, stochastic: bool, spiking: bool, events: Optional[Dict[str, int]] = None) -> List[Dict[str, Any]]:
    """The records the suite will produce, in order: the kinds of ``evaluate.attacks``, then the sanity records.

    ``events`` (:func:`jsnn.evaluate.events.info_of` of the dataset) marks event data: every record then
    says which ``input`` it attacks (``"frames"`` or ``"events"``); without it the event kinds are skipped.

    Each record: ``name, attack, kind, function, family, box, eps, eps_label, steps, eot, estimator, purpose,
    settings`` (+ ``skip`` with the reason when it cannot run here).
    """
    p = Plan(norm=ev.norm, eps=parse_eps(ev), main=parse_number(ev.main_eps, "main_eps"),
             eot=ev.eot or (20 if stochastic else 1), draws=ev.draws if stochastic else 1, stochastic=stochastic,
             events=events)
    common = dict(norm=p.norm, draws=p.draws, num_examples=ev.num_examples, split=ev.split, seed=ev.seed,
                  batch_size=ev.batch_size)
    out = []

    def add(k: Kind, token: str, one: Dict[str, Any], purpose: str = "suite"):
        rec = dict(one, attack=token if k.name != "pgd<N>" else "pgd", kind=k.name, function=k.function,
                   family=k.family,
                   box=k.box, eps=float(one["eps"]), eps_label=eps_label(one["eps"]), purpose=purpose,
                   settings=dict(common, **one["settings"]))
        if events:
            rec["input"] = "events" if k.family == event_kinds.FAMILY else "frames"
        if k.family == event_kinds.FAMILY:
            rec["eps_label"] = f"{one['settings']['budget']} events"
        reason = k.skip(rec["settings"], ev, spiking)
        if reason:
            rec["skip"] = reason
        out.append(rec)

    tokens = parse_list(ev.attacks)
    for token in tokens:
        k = kind(token)
        for one in k.expand(token, ev, p):
            add(k, token, one)
    n = max([int(_PGD.match(t).group(1)) for t in tokens if _PGD.match(t)] or [10])
    pgd = kind("pgd10")
    if stochastic and p.eot > 1:  # accuracy must not rise with EOT: the same PGD with one draw
        add(pgd, "pgd", _one(f"pgd{n}-{p.norm}-eps{eps_label(p.main)}-eot1", p.main, n, 1,
                             **_pgd_settings(ev, n, 1)), "sanity: eot")
    if str(ev.large_eps).strip():
        large = parse_number(ev.large_eps, "large_eps")
        add(pgd, "pgd", _one(f"pgd{n}-{p.norm}-eps{eps_label(large)}-large", large, n, p.eot,
                             **_pgd_settings(ev, n, p.eot)), "sanity: large eps")
    _stage_sources(out)
    return out


# settings a standalone record (kind apgd-ce, apgd-dlr or square: the AutoAttack stage of that name) must share
_STAGE_SAME = ("norm", "draws", "num_examples", "split", "seed", "batch_size", "eot")


def _stage_sources(records: List[Dict[str, Any]]) -> None:
    """Marks each AutoAttack record with ``settings.stages_from = {stage: record name}``: the earlier suite
    records that run one of its stages with the same attack, ε, budget and batches.

    The stage then uses that record's batch keys (so its result is the record's own, whether it is reused
    in memory or recomputed; :mod:`jsnn.attacks.autoattack`, "Stages run elsewhere"), and the runner hands
    AutoAttack the record's outcome instead of running the stage again.
    """
    for i, rec in enumerate(records):
        if rec["kind"] != "autoattack" or rec.get("skip"):
            continue
        s, src = rec["settings"], {}
        stages = attacks.autoattack_stages(s["version"])
        for other in records[:i]:
            o, stage = other["settings"], other["kind"]
            if (stage not in stages or other.get("skip") or other["purpose"] != "suite" or other["eps"] != rec["eps"]
                    or any(o.get(k) != s.get(k) for k in _STAGE_SAME)):
                continue
            if stage == "square" and o["queries"] == s["queries"]:
                src[stage] = other["name"]
            elif stage != "square" and (o["steps"], o["restarts"], o.get("eot_chunk")) == (s["steps"], 1,
                                                                                          s.get("eot_chunk")):
                src[stage] = other["name"]
        if src:
            s["stages_from"] = src


def run_batch(rec: Dict[str, Any], target: Target, x, y, key):
    """``(hits [B], extra)`` of record ``rec`` on one batch (its kind's ``run``)."""
    return _BY_NAME[rec["kind"]].run(rec, target, x, y, key)


def summarize(rec: Dict[str, Any], extra: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """The kind's extra record fields from its per-example arrays over all batches."""
    return _BY_NAME[rec["kind"]].summarize(extra, rec)
