"""Gradient-masking checks (Athalye et al. 2018; Carlini et al. 2019, "On evaluating adversarial robustness").

Each check is a flag ``{"passed": bool | None, "detail": str}`` (None: not run):

* ``large_eps``: accuracy at the large ε is ≈ 0 (≤ ``sanity.large_eps_max_accuracy``);
* ``monotone_eps`` / ``monotone_steps`` / ``monotone_eot``: accuracy does not rise with ε, with the
  number of steps of one attack, or with EOT draws (slack ``sanity.tolerance``);
* ``whitebox_le_blackbox``: the best white-box attack at an ε is at least as strong as every
  black-box one there (Square, transfer) — the kinds' ``box`` says which is which;
* ``zero_gradients``: the fraction of examples whose input gradient (CE, the model's own
  estimator) is exactly zero is ≤ ``sanity.zero_grad_max_fraction``;
* ``estimator_beats_training_surrogate``: in the estimator ensemble, no member's accuracy is
  below that of the model's own estimator (member ``default``: its training surrogate and
  gradient) by more than ``sanity.estimator_gap`` — else the model's robustness rests on its
  surrogate (its own gradients are obfuscated; another estimator finds the adversarial points).
  Under a cascade (``evaluate.ensemble_full``) the later members attack only the survivors, so
  their own accuracy is unknown and the gap is taken to the cascade's final accuracy (at least the
  largest single-member gap: the ensemble is never weaker than a member).

On event data :func:`jsnn.evaluate.events.sanity_flags` adds ``event_gradient_le_random`` (the
gradient-guided event attack is at least as strong as random events of the same budget) and
``monotone_budget``.

A model that fails any check is reported as "possible gradient masking".

Example:
    Accuracy that *rises* with ε, or stays high at a large ε, is flagged:

    >>> from jsnn.evaluate import sanity, settings, suite
    >>> ev = settings.default_eval_config()
    >>> ev.attacks, ev.eps, ev.main_eps = "clean,pgd10", "0.05,0.1", "0.1"
    >>> plan = suite.plan(ev, stochastic=False, spiking=False)
    >>> records = {r["name"]: dict(r, accuracy=a) for r, a in zip(plan, [1.0, 0.4, 0.6, 0.3])}
    >>> s = sanity.checks(records, None, ev)
    >>> s["failed"], s["verdict"]
    (['large_eps', 'monotone_eps'], 'possible gradient masking')
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jsnn import attacks
from jsnn.evaluate import events as event_kinds
from jsnn.evaluate import report, runner


@jax.jit
def _zero_grads(fn, x, y, key):
    g = jax.grad(lambda xx: attacks.losses.ce(fn(xx, key), y).sum())(x)
    flat = g.reshape(g.shape[0], -1)
    return jnp.sum(flat == 0, axis=1), jnp.all(flat == 0, axis=1)


def gradient_stats(fn, images, labels, ev) -> Dict[str, float]:
    """Fractions of input-gradient entries, and of examples, that are exactly zero (CE loss)."""
    n = len(labels)
    zero_entries = zero_examples = 0
    key = jax.random.PRNGKey(ev.seed)
    for b, (idx, padded) in enumerate(runner.batches(n, ev.batch_size)):
        e, z = _zero_grads(fn, jnp.asarray(images[padded]), jnp.asarray(labels[padded]), jax.random.fold_in(key, b))
        zero_entries += int(np.asarray(e)[: len(idx)].sum())
        zero_examples += int(np.asarray(z)[: len(idx)].sum())
    d = int(np.prod(images.shape[1:]))
    return {"zero_gradient_entries": zero_entries / (n * d), "zero_gradient_examples": zero_examples / n}


def _rises(pts, tol, fmt):
    return [fmt(p0, a0, p1, a1) for (p0, a0), (p1, a1) in zip(pts, pts[1:]) if a1 > a0 + tol]


def _estimator_gap(suite, ev) -> Dict[str, Any]:
    ens = [r for r in suite if r.get("kind") == "ensemble" and r.get("per_estimator_accuracy")]
    if not ens:
        return {"passed": None, "detail": "not run"}
    rec = ens[0]
    members = rec["per_estimator_accuracy"]
    if "default" not in members or (len(members) < 2 and not rec.get("cascade")):
        return {"passed": None, "detail": "the ensemble has no 'default' member (the model's own estimator)"}
    own, cap = members["default"], float(ev.sanity.estimator_gap)
    others = [(n, a) for n, a in members.items() if n != "default"]
    name, best = min(others, key=lambda t: t[1]) if others else ("(none)", own)
    detail = f"strongest member {name} {best:.4f}"
    stages = rec.get("cascade") or []
    if len(stages) > 1 and stages[-1]["accuracy"] < best:  # the later members attack only the survivors:
        drops = [(a["accuracy"] - b["accuracy"], b) for a, b in zip(stages, stages[1:])]  # their own accuracy is
        drop, stage = max(drops, key=lambda t: t[0])  # unknown, so the cascade's end point stands for them
        best = stages[-1]["accuracy"]
        detail = (f"after the cascade {best:.4f} (largest drop {drop:.4f} from the "
                  f"{stage['gradient']} stage {', '.join(stage['members'])})")
    return {"passed": own - best <= cap,
            "detail": f"{detail} vs the model's own estimator {own:.4f} (gap {own - best:.4f}, must be <= {cap})"}


def checks(records: Dict[str, dict], grad_stats: Optional[dict], ev) -> Dict[str, Any]:
    """The flags, the failed ones and the verdict for ``records`` (one model's suite)."""
    tol = float(ev.sanity.tolerance)
    flags = {}
    done = {k: r for k, r in records.items() if not r.get("skip") and "accuracy" in r}
    suite = [r for r in done.values() if r.get("purpose", "suite") == "suite"]
    large = [r for r in done.values() if r.get("purpose") == "sanity: large eps"]
    if large:
        acc, cap = large[0]["accuracy"], ev.sanity.large_eps_max_accuracy
        flags["large_eps"] = {"passed": acc <= cap,
                              "detail": f"accuracy {acc:.4f} at eps={large[0]['eps_label']} (must be <= {cap})"}
    else:
        flags["large_eps"] = {"passed": None, "detail": "not run"}
    curves = report.curves(done)
    bad = [b for f, pts in curves.items()
           for b in _rises(pts, tol, lambda e0, a0, e1, a1, f=f: f"{f}: {a0:.4f} at eps={e0:g} → {a1:.4f} at eps={e1:g}")]
    flags["monotone_eps"] = {"passed": not bad if curves else None,
                             "detail": "; ".join(bad) or "accuracy never rises with eps"}
    by_steps: Dict[tuple, list] = {}
    for r in suite:
        if r.get("steps") is not None:
            by_steps.setdefault((r["attack"], r["eps"]), []).append((r["steps"], r["accuracy"]))
    multi = {k: sorted(p) for k, p in by_steps.items() if len(p) > 1}
    bad = [b for (a, e), pts in multi.items()
           for b in _rises(pts, tol, lambda s0, a0, s1, a1, a=a.upper(), e=e:
                           f"eps={e:g}: {a}-{s0} {a0:.4f} → {a}-{s1} {a1:.4f}")]
    flags["monotone_steps"] = {"passed": (not bad) if multi else None,
                               "detail": "; ".join(bad) or ("accuracy never rises with steps" if multi else "not run")}
    eot1 = [r for r in done.values() if r.get("purpose") == "sanity: eot"]
    if eot1:
        r1 = eot1[0]
        match = [r for r in suite if r["attack"] == r1["attack"] and r["eps"] == r1["eps"] and r["steps"] == r1["steps"]]
        if match:
            ok = match[0]["accuracy"] <= r1["accuracy"] + tol
            flags["monotone_eot"] = {"passed": ok, "detail": f"PGD-{r1['steps']} eot=1 {r1['accuracy']:.4f}, "
                                                             f"eot={match[0]['eot']} {match[0]['accuracy']:.4f}"}
        else:
            flags["monotone_eot"] = {"passed": None, "detail": "no matching EOT run"}
    else:
        flags["monotone_eot"] = {"passed": None, "detail": "deterministic model"}
    white = [r for r in suite if r.get("box") == "white"]
    black = [r for r in suite if r.get("box") == "black"]
    if black and white:
        bad = []
        for b in black:
            w = [r["accuracy"] for r in white if abs(r["eps"] - b["eps"]) < 1e-12]
            if w and min(w) > b["accuracy"] + tol:
                bad.append(f"{b['name']} {b['accuracy']:.4f} < best white-box {min(w):.4f}")
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
    flags.update(event_kinds.sanity_flags(suite, tol))  # {} unless event records ran
    flags["estimator_beats_training_surrogate"] = _estimator_gap(suite, ev)
    failed = [k for k, v in flags.items() if v["passed"] is False]
    return {"flags": flags, "failed": failed,
            "verdict": "possible gradient masking" if failed else "no sign of gradient masking"}
