"""Sweep grids: ``'defense.lam=0.001,0.01;model.T=4,8'`` (or a mapping) → typed axes × seeds → runs.

Each value is parsed with the type of the base config field (int/float/bool/str/...); an unknown
field is a ``ValueError`` naming it. The axis ``config`` (first, if present) sweeps over whole
experiment configs by name (``'config=digits_vanilla,digits_at'``): each run starts from the named
config (the caller loads them: :func:`run_config`'s ``configs``) and the other axes apply on top. Runs are sorted by directory name
``WORKDIR/<path>=<value>,<path>=<value>/seed=<s>/`` (characters outside ``[A-Za-z0-9._=,+-]`` become
``_``), with no grid just ``WORKDIR/seed=<s>/``; :func:`shard_runs` deals them round-robin.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import itertools
import re
from typing import Any, Dict, List, Mapping, NamedTuple, Sequence, Tuple

import numpy as np
from ml_collections import config_dict
from ml_collections.config_flags import config_path

Grid = Tuple[Tuple[str, Tuple[Any, ...]], ...]
Point = Tuple[Tuple[str, Any], ...]

CONFIG_AXIS = "config"  # the axis over named experiment configs
UNSAFE = re.compile(r"[^A-Za-z0-9._=,+\-]")
_TRUE, _FALSE = ("true", "t", "1", "yes"), ("false", "f", "0", "no")


def _parse_bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"{text!r} is not true/false")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return int(text, 0)  # 0x.., 0o.., 0b..


_PARSERS = {int: _parse_int, float: float, bool: _parse_bool}


class Run(NamedTuple):
    """One cell of a sweep: a grid point (``((path, value), ...)`` in axis order) and a seed."""

    point: Point
    seed: int

    @property
    def name(self) -> str:
        """The run's directory relative to the sweep's workdir, e.g. ``model.T=4/seed=0``."""
        return run_name(self.point, self.seed)


# ----------------------------------------------------------------------------- parsing


def format_value(v) -> str:
    """A grid value as it appears in names and on the command line."""
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
            return _PARSERS[t](text)
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
        >>> import ml_collections
        >>> from jsnn import sweep
        >>> config = ml_collections.ConfigDict({"seed": 0, "model": {"T": 4}, "defense": {"name": "none"}})
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

        A sweep over named configs (the study of several defenses), other axes on top:

        >>> grid = sweep.parse_grid("config=vanilla,sr;model.T=8", config)
        >>> at = ml_collections.ConfigDict({"seed": 0, "model": {"T": 4}, "defense": {"name": "sr"}})
        >>> run = sweep.expand(grid, (3,))[0]
        >>> run.name, sweep.run_config(config, run, {"vanilla": config, "sr": at}).model.T
        ('config=sr,model.T=8/seed=3', 8)
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
        if path == CONFIG_AXIS and axes:
            raise ValueError(f"grid: the {CONFIG_AXIS!r} axis must come first (other axes apply on top of it)")
        if path == CONFIG_AXIS:
            parsed = tuple(str(v).strip() for v in values)
        else:
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


SPEC_KEYS = ("grid", "seeds", "evaluate", "set", "overrides")


def load_sweep_spec(config_file: str) -> Dict[str, Any]:
    """The optional ``get_sweep()`` of a config file (keys :data:`SPEC_KEYS`), or ``{}``.

    A sweep config file is an ordinary config file (``get_config()``) that also defines
    ``get_sweep()``: ``grid`` and ``seeds``; ``evaluate`` (the evaluation protocol of every run,
    ``'field=value;...'``); for a ``config`` axis, ``set`` (``{path: value}`` for every named
    config, e.g. the study's training length) and ``overrides`` (``{config name: {path: value}}``
    for one of them; ``{workdir}`` in a string value is the sweep's workdir, e.g. a distillation
    student's teacher run). Command-line flags take precedence over it.
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
    unknown = set(out) - set(SPEC_KEYS)
    if unknown:
        raise ValueError(f"get_sweep() in {path!r}: unknown keys {sorted(unknown)}; allowed: {', '.join(SPEC_KEYS)}")
    return out


# ----------------------------------------------------------------------------- runs


def point_name(point: Point) -> str:
    """``'defense.lam=0.01,model.T=4'`` (sanitized), or ``''`` for the empty grid."""
    return UNSAFE.sub("_", ",".join(f"{p}={format_value(v)}" for p, v in point))


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


def config_names(grid: Grid) -> Tuple[str, ...]:
    """The names on the grid's ``config`` axis (empty when it has none)."""
    return tuple(grid[0][1]) if grid and grid[0][0] == CONFIG_AXIS else ()


def run_config(base, run: Run, configs: Mapping[str, Any] | None = None):
    """A copy of ``base`` (or of ``configs[name]`` on a ``config`` axis) with the run's grid values and ``seed`` set."""
    point = run.point
    if point and point[0][0] == CONFIG_AXIS:
        name = point[0][1]
        if not configs or name not in configs:
            known = ", ".join(sorted(configs or ())) or "none loaded"
            raise ValueError(f"grid: config={name!r} is not a loaded experiment config ({known})")
        base, point = configs[name], point[1:]
    config = copy.deepcopy(base)
    for path, value in point:
        config_path.set_value(path, config, value)
    config.seed = run.seed
    return config
