"""Event-camera data as frames: the binning options and the batch contract of event datasets.

CONTRACT (shared by the data pipeline, the ``frames`` encoder and the event attacks):

* A batch of event data is ``{"image": frames, "label": y}`` with ``frames`` float32
  ``[B, T, H, W, 2]`` — T frames (time bins), channel 0 = OFF events (log-intensity decrease,
  tonic's polarity ``p = 0``), channel 1 = ON events (increase, ``p = 1``).
* Values lie in ``{0, 1/m, 2/m, ..., 1}`` with ``m = data.events.max_count``: the per-bin,
  per-pixel, per-polarity event count clipped to ``m`` and divided by ``m`` (``m = 1``: binary
  frames). Frames live in ``[0, 1]`` like images, and one event is one quantum ``1/m``.
* :class:`jsnn.data.DatasetInfo` of an event dataset has ``image_shape = (T, H, W, 2)`` (the shape
  of one example, so ``(1,) + image_shape`` is an init batch as for images), ``frames = T`` and
  ``max_count = m``; image datasets have ``frames = max_count = None``.
* A model reads frames with the encoder ``"frames"`` (each frame is one time step, so
  ``model.T == data.events.frames``) or ``"frames_rsc"`` (Gaussian RSC noise on the frames), see
  :mod:`jsnn.encoding`.

Binning (``data.events.binning``) uses tonic's ``ToFrame`` slicing (times in µs):

* ``"time_bins"``: T windows of ``(t_last − t_first) // T`` µs from the first event
  (tonic ``n_time_bins``; events at or after ``t_first + T·window`` are dropped);
* ``"event_bins"``: T slices of ``N // T`` consecutive events (tonic ``n_event_bins``);
* ``"time_window"``: windows of ``data.events.time_window`` µs from the first event (tonic
  ``time_window``, incomplete last window kept); the first T, zero frames after the recording;
* ``"event_count"``: slices of ``data.events.event_count`` events (tonic ``event_count``,
  incomplete last slice kept); the first T, zero frames after the recording.

Before binning: ``denoise_us > 0`` drops events with no neighbour (4-neighbourhood) within that
many µs (tonic ``Denoise``), then ``size`` downsamples the sensor to ``size×size`` pixels
(tonic ``Downsample``: coordinates scaled by ``size / sensor`` and floored).

Example:
    >>> import numpy as np
    >>> from jsnn.data import events
    >>> ev = np.array([(0, 0, 0, 1), (1, 0, 10, 0), (1, 0, 12, 0), (2, 1, 30, 1)], dtype=events.EVENT_DTYPE)
    >>> cfg = events.read_config({"frames": 2, "max_count": 2})  # windows of 15 µs, counts clipped at 2
    >>> f = events.to_frames(ev, (3, 2), cfg)  # sensor W=3, H=2
    >>> f.shape, f.dtype, f[0, 0, 1].tolist(), f[0, 0, 0].tolist()  # [T, H, W, (OFF, ON)]
    ((2, 2, 3, 2), dtype('float32'), [1.0, 0.0], [0.0, 0.5])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from jsnn.config import check_choice, check_int, check_number

BINNINGS = ("time_bins", "event_bins", "time_window", "event_count")
# tonic's event dtype of N-MNIST: every event stream here is a structured array with these fields.
EVENT_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
POLARITIES = ("off", "on")  # frame channel c holds the events of polarity p = c


class EventsConfig(NamedTuple):
    """Validated ``config.data.events`` (see the module docstring).

    Attributes:
      frames: T, the number of frames (= the model's time steps).
      binning: one of :data:`BINNINGS`.
      time_window: window length in µs (``binning="time_window"`` only).
      event_count: events per frame (``binning="event_count"`` only).
      max_count: m, the count at which a bin saturates; frames hold ``min(count, m) / m``.
      size: square output resolution (tonic ``Downsample``); None keeps the sensor's.
      denoise_us: tonic ``Denoise`` filter time in µs; 0 = off.
    """

    frames: int = 8
    binning: str = "time_bins"
    time_window: float | None = None
    event_count: int | None = None
    max_count: int = 1
    size: int | None = None
    denoise_us: float = 0.0


def read_config(config) -> EventsConfig:
    """Reads and validates ``config.data.events`` (ConfigDict, mapping, attribute object or None).

    Example:
        >>> from jsnn.data import events
        >>> events.read_config(None).frames, events.read_config({"frames": 6}).frames
        (8, 6)
        >>> events.read_config({"binning": "time_window"})
        Traceback (most recent call last):
        ValueError: data.events.time_window: binning='time_window' needs a window length in µs > 0, got None
    """
    if isinstance(config, EventsConfig):
        return config
    if config is None:
        config = {}
    if isinstance(config, Mapping) or hasattr(config, "get"):
        get = config.get
    else:
        get = lambda k, d: getattr(config, k, d)  # noqa: E731
    known = set(EventsConfig._fields)
    keys = config.keys() if hasattr(config, "keys") else ()
    for k in keys:
        if k not in known:
            raise ValueError(f"data.events.{k}: unknown field; allowed: {', '.join(sorted(known))}")
    f = {k: get(k, d) for k, d in EventsConfig._field_defaults.items()}
    binning = check_choice(f["binning"], "data.events.binning", BINNINGS)
    window = check_number(f["time_window"], "data.events.time_window", low=0.0, low_open=True, allow_none=True)
    count = check_int(f["event_count"], "data.events.event_count", 1, allow_none=True)
    if binning == "time_window" and window is None:
        raise ValueError("data.events.time_window: binning='time_window' needs a window length in µs > 0, "
                         "got None")
    if binning == "event_count" and count is None:
        raise ValueError("data.events.event_count: binning='event_count' needs events per frame >= 1, got None")
    return EventsConfig(
        frames=check_int(f["frames"], "data.events.frames", 1),
        binning=binning, time_window=window, event_count=count,
        max_count=check_int(f["max_count"], "data.events.max_count", 1, 255),
        size=check_int(f["size"], "data.events.size", 1, allow_none=True),
        denoise_us=check_number(f["denoise_us"], "data.events.denoise_us", low=0.0))


def frame_size(sensor_size, cfg: EventsConfig) -> tuple[int, int]:
    """``(H, W)`` of the frames for a sensor of ``sensor_size = (W, H)`` pixels.

    Example:
        >>> from jsnn.data import events
        >>> events.frame_size((128, 128), events.read_config({"size": 48}))
        (48, 48)
    """
    w, h = int(sensor_size[0]), int(sensor_size[1])
    return (h, w) if cfg.size is None else (cfg.size, cfg.size)


def quantize(counts, max_count: int) -> np.ndarray:
    """Event counts → frame values ``min(count, m) / m`` in float32 (exact multiples of ``1/m``).

    Example:
        >>> import numpy as np
        >>> from jsnn.data.events import quantize
        >>> quantize(np.array([0, 1, 2, 7]), 4).tolist()
        [0.0, 0.25, 0.5, 1.0]
    """
    m = np.float32(max_count)
    return np.minimum(np.asarray(counts), max_count).astype(np.float32) / m


def _binning_kwargs(cfg: EventsConfig) -> dict:
    if cfg.binning == "time_bins":
        return {"n_time_bins": cfg.frames}
    if cfg.binning == "event_bins":
        return {"n_event_bins": cfg.frames}
    if cfg.binning == "time_window":
        return {"time_window": cfg.time_window, "include_incomplete": True}
    return {"event_count": cfg.event_count, "include_incomplete": True}


def to_frames(events: np.ndarray, sensor_size, cfg: EventsConfig) -> np.ndarray:
    """One event stream → frames ``float32 [T, H, W, 2]`` (denoise → downsample → bin → quantize).

    Args:
      events: structured array with fields ``x, y, t, p`` (tonic's format), sorted by ``t``.
      sensor_size: ``(W, H)`` (or tonic's ``(W, H, P)``) of the sensor that recorded it.
      cfg: the binning options.

    Example:
        >>> import numpy as np
        >>> from jsnn.data import events
        >>> ev = np.zeros(6, events.EVENT_DTYPE)
        >>> ev["t"] = [0, 1, 2, 3, 4, 5]; ev["p"] = 1
        >>> cfg = events.read_config({"frames": 3, "binning": "event_count", "event_count": 4, "max_count": 8})
        >>> events.to_frames(ev, (1, 1), cfg)[:, 0, 0, 1].tolist()  # 4 events, 2 events, padding
        [0.5, 0.25, 0.0]
    """
    import tonic.transforms as tt  # lazy: tonic is only needed for event data

    w, h = int(sensor_size[0]), int(sensor_size[1])
    events = np.asarray(events)
    if cfg.denoise_us > 0 and len(events):
        events = tt.Denoise(filter_time=cfg.denoise_us)(events)
    out_h, out_w = frame_size((w, h), cfg)
    if (out_h, out_w) != (h, w) and len(events):
        events = tt.Downsample(sensor_size=(w, h, 2), target_size=(out_w, out_h))(events)
    counts = np.zeros((cfg.frames, 2, out_h, out_w), np.int64)
    if len(events):
        events = events.copy()
        events["p"] = events["p"] > 0  # ON = 1, OFF = 0 whatever the dataset's dtype (bool, 0/1, ±1)
        binned = tt.ToFrame(sensor_size=(out_w, out_h, 2), **_binning_kwargs(cfg))(events)
        n = min(cfg.frames, len(binned))
        counts[:n] = binned[:n]
    return quantize(counts.transpose(0, 2, 3, 1), cfg.max_count)


# ----------------------------------------------------------------------------- tonic datasets


class Source(NamedTuple):
    """Facts of an event dataset read through tonic from a prepared ``data_dir``."""

    title: str  # as in the papers
    tonic_name: str  # the ``tonic.datasets`` class (and its folder under data_dir)
    sensor_size: tuple[int, int]  # (W, H)
    num_classes: int
    train_size: int
    test_size: int
    hflip: bool  # whether a left-right mirror keeps the label
    extension: str  # recording files
    has_splits: bool  # tonic's ``train=`` argument; else the per-class split of :func:`split_indices`


SOURCES = {
    "nmnist": Source("N-MNIST", "NMNIST", (34, 34), 10, 60000, 10000, False, ".bin", True),
    "dvsgesture": Source("DVS128 Gesture", "DVSGesture", (128, 128), 11, 1077, 264, False, ".npy", True),
    "cifar10dvs": Source("CIFAR10-DVS", "CIFAR10DVS", (128, 128), 10, 9000, 1000, True, ".aedat4", False),
}
TRAIN_FRACTION = 0.9  # CIFAR10-DVS has no official split: the first 90% of each class (sorted paths) train


def missing_message(name: str, data_dir) -> str:
    """The one line a missing event dataset raises: where it was looked for and how to prepare it.

    Example:
        >>> from jsnn.data.events import missing_message
        >>> print(missing_message("nmnist", "/data"))  # doctest: +NORMALIZE_WHITESPACE
        data.data_dir: N-MNIST not found under '/data' (looked for /data/NMNIST); prepare it once on a machine
        with internet with  python -c "import tonic; tonic.datasets.NMNIST(save_to='/data', train=True);
        tonic.datasets.NMNIST(save_to='/data', train=False)"  and copy /data/NMNIST here (nothing is downloaded
        at run time)
    """
    src = SOURCES[name]
    target = "DATA_DIR" if data_dir is None else str(data_dir)
    cls = f"tonic.datasets.{src.tonic_name}"
    calls = (f"{cls}(save_to={target!r}, train=True); {cls}(save_to={target!r}, train=False)" if src.has_splits
             else f"{cls}(save_to={target!r})")
    where = "(data.data_dir is None)" if data_dir is None else f"(looked for {target}/{src.tonic_name})"
    return (f"data.data_dir: {src.title} not found under {data_dir!r} {where}; prepare it once on a machine "
            f"with internet with  python -c \"import tonic; {calls}\"  and copy {target}/{src.tonic_name} "
            "here (nothing is downloaded at run time)")


def _no_download_class(name: str, data_dir):
    """tonic's dataset class with its download replaced by our one-line error (never fetches)."""
    import pathlib

    import tonic.datasets

    src = SOURCES[name]
    base = getattr(tonic.datasets, src.tonic_name)

    def _check_exists(self):  # the recordings are there (tonic also wants the archive, which we don't need)
        return any(pathlib.Path(self.location_on_system, self.folder_name).glob(f"**/*{src.extension}"))

    def download(self):
        raise FileNotFoundError(missing_message(name, data_dir))

    # Same class name: tonic reads from data_dir/<class name>.
    return type(base.__name__, (base,), {"_check_exists": _check_exists, "download": download})


def split_indices(paths, targets, split: str, train_fraction: float = TRAIN_FRACTION) -> np.ndarray:
    """Indices of ``split`` in a dataset without an official split: per class, sorted by path,
    the first ``⌊fraction·n⌋`` recordings train, the rest test (as SpikingJelly's 9:1 split).

    Example:
        >>> from jsnn.data.events import split_indices
        >>> paths, targets = ["a/3", "a/1", "a/2", "a/0", "b/0", "b/1"], [0, 0, 0, 0, 1, 1]
        >>> split_indices(paths, targets, "train", 0.5).tolist(), split_indices(paths, targets, "test", 0.5).tolist()
        ([3, 1, 4], [2, 0, 5])
    """
    order = sorted(range(len(paths)), key=lambda i: paths[i])
    out = []
    for c in sorted(set(int(t) for t in targets)):
        members = [i for i in order if int(targets[i]) == c]
        k = int(len(members) * train_fraction)
        out += members[:k] if split == "train" else members[k:]
    return np.asarray(out, np.int64)


class EventSource:
    """One split of a tonic dataset from a prepared ``data_dir``; ``get`` bins recordings per batch.

    Recordings are ordered by file path (tonic's own order depends on the file system), so the
    order, and every batch, is the same on every machine.

    Raises:
      FileNotFoundError: the dataset is not under ``data_dir`` (one line saying how to prepare it).
    """

    def __init__(self, name: str, split: str, data_dir, cfg: EventsConfig, limit: int | None = None):
        src = SOURCES[name]
        if data_dir is None:
            raise FileNotFoundError(missing_message(name, data_dir))
        cls = _no_download_class(name, data_dir)
        if src.has_splits:
            self._ds = cls(save_to=str(data_dir), train=(split == "train"))
            index = np.asarray(sorted(range(len(self._ds.data)), key=lambda i: self._ds.data[i]), np.int64)
        else:
            self._ds = cls(save_to=str(data_dir))
            index = split_indices(self._ds.data, self._ds.targets, split)
        if len(index) == 0:
            raise FileNotFoundError(missing_message(name, data_dir))
        self.name, self.split, self.cfg, self.sensor_size = name, split, cfg, src.sensor_size
        self._index = index if limit is None else index[:limit]

    def __len__(self) -> int:
        return int(len(self._index))

    def get(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 [n, T, H, W, 2], int32 [n])`` of the recordings at ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        frames, labels = [], []
        for i in indices:
            events, label = self._ds[int(self._index[i])]
            frames.append(to_frames(events, self.sensor_size, self.cfg))
            labels.append(int(label))
        h, w = frame_size(self.sensor_size, self.cfg)
        out = np.stack(frames) if frames else np.zeros((0, self.cfg.frames, h, w, 2), np.float32)
        return out, np.asarray(labels, np.int32)
