"""Orbax checkpoints of a run: the manager, restore with fallback, and the model's fingerprint.

A run's ``checkpoints/`` keeps the last two steps (Orbax writes each to a temporary directory and
renames it, so a kill mid-write leaves the previous one intact). Restoring tries the newest step
first and, when its files are damaged, falls back to the previous one with a one-line warning.
Evaluation restores the *variables* only (parameters and BatchNorm statistics), without building
the optimizer or the defenses: evaluating a distilled student does not load its teacher.

Example:
    >>> import tempfile, jax.numpy as jnp
    >>> from jsnn import checkpoint
    >>> d = tempfile.TemporaryDirectory()
    >>> state = {"step": jnp.asarray(3), "params": {"w": jnp.ones(2)}, "model_state": {}, "opt_state": ()}
    >>> mngr = checkpoint.manager(d.name)
    >>> mngr.save(3, args=checkpoint.ocp.args.StandardSave(state)); mngr.wait_until_finished()
    True
    >>> step, variables = checkpoint.restore_variables(d.name)
    >>> step, variables["params"]["w"].tolist()
    (3, [1.0, 1.0])
    >>> checkpoint.fingerprint(variables) == checkpoint.fingerprint({"params": {"w": jnp.ones(2)}})
    True
    >>> d.cleanup()
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

DIRECTORY = "checkpoints"


def manager(workdir: str, every: int = 1) -> ocp.CheckpointManager:
    """The run's checkpoint manager: synchronous saves every ``every`` steps, the last two kept."""
    options = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=max(1, int(every)),
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, DIRECTORY)), options=options)


def _restore_with_fallback(mngr: ocp.CheckpointManager, restore: Callable[[int], Any], step: Optional[int],
                           workdir: str) -> Tuple[int, Any]:
    steps = sorted(mngr.all_steps(), reverse=True)
    if step is not None:
        if step not in steps:
            raise ValueError(f"--step={step}: {workdir!r} has no checkpoint at that step; it has: "
                             f"{', '.join(map(str, sorted(steps))) or 'none'}")
        steps = [step]
    if not steps:
        raise FileNotFoundError(f"workdir {workdir!r} has no checkpoint: train it first with launch.train")
    errors = []
    for i, s in enumerate(steps):
        try:
            out = restore(s)
        except Exception as e:  # Orbax / TensorStore raise many types for damaged files
            first = str(e).strip().splitlines()[0].split(". See")[0][:120] if str(e).strip() else type(e).__name__
            errors.append(f"step {s}: {first}")
            if i + 1 < len(steps):
                logging.warning("%s: checkpoint at step %d is damaged (%s); falling back to step %d",
                                os.path.join(workdir, DIRECTORY), s, first, steps[i + 1])
            continue
        return s, out
    raise ValueError(f"{os.path.join(workdir, DIRECTORY)}: no readable checkpoint ({'; '.join(errors)}); "
                     "delete the damaged step directories and rerun training")


def restore_state(workdir: str, target, mngr: Optional[ocp.CheckpointManager] = None,
                  step: Optional[int] = None) -> Tuple[int, Any]:
    """``(step, state)`` restored into the structure of ``target`` (a TrainState or its abstract shape)."""
    mngr = manager(workdir) if mngr is None else mngr
    return _restore_with_fallback(mngr, lambda s: mngr.restore(s, args=ocp.args.StandardRestore(target)),
                                  step, workdir)


def restore_variables(workdir: str, step: Optional[int] = None) -> Tuple[int, Dict[str, Any]]:
    """``(step, variables)``: the parameters and model state of the newest readable checkpoint (or ``step``).

    The optimizer state is not rebuilt (no optimizer or defense is constructed).
    """
    mngr = manager(workdir)

    def restore(s):
        raw = mngr.restore(s, args=ocp.args.StandardRestore())
        return {"params": raw["params"], **dict(raw.get("model_state") or {})}

    return _restore_with_fallback(mngr, restore, step, workdir)


class Run(NamedTuple):
    """A trained run as evaluation sees it: its config, model, variables and which checkpoint they are."""

    config: Any
    model: Any
    variables: Dict[str, Any]
    step: int
    fingerprint: str
    finished: bool


def load_run(workdir: str, step: Optional[int] = None) -> Run:
    """The run in ``workdir``: config, model and the variables of its newest readable checkpoint (or ``step``).

    ``finished`` says whether training is over and the checkpoint is its last step.
    """
    import ml_collections

    from jsnn import io, models

    path = os.path.join(workdir, "config.json")
    if os.path.isfile(workdir):
        raise ValueError(f"workdir {workdir!r}: is a file, not a run directory")
    if not os.path.exists(path):
        raise FileNotFoundError(f"workdir {workdir!r} has no config.json: train it first with launch.train")
    config = ml_collections.ConfigDict(io.read_json(path, hint="retrain the run (config.json is written first)"))
    model = models.from_config(config)
    got, variables = restore_variables(workdir, step)
    results = os.path.join(workdir, "results.json")  # written last, when training is over
    finished = os.path.exists(results) and got == io.read_json(results).get("steps")
    return Run(config, model, variables, got, fingerprint(variables), finished)


def fingerprint(variables) -> str:
    """A short SHA-256 of the variables' paths, dtypes, shapes and bytes: which model a record measured.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.checkpoint import fingerprint
        >>> a, b = {"w": jnp.zeros(3)}, {"w": jnp.zeros(3).at[1].set(1e-7)}
        >>> len(fingerprint(a)), fingerprint(a) == fingerprint(b)
        (16, False)
    """
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(variables)[0], key=lambda t: str(t[0])):
        a = np.asarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def check_finite(variables, where: str) -> None:
    """Refuses a model with NaN or inf parameters (a diverged run), naming the first bad leaf."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"{where}: parameters are not finite ({jax.tree_util.keystr(path)} holds NaN/inf; "
                             "the run diverged); retrain with a smaller optim.learning_rate")


__all__ = ["DIRECTORY", "Run", "check_finite", "fingerprint", "load_run", "manager", "ocp", "restore_state",
           "restore_variables"]
