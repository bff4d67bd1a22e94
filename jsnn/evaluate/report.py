"""The report of a suite: accuracy-vs-ε curves, QTE, the worst case, the plot, and reading a previous file.

QTE (RSC-SNN's trade-off measure) is the trapezoid area under accuracy vs ε from ε = 0 (clean)
to the largest ε of the list, also divided by that ε. The curves are the records of kinds of the
``"curve"`` family (FGSM, PGD-N), one per attack name (``pgd10``, ``fgsm``, ...).

Example:
    >>> from jsnn.evaluate import report, settings, suite
    >>> ev = settings.default_eval_config()
    >>> ev.attacks, ev.eps, ev.main_eps = "clean,pgd10", "0.05,0.1", "0.1"
    >>> plan = suite.plan(ev, stochastic=False, spiking=False)
    >>> records = {r["name"]: dict(r, accuracy=a, accuracy_all_draws=a) for r, a in zip(plan, [1.0, 0.8, 0.4, 0.0])}
    >>> q = report.qte(records)["pgd10"]  # area of (0, 1.0), (0.05, 0.8), (0.1, 0.4)
    >>> round(q["area"], 4), round(q["normalized"], 4)  # 0.05·(1.0+0.8)/2 + 0.05·(0.8+0.4)/2
    (0.075, 0.75)
    >>> report.worst_case(records, 0.1)["attack"]
    'pgd10-linf-eps0.1'
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Optional

import numpy as np
from absl import logging

from jsnn import io


def _suite(r) -> bool:
    return not r.get("skip") and r.get("purpose", "suite") == "suite" and "accuracy" in r


def curves(records: Dict[str, dict]) -> Dict[str, list]:
    """``{attack: [(ε, accuracy), ...]}`` for the curve kinds run over the ε list (clean as ε = 0)."""
    fam: Dict[str, list] = {}
    clean = records.get("clean")
    for r in records.values():
        if _suite(r) and r.get("family") == "curve":
            fam.setdefault(r["name"].split("-")[0], []).append((r["eps"], r["accuracy"]))
    for f in fam:
        fam[f].sort()
        if clean is not None and "accuracy" in clean:
            fam[f] = [(0.0, clean["accuracy"])] + fam[f]
    return fam


def qte(records: Dict[str, dict]) -> Dict[str, dict]:
    """Trapezoid area under accuracy vs ε per curve, raw and divided by the largest ε."""
    out = {}
    for f, pts in curves(records).items():
        if len(pts) < 2:
            continue
        e, a = np.array(pts).T
        area = float(np.trapezoid(a, e))
        out[f] = {"area": area, "normalized": area / float(e[-1]) if e[-1] > 0 else None,
                  "eps": e.tolist(), "accuracy": a.tolist()}
    return out


def worst_case(records: Dict[str, dict], eps: float) -> Dict[str, Any]:
    """The strongest attack at ``eps``: its per-draw mean accuracy, and the lowest all-draws accuracy."""
    at = [r for r in records.values() if _suite(r) and r["attack"] != "clean" and abs(r["eps"] - eps) < 1e-12
          and r.get("family") != "events"]  # event budgets are not ε
    if not at:
        return {}
    worst = min(at, key=lambda r: r["accuracy"])
    out = {"eps": eps, "accuracy": worst["accuracy"], "accuracy_all_draws": min(r["accuracy_all_draws"] for r in at),
           "attack": worst["name"]}
    members = worst.get("per_estimator_accuracy")
    if members:  # the worst case is the estimator ensemble: which member broke the model
        name = min(members, key=members.get)
        out["member"] = {"name": name, "accuracy": members[name]}
    return out


def member_summary(record: Dict[str, Any], top: int = 5) -> str:
    """The ensemble members of ``record`` from the strongest: ``"rga(0.2) 0.12, bptr 0.15, ... (+19 more)"``.

    Example:
        >>> from jsnn.evaluate import report
        >>> report.member_summary({"per_estimator_accuracy": {"default": 0.6, "bptr": 0.2, "ann": 0.4}}, top=2)
        'bptr 0.2000, ann 0.4000 (+1 more; default 0.6000)'
    """
    members = record.get("per_estimator_accuracy") or {}
    ranked = sorted(members.items(), key=lambda t: t[1])
    text = ", ".join(f"{n} {a:.4f}" for n, a in ranked[:top])
    rest = [f"+{len(ranked) - top} more"] if len(ranked) > top else []
    if "default" in members and "default" not in dict(ranked[:top]):
        rest.append(f"default {members['default']:.4f}")
    return text + (f" ({'; '.join(rest)})" if rest else "")


def plot(records: Dict[str, dict], path: str, title: str = "") -> None:
    """Accuracy vs ε per curve (lines) and the single-ε attacks (markers), as a PNG at ``path``."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for f, pts in curves(records).items():
        e, a = np.array(pts).T
        ax.plot(e, a, marker="o", label=f)
    for r in records.values():
        if _suite(r) and r.get("family") not in ("curve", "events") and r["attack"] != "clean":
            ax.scatter([r["eps"]], [r["accuracy"]], marker="x", label=r["name"].split("-eps")[0])
    ax.set_xlabel("ε (pixel units)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    io.write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), suffix=".png")


def _salvage(text: str) -> Dict[str, dict]:
    """The complete ``"name": {...}`` entries of a truncated ``"records"`` object."""
    start = re.search(r'"records"\s*:\s*\{', text)
    if not start:
        return {}
    dec, out, j = json.JSONDecoder(), {}, start.end()
    sep, colon = re.compile(r"\s*,?\s*"), re.compile(r"\s*:\s*")
    while True:
        j = sep.match(text, j).end()
        try:
            name, j = dec.raw_decode(text, j)
            j = colon.match(text, j).end()
            rec, j = dec.raw_decode(text, j)
        except (ValueError, AttributeError):
            return out
        if not (isinstance(name, str) and isinstance(rec, dict)):
            return out
        out[name] = rec


def read_previous(path: str) -> Dict[str, dict]:
    """The records of an earlier ``robustness.json`` (``{}`` if none). A damaged file is one warning naming it;
    its complete records are kept (each still has to pass the resume check), the rest is recomputed."""
    if not os.path.exists(path):
        return {}
    try:
        records = io.read_json(path).get("records") or {}
        return records if isinstance(records, dict) else {}
    except io.DamagedFileError as e:
        with open(path, errors="replace") as f:
            kept = _salvage(f.read())
        logging.warning("%s; rebuilding it: %d intact records kept, the others are recomputed", e, len(kept))
        return kept


def status_line(flag: Optional[bool]) -> str:
    """``ok`` / ``FAILED`` / ``n/a`` for a sanity flag's ``passed``."""
    return {True: "ok", False: "FAILED", None: "n/a"}[flag]
