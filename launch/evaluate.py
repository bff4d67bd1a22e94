"""Robustness evaluation of a trained run: attack suite, sanity checks, JSON + plot.

  python -m launch.evaluate --workdir=/tmp/jsnn/default [--num_examples=500] \
      [--evaluate.attacks=clean,pgd10,apgd-ce] [--evaluate.eps=4/255,8/255] [--evaluate.norm=l2 ...]

Writes ``WORKDIR/robustness.json`` (one record per attack with the settings to rerun it and the
model it measured: checkpoint step and parameter fingerprint; sanity flags; QTE; worst case) and
``WORKDIR/robustness.png``. A run still training is refused unless ``--step=N`` names the
checkpoint to evaluate (recorded); a diverged (non-finite) model is refused. Every
``config.evaluate`` field (see ``jsnn.evaluate.default_eval_config``) can be overridden with ``--evaluate.<field>=...``; values
stored in the run's config.json under ``evaluate`` come next, then the defaults. Rerunning the
same command skips the records already done with the same settings on the same model.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jsnn.evaluate import default_eval_config
from launch import common

if __name__ == "__main__":  # before the config flag parses argv (it raises on unknown fields)
    common.check_overrides(sys.argv, default_eval_config(), "evaluate")

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Trained run (config.json + checkpoints/); robustness.json is written there.")
flags.DEFINE_integer("num_examples", None, "Evaluate the first N test images (0 = all; default: "
                     "evaluate.num_examples).", lower_bound=0)
flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (required while training has not finished; "
                     "default: the last one).", lower_bound=0)
config_flags.DEFINE_config_dict("evaluate", default_eval_config(), "Evaluation suite (config.evaluate.*).",
                                lock_config=True)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jsnn import evaluate

    with common.clean_errors():
        overrides = config_flags.get_override_values(FLAGS["evaluate"])
        doc = evaluate.evaluate_workdir(FLAGS.workdir, overrides=overrides, num_examples=FLAGS.num_examples,
                                       step=FLAGS.step)
        for name in doc["suite"]:
            r = doc["records"][name]
            if r.get("skip"):
                print(f"{name:40s} skipped: {r['skip']}")
            else:
                print(f"{name:40s} accuracy {r['accuracy']:.4f}  all draws {r['accuracy_all_draws']:.4f}")
        for k, v in doc["sanity"]["flags"].items():
            print(f"sanity {k:22s} {evaluate.report.status_line(v['passed']):6s} {v['detail']}")
        print(f"verdict: {doc['sanity']['verdict']}  (checkpoint step {doc['checkpoint_step']}, fingerprint "
              f"{doc['fingerprint']}; {FLAGS.workdir}/robustness.json)")
        logging.info("done")


if __name__ == "__main__":
    app.run(main)
