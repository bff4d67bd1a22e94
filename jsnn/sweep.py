"""Reproducible sweeps: a grid of config overrides × seeds, one run directory each, mean ± std tables.

The pieces ``launch.sweep`` is built from, importable for notebooks and tests:

* :func:`parse_grid` — ``'defense.lam=0.001,0.01;model.T=4,8'`` (or a mapping) → typed axes; each
  value is parsed with the type of the base config field (int/float/bool/str/...), an unknown field
  is a ``ValueError`` naming it.
* :func:`parse_seeds`, :func:`parse_shard` — ``'0,1,2'`` / ``'0:5'``; ``'i/n'``.
* :func:`expand` — every (grid point, seed) as a :class:`Run`, sorted by directory name;
  :func:`shard_runs` deals them round-robin to ``n`` processes (hosts, job-array tasks).
* :func:`run_sweep` — trains (and optionally evaluates) the unfinished runs of one shard
  in-process; a run is *finished* iff its ``results.json`` exists (and ``robustness.json`` when
  evaluating). Unfinished runs resume from their last checkpoint (``train.train_and_evaluate``).
* :func:`collect`, :func:`summarize`, :func:`write_summary` — ``summary.csv``, ``summary.md`` and
  ``plots/<metric>.png`` from whatever results exist: per grid point the mean and the *sample*
  standard deviation (``ddof=1``; undefined, shown as ``–``, for one seed) over seeds of
  ``clean_accuracy`` and of every accuracy in ``robustness.json``.

Directory layout: ``WORKDIR/<path>=<value>,<path>=<value>/seed=<s>/`` (characters outside
``[A-Za-z0-9._=,+-]`` become ``_``), with no grid just ``WORKDIR/seed=<s>/``.

Runs are executed in-process by default: imports, device start-up and JAX's compilation caches
are paid once per sweep (seeds of one grid point compile to the same programs), a TPU can only be
owned by one process at a time, and on a pod slice every host must run the same program after
``jax.distributed.initialize()``. A Python exception in one run is recorded in its
``error.txt`` and the sweep goes on; only a hard crash (segfault, OOM kill) stops it, and
rerunning resumes. ``launch.sweep --isolate`` runs each run as its own ``launch.train``
subprocess instead (the same command :func:`train_command` records for rerunning one row alone).
"""

from __future__ import annotations

import ast
import copy
import csv
import importlib.util
import io
import itertools
import json
import math
import os
import re
import shlex
import sys
import time
import traceback
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from absl import flags as absl_flags
from absl import logging
from ml_collections import config_dict
from ml_collections.config_flags import config_path

Grid = Tuple[Tuple[str, Tuple[Any, ...]], ...]
Point = Tuple[Tuple[str, Any], ...]

RESULTS = "results.json"
ROBUSTNESS = "robustness.json"
ERROR = "error.txt"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
SWEEP_JSON = "sweep.json"
PLOTS = "plots"
CLEAN_METRIC = "clean_accuracy"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+\-]")
_PARSERS = {int: absl_flags.IntegerParser(), float: absl_flags.FloatParser(), bool: absl_flags.BooleanParser()}


class Run(NamedTuple):
    """One cell of a sweep: a grid point (``((path, value), ...)`` in axis order) and a seed."""

    point: Point
    seed: int

    @property
    def name(self) -> str:
        """The run's directory relative to the sweep's workdir, e.g. ``model.T=4/seed=0``."""
        return run_name(self.point, self.seed)


# ----------------------------------------------------------------------------- parsing


def _format_value(v) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _known_fields(config, path: str) -> str:
    parent = path.rsplit(".", 1)[0] if "." in path else ""
    try:
        holder = config_path.get_value(parent, config) if parent else config
        keys = sorted(holder.keys())
    except (KeyError, AttributeError, IndexError, ValueError):
        return ""
    return f"; config{'.' + parent if parent else ''} has: {', '.join(keys)}"


def _field_type(config, path: str):
    try:
        holder = config_path.get_value(path.rsplit(".", 1)[0], config) if "." in path else config
        leaf = path.rsplit(".", 1)[-1]
        if not hasattr(holder, "keys") or leaf not in holder.keys():
            raise KeyError(path)
        t = config_path.get_type(path, config)
    except (KeyError, AttributeError, IndexError, ValueError, TypeError):
        raise ValueError(f"grid: unknown config field {path!r}{_known_fields(config, path)}") from None
    if t is config_dict.ConfigDict or isinstance(config_path.get_value(path, config), config_dict.ConfigDict):
        raise ValueError(f"grid: {path!r} is a config section, not a field; sweep one of its fields")
    return t


def parse_value(config, path: str, text) -> Any:
    """``text`` (a string, or an already-typed value) as a value of config field ``path``'s type."""
    t = _field_type(config, path)
    if not isinstance(text, str):  # an already-typed value (a get_sweep() mapping)
        value = text
        if value is None or not isinstance(t, type) or t in (object, type(None)):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, t) and not (t is int and isinstance(value, bool)):
            return value
        raise ValueError(f"grid: {path}={value!r} is a {type(value).__name__}; the field holds a {t.__name__}")
    text = text.strip()
    try:
        if t in _PARSERS:
            return _PARSERS[t].parse(text)
        if t is str:
            return text
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError) as e:
        allowed = t.__name__ if isinstance(t, type) else str(t)
        raise ValueError(f"grid: {path}={text!r} is not a valid {allowed} ({e})") from None


def parse_grid(spec, config) -> Grid:
    """Parses a grid into typed axes ``((path, (v1, v2, ...)), ...)`` in the given order.

    Args:
      spec: ``'a.b=1,2;c.d=x,y'`` (axes separated by ``;``, values by ``,``), a mapping
        ``{'a.b': [1, 2], ...}`` (values may be typed or strings), or None/'' (no grid: seeds only).
      config: the base config; each value takes the type of its field (``int``, ``float``,
        ``bool`` as true/false, ``str``; other types via ``ast.literal_eval``).

    Raises:
      ValueError: unknown field (named, with its section's fields), ``seed`` (use the seeds
        argument), a repeated axis, an axis without values, or a value of the wrong type.

    Example:
        >>> from jsnn import sweep
        >>> from launch.configs import default
        >>> config = default.get_config()
        >>> grid = sweep.parse_grid("model.T=2,4;defense.name=none,sr", config)
        >>> grid  # typed like the config's fields
        (('model.T', (2, 4)), ('defense.name', ('none', 'sr')))
        >>> runs = sweep.expand(grid, sweep.parse_seeds("0:2"))  # 2 × 2 points × 2 seeds
        >>> len(runs), runs[0].name
        (8, 'model.T=2,defense.name=none/seed=0')
        >>> c = sweep.run_config(config, runs[-1])
        >>> c.model.T, c.defense.name, c.seed
        (4, 'sr', 1)
        >>> [r.name for r in sweep.shard_runs(runs, 1, 4)]  # process 1 of 4 takes runs[1::4]
        ['model.T=2,defense.name=none/seed=1', 'model.T=4,defense.name=none/seed=1']
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return ()
    if isinstance(spec, str):
        items = []
        for part in spec.split(";"):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"grid: axis {part.strip()!r} must look like 'path=v1,v2' (axes joined by ';')")
            path, values = part.split("=", 1)
            items.append((path.strip(), [v for v in values.split(",")]))
    elif isinstance(spec, Mapping):
        items = [(str(k), list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in spec.items()]
    else:
        raise ValueError(f"grid: expected a 'path=v1,v2;...' string or a mapping, got {type(spec).__name__}")
    axes, seen = [], set()
    for path, values in items:
        if path == "seed":
            raise ValueError("grid: 'seed' cannot be a grid axis; pass the seeds separately (--seeds=0,1,2)")
        if path in seen:
            raise ValueError(f"grid: axis {path!r} appears twice")
        seen.add(path)
        if any(isinstance(v, str) and not v.strip() for v in values) or not values:
            raise ValueError(f"grid: axis {path!r} has an empty value ({values!r})")
        parsed = tuple(parse_value(config, path, v) for v in values)
        if len(set(map(repr, parsed))) != len(parsed):
            raise ValueError(f"grid: axis {path!r} repeats a value ({parsed!r})")
        axes.append((path, parsed))
    return tuple(axes)


def parse_overrides(spec, config, where: str = "overrides") -> Dict[str, Any]:
    """``'a.b=1;c=x,y'`` (fields separated by ``;``, the value may hold commas) → ``{path: typed value}``.

    Values take the types of ``config``'s fields, as in :func:`parse_grid`.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return {}
    out = {}
    for part in str(spec).split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"{where}: {part.strip()!r} must look like 'path=value' (fields joined by ';')")
        path, text = (x.strip() for x in part.split("=", 1))
        try:
            out[path] = parse_value(config, path, text)
        except ValueError as e:
            raise ValueError(str(e).replace("grid:", f"{where}:", 1)) from None
    return out


def parse_seeds(spec) -> Tuple[int, ...]:
    """``'0,1,2'``, ``'0:5'`` (= 0..4), a sequence of ints, or an int → a tuple of distinct seeds.

    Example:
        >>> from jsnn.sweep import parse_seeds, parse_shard
        >>> parse_seeds("0,1,2"), parse_seeds("3:6"), parse_seeds(7), parse_shard("1/2")
        ((0, 1, 2), (3, 4, 5), (7,), (1, 2))
        >>> parse_seeds("0,0")
        Traceback (most recent call last):
        ValueError: seeds: '0,0' repeats a seed
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        return (spec,)
    if isinstance(spec, str):
        s = spec.strip()
        try:
            if re.fullmatch(r"-?\d+:-?\d+", s):
                a, b = map(int, s.split(":"))
                seeds = tuple(range(a, b))
            else:
                seeds = tuple(int(x) for x in s.split(",") if x.strip())
        except ValueError:
            raise ValueError(f"seeds: {spec!r} is not a comma-separated list of integers or a range 'a:b'") from None
    else:
        seeds = tuple(spec)
        if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in seeds):
            raise ValueError(f"seeds: {spec!r} must be integers")
        seeds = tuple(int(x) for x in seeds)
    if not seeds:
        raise ValueError(f"seeds: {spec!r} names no seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: {spec!r} repeats a seed")
    return seeds


def parse_shard(spec) -> Tuple[int, int]:
    """``'i/n'`` → ``(i, n)`` with ``0 <= i < n``."""
    if isinstance(spec, tuple):
        i, n = spec
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
        if not m:
            raise ValueError(f"shard: {spec!r} must look like 'i/n' (this process's index i of n, 0 <= i < n)")
        i, n = int(m.group(1)), int(m.group(2))
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard: {i}/{n} needs n >= 1 and 0 <= i < n")
    return i, n


def load_sweep_spec(config_file: str) -> Dict[str, Any]:
    """The optional ``get_sweep()`` of a config file: ``{'grid': str | mapping, 'seeds': ...}`` or ``{}``.

    A sweep config file is an ordinary config file (``get_config()``) that also defines
    ``get_sweep()``; command-line ``--grid``/``--seeds`` take precedence over it.
    """
    path = config_file.split(":", 1)[0]
    spec = importlib.util.spec_from_file_location("_jsnn_sweep_config", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"config: cannot load {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        return {}
    out = dict(module.get_sweep())
    unknown = set(out) - {"grid", "seeds"}
    if unknown:
        raise ValueError(f"get_sweep() in {path!r}: unknown keys {sorted(unknown)}; allowed: grid, seeds")
    return out


# ----------------------------------------------------------------------------- runs


def point_name(point: Point) -> str:
    """``'defense.lam=0.01,model.T=4'`` (sanitized), or ``''`` for the empty grid."""
    return _UNSAFE.sub("_", ",".join(f"{p}={_format_value(v)}" for p, v in point))


def run_name(point: Point, seed: int) -> str:
    base = point_name(point)
    return f"{base}/seed={seed}" if base else f"seed={seed}"


def grid_points(grid: Grid) -> List[Point]:
    """Every combination of the axes' values, first axis slowest (the table's row order)."""
    paths = [p for p, _ in grid]
    return [tuple(zip(paths, combo)) for combo in itertools.product(*[v for _, v in grid])]


def expand(grid: Grid, seeds: Sequence[int]) -> List[Run]:
    """All runs, sorted by directory name (the order every process agrees on)."""
    runs = [Run(point, int(s)) for point in grid_points(grid) for s in seeds]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"grid: values collide after sanitizing directory names: {dup[:3]}")
    return sorted(runs, key=lambda r: r.name)


def shard_runs(runs: Sequence[Run], index: int, count: int) -> List[Run]:
    """Round-robin share ``runs[index::count]`` of the sorted run list."""
    index, count = parse_shard((index, count))
    return list(runs)[index::count]


def run_config(base, run: Run):
    """A copy of ``base`` with the run's grid values and ``seed`` set."""
    config = copy.deepcopy(base)
    for path, value in run.point:
        config_path.set_value(path, config, value)
    config.seed = run.seed
    return config


def _write_atomic(path: str, write: Callable[[str], None], suffix: str = "") -> None:
    """Calls ``write(tmp)`` on a unique temporary file beside ``path``, then renames it over ``path``."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            f.write(text)

    _write_atomic(path, write)


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def is_finished(run_dir: str, evaluate: bool = False) -> bool:
    """A run is finished iff ``results.json`` exists (and, when evaluating, a complete ``robustness.json``)."""
    if not os.path.exists(os.path.join(run_dir, RESULTS)):
        return False
    return not evaluate or evaluation_complete(os.path.join(run_dir, ROBUSTNESS))


def check_same_config(run_dir: str, config) -> None:
    """Raises ``ValueError`` if a finished run in ``run_dir`` was trained with another config."""
    from jsnn import config as cfg_lib

    path = os.path.join(run_dir, RESULTS)
    if not os.path.exists(path):
        return
    recorded = _read_json(path).get("config")
    if recorded is None:
        return
    details = cfg_lib.differences(recorded, json.loads(json.dumps(cfg_lib.to_dict(config))))
    if details:
        raise ValueError(f"sweep: {run_dir!r} holds a finished run with a different config ({details}); "
                         "use a new --workdir or the same base config")


def _cli_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        raise ValueError("cannot pass None as a --config.* flag; set it in the config file")
    return _format_value(v)


def train_command(config_file: str, run_dir: str, overrides: Iterable[Tuple[str, Any]] = (),
                  run: Optional[Run] = None) -> List[str]:
    """The ``launch.train`` command that trains one run alone (what ``--isolate`` executes).

    ``overrides`` are the sweep's own ``--config.*`` flags, then the run's grid values and seed.
    """
    cmd = [sys.executable, "-m", "launch.train", f"--config={config_file}", f"--workdir={run_dir}"]
    pairs = list(overrides) + (list(run.point) + [("seed", run.seed)] if run is not None else [])
    return cmd + [f"--config.{k}={_cli_value(v)}" for k, v in pairs]


def evaluate_command(run_dir: str, overrides: Optional[Mapping[str, Any]] = None) -> List[str]:
    """The ``launch.evaluate`` command that evaluates one run alone (what ``--isolate --evaluate`` executes)."""
    return ([sys.executable, "-m", "launch.evaluate", f"--workdir={run_dir}"]
            + [f"--evaluate.{k}={_cli_value(v)}" for k, v in (overrides or {}).items()])


def shell_command(cmd: Sequence[str]) -> str:
    """``cmd`` as a copy-pasteable shell line (``python`` for the interpreter)."""
    parts = ["python" if i == 0 and c == sys.executable else c for i, c in enumerate(cmd)]
    return " ".join(shlex.quote(p) for p in parts)


# ----------------------------------------------------------------------------- execution


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
              keep_going: bool = True) -> SweepReport:
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

    Returns:
      A :class:`SweepReport`. Every config is validated before the first run starts.

    Example:
        With a stand-in ``train_fn`` (the default is :func:`jsnn.train.train_and_evaluate`):
        finished runs are skipped, so a rerun resumes the sweep.

        >>> import json, os, tempfile
        >>> from jsnn import sweep
        >>> from launch.configs import default
        >>> def fake_train(config, run_dir):  # writes what a finished run has: results.json
        ...     with open(os.path.join(run_dir, "results.json"), "w") as f:
        ...         json.dump({"clean_accuracy": 0.9 + 0.01 * config.seed}, f)
        >>> config, tmp = default.get_config(), tempfile.TemporaryDirectory()
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
    configs = [run_config(base_config, r) for r in runs]
    mesh = parallel.data_mesh()
    for r, c in zip(runs, configs):
        try:
            train.validate_config(c)
            defenses.from_config(c, models.from_config(c))  # model and defense fields (no parameters built)
            parallel.check_divisible(c.data.batch_size, mesh)
        except ValueError as e:
            raise ValueError(f"sweep run {r.name}: {e}") from None
    dirs = [os.path.join(workdir, r.name) for r in runs]
    for d, c in zip(dirs, configs):
        check_same_config(d, c)
    wants_eval = evaluate is not None or eval_command_fn is not None
    done = _broadcast_flags(np.array([[os.path.exists(os.path.join(d, RESULTS)), is_finished(d, wants_eval)]
                                      for d in dirs], bool).reshape(len(dirs), 2))
    report = SweepReport([], [], [], [])
    todo = [i for i in range(len(runs)) if not done[i, 1]]
    report.skipped.extend(runs[i].name for i in range(len(runs)) if done[i, 1])
    logging.info("sweep %s: shard %d/%d has %d runs, %d finished, %d to do", workdir, shard[0], shard[1],
                 len(runs), len(report.skipped), len(todo))
    t0 = time.time()
    for k, i in enumerate(todo):
        run, config, run_dir = runs[i], configs[i], dirs[i]
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


# ----------------------------------------------------------------------------- summary


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
    worst = robustness.get("worst_case") or {}
    if isinstance(worst.get("accuracy"), (int, float)):
        out["worst_case"] = float(worst["accuracy"])
        if stochastic and isinstance(worst.get("accuracy_all_draws"), (int, float)):
            out["worst_case (all draws)"] = float(worst["accuracy_all_draws"])
    return out


def evaluation_complete(path: str) -> bool:
    """Whether a ``robustness.json`` holds the whole suite (``jsnn.evaluate`` rewrites it after every
    attack, so its existence alone does not mean the evaluation finished)."""
    if not os.path.exists(path):
        return False
    try:
        doc = _read_json(path)
    except (OSError, ValueError):
        return False
    if "complete" in doc:
        return bool(doc["complete"])
    records = doc.get("records") or {}
    return doc.get("gradients") is not None and all(n in records for n in doc.get("suite") or [])


def run_metrics(run_dir: str) -> Optional[Dict[str, float]]:
    """``clean_accuracy`` and the robustness accuracies of a finished run (None if unfinished)."""
    path = os.path.join(run_dir, RESULTS)
    if not os.path.exists(path):
        return None
    metrics = {CLEAN_METRIC: float(_read_json(path)[CLEAN_METRIC])}
    rpath = os.path.join(run_dir, ROBUSTNESS)
    if os.path.exists(rpath):
        metrics.update({k: v for k, v in robust_metrics(_read_json(rpath)).items() if k != CLEAN_METRIC})
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
        m = run_metrics(os.path.join(workdir, run.name))
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
        >>> from jsnn import sweep
        >>> from launch.configs import default
        >>> grid = sweep.parse_grid("model.T=4", default.get_config())
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
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        cells = [_format_value(v) for _, v in row.point] + [len(row.seeds), " ".join(map(str, row.seeds))]
        for m in metrics:
            mean, std, _ = row.stats.get(m, (math.nan, math.nan, 0))
            cells += [repr(mean), "" if not math.isfinite(std) else repr(std)]
        w.writerow(cells)
    _write_text(os.path.join(workdir, SUMMARY_CSV), buf.getvalue())

    lines = ["# Sweep summary", "",
             f"Mean ± sample standard deviation (ddof=1) over seeds {', '.join(map(str, seeds))}; "
             "n = seeds finished; – = undefined (one seed).", ""]
    cols = (paths or ["run"]) + ["n"] + metrics
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join(["---"] * len(cols)) + "|")
    for row in rows:
        cells = [_format_value(v) for _, v in row.point] or ["base"]
        cells.append(str(len(row.seeds)))
        cells += [_fmt(*row.stats[m][:2]) if m in row.stats else "" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    if missing:
        lines += ["", f"Unfinished runs ({len(missing)}): " + ", ".join(f"`{m}`" for m in missing)]
    _write_text(os.path.join(workdir, SUMMARY_MD), "\n".join(lines) + "\n")
    if plots and rows:
        plot_summary(os.path.join(workdir, PLOTS), grid, rows, metrics)
    return rows


def _safe_file(name: str) -> str:
    return _UNSAFE.sub("_", name).replace(",", "_")


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
        _write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"), ".png")
        files.append(path)
    return files


def _commands(c) -> Dict[str, Any]:
    if c is None:
        return {}
    return {"command": c} if isinstance(c, str) else dict(c)


def write_sweep_record(workdir: str, base_config, grid: Grid, seeds: Sequence[int],
                       commands: Optional[Mapping[str, Any]] = None) -> None:
    """``sweep.json``: the grid, the seeds, the base config and, per run, the commands that rerun it alone.

    ``commands[name]`` is a string (the ``launch.train`` command) or a dict of named commands.
    """
    from jsnn import config as cfg_lib
    from jsnn import io

    record = {
        "grid": [[p, list(v)] for p, v in grid],
        "seeds": list(seeds),
        "base_config": cfg_lib.to_dict(base_config),
        "runs": [{"name": r.name, "seed": r.seed, "point": {p: v for p, v in r.point},
                  **(_commands(commands.get(r.name)) if commands else {})}
                 for r in expand(grid, seeds)],
    }
    io.write_json(os.path.join(workdir, SWEEP_JSON), record)
