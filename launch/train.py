"""Trains a jsnn model.

  python -m launch.train --config=launch/configs/default.py --workdir=/tmp/jsnn/default [--config.seed=3 ...]

Rerunning the same command resumes from the latest checkpoint in --workdir. Every device JAX sees is
used (the batch is split over them). On a multi-host TPU VM pod slice, run the same command on every
host with --distributed and a --workdir on storage all hosts share:

  gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all --command \
    "cd jsnn && python -m launch.train --config=launch/configs/cifar10_vgg11.py --workdir=/mnt/shared/vgg11 \
     --config.data.data_dir=/mnt/shared/tfds --distributed"
"""

from absl import app, flags, logging
from ml_collections import config_flags

from launch import common

if __name__ == "__main__":  # before the config flag parses argv (a bad file or field would raise a traceback)
    common.check_config_argv(__import__("sys").argv)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (launch/configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and results.json.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host TPU VM pod slices).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import jax

    from jsnn import train

    if FLAGS.distributed:
        jax.distributed.initialize()

    with common.clean_errors():
        results = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
        logging.info("results: clean_accuracy=%.4f steps=%d seed=%d", results["clean_accuracy"], results["steps"],
                     results["seed"])
        print(f"clean_accuracy {results['clean_accuracy']:.4f}  ({FLAGS.workdir}/results.json)")


if __name__ == "__main__":
    app.run(main)
