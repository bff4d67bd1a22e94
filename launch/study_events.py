"""The event-digits study: vanilla / SR / AT / SR+AT × seeds, each evaluated under both event threat models.

  python -m launch.study_events --workdir=/tmp/jsnn/study_events [--seeds=0,1,2] [--num_epochs=3] \\
      [--num_examples=100] [--configs=vanilla,sr,at,sr_at] [--eps=0.05,0.1,0.25] [--budgets=1,5,20] \\
      [--at_eps=0.1] [--summarize_only]

For each ``launch/configs/events_<name>.py`` and seed, :func:`jsnn.sweep.run_sweep` trains
``WORKDIR/<name>/seed=<s>/`` on the embedded event digits and runs :mod:`jsnn.evaluate` on it
(resumable: rerunning skips finished runs), with the same protocol for every model:

* frame space: PGD-N (L∞, frames kept in [0, 1]) over the ε list of the config (frame units;
  one event is 1/max_count) — the threat model the event-robustness papers report;
* event space: ``event-l0`` (gradient-guided, at most k added/removed events, valid event frames)
  and its ``event-random`` baseline over ``--budgets``; the sanity flag
  ``event_gradient_le_random`` checks that the gradient attack is the stronger one.

All runs share one process, so every attack compiles once for the whole study (the model's
parameters are traced). Tables: :func:`launch.study_defenses.summarize` (``study.md``,
``study.csv``, ``study.json``, plots).
"""

from __future__ import annotations

import importlib
import os
import sys

from absl import app, flags, logging

from launch import common, study_defenses

CONFIGS = ("vanilla", "sr", "at", "sr_at")
SUITE = "clean,pgd10,event-l0,event-random"

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "Study directory (one sub-directory per config).")
    flags.DEFINE_string("configs", ",".join(CONFIGS), "Comma list of names of launch/configs/events_<name>.py.")
    flags.DEFINE_string("seeds", "0,1,2", "Seeds, '0,1,2' or '0:3'.")
    flags.DEFINE_float("num_epochs", None, "Override train.num_epochs of every config (None: the config's).")
    flags.DEFINE_integer("num_examples", 100, "Test examples attacked per run (0 = the whole test split).")
    flags.DEFINE_string("attacks", SUITE, "Evaluation suite (jsnn.evaluate attack names).")
    flags.DEFINE_string("eps", None, "Frame-space ε list (None: the config's evaluate.eps).")
    flags.DEFINE_string("budgets", "1,5,20", "Event budgets k of event-l0 / event-random.")
    flags.DEFINE_float("at_eps", None, "Training ε of the AT and SR+AT configs, step 2.5·ε/steps "
                       "(None: the config's).")
    flags.DEFINE_bool("summarize_only", False, "Only write the table and plots from finished runs.")
    flags.mark_flags_as_required(["workdir"])


def study_config(name: str, num_epochs=None, at_eps=None):
    """``launch/configs/events_<name>.py``'s config, with the study's training length (and AT radius)."""
    try:
        mod = importlib.import_module(f"launch.configs.events_{name}")
    except ModuleNotFoundError:
        raise ValueError(f"--configs: no launch/configs/events_{name}.py") from None
    config = mod.get_config()
    if num_epochs is not None:
        config.train.num_epochs = float(num_epochs)
        config.train.num_steps = None
    if at_eps is not None and "at" in config.defense.name.split("+"):
        config.defense.at.eps = float(at_eps)
        config.defense.at.step_size = 2.5 * float(at_eps) / config.defense.at.steps
    return config


def eval_overrides(*, num_examples: int, attacks: str = SUITE, budgets: str = "1,5,20", eps=None) -> dict:
    """``config.evaluate`` overrides of the study protocol."""
    out = {"attacks": attacks, "num_examples": int(num_examples), "event_budgets": budgets}
    if eps:
        out["eps"] = eps
    return out


def run_study(workdir: str, names, seeds, *, num_epochs=None, at_eps=None, overrides=None):
    """Trains and evaluates every (config, seed) not finished yet; returns the failed run names."""
    from jsnn import sweep

    configs = {n: study_config(n, num_epochs, at_eps) for n in names}  # every config loads before any run
    failed = []
    for seed in seeds:  # seed-major: an interrupted study has every config for its first seeds
        for i, name in enumerate(names):
            logging.info("study seed %s, config %d/%d: events_%s", seed, i + 1, len(names), name)
            report = sweep.run_sweep(configs[name], os.path.join(workdir, name), (), [seed],
                                     evaluate=sweep.make_evaluate(overrides))
            failed += [f"{name}/{r}" for r in report.failed]
    return failed


def _column_key(c: str, eps: dict):
    """clean (full split first), frame-space PGD by ε, event-l0 by k, event-random by k, the large-ε sanity PGD."""
    rank = 4 if c.endswith("-large") else next(
        (i for i, p in enumerate(("clean", "pgd", "event-l0-", "event-random-")) if c.startswith(p)), 5)
    return rank, "full" not in c, eps.get(c, 0.0), c


def _header(c: str, eps: dict) -> str:
    if c.startswith("pgd") and c in eps:
        return f"PGD ε={eps[c]:g}" + (" (sanity)" if c.endswith("-large") else "")
    return c.replace("event-l0-k", "event-l0 k=").replace("event-random-k", "random k=")


def events_table(workdir: str, names=None) -> str:
    """``WORKDIR/events_table.md``: study.json's mean ± std per config (rows in ``names`` order), columns ordered
    by ε and by budget k; a cell measured on fewer seeds than its row (a record of an older suite) is left out."""
    from jsnn import io

    summary = io.read_json(os.path.join(workdir, "study.json"))["summary"]
    rows = [n for n in (names or sorted(summary)) if n in summary]
    full = lambda v, c: c in v["stats"] and v["stats"][c][2] == len(v["seeds"])  # noqa: E731
    eps = {c: e for v in summary.values() for c, e in v["eps"].items()}
    cols = sorted({c for n in rows for c in summary[n]["stats"] if not c.startswith("worst") and full(summary[n], c)},
                  key=lambda c: _column_key(c, eps))
    head = [_header(c, eps) for c in cols]
    lines = ["| config | seeds | " + " | ".join(head) + " | sanity |", "|---|---|" + "---|" * (len(cols) + 1)]
    for name in rows:
        v, cells = summary[name], []
        for c in cols:
            m, sd, _ = v["stats"][c] if full(v, c) else (float("nan"),) * 3
            cells.append("–" if m != m else f"{100 * m:.1f} ± {100 * sd:.1f}" if sd == sd else f"{100 * m:.1f}")
        flag = f"⚠ seeds {v['possible_gradient_masking']}" if v["possible_gradient_masking"] else "ok"
        lines.append(f"| {name} | {len(v['seeds'])} | " + " | ".join(cells) + f" | {flag} |")
    text = "\n".join(lines) + "\n"
    io.write_text(os.path.join(workdir, "events_table.md"), text)
    return text


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jsnn import sweep

    with common.clean_errors():
        names = [n.strip() for n in FLAGS.configs.split(",") if n.strip()]
        seeds = sweep.parse_seeds(FLAGS.seeds)
        os.makedirs(FLAGS.workdir, exist_ok=True)
        failed = []
        if not FLAGS.summarize_only:
            overrides = eval_overrides(num_examples=FLAGS.num_examples, attacks=FLAGS.attacks, budgets=FLAGS.budgets,
                                       eps=FLAGS.eps)
            failed = run_study(FLAGS.workdir, names, seeds, num_epochs=FLAGS.num_epochs, at_eps=FLAGS.at_eps,
                               overrides=overrides)
        study_defenses.summarize(FLAGS.workdir, names, seeds)
        print(events_table(FLAGS.workdir, names))
        if failed:
            print(f"failed runs (see their error.txt): {', '.join(failed)}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
