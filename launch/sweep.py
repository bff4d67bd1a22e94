"""Runs a grid of configs × seeds, one run directory each, then writes mean ± std tables and plots.

  python -m launch.sweep --config=launch/configs/default.py --workdir=/tmp/jsnn/sweep \\
      --seeds=0,1,2 --grid='model.T=4,8;optim.learning_rate=0.1,0.05' [--evaluate] [--config.train.num_epochs=5]

Every combination trains in ``WORKDIR/<path>=<value>,.../seed=<s>/`` (``results.json``, and
``robustness.json`` with ``--evaluate``); then ``WORKDIR/summary.csv``, ``WORKDIR/summary.md``
(mean ± sample std, ddof=1, over seeds) and ``WORKDIR/plots/<metric>.png`` are written.
``WORKDIR/sweep.json`` lists every run with the ``launch.train`` (and ``launch.evaluate``) command
that reruns it alone. ``--evaluate_overrides='attacks=clean,fgsm,pgd10;num_examples=500'`` changes
the evaluation suite of every run (over each run's ``config.evaluate``, then jsnn.evaluate's defaults).
A config file may define ``get_sweep()`` returning ``{'grid': ..., 'seeds': ..., 'evaluate': ...,
'overrides': ...}`` (a sweep config file, :func:`jsnn.sweep.load_sweep_spec`); ``--grid``/``--seeds``/
``--evaluate_overrides`` override it, and a spec with ``evaluate`` evaluates every run.

The grid axis ``config`` sweeps over whole experiment configs, named as files next to the sweep
config file: ``--grid='config=digits_vanilla,digits_at'`` trains ``WORKDIR/config=digits_at/seed=0/``
from ``launch/configs/digits_at.py`` (the ``--config.*`` flags apply to each of them). The digits
defense study is such a sweep (``launch/configs/study_digits.py``)::

  python -m launch.sweep --config=launch/configs/study_digits.py --workdir=/tmp/jsnn/study

Rerunning the same command skips finished runs and resumes interrupted ones from their last
checkpoint. Several processes share a sweep with ``--shard=i/n`` (round-robin over the sorted run
list), e.g. a job array::

  python -m launch.sweep ... --shard=$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT
  python -m launch.sweep ... --summarize_only        # once all shards are done, on one host

Runs execute in-process (compilation caches and device start-up paid once; see ``jsnn.sweep``);
``--isolate`` runs each as its own ``python -m launch.train`` subprocess instead. A persistent
XLA compilation cache (``--compilation_cache``, default ``WORKDIR/.jax_cache``) lets seeds and
resumed runs skip recompiling.

Each run uses every device JAX sees (data-parallel, ``jsnn.parallel``). On a multi-host TPU VM pod
slice, run the same command on every host (the workdir must be on storage all hosts share)::

  gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all --command \\
    "cd jsnn && python -m launch.sweep --config=... --workdir=/mnt/shared/sweep --seeds=0,1,2 --distributed"

``--distributed`` calls ``jax.distributed.initialize()`` first; process 0's view of which runs are
finished is broadcast so all hosts step through the same runs, and only process 0 writes the summary.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from launch import commands as cmd_lib
from launch import common

if __name__ == "__main__":  # before the config flag parses argv (a bad file or field would raise a traceback)
    common.check_config_argv(sys.argv)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Base experiment config file (launch/configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Sweep directory: one sub-directory per run, summary files at the top.")
flags.DEFINE_string("seeds", None, "Seeds, '0,1,2' or a range '0:5'. Default: get_sweep()'s, else config.seed.")
flags.DEFINE_string("grid", None, "Grid 'path=v1,v2;path=v1,v2' over config fields. Default: get_sweep()'s.")
flags.DEFINE_string("shard", "0/1", "This process's share 'i/n' of the sorted run list (round-robin).")
flags.DEFINE_bool("evaluate", False, "Also run the robustness evaluation (robustness.json) for every run.")
flags.DEFINE_string("evaluate_overrides", None, "Evaluation settings over each run's config.evaluate, "
                    "'field=value;field=value' (e.g. 'attacks=clean,fgsm,pgd10;num_examples=500').")
flags.DEFINE_bool("summarize_only", False, "Only write summary.csv/summary.md/plots from existing results.")
flags.DEFINE_bool("isolate", False, "Run each run as a `python -m launch.train` subprocess (crash isolation).")
flags.DEFINE_string("compilation_cache", None, "Persistent XLA compilation cache directory "
                    "(default WORKDIR/.jax_cache; '' disables).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host TPU VM pod slices).")
flags.mark_flags_as_required(["config", "workdir"])


def _enable_compilation_cache(directory: str) -> None:
    import jax

    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    # Subprocesses (--isolate) read the same settings from the environment.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with common.clean_errors():
        import jax

        from jsnn import sweep

        if FLAGS.distributed:
            jax.distributed.initialize()
        config_file = FLAGS["config"].config_filename
        spec = sweep.load_sweep_spec(config_file)
        base = FLAGS.config
        grid = sweep.parse_grid(FLAGS.grid if FLAGS.grid is not None else spec.get("grid"), base)
        seeds = sweep.parse_seeds(FLAGS.seeds if FLAGS.seeds is not None else spec.get("seeds", base.seed))
        shard = sweep.parse_shard(FLAGS.shard)
        if FLAGS.distributed and shard[1] > 1:
            raise ValueError(f"shard: {FLAGS.shard!r} with --distributed; all hosts of a pod slice run every "
                             "run together (use --shard only for independent processes)")
        if FLAGS.distributed and FLAGS.isolate:
            raise ValueError("isolate: not supported with --distributed (hosts must share one JAX program)")
        workdir = FLAGS.workdir
        cache = os.path.join(workdir, ".jax_cache") if FLAGS.compilation_cache is None else FLAGS.compilation_cache
        if cache:
            _enable_compilation_cache(os.path.abspath(cache))

        overrides = list(config_flags.get_override_values(FLAGS["config"]).items())
        runs = sweep.expand(grid, seeds)
        configs, named = None, {}
        if sweep.config_names(grid):
            configs, named = common.named_configs(config_file, sweep.config_names(grid), overrides, spec, workdir)
        evaluate = None
        eval_overrides = {}
        if FLAGS.evaluate or "evaluate" in spec:
            from jsnn import evaluate as evaluate_lib

            eval_spec = FLAGS.evaluate_overrides if FLAGS.evaluate_overrides is not None else spec.get("evaluate")
            eval_overrides = sweep.parse_overrides(eval_spec, evaluate_lib.default_eval_config(), "evaluate_overrides")
            evaluate = sweep.make_evaluate(overrides=eval_overrides)

        def train_cmd_of(run, run_dir):
            if configs is None:
                return cmd_lib.train_command(config_file, run_dir, overrides, run)
            path, pairs = named[run.point[0][1]]
            return cmd_lib.train_command(path, run_dir, pairs, run._replace(point=run.point[1:]))

        commands = {}
        for r in runs:
            run_dir = os.path.join(workdir, r.name)
            train_cmd = train_cmd_of(r, run_dir)
            commands[r.name] = {"command": cmd_lib.shell_command(train_cmd)}
            if evaluate is not None:
                commands[r.name]["evaluate_command"] = cmd_lib.shell_command(cmd_lib.evaluate_command(run_dir,
                                                                                                  eval_overrides))
        is_main = jax.process_index() == 0
        if not FLAGS.summarize_only:
            if is_main:
                sweep.write_sweep_record(workdir, base, grid, seeds, commands, configs=configs)
            command_fn = eval_command_fn = None
            if FLAGS.isolate:
                command_fn = train_cmd_of
                if evaluate is not None:
                    eval_command_fn = lambda run, run_dir: cmd_lib.evaluate_command(run_dir, eval_overrides)
                    evaluate = None
            report = sweep.run_sweep(base, workdir, grid, seeds, shard=shard, evaluate=evaluate,
                                     command_fn=command_fn, eval_command_fn=eval_command_fn,
                                     keep_going=not FLAGS.distributed, configs=configs)
            print(f"sweep shard {shard[0]}/{shard[1]}: {len(report.trained)} trained, {len(report.evaluated)} "
                  f"evaluated, {len(report.skipped)} already finished, {len(report.failed)} failed")
        else:
            report = None
        if is_main:
            rows = sweep.write_summary(workdir, grid, seeds)
            print(f"summary of {len(rows)} grid points: {os.path.join(workdir, sweep.SUMMARY_MD)}")
        if report is not None and report.failed:
            logging.error("failed runs (see their error.txt): %s", ", ".join(report.failed))
            print(f"error: {len(report.failed)} runs failed: {', '.join(report.failed)}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    app.run(main)
