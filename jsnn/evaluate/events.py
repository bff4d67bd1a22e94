"""The event-space kinds of the suite: ``event-l0`` (gradient-guided) and ``event-random`` (its baseline).

On event data (a dataset whose :class:`jsnn.data.DatasetInfo` has ``max_count``) the suite has two
threat models: frame-space FGSM / PGD / APGD on the binned frames with ε in frame units (the
papers' numbers; those records carry ``input: "frames"``), and the event-space attacks of
:mod:`jsnn.attacks.events`, which add or remove at most k events and return valid event frames
(records carry ``input: "events"``). The event kinds expand over ``evaluate.event_budgets`` (one
record per k, named ``event-l0-k5``, ``event-random-k5``; the record's ``eps`` is k, in events,
and its family ``"events"`` keeps it out of the ε curves, QTE and the worst case over ε). On
image data they are skipped with a reason.

Sanity (:func:`sanity_flags`, only when event records exist): ``event_gradient_le_random`` — at
every budget the gradient-guided attack is at least as strong as the random-event baseline with
the same budget (else the gradients are masked or misleading); ``monotone_budget`` — accuracy does
not rise with the budget.

Example:
    >>> from jsnn.evaluate import events, settings, suite
    >>> ev = settings.default_eval_config()
    >>> ev.attacks, ev.eps, ev.event_budgets, ev.large_eps = "clean,pgd10,event-l0,event-random", "0.5", "1,5", ""
    >>> info = events.info_of(type("Info", (), {"frames": 6, "max_count": 2})())
    >>> for r in suite.plan(ev, stochastic=False, spiking=True, events=info):
    ...     print(r["name"], r["input"], r["eps"], r["settings"].get("budget"), r["settings"].get("max_count"))
    clean frames 0.0 None None
    pgd10-linf-eps0.5 frames 0.5 None None
    event-l0-k1 events 1.0 1 2
    event-l0-k5 events 5.0 5 2
    event-random-k1 events 1.0 1 2
    event-random-k5 events 5.0 5 2
    >>> [r.get("skip") for r in suite.plan(ev, stochastic=False, spiking=True)][2]  # image data
    'not event data (the dataset has no max_count)'
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import jax
import numpy as np

from jsnn import attacks
from jsnn.attacks import events as attack_events

FAMILY = "events"
NOT_EVENTS = "not event data (the dataset has no max_count)"


def info_of(dataset_info) -> Optional[Dict[str, int]]:
    """``{"frames": T, "max_count": m}`` of an event dataset's info, None for images."""
    m = getattr(dataset_info, "max_count", None)
    if not m:
        return None
    return {"frames": int(getattr(dataset_info, "frames", 0) or 0), "max_count": int(m)}


def parse_budgets(ev) -> List[int]:
    """The budgets of ``evaluate.event_budgets``: whole numbers of events ≥ 0; ValueError naming the field."""
    out = []
    for t in str(ev.event_budgets).split(","):
        if t.strip():
            try:
                k = int(t.strip())
            except ValueError:
                raise ValueError(f"evaluate.event_budgets: {t.strip()!r} is not a whole number of events "
                                 "(e.g. 1,5,20)") from None
            if k < 0:
                raise ValueError(f"evaluate.event_budgets: must be >= 0, got {k}")
            out.append(k)
    if not out:
        raise ValueError("evaluate.event_budgets: needs at least one budget (e.g. 1,5,20)")
    return out


def _record(name, k, steps, eot, /, **settings):
    return dict(name=name, eps=float(k), steps=steps, eot=eot, estimator="model", settings=dict(budget=k, **settings))


def expand_l0(token, ev, p) -> List[Dict[str, Any]]:
    m = (p.events or {}).get("max_count")
    return [_record(f"{token}-k{k}", k, ev.event_steps, p.eot, max_count=m, steps=ev.event_steps,
                    restarts=ev.event_restarts, eot=p.eot, eot_chunk=ev.eot_chunk if p.eot > 1 else 0)
            for k in parse_budgets(ev)]


def expand_random(token, ev, p) -> List[Dict[str, Any]]:
    m = (p.events or {}).get("max_count")
    return [_record(f"{token}-k{k}", k, None, p.eot, max_count=m, restarts=ev.event_random_restarts, eot=p.eot,
                    eot_chunk=ev.eot_chunk if p.eot > 1 else 0) for k in parse_budgets(ev)]


def skip(settings, ev, spiking) -> Optional[str]:
    return None if settings.get("max_count") else NOT_EVENTS


def _judge(t, x_adv, x, y, key, s):
    hits = np.asarray(attacks.correct_draws(t.fn, x_adv, y, key, draws=s["draws"])).sum(0)
    return hits, {"changed": np.asarray(attack_events.changed_events(x_adv, x, s["max_count"]))}


def run_l0(rec, t, x, y, key):
    s, (k_attack, k_judge) = rec["settings"], jax.random.split(key)
    x_adv = attacks.event_attack(t.fn, x, y, k_attack, budget=s["budget"], max_count=s["max_count"],
                                 steps=s["steps"], restarts=s["restarts"], eot=s["eot"],
                                 eot_chunk=s["eot_chunk"] or None)
    return _judge(t, x_adv, x, y, k_judge, s)


def run_random(rec, t, x, y, key):
    s, (k_attack, k_judge) = rec["settings"], jax.random.split(key)
    x_adv = attacks.random_events(t.fn, x, y, k_attack, budget=s["budget"], max_count=s["max_count"],
                                  restarts=s["restarts"], eot=s["eot"], eot_chunk=s["eot_chunk"] or None)
    return _judge(t, x_adv, x, y, k_judge, s)


def summarize(extra, rec) -> Dict[str, Any]:
    """Events the attack changed per example (mean, max): the budget is a bound, not a quota."""
    c = extra["changed"]
    return {"events_changed_mean": float(np.mean(c)), "events_changed_max": int(np.max(c))}


def sanity_flags(suite: List[Dict[str, Any]], tol: float) -> Dict[str, Dict[str, Any]]:
    """``event_gradient_le_random`` and ``monotone_budget`` over the suite's event records ({} if none).

    Example:
        >>> from jsnn.evaluate import events
        >>> recs = [dict(kind="event-l0", eps=1.0, accuracy=0.9), dict(kind="event-random", eps=1.0, accuracy=0.8),
        ...         dict(kind="event-l0", eps=5.0, accuracy=0.95), dict(kind="event-random", eps=5.0, accuracy=0.7)]
        >>> flags = events.sanity_flags([dict(r, family="events") for r in recs], 0.02)
        >>> flags["event_gradient_le_random"]["passed"], flags["monotone_budget"]["passed"]
        (False, False)
        >>> flags["event_gradient_le_random"]["detail"]
        'k=1: event-l0 0.9000 > event-random 0.8000; k=5: event-l0 0.9500 > event-random 0.7000'
    """
    ev_recs = [r for r in suite if r.get("family") == FAMILY]
    if not ev_recs:
        return {}
    by_kind: Dict[str, Dict[float, float]] = {}
    for r in ev_recs:
        by_kind.setdefault(r["kind"], {})[r["eps"]] = r["accuracy"]
    grad, rand = by_kind.get("event-l0", {}), by_kind.get("event-random", {})
    both = sorted(set(grad) & set(rand))
    bad = [f"k={k:g}: event-l0 {grad[k]:.4f} > event-random {rand[k]:.4f}" for k in both if grad[k] > rand[k] + tol]
    flags = {"event_gradient_le_random": {
        "passed": (not bad) if both else None,
        "detail": "; ".join(bad) or ("the gradient-guided event attack is at least as strong as random events"
                                     if both else "needs event-l0 and event-random at the same budget")}}
    rises = [f"{kind}: {a0:.4f} at k={k0:g} → {a1:.4f} at k={k1:g}" for kind, pts in by_kind.items()
             for (k0, a0), (k1, a1) in zip(sorted(pts.items()), sorted(pts.items())[1:]) if a1 > a0 + tol]
    multi = any(len(p) > 1 for p in by_kind.values())
    flags["monotone_budget"] = {"passed": (not rises) if multi else None,
                                "detail": "; ".join(rises) or ("accuracy never rises with the event budget"
                                                               if multi else "one budget only")}
    return flags
