"""Sweep execution: train (and evaluate) the unfinished runs of one shard, in-process or isolated.

A run is *finished* iff its ``results.json`` exists and, when evaluating, its ``robustness.json``
holds the whole suite asked for now (:func:`is_finished`); unfinished runs resume from their last
checkpoint (``train.train_and_evaluate``), unfinished evaluations per record.

Runs are executed in-process by default: imports, device start-up and JAX's compilation caches
are paid once per sweep (seeds of one grid point compile to the same programs), a TPU can only be
owned by one process at a time, and on a pod slice every host must run the same program after
``jax.distributed.initialize()``. A Python exception in one run is recorded in its
``error.txt`` and the sweep goes on; only a hard crash (segfault, OOM kill) stops it, and
rerunning resumes. ``command_fn`` runs each run as its own subprocess instead (``launch.sweep --isolate``).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from jsnn import io
from jsnn.sweep.grid import Grid, Run, expand, run_config, shard_runs
from jsnn.sweep.summary import REBUILD, RESULTS, ROBUSTNESS, evaluation_complete

ERROR = "error.txt"
SWEEP_JSON = "sweep.json"


def _read_results(run_dir: str) -> Optional[dict]:
    """``results.json`` of a run, None when absent; a damaged one is moved aside (the run then resumes from
    its checkpoints and rewrites it), with a warning naming it."""
    path = os.path.join(run_dir, RESULTS)
    if not os.path.exists(path):
        return None
    try:
        return io.read_json(path, hint=REBUILD)
    except io.DamagedFileError as e:
        os.replace(path, path + ".damaged")
        logging.warning("%s; moved it to %s.damaged and rebuilding it from the run's checkpoints", e, path)
        return None


def is_finished(run_dir: str, evaluate=False, config=None) -> bool:
    """A run is finished iff ``results.json`` exists and, when evaluating, ``robustness.json`` is complete.

    ``evaluate`` may be the sweep's evaluate callable: when it knows the settings it would run
    (``evaluate.settings(config)``, as :func:`make_evaluate`'s does), a file made under other settings
    (e.g. a smaller suite) is not finished, so the sweep evaluates it again (per record, resumable).
    """
    if not os.path.exists(os.path.join(run_dir, RESULTS)):
        return False
    if not evaluate:
        return True
    wanted = getattr(evaluate, "settings", None)
    settings = wanted(config) if callable(wanted) and config is not None else None
    if not evaluation_complete(os.path.join(run_dir, ROBUSTNESS), settings):
        return False
    # An evaluation of another model (an older checkpoint, a retrained run) is not this run's.
    trained = (_read_results(run_dir) or {}).get("fingerprint")
    measured = io.read_json(os.path.join(run_dir, ROBUSTNESS)).get("fingerprint")
    return trained is None or measured == trained


def check_same_config(run_dir: str, config) -> None:
    """Raises ``ValueError`` if a finished run in ``run_dir`` was trained with another config.

    ``evaluate.*`` does not change what was trained (each evaluation record carries its own settings
    and is recomputed when they differ), so a sweep may evaluate finished runs under a new protocol,
    or under fields a newer jsnn added to ``config.evaluate``.
    """
    from jsnn import config as cfg_lib

    results = _read_results(run_dir)
    recorded = None if results is None else results.get("config")
    if recorded is None:
        return
    new = json.loads(json.dumps(cfg_lib.to_dict(config)))
    recorded, new = ({k: v for k, v in c.items() if k != "evaluate"} for c in (recorded, new))
    details = cfg_lib.differences(recorded, new)
    if details:
        raise ValueError(f"sweep: {run_dir!r} holds a finished run with a different config ({details}); "
                         "use a new --workdir or the same base config")


class SweepReport(NamedTuple):
    """What :func:`run_sweep` did: run names per outcome."""

    trained: List[str]
    evaluated: List[str]
    skipped: List[str]
    failed: List[str]


def make_evaluate(overrides: Optional[Mapping[str, Any]] = None):
    """``evaluate(run_dir, config)`` running ``jsnn.evaluate.evaluate_workdir`` (itself resumable).

    The suite comes from each run's ``config.evaluate`` (so a grid can sweep it), then
    ``overrides`` (``{'attacks': 'clean,pgd10', 'num_examples': 500, ...}``).
    """

    def evaluate(run_dir: str, config) -> None:
        del config  # evaluate_workdir reads the run's own config.json
        from jsnn import evaluate as evaluate_lib

        evaluate_lib.evaluate_workdir(run_dir, overrides=dict(overrides or {}) or None)

    def settings(config):
        """The resolved ``config.evaluate`` this evaluation runs for ``config`` (None if unknown)."""
        from jsnn import evaluate as evaluate_lib

        resolve = getattr(evaluate_lib, "resolve_eval_config", None)
        return None if resolve is None else resolve(config, dict(overrides or {}) or None).to_dict()

    evaluate.settings = settings
    return evaluate


def _broadcast_flags(flags_: np.ndarray) -> np.ndarray:
    """Process 0's view of which runs are finished, on every host (identical skip decisions)."""
    import jax

    if jax.process_count() == 1:
        return flags_
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(flags_.astype(np.int32))).astype(bool)


def run_sweep(base_config, workdir: str, grid: Grid = (), seeds: Sequence[int] = (0,), *,
              shard: Tuple[int, int] = (0, 1), evaluate: Optional[Callable[[str, Any], None]] = None,
              train_fn: Optional[Callable[[Any, str], Any]] = None,
              command_fn: Optional[Callable[[Run, str], Sequence[str]]] = None,
              eval_command_fn: Optional[Callable[[Run, str], Sequence[str]]] = None,
              keep_going: bool = True, configs: Optional[Mapping[str, Any]] = None) -> SweepReport:
    """Trains (and evaluates) this shard's unfinished runs of ``grid × seeds`` into ``workdir``.

    Args:
      base_config: the experiment config the grid values and seeds are applied to.
      workdir: the sweep directory; run ``r`` lives in ``workdir/r.name``.
      grid, seeds: from :func:`parse_grid` and :func:`parse_seeds`.
      shard: ``(i, n)``: this process does ``expand(grid, seeds)[i::n]``.
      evaluate: ``evaluate(run_dir, config)`` writing ``robustness.json``, or None (no evaluation).
      train_fn: ``train_fn(config, run_dir)``; default ``jsnn.train.train_and_evaluate``.
      command_fn, eval_command_fn: when given, each run is trained (evaluated) by the subprocess
        ``command_fn(run, run_dir)`` instead of in-process (``--isolate``).
      keep_going: record a failing run in its ``error.txt`` and continue (False: re-raise).
      configs: ``{name: config}`` for a grid with a ``config`` axis (each run starts from its named
        config instead of ``base_config``; :func:`jsnn.sweep.run_config`).

    Returns:
      A :class:`SweepReport`. Every config is validated before the first run starts.

    Example:
        With a stand-in ``train_fn`` (the default is :func:`jsnn.train.train_and_evaluate`):
        finished runs are skipped, so a rerun resumes the sweep.

        >>> import json, os, tempfile
        >>> from jsnn import sweep
        >>> import ml_collections
        >>> def fake_train(config, run_dir):  # writes what a finished run has: results.json
        ...     with open(os.path.join(run_dir, "results.json"), "w") as f:
        ...         json.dump({"clean_accuracy": 0.9 + 0.01 * config.seed}, f)
        >>> config = ml_collections.ConfigDict({  # fields left out take their defaults
        ...     "seed": 0, "data": {"name": "digits", "batch_size": 64},
        ...     "model": {"name": "digits_mlp", "T": 4, "kwargs": {"hidden": (16,)}}, "optim": {"learning_rate": 0.1},
        ...     "train": {"num_steps": 4}})
        >>> tmp = tempfile.TemporaryDirectory()
        >>> grid = sweep.parse_grid("model.T=2,4", config)
        >>> sweep.run_sweep(config, tmp.name, grid, (0, 1), train_fn=fake_train).trained
        ['model.T=2/seed=0', 'model.T=2/seed=1', 'model.T=4/seed=0', 'model.T=4/seed=1']
        >>> len(sweep.run_sweep(config, tmp.name, grid, (0, 1), train_fn=fake_train).skipped)
        4
        >>> rows = sweep.write_summary(tmp.name, grid, (0, 1), plots=False)
        >>> [(row.point, round(row.stats["clean_accuracy"][0], 3)) for row in rows]
        [((('model.T', 2),), 0.905), ((('model.T', 4),), 0.905)]
        >>> tmp.cleanup()
    """
    import subprocess

    from jsnn import defenses, models, parallel, train

    train_fn = train.train_and_evaluate if train_fn is None else train_fn
    runs = shard_runs(expand(grid, seeds), *shard)
    run_configs = [run_config(base_config, r, configs) for r in runs]
    mesh = parallel.data_mesh()
    for r, c in zip(runs, run_configs):
        try:
            train.validate_config(c)
            defenses.from_config(c, models.from_config(c))  # model and defense fields (no parameters built)
            parallel.check_divisible(c.data.batch_size, mesh)
        except ValueError as e:
            raise ValueError(f"sweep run {r.name}: {e}") from None
    dirs = [os.path.join(workdir, r.name) for r in runs]
    for d, c in zip(dirs, run_configs):
        check_same_config(d, c)
    wants_eval = evaluate is not None or eval_command_fn is not None
    done = _broadcast_flags(np.array([[os.path.exists(os.path.join(d, RESULTS)),
                                       is_finished(d, evaluate or wants_eval, c)]
                                      for d, c in zip(dirs, run_configs)], bool).reshape(len(dirs), 2))
    report = SweepReport([], [], [], [])
    todo = [i for i in range(len(runs)) if not done[i, 1]]
    report.skipped.extend(runs[i].name for i in range(len(runs)) if done[i, 1])
    logging.info("sweep %s: shard %d/%d has %d runs, %d finished, %d to do", workdir, shard[0], shard[1],
                 len(runs), len(report.skipped), len(todo))
    t0 = time.time()
    for k, i in enumerate(todo):
        run, config, run_dir = runs[i], run_configs[i], dirs[i]
        logging.info("sweep run %d/%d: %s", k + 1, len(todo), run.name)
        err_path = os.path.join(run_dir, ERROR)
        try:
            os.makedirs(run_dir, exist_ok=True)
            if not done[i, 0]:
                if command_fn is not None:
                    subprocess.run(list(command_fn(run, run_dir)), check=True)
                else:
                    train_fn(config, run_dir)
                report.trained.append(run.name)
            if wants_eval:
                if eval_command_fn is not None:
                    subprocess.run(list(eval_command_fn(run, run_dir)), check=True)
                else:
                    evaluate(run_dir, config)
                report.evaluated.append(run.name)
            if os.path.exists(err_path):
                os.remove(err_path)
        except Exception as e:  # noqa: BLE001 — one failing run must not lose the rest of the sweep
            if not keep_going:
                raise
            with open(err_path, "w") as f:
                f.write(traceback.format_exc())
            logging.error("sweep run %s failed (%s: %s); traceback in %s", run.name, type(e).__name__, e, err_path)
            report.failed.append(run.name)
        elapsed = time.time() - t0
        eta = elapsed / (k + 1) * (len(todo) - k - 1)
        logging.info("sweep: %d/%d runs done in %.0fs, ETA %.0fs", k + 1, len(todo), elapsed, eta)
    return report


def _commands(c) -> Dict[str, Any]:
    if c is None:
        return {}
    return {"command": c} if isinstance(c, str) else dict(c)


def write_sweep_record(workdir: str, base_config, grid: Grid, seeds: Sequence[int],
                       commands: Optional[Mapping[str, Any]] = None, *,
                       configs: Optional[Mapping[str, Any]] = None) -> None:
    """``sweep.json``: the grid, the seeds, the base config (and the named configs of a ``config`` axis)
    and, per run, the commands that rerun it alone.

    ``commands[name]`` is a string (the ``launch.train`` command) or a dict of named commands.
    """
    from jsnn import config as cfg_lib
    from jsnn import io

    record = {
        "grid": [[p, list(v)] for p, v in grid],
        "seeds": list(seeds),
        "base_config": cfg_lib.to_dict(base_config),
        **({"configs": {n: cfg_lib.to_dict(c) for n, c in configs.items()}} if configs else {}),
        "runs": [{"name": r.name, "seed": r.seed, "point": {p: v for p, v in r.point},
                  **(_commands(commands.get(r.name)) if commands else {})}
                 for r in expand(grid, seeds)],
    }
    io.write_json(os.path.join(workdir, SWEEP_JSON), record)
