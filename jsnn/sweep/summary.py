"""Sweep summaries: ``summary.csv``, ``summary.md`` and ``plots/<metric>.png`` from whatever results exist.

Per grid point the mean and the *sample* standard deviation (``ddof=1``; undefined, shown as ``–``,
for one seed) over seeds of ``clean_accuracy`` and of every accuracy in ``robustness.json``.
With evaluations, also ``plots/tradeoff.png`` (worst-case robust against clean accuracy, one
point per grid point) and ``plots/accuracy_vs_eps.png`` (each ε-curve attack family).
A damaged result file is skipped with a warning naming it (one damaged run does not stop a summary).
"""

from __future__ import annotations

import csv
import io as std_io
import json
import math
import os
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from jsnn import io
from jsnn.sweep.grid import UNSAFE, Grid, Point, Run, expand, format_value, grid_points, point_name

RESULTS = "results.json"
ROBUSTNESS = "robustness.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
PLOTS = "plots"
CLEAN_METRIC = "clean_accuracy"
REBUILD = "delete it and rerun the sweep: the run resumes from its checkpoints and rewrites it"


def robust_metrics(robustness: Mapping) -> Dict[str, float]:
    """The accuracies of a ``robustness.json`` (``jsnn.evaluate``), in the suite's order.

    Every suite record (``records[name].accuracy``; sanity-only and skipped records left out), then
    ``worst_case`` (the strongest attack at the main ε). For stochastic models each also gets
    ``<name> (all draws)``: the fraction of examples correct in every judgement draw.
    """
    records = robustness.get("records") or {}
    order = list(robustness.get("suite") or []) + [n for n in records if n not in (robustness.get("suite") or [])]
    stochastic = bool(robustness.get("stochastic", False))
    out = {}
    for name in order:
        r = records.get(name)
        if not isinstance(r, Mapping) or r.get("skip") or r.get("purpose", "suite") != "suite":
            continue
        if isinstance(r.get("accuracy"), (int, float)):
            out[name] = float(r["accuracy"])
            if stochastic and isinstance(r.get("accuracy_all_draws"), (int, float)):
                out[f"{name} (all draws)"] = float(r["accuracy_all_draws"])
        out.update(ensemble_columns(name, r))
    worst = robustness.get("worst_case") or {}
    if isinstance(worst.get("accuracy"), (int, float)):
        out["worst_case"] = float(worst["accuracy"])
        if stochastic and isinstance(worst.get("accuracy_all_draws"), (int, float)):
            out["worst_case (all draws)"] = float(worst["accuracy_all_draws"])
    return out


def ensemble_columns(name: str, record: Mapping) -> Dict[str, float]:
    """An estimator-ensemble record's worst case by family: ``<name> [<preset>]`` for each preset among the
    members that attacked every image (e.g. ``[sr]``, the SR four), ``<name> [full]`` for all of those, and,
    for a cascade, ``<name> [+<gradient>]`` after the last stage of each gradient mode (cumulative, in order).

    Example:
        >>> from jsnn.sweep.summary import ensemble_columns
        >>> ensemble_columns("e", {"subset_accuracy": {"sr": 0.5}, "cascade": [
        ...     {"members": ["default", "bptr"], "accuracy": 0.45}, {"gradient": "bptt", "accuracy": 0.44},
        ...     {"gradient": "bptt", "accuracy": 0.42}, {"gradient": "rga", "accuracy": 0.40}]})
        {'e [sr]': 0.5, 'e [full]': 0.45, 'e [+bptt]': 0.42, 'e [+rga]': 0.4}
    """
    out = {f"{name} [{k}]": float(v) for k, v in (record.get("subset_accuracy") or {}).items()}
    stages = record.get("cascade") or []
    if stages:
        out[f"{name} [full]"] = float(stages[0]["accuracy"])
        for st in stages[1:]:
            out.pop(f"{name} [+{st['gradient']}]", None)  # keep the family's place at its last stage
            out[f"{name} [+{st['gradient']}]"] = float(st["accuracy"])
    return out


def evaluation_complete(path: str, settings: Optional[Mapping] = None) -> bool:
    """Whether a ``robustness.json`` holds the whole suite (``jsnn.evaluate`` rewrites it after every
    attack, so its existence alone does not mean the evaluation finished), and, given ``settings``
    (the resolved ``config.evaluate`` asked for now), whether it was made with them (a larger suite is not done)
    by the current record code (``jsnn.evaluate.suite.RECORDS_VERSION``)."""
    if not os.path.exists(path):
        return False
    try:
        doc = io.read_json(path, hint=REBUILD)
    except (OSError, ValueError):
        return False
    if settings is not None and doc.get("settings") != json.loads(json.dumps(dict(settings))):
        return False
    from jsnn.evaluate import suite  # (lazy: the summary reads files without the attack stack)

    if settings is not None and doc.get("records_version", 1) != suite.RECORDS_VERSION:
        return False  # made by code that computed some record differently: evaluate again (per record)
    if "complete" in doc:
        return bool(doc["complete"])
    records = doc.get("records") or {}
    return doc.get("gradients") is not None and all(n in records for n in doc.get("suite") or [])


def record_eps(workdir: str, runs: Sequence[Run]) -> Dict[str, float]:
    """``{metric: ε}`` of the robustness records of the finished runs (``worst_case`` included)."""
    out: Dict[str, float] = {}
    for run in runs:
        path = os.path.join(workdir, run.name, ROBUSTNESS)
        try:
            doc = io.read_json(path, hint=REBUILD) if os.path.exists(path) else {}
        except io.DamagedFileError:
            continue
        for name, r in (doc.get("records") or {}).items():
            if isinstance(r, Mapping) and isinstance(r.get("eps"), (int, float)):
                out.setdefault(name, float(r["eps"]))
        worst = doc.get("worst_case") or {}
        if isinstance(worst.get("eps"), (int, float)):
            out.setdefault("worst_case", float(worst["eps"]))
    return out


def run_flags(run_dir: str) -> Tuple[str, ...]:
    """The honesty flags of a run's complete evaluation: ``stochastic`` (attacked with EOT) and
    ``possible_gradient_masking`` (a sanity check failed)."""
    rpath = os.path.join(run_dir, ROBUSTNESS)
    if not evaluation_complete(rpath):
        return ()
    doc = io.read_json(rpath, hint=REBUILD)
    return tuple(f for f in ("stochastic", "possible_gradient_masking") if doc.get(f))


def run_metrics(run_dir: str) -> Optional[Dict[str, float]]:
    """``clean_accuracy`` and the robustness accuracies of a finished run (None if unfinished)."""
    path = os.path.join(run_dir, RESULTS)
    if not os.path.exists(path):
        return None
    metrics = {CLEAN_METRIC: float(io.read_json(path, hint=REBUILD)[CLEAN_METRIC])}
    rpath = os.path.join(run_dir, ROBUSTNESS)
    if evaluation_complete(rpath):  # a suite still being evaluated (e.g. by another shard) is left out
        metrics.update({k: v for k, v in robust_metrics(io.read_json(rpath, hint=REBUILD)).items() if k != CLEAN_METRIC})
    return metrics


class Row(NamedTuple):
    """One summary row: a grid point, the seeds found, and ``metric -> (mean, std, n)``."""

    point: Point
    seeds: Tuple[int, ...]
    stats: Dict[str, Tuple[float, float, int]]


def collect(workdir: str, grid: Grid, seeds: Sequence[int]) -> Dict[Run, Dict[str, float]]:
    """The metrics of every finished run of the sweep (unfinished runs are absent)."""
    out = {}
    for run in expand(grid, seeds):
        try:
            m = run_metrics(os.path.join(workdir, run.name))
        except io.DamagedFileError as e:  # one damaged run leaves the others' table intact
            logging.warning("sweep summary: %s", e)
            continue
        if m is not None:
            out[run] = m
    return out


def mean_std(values: Sequence[float]) -> Tuple[float, float, int]:
    """``(mean, sample std (ddof=1; NaN for one value), n)`` of ``values``."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else math.nan), int(len(v))


def summarize(grid: Grid, seeds: Sequence[int], results: Mapping[Run, Mapping[str, float]]) -> Tuple[List[Row], List[str]]:
    """Per grid point: mean and sample std (``ddof=1``; NaN for n=1) over the seeds that finished.

    Returns:
      ``(rows, metrics)``: rows in grid order (points with no finished seed left out), and the
      metric names (``clean_accuracy`` first, then the robust ones in the order they first appear).

    Example:
        >>> import ml_collections
        >>> from jsnn import sweep
        >>> grid = sweep.parse_grid("model.T=4", ml_collections.ConfigDict({"model": {"T": 2}}))
        >>> runs = sweep.expand(grid, (0, 1, 2))
        >>> results = {run: {"clean_accuracy": a} for run, a in zip(runs, [0.9, 0.8, 0.7])}
        >>> rows, metrics = sweep.summarize(grid, (0, 1, 2), results)
        >>> mean, std, n = rows[0].stats["clean_accuracy"]
        >>> metrics, round(mean, 4), round(std, 4), n  # sample std (ddof=1) over the seeds
        (['clean_accuracy'], 0.8, 0.1, 3)
    """
    names = list(dict.fromkeys(k for run in expand(grid, seeds) if run in results for k in results[run]
                               if k != CLEAN_METRIC))  # first-appearance order: the evaluation suite's
    metrics = [CLEAN_METRIC] + names if results else []
    rows = []
    for point in grid_points(grid):
        found = [(s, results[Run(point, s)]) for s in seeds if Run(point, s) in results]
        if not found:
            continue
        stats = {}
        for m in metrics:
            vals = [r[m] for _, r in found if m in r]
            if vals:
                stats[m] = mean_std(vals)
        rows.append(Row(point, tuple(s for s, _ in found), stats))
    return rows, metrics


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.4f} ± {std:.4f}" if math.isfinite(std) else f"{mean:.4f} ± –"


def write_summary(workdir: str, grid: Grid, seeds: Sequence[int], *, plots: bool = True) -> List[Row]:
    """Writes ``summary.csv``, ``summary.md`` and ``plots/<metric>.png`` from the finished runs.

    Returns the rows; missing runs are logged (a partial sweep still gets a table).
    """
    results = collect(workdir, grid, seeds)
    rows, metrics = summarize(grid, seeds, results)
    missing = [r.name for r in expand(grid, seeds) if r not in results]
    if missing:
        logging.warning("sweep summary: %d of %d runs unfinished, e.g. %s", len(missing),
                        len(missing) + len(results), ", ".join(missing[:3]))
    paths = [p for p, _ in grid]
    header = paths + ["n", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    buf = std_io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        cells = [format_value(v) for _, v in row.point] + [len(row.seeds), " ".join(map(str, row.seeds))]
        for m in metrics:
            mean, std, _ = row.stats.get(m, (math.nan, math.nan, 0))
            cells += [repr(mean), "" if not math.isfinite(std) else repr(std)]
        w.writerow(cells)
    io.write_text(os.path.join(workdir, SUMMARY_CSV), buf.getvalue())

    flags: Dict[Point, set] = {}
    for run in results:
        try:
            flags.setdefault(run.point, set()).update(run_flags(os.path.join(workdir, run.name)))
        except io.DamagedFileError:
            pass
    lines = ["# Sweep summary", "",
             f"Mean ± sample standard deviation (ddof=1) over seeds {', '.join(map(str, seeds))}; "
             "n = seeds finished; – = undefined (one seed). (stoch.): a stochastic model, attacked with EOT; "
             "⚠: a sanity check of the evaluation failed in some seed (possible gradient masking).", ""]
    cols = (paths or ["run"]) + ["n"] + metrics
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join(["---"] * len(cols)) + "|")
    for row in rows:
        cells = [format_value(v) for _, v in row.point] or ["base"]
        f = flags.get(row.point, set())
        cells[-1] += (" (stoch.)" if "stochastic" in f else "") + (" ⚠" if "possible_gradient_masking" in f else "")
        cells.append(str(len(row.seeds)))
        cells += [_fmt(*row.stats[m][:2]) if m in row.stats else "" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    if missing:
        lines += ["", f"Unfinished runs ({len(missing)}): " + ", ".join(f"`{m}`" for m in missing)]
    io.write_text(os.path.join(workdir, SUMMARY_MD), "\n".join(lines) + "\n")
    if plots and rows:
        plot_summary(os.path.join(workdir, PLOTS), grid, rows, metrics)
        plot_robustness(os.path.join(workdir, PLOTS), rows, record_eps(workdir, list(results)))
    return rows


def _safe_file(name: str) -> str:
    return UNSAFE.sub("_", name).replace(",", "_")


def plot_summary(directory: str, grid: Grid, rows: Sequence[Row], metrics: Sequence[str]) -> List[str]:
    """One PNG per metric: mean ± std error bars over the grid points.

    When an axis with several numeric values exists, the last such axis is the x axis (log scale
    when positive values span ≥ 100×), one line per combination of the other varying axes;
    otherwise one bar per grid point. Axes with a single value are left out of the labels.
    """
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    os.makedirs(directory, exist_ok=True)
    varying = [i for i, (_, vals) in enumerate(grid) if len(vals) > 1]
    numeric = [i for i in varying
               if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in grid[i][1])]
    xaxis = numeric[-1] if numeric else None
    others = [i for i in varying if i != xaxis]

    def label(point, axes):
        return point_name(tuple(point[i] for i in axes))

    files = []
    for m in metrics:
        fig = Figure(figsize=(max(4.5, 0.7 * len(rows) + 2.5), 3.5))
        ax = fig.subplots()
        if xaxis is not None:
            groups: Dict[str, List[Row]] = {}
            for row in rows:
                groups.setdefault(label(row.point, others), []).append(row)
            for name, group in groups.items():
                pts = [(row.point[xaxis][1], *row.stats[m][:2]) for row in group if m in row.stats]
                if pts:
                    x, y, e = (np.array(c, np.float64) for c in zip(*pts))
                    ax.errorbar(x, y, yerr=np.nan_to_num(e), marker="o", capsize=3, label=name or None)
            xs = np.array(grid[xaxis][1], np.float64)
            if np.all(xs > 0) and xs.max() / xs.min() >= 100:
                ax.set_xscale("log")
            ax.set_xlabel(grid[xaxis][0])
            if len(groups) > 1:
                ax.legend(fontsize=7)
        else:
            labels = [label(row.point, varying) or "base" for row in rows]
            y = [row.stats[m][0] if m in row.stats else np.nan for row in rows]
            e = [row.stats[m][1] if m in row.stats and math.isfinite(row.stats[m][1]) else 0.0 for row in rows]
            ax.bar(range(len(rows)), y, yerr=e, capsize=3)
            ax.set_xticks(range(len(rows)), labels, rotation=20 if len(rows) > 3 else 0, ha="right"
                          if len(rows) > 3 else "center", fontsize=7)
        ax.set_ylabel(m)
        ax.set_title(f"{m}: mean ± std over seeds", fontsize=9)
        ax.grid(alpha=0.3)
        path = os.path.join(directory, f"{_safe_file(m)}.png")
        io.write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"), ".png")
        files.append(path)
    return files


def _row_label(row: Row) -> str:
    return ",".join(format_value(v) for _, v in row.point) or "base"


def plot_robustness(directory: str, rows: Sequence[Row], eps_of: Mapping[str, float]) -> List[str]:
    """``tradeoff.png`` (worst case vs clean accuracy, mean ± std per grid point), ``accuracy_vs_eps.png``
    (the ε-curve families, e.g. ``pgd20-linf-eps*``, one line per grid point; ε = 0 is the clean accuracy)
    and ``ensemble_families.png`` (an estimator ensemble's worst case by family, :func:`ensemble_columns`).

    Returns the files written (none without evaluations).
    """
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    os.makedirs(directory, exist_ok=True)
    files = []

    def save(fig, name):
        path = os.path.join(directory, name)
        fig.tight_layout()
        io.write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), ".png")
        files.append(path)

    def err(v):
        return 0.0 if not math.isfinite(v) else v

    both = [r for r in rows if CLEAN_METRIC in r.stats and "worst_case" in r.stats]
    if both:
        fig = Figure(figsize=(6, 4.5))
        ax = fig.subplots()
        for r in both:
            (cm, cs, _), (wm, ws, _) = r.stats[CLEAN_METRIC], r.stats["worst_case"]
            ax.errorbar(100 * cm, 100 * wm, xerr=100 * err(cs), yerr=100 * err(ws), fmt="o", capsize=3)
            ax.annotate(_row_label(r), (100 * cm, 100 * wm), textcoords="offset points", xytext=(4, 4), fontsize=8)
        eps = eps_of.get("worst_case")
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel("worst-case robust accuracy (%)" + (f", ε = {eps:g}" if eps is not None else ""))
        ax.set_title("robustness–accuracy trade-off (mean ± std over seeds)", fontsize=9)
        ax.grid(alpha=0.3)
        save(fig, "tradeoff.png")
    families: Dict[str, List[str]] = {}
    for m in eps_of:
        head, sep, tail = m.partition("-eps")
        if sep and "-" not in tail:  # a curve point (no -eot1 / -large sanity suffix)
            families.setdefault(head, []).append(m)
    curves = {f: ms for f, ms in families.items() if len(ms) > 1}
    if curves:
        fig = Figure(figsize=(6 * len(curves), 4.5))
        axes = fig.subplots(1, len(curves), squeeze=False)[0]
        for ax, (fam, ms) in zip(axes, sorted(curves.items())):
            for r in rows:
                pts = sorted((eps_of[m], r.stats[m][0]) for m in ms if m in r.stats)
                if CLEAN_METRIC in r.stats:
                    pts = [(0.0, r.stats[CLEAN_METRIC][0])] + pts
                if len(pts) > 1:
                    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=_row_label(r))
            ax.set_xlabel("ε")
            ax.set_ylabel(f"{fam} accuracy (%)")
            ax.legend(fontsize=7, ncol=2)
            ax.grid(alpha=0.3)
        save(fig, "accuracy_vs_eps.png")
    columns: Dict[str, List[str]] = {}  # the estimator ensemble's family columns (ensemble_columns), in order
    for r in rows:
        for m in r.stats:
            head, sep, tail = m.partition(" [")
            if sep and tail.endswith("]") and m not in columns.setdefault(head, []):
                columns[head].append(m)
    for head, ms in sorted(columns.items()):
        if len(ms) < 2:
            continue
        fig = Figure(figsize=(1.1 * len(ms) + 4, 4.5))
        ax = fig.subplots()
        for r in rows:
            pts = [(i, r.stats[m][0]) for i, m in enumerate(ms) if m in r.stats]
            if pts:
                ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=_row_label(r))
        ax.set_xticks(range(len(ms)), [m.partition(" [")[2][:-1] for m in ms], fontsize=8)
        ax.set_xlabel("estimators (cumulative from [full]: members attacking every image, then each family)")
        ax.set_ylabel(f"robust accuracy (%), {head}")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        save(fig, "ensemble_families.png")
    return files
