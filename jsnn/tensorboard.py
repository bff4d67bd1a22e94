"""TensorBoard event files beside the JSON results, written with tensorboardX (no TensorFlow needed).

``tensorboard --logdir WORKDIR/tb`` shows one TensorBoard *run* per sub-directory:

* ``tb/train`` (:func:`train_scalars`): every ``metrics.jsonl`` row at its step as ``train/<key>``
  (loss, accuracy, grad_norm, a defense's own metrics), ``train/learning_rate`` (the rate of the
  window's last update), ``speed/steps_per_sec``, ``speed/images_per_sec`` and ``speed/elapsed_sec``;
  at the last step ``test/accuracy`` and ``test/loss`` (``results.json``'s clean evaluation).
* ``tb/evaluate`` (:func:`write_robustness`, from ``robustness.json``): ``robust/<record name>`` = the
  record's accuracy at step = the checkpoint step it measured, ``robust/worst_case``, and one curve
  ``accuracy_vs_eps/<attack>`` per ε-list attack (clean at ε = 0).
* ``tb/certify`` (:func:`write_certification`, from ``certify.json``): ``certify/certified_accuracy_vs_radius``,
  ``certify/average_certified_radius`` and ``certify/abstain_rate`` (at the checkpoint step).

Axes: TensorBoard's x-axis is an integer step, so curves over ε or an L2 radius use
``step = round(1000·x)`` (``X_SCALE``; ε = 8/255 is step 31, radius 0.25 is step 250).

Resume without duplicate curves: a series :class:`Writer` opened with ``purge_step=s`` on a
directory that already holds events starts its file with ``SessionLog.START`` at step ``s``, and
TensorBoard then drops the earlier events at steps ≥ s (those a killed run logged after the checkpoint
it resumes from). A snapshot writer (``replace=True``) removes the older files of its ``kind`` once it
closes cleanly, so ``tb/evaluate`` and ``tb/certify`` always mirror their JSON file. Every
:meth:`Writer.scalars` call is flushed, so a killed run keeps what it logged.

Example:
    >>> import tempfile
    >>> from jsnn import tensorboard
    >>> tmp = tempfile.TemporaryDirectory()
    >>> with tensorboard.Writer(tmp.name) as w:
    ...     w.scalars(10, {"train/loss": 0.5, "train/accuracy": 0.75})
    ...     w.curve("accuracy_vs_eps/pgd10", [(0.0, 0.9), (8 / 255, 0.4)])
    >>> from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    >>> ea = EventAccumulator(tmp.name); _ = ea.Reload()
    >>> sorted(ea.Tags()["scalars"])
    ['accuracy_vs_eps/pgd10', 'train/accuracy', 'train/loss']
    >>> [(e.step, round(e.value, 2)) for e in ea.Scalars("accuracy_vs_eps/pgd10")]
    [(0, 0.9), (31, 0.4)]
    >>> tmp.cleanup()
"""

from __future__ import annotations

import math
import os
import time
from typing import Iterable, Mapping, Optional, Tuple

from jsnn import config as cfg_lib
from jsnn import io

DIR = "tb"
X_SCALE = 1000  # curves over ε or a radius: step = round(X_SCALE · x)
PREFIX = "events.out.tfevents."
SPEED_KEYS = ("steps_per_sec", "elapsed_sec")


def logdir(workdir: str, name: str) -> str:
    """``workdir/tb/name``: one TensorBoard run."""
    return os.path.join(workdir, DIR, name)


def result_logdir(workdir: str, output: str, default: str, name: str) -> str:
    """``tb/name`` for the default result file ``default``, else ``tb/<output's stem>`` (one run per file)."""
    return logdir(workdir, name if output == default else os.path.splitext(os.path.basename(output))[0])


def enabled(config) -> bool:
    """``config.train.tensorboard`` of a run's config (default True): whether its event files are written."""
    return cfg_lib.read_train(cfg_lib.get(config, "train")).tensorboard


def event_files(path: str, kind: Optional[str] = None) -> list:
    """Event file names in ``path`` (only those a :class:`Writer` of ``kind`` wrote, if given)."""
    if not os.path.isdir(path):
        return []
    return sorted(f for f in os.listdir(path) if f.startswith(PREFIX) and (kind is None or f.endswith("." + kind)))


class Writer:
    """Scalars into one TensorBoard run directory (a tensorboardX ``SummaryWriter`` opened on first write).

    Args:
      path: the run directory (created; a file in the way is one ``ValueError`` line naming it).
      purge_step: a resumed series: if ``path`` holds events already, TensorBoard drops those at steps
        ≥ ``purge_step`` (pass the resumed step + 1).
      kind: ends the event file names; ``replace`` acts on files of this kind only.
      replace: a snapshot: the older files of ``kind`` are removed when the writer closes cleanly
        (on an exception the new file is removed instead).
      enabled: False makes every method a no-op (no directory, no file).
    """

    def __init__(self, path: str, *, purge_step: Optional[int] = None, kind: str = "series",
                 replace: bool = False, enabled: bool = True):
        self.path, self.kind, self.replace, self.enabled = path, kind, replace, enabled
        self._writer, self._purge, self._old = None, None, []
        if not enabled:
            return
        io.ensure_dir(path, "tensorboard logdir")
        if purge_step is not None and event_files(path):
            self._purge = cfg_lib.check_int(purge_step, "purge_step", 0)
        self._old = event_files(path, kind)

    def _open(self):
        if self._writer is None:
            from tensorboardX import SummaryWriter  # imported on first use: `import jsnn` stays light

            self._writer = SummaryWriter(self.path, purge_step=self._purge, flush_secs=30,
                                         filename_suffix=f".{time.time_ns()}.{self.kind}")
        return self._writer

    def scalars(self, step: int, values: Mapping[str, float], *, flush: bool = True) -> None:
        """Writes ``{tag: value}`` at ``step`` (values as float32, as TensorBoard stores them)."""
        if not self.enabled or not values:
            return
        w = self._open()
        for tag, value in values.items():
            w.add_scalar(tag, float(value), int(step))
        if flush:
            w.flush()

    def curve(self, tag: str, points: Iterable[Tuple[float, float]]) -> None:
        """``(x, y)`` points as ``tag`` at steps ``round(X_SCALE · x)`` (x = ε or a radius, ≥ 0)."""
        for x, y in points:
            self.scalars(round(X_SCALE * float(x)), {tag: y}, flush=False)
        if self._writer is not None:
            self._writer.flush()

    def close(self, discard: bool = False) -> None:
        """Flushes and closes; a snapshot then replaces the older files of its kind (or, ``discard``, is dropped)."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        new = [f for f in event_files(self.path, self.kind) if f not in self._old]
        for f in (new if discard else self._old if self.replace else []):
            os.remove(os.path.join(self.path, f))
        self._old = event_files(self.path, self.kind)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(discard=exc_type is not None and self.replace)


# ----------------------------------------------------------------------------- what each entry point writes


def train_scalars(row: Mapping[str, float], *, learning_rate: float, batch_size: int) -> dict:
    """The tags of one ``metrics.jsonl`` row: ``train/<key>``, ``train/learning_rate``, ``speed/...``.

    Example:
        >>> from jsnn.tensorboard import train_scalars
        >>> train_scalars({"step": 25, "loss": 0.3, "accuracy": 0.9, "steps_per_sec": 4.0, "elapsed_sec": 6.0},
        ...               learning_rate=0.1, batch_size=64)  # doctest: +NORMALIZE_WHITESPACE
        {'train/loss': 0.3, 'train/accuracy': 0.9, 'speed/steps_per_sec': 4.0, 'speed/elapsed_sec': 6.0,
         'train/learning_rate': 0.1, 'speed/images_per_sec': 256.0}
    """
    out = {(f"speed/{k}" if k in SPEED_KEYS else f"train/{k}"): v for k, v in row.items() if k != "step"}
    out["train/learning_rate"] = float(learning_rate)
    if "steps_per_sec" in row:
        out["speed/images_per_sec"] = row["steps_per_sec"] * batch_size
    return out


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def write_robustness(path: str, doc: Mapping, curves: Mapping[str, list]) -> None:
    """``robustness.json``'s records into run ``path`` (replacing the previous snapshot).

    Args:
      path: the run directory (``tb/evaluate``).
      doc: the robustness document (``checkpoint_step``, ``suite``, ``records``, ``worst_case``, ``stochastic``).
      curves: ``{attack: [(ε, accuracy), ...]}`` (:func:`jsnn.evaluate.report.curves`).
    """
    step = int(doc["checkpoint_step"])
    records = [doc["records"][n] for n in doc["suite"] if n in doc["records"]]
    values = {f"robust/{r['name']}": r["accuracy"] for r in records if _finite(r.get("accuracy"))}
    if doc.get("stochastic"):
        values.update({f"robust_all_draws/{r['name']}": r["accuracy_all_draws"] for r in records
                       if _finite(r.get("accuracy_all_draws"))})
    if _finite((doc.get("worst_case") or {}).get("accuracy")):
        values["robust/worst_case"] = doc["worst_case"]["accuracy"]
    with Writer(path, kind="evaluate", replace=True) as w:
        w.scalars(step, values)
        for attack, points in curves.items():
            w.curve(f"accuracy_vs_eps/{attack}", points)


def write_certification(path: str, result: Mapping, radii, certified) -> None:
    """``certify.json``'s summary into run ``path`` (replacing the previous snapshot).

    Args:
      path: the run directory (``tb/certify``).
      result: the certification document (``model.checkpoint_step``, ``summary``).
      radii, certified: the curve, certified accuracy at each L2 radius.
    """
    s = result["summary"]
    with Writer(path, kind="certify", replace=True) as w:
        w.scalars(int(result["model"]["checkpoint_step"]), {
            "certify/average_certified_radius": s["average_certified_radius"], "certify/abstain_rate": s["abstain_rate"]})
        w.curve("certify/certified_accuracy_vs_radius", zip(radii, certified))


__all__ = ["DIR", "X_SCALE", "Writer", "enabled", "event_files", "logdir", "result_logdir", "train_scalars",
           "write_certification", "write_robustness"]
