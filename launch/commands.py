"""Command builders: the ``launch.train`` / ``launch.evaluate`` lines that rerun one sweep run alone.

Example:
    >>> from launch import commands
    >>> cmd = commands.train_command("launch/configs/default.py", "/w/x", [("model.T", 8)])
    >>> commands.shell_command(cmd)
    'python -m launch.train --config=launch/configs/default.py --workdir=/w/x --config.model.T=8'
"""

from __future__ import annotations

import shlex
import sys
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

from jsnn.sweep.grid import Run, format_value


def _cli_value(v) -> str:
    """A config value as a command-line flag value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        raise ValueError("cannot pass None as a --config.* flag; set it in the config file")
    return format_value(v)


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
