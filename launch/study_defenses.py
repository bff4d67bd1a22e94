"""The digits defense study: every digits_* defense config × seeds, trained and evaluated honestly.

  python -m launch.study_defenses --workdir=/tmp/jsnn/study [--seeds=0,1,2] [--num_epochs=8] \\
      [--num_examples=200] [--configs=vanilla,at,...] [--shard=0/2] [--summarize_only]

For each config ``launch/configs/digits_<name>.py`` and seed, :func:`jsnn.sweep.run_sweep` trains
``WORKDIR/<name>/seed=<s>/`` and runs the robustness suite of :mod:`jsnn.evaluate` on it (both
resumable: rerunning the command skips finished runs). The honest protocol, the same for every
model:

* PGD-N over the ε list of ``digits_vanilla`` (0.05, 0.1, 0.15, 0.2), and at the main ε = 0.15
  AutoAttack-rand (APGD-CE + APGD-DLR, 100 iterations) and the worst case over the training
  surrogate, sigmoid(4), atan(2), triangle(1) and BPTR gradients (the SR protocol);
* stochastic models (Poisson / RSC coding, MFDV features) are attacked with EOT (20 draws per
  gradient) and judged over fresh draws; the same PGD without EOT is recorded too, which
  shows how much of their robustness is the attacker's noise.

``--configs=...,rsc_distill`` also trains the ANN teacher (``digits_ann``) and distills its
first seed into every RSC student seed.

Then it writes ``WORKDIR/study.md`` and ``study.csv`` (mean ± sample std over seeds of clean
accuracy and of every robust accuracy), ``study.json`` (per-run numbers) and
``WORKDIR/tradeoff.png`` (worst-case robust accuracy at ε = 0.15 against clean accuracy) and
``WORKDIR/accuracy_vs_eps.png``.

Cost knobs (CPU time is dominated by the stochastic models' EOT evaluation and by adversarial
training): ``--num_epochs`` (training length), ``--num_examples`` (test images attacked),
``--attacks``, ``--apgd_steps``, ``--eot`` and ``--draws``.
"""

from __future__ import annotations

import csv
import io as std_io
import os
import sys
import time

from absl import app, flags, logging

from launch import common

STUDY = ("vanilla", "at", "trades", "noise", "sr", "sr_at", "rsnn", "rat", "rsc", "poisson", "mfdv")
SUITE = "clean,pgd20,autoattack,ensemble"

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the flags (only when run as a script, so importing this module for its
    functions never clashes with another launcher's absl flags in the same process)."""
    flags.DEFINE_string("workdir", None, "Study directory (one sub-directory per config).")
    flags.DEFINE_string("configs", ",".join(STUDY), "Comma list of digits config names (launch/configs/digits_<name>.py).")
    flags.DEFINE_string("seeds", "0,1,2", "Seeds, '0,1,2' or '0:3'.")
    flags.DEFINE_float("num_epochs", None, "Override train.num_epochs of every config (None: the config's).")
    flags.DEFINE_integer("num_examples", 200, "Test images attacked per run (0 = the whole test split).")
    flags.DEFINE_string("attacks", SUITE, "Evaluation suite (jsnn.evaluate attack names).")
    flags.DEFINE_integer("apgd_steps", 100, "APGD / AutoAttack iterations.")
    flags.DEFINE_integer("eot", 0, "EOT draws per gradient for stochastic models (0 = jsnn.evaluate's default, 20).")
    flags.DEFINE_integer("draws", 10, "Fresh draws judging a stochastic model.")
    flags.DEFINE_string("shard", "0/1", "This process's share 'i/n' of the runs (run n processes, e.g. one per core, "
                        "then --summarize_only).")
    flags.DEFINE_bool("summarize_only", False, "Only write the table and plots from finished runs.")
    flags.mark_flags_as_required(["workdir"])


def study_config(name: str, num_epochs=None):
    """``launch/configs/digits_<name>.py``'s config, with the study's training length."""
    import importlib

    try:
        mod = importlib.import_module(f"launch.configs.digits_{name}")
    except ModuleNotFoundError:
        raise ValueError(f"--configs: no launch/configs/digits_{name}.py") from None
    config = mod.get_config()
    if num_epochs is not None:
        config.train.num_epochs = float(num_epochs)
        config.train.num_steps = None
    return config


def eval_overrides(*, num_examples: int, attacks: str = SUITE, apgd_steps: int = 100, eot: int = 0,
                   draws: int = 10) -> dict:
    """``config.evaluate`` overrides of the study protocol (AutoAttack-rand for every model)."""
    return {"attacks": attacks, "num_examples": int(num_examples), "autoattack_version": "rand",
            "apgd_steps": int(apgd_steps), "eot": int(eot), "draws": int(draws), "ensemble_steps": 20}


# ----------------------------------------------------------------------------- summary


def run_row(run_dir: str):
    """``{column: accuracy}`` of one finished run (None if it is not finished, e.g. another shard is
    still evaluating it)."""
    from jsnn import io, sweep

    if not sweep.is_finished(run_dir, evaluate=True):
        return None
    hint = "delete it and rerun the study: the run resumes from its checkpoints and rewrites it"
    res = io.read_json(os.path.join(run_dir, "results.json"), hint=hint)
    row = {"clean (full test split)": float(res["clean_accuracy"])}
    rob = io.read_json(os.path.join(run_dir, "robustness.json"), hint=hint)
    row["_eps"] = {}
    for name, rec in rob["records"].items():
        if rec.get("skip") or "accuracy" not in rec:
            continue
        row[name] = float(rec["accuracy"])
        row["_eps"][name] = float(rec.get("eps", 0.0))
    worst = rob.get("worst_case") or {}
    if "accuracy" in worst:
        row[f"worst case eps{worst['eps']:g}"] = float(worst["accuracy"])
    row["_stochastic"] = bool(rob.get("stochastic"))
    row["_masking"] = bool(rob.get("possible_gradient_masking"))
    return row


def _column_order(columns):
    def key(c):
        if c.startswith("clean"):
            return (0, c)
        if c.startswith("worst"):
            return (3, c)
        if c.endswith("-eot1") or c.endswith("-large"):
            return (4, c)
        return (1 if c.startswith("pgd") else 2, c)

    return sorted(columns, key=key)


def summarize(workdir: str, names, seeds):
    """Writes study.json / study.csv / study.md and the plots; returns the summary dict."""
    from jsnn import io, sweep

    per_run, summary = {}, {}
    for name in names:
        rows = {}
        for s in seeds:
            r = run_row(os.path.join(workdir, name, f"seed={s}"))
            if r is not None:
                rows[s] = r
        per_run[name] = rows
        if not rows:
            continue
        cols = sorted({c for r in rows.values() for c in r if not c.startswith("_")})
        summary[name] = {"seeds": sorted(rows), "stochastic": any(r["_stochastic"] for r in rows.values()),
                         "eps": {c: e for r in rows.values() for c, e in r["_eps"].items()},
                         "possible_gradient_masking": [s for s, r in rows.items() if r["_masking"]],
                         "stats": {c: sweep.mean_std([r[c] for r in rows.values() if c in r]) for c in cols}}
    io.write_json(os.path.join(workdir, "study.json"), {"summary": summary, "runs": per_run})
    columns = _column_order({c for v in summary.values() for c in v["stats"]})
    buf = std_io.StringIO()
    w = csv.writer(buf)
    w.writerow(["config", "seeds", "stochastic"] + [h for c in columns for h in (f"{c} mean", f"{c} std")])
    for name, v in summary.items():
        w.writerow([name, len(v["seeds"]), v["stochastic"]] +
                   [x for c in columns for x in (v["stats"].get(c, (float("nan"),) * 3)[:2])])
    io.write_text(os.path.join(workdir, "study.csv"), buf.getvalue())
    eps_of = {c: e for v in summary.values() for c, e in v["eps"].items()}

    def header(c):
        if c in eps_of and "-eps" in c:
            head, _, tail = c.partition("-eps")
            suffix = tail.split("-", 1)[1] if "-" in tail else ""
            return f"{head} ε={eps_of[c]:g}" + (f" ({suffix})" if suffix else "")
        return c

    lines = ["| config | n | " + " | ".join(header(c) for c in columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, v in summary.items():
        cells = []
        for c in columns:
            if c in v["stats"]:
                m, s, _ = v["stats"][c]
                cells.append(f"{100 * m:.1f} ± {100 * s:.1f}" if s == s else f"{100 * m:.1f}")
            else:
                cells.append("–")
        tag = name + (" (stoch.)" if v["stochastic"] else "") + (" ⚠" if v["possible_gradient_masking"] else "")
        lines.append(f"| {tag} | {len(v['seeds'])} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Accuracy in % (mean ± sample std over seeds) on the attacked test subset; \"clean (full test "
                 "split)\" is training's own evaluation. ⚠: a sanity check of jsnn.evaluate failed (possible "
                 "gradient masking) in some seed. (eot1): the same PGD without EOT; (large): the sanity PGD at ε=0.5.")
    io.write_text(os.path.join(workdir, "study.md"), "\n".join(lines) + "\n")
    _plots(workdir, summary, columns)
    return summary


def _plots(workdir, summary, columns):
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    worst = [c for c in columns if c.startswith("worst")]
    clean = "clean" if any("clean" in v["stats"] for v in summary.values()) else "clean (full test split)"
    if worst:
        fig = Figure(figsize=(6, 4.5))
        ax = fig.subplots()
        for name, v in summary.items():
            if clean in v["stats"] and worst[0] in v["stats"]:
                (cm, cs, _), (rm, rs, _) = v["stats"][clean], v["stats"][worst[0]]
                ax.errorbar(100 * cm, 100 * rm, xerr=100 * (cs if cs == cs else 0),
                            yerr=100 * (rs if rs == rs else 0), fmt="o", capsize=3)
                ax.annotate(name, (100 * cm, 100 * rm), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel(f"robust accuracy, {worst[0]} (%)")
        ax.set_title("digits: robustness–accuracy trade-off (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(workdir, "tradeoff.png"), dpi=120)
    pgd = sorted({c.split("-eps")[0] for c in columns if c.startswith("pgd") and "-eps" in c
                  and not c.endswith(("-eot1", "-large"))})
    if pgd:
        fam = pgd[-1]
        fig = Figure(figsize=(6, 4.5))
        ax = fig.subplots()
        for name, v in summary.items():
            pts = sorted((v["eps"][c], v["stats"][c][0]) for c in v["stats"]
                         if c.startswith(fam + "-") and c in v["eps"] and not c.endswith(("-eot1", "-large")))
            if clean in v["stats"]:
                pts = [(0.0, v["stats"][clean][0])] + pts
            if pts:
                ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel("ε (L∞, pixel units)")
        ax.set_ylabel(f"{fam} accuracy (%)")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(workdir, "accuracy_vs_eps.png"), dpi=120)


# ----------------------------------------------------------------------------- main


def run_study(workdir: str, names, seeds, *, num_epochs=None, overrides=None, shard=(0, 1)):
    """Trains and evaluates every (config, seed) not finished yet; returns the failed run names."""
    from jsnn import sweep

    names = list(names)
    if "rsc_distill" in names and "ann" not in names:  # the distillation student needs its ANN teacher first
        names.insert(names.index("rsc_distill"), "ann")
    configs = {n: study_config(n, num_epochs) for n in names}  # every config loads before any run
    if "rsc_distill" in configs:
        configs["rsc_distill"].defense.distill.teacher_workdir = os.path.join(workdir, "ann", f"seed={seeds[0]}")
    failed = []
    t0 = time.time()
    for i, name in enumerate(names):
        logging.info("study config %d/%d: digits_%s (%.0fs so far)", i + 1, len(names), name, time.time() - t0)
        # Round-robin over (config, seed) so that shards get mixed workloads; distillation students run on
        # the shard that trains their ANN teacher (seed 0 of "ann"), after it, never before it exists.
        owner = lambda k, j: (k * len(seeds) + j) % shard[1]  # noqa: E731
        if name == "rsc_distill":
            mine = list(seeds) if owner(names.index("ann"), 0) == shard[0] else []
        else:
            mine = [s for j, s in enumerate(seeds) if owner(i, j) == shard[0]]
        if not mine:
            continue
        evaluate = sweep.make_evaluate(overrides)
        report = sweep.run_sweep(configs[name], os.path.join(workdir, name), (), mine, evaluate=evaluate)
        # A run finished under an earlier, smaller suite is not finished for run_sweep (sweep.is_finished
        # compares the evaluation settings), so it is evaluated again there, inside its error handling.
        failed += [f"{name}/{r}" for r in report.failed]
    return failed


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
            overrides = eval_overrides(num_examples=FLAGS.num_examples, attacks=FLAGS.attacks,
                                       apgd_steps=FLAGS.apgd_steps, eot=FLAGS.eot, draws=FLAGS.draws)
            shard = sweep.parse_shard(FLAGS.shard)
            failed = run_study(FLAGS.workdir, names, seeds, num_epochs=FLAGS.num_epochs, overrides=overrides,
                               shard=shard)
            if shard[1] > 1:
                print(f"shard {FLAGS.shard} done; when every shard is, run again with --summarize_only")
        if FLAGS.summarize_only or sweep.parse_shard(FLAGS.shard)[1] == 1:
            summarize(FLAGS.workdir, names, seeds)
            print(open(os.path.join(FLAGS.workdir, "study.md")).read())
        if failed:
            print(f"failed runs (see their error.txt): {', '.join(failed)}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
