"""Robustness evaluation of a trained run: attack suite, sanity checks, JSON + plot.

  python -m launch.evaluate --workdir=/tmp/jsnn/default [--num_examples=500] \
      [--evaluate.attacks=clean,pgd10,apgd-ce] [--evaluate.eps=4/255,8/255] [--evaluate.norm=l2 ...]

Writes ``WORKDIR/robustness.json`` (one record per attack with the settings to rerun it; sanity
flags; QTE; worst case) and ``WORKDIR/robustness.png``. Every ``config.evaluate`` field (see
``jsnn.evaluate.default_eval_config``) can be overridden with ``--evaluate.<field>=...``; values
stored in the run's config.json under ``evaluate`` come next, then the defaults. Rerunning the
same command skips the records already done with the same settings.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jsnn import config as cfg_lib
from jsnn.evaluate import default_eval_config
from launch import common


def check_fields(argv) -> None:
    """Unknown ``--evaluate.<field>`` flags: one clear message and exit status 2 (no traceback)."""
    fields = set(cfg_lib.flatten(default_eval_config()))
    for arg in argv[1:]:
        if arg.startswith("--evaluate."):
            field = arg[len("--evaluate."):].split("=", 1)[0]
            if field not in fields:
                print(f"error: --evaluate.{field}: unknown field; allowed: {', '.join(sorted(fields))}",
                      file=sys.stderr)
                sys.exit(2)


if __name__ == "__main__":  # before the config flag parses argv (it raises on unknown fields)
    check_fields(sys.argv)

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Trained run (config.json + checkpoints/); robustness.json is written there.")
flags.DEFINE_integer("num_examples", None, "Evaluate the first N test images (0 = all; default: "
                     "evaluate.num_examples).", lower_bound=0)
config_flags.DEFINE_config_dict("evaluate", default_eval_config(), "Evaluation suite (config.evaluate.*).",
                                lock_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jsnn import evaluate

    with common.clean_errors():
        if not FLAGS.workdir:
            raise ValueError("--workdir is required")
        overrides = config_flags.get_override_values(FLAGS["evaluate"])
        doc = evaluate.evaluate_workdir(FLAGS.workdir, overrides=overrides, num_examples=FLAGS.num_examples)
        for name in doc["suite"]:
            r = doc["records"][name]
            if r.get("skip"):
                print(f"{name:40s} skipped: {r['skip']}")
            else:
                print(f"{name:40s} accuracy {r['accuracy']:.4f}  all draws {r['accuracy_all_draws']:.4f}")
        for k, v in doc["sanity"]["flags"].items():
            status = {True: "ok", False: "FAILED", None: "n/a"}[v["passed"]]
            print(f"sanity {k:22s} {status:6s} {v['detail']}")
        print(f"verdict: {doc['sanity']['verdict']}  ({FLAGS.workdir}/robustness.json)")
        logging.info("done")


if __name__ == "__main__":
    app.run(main)
