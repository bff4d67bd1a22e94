"""Event digits: a SYNTHETIC event version of the bundled 8×8 digits, made the way N-MNIST was recorded.

N-MNIST (Orchard et al. 2015, "Converting static image datasets to spiking neuromorphic datasets
using saccades") moved an ATIS camera along three ~100 ms saccades in front of each MNIST digit.
Here the camera model is simulated, with no randomness:

1. the 8×8 digit (:mod:`jsnn.data.digits`, intensities in [0, 1]) lies on a black
   ``SENSOR×SENSOR`` (10×10) sensor and moves along three straight saccades of
   ``SACCADE_US`` = 100 ms each, through the triangle of top-left offsets (y, x) ``(0, 0) → (2, 1)
   → (0, 2) → (0, 0)`` pixels (the isosceles triangle of N-MNIST), sampled at ``STEPS`` = 20 times
   per saccade with bilinear (sub-pixel) interpolation;
2. every pixel keeps the log intensity ``L = log(I + LOG_EPS)`` of its last event (the DVS model);
   when ``L`` has risen by ``n·THRESHOLD`` since then it emits n ON events (``p = 1``), when it has
   fallen by ``n·THRESHOLD`` n OFF events (``p = 0``), all stamped with the sample time (µs).

The streams have tonic's event format (:data:`jsnn.data.events.EVENT_DTYPE`, sorted by ``t``) and
are binned by the same code as the tonic datasets (:func:`jsnn.data.events.to_frames`), so every
frame option applies. Train/test are the digits' fixed split (1437 / 360).

Example:
    >>> from jsnn.data import event_digits
    >>> ev = event_digits.events("test")[0]
    >>> ev.dtype.names, bool(ev["t"].min() > 0), bool(ev["t"].max() <= 3 * event_digits.SACCADE_US)
    (('x', 'y', 't', 'p'), True, True)
    >>> sorted(set(ev["p"].tolist())), int(ev["x"].max()) < event_digits.SENSOR
    ([0, 1], True)
"""

from __future__ import annotations

import functools

import numpy as np

from jsnn.data import digits
from jsnn.data import events as events_lib

SENSOR = 10  # square sensor: the 8×8 digit plus room for the saccades
SACCADE_US = 100_000  # one saccade, µs (N-MNIST: ~100 ms each)
STEPS = 20  # samples per saccade
THRESHOLD = 0.5  # DVS contrast threshold on log intensity
LOG_EPS = 0.1  # L = log(I + LOG_EPS): black stays finite
PATH = ((0.0, 0.0), (2.0, 1.0), (0.0, 2.0), (0.0, 0.0))  # top-left offsets (y, x), three saccades
NUM_CLASSES = digits.NUM_CLASSES
TRAIN_SIZE, TEST_SIZE = digits.TRAIN_SIZE, digits.TEST_SIZE


def offsets() -> np.ndarray:
    """``float64 [3·STEPS + 1, 2]``: the digit's (y, x) offset at each sample time ``k·SACCADE_US/STEPS``.

    Example:
        >>> from jsnn.data.event_digits import STEPS, offsets
        >>> o = offsets()
        >>> o.shape, o[0].tolist(), o[STEPS].tolist(), o[-1].tolist()
        ((61, 2), [0.0, 0.0], [2.0, 1.0], [0.0, 0.0])
    """
    path = np.asarray(PATH)
    u = np.arange(1, STEPS + 1) / STEPS
    legs = [path[i] + u[:, None] * (path[i + 1] - path[i]) for i in range(len(path) - 1)]
    return np.concatenate([path[:1]] + legs)


def place(images: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``[N, 8, 8]`` images on the black ``SENSOR×SENSOR`` sensor at sub-pixel offset (dy, dx) (bilinear).

    Example:
        >>> import numpy as np
        >>> from jsnn.data.event_digits import place
        >>> im = np.zeros((1, 8, 8)); im[0, 0, 0] = 1.0
        >>> s = place(im, 0.0, 0.5)
        >>> s.shape, s[0, 0, :3].tolist()  # half a pixel to the right: shared by two pixels
        ((1, 10, 10), [0.5, 0.5, 0.0])
    """
    n, h, w = images.shape
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    out = np.zeros((n, SENSOR + 1, SENSOR + 1))
    for oy, wy in ((0, 1.0 - fy), (1, fy)):
        for ox, wx in ((0, 1.0 - fx), (1, fx)):
            if wy * wx:
                out[:, iy + oy:iy + oy + h, ix + ox:ix + ox + w] += wy * wx * images
    return out[:, :SENSOR, :SENSOR]


def simulate(images: np.ndarray) -> list[np.ndarray]:
    """DVS events of ``images`` ``[N, 8, 8]`` moved along the saccades: one stream per image.

    Example:
        >>> import numpy as np
        >>> from jsnn.data import event_digits
        >>> im = np.zeros((1, 8, 8)); im[0, 3:5, 3:5] = 1.0  # a bright square
        >>> ev = event_digits.simulate(im)[0]
        >>> int((ev["p"] == 1).sum()) == int((ev["p"] == 0).sum())  # back where it started: ON = OFF
        True
    """
    images = np.asarray(images, np.float64)
    path = offsets()
    ref = np.log(place(images, *path[0]) + LOG_EPS)
    chunks = []  # (sample, t, y, x, p) per step
    for k in range(1, len(path)):
        level = np.log(place(images, *path[k]) + LOG_EPS)
        change = level - ref
        n_on = np.floor(np.maximum(change, 0.0) / THRESHOLD + 1e-9).astype(np.int64)
        n_off = np.floor(np.maximum(-change, 0.0) / THRESHOLD + 1e-9).astype(np.int64)
        ref = ref + (n_on - n_off) * THRESHOLD
        t = k * SACCADE_US // STEPS
        for p, count in ((0, n_off), (1, n_on)):
            b, y, x = np.nonzero(count)
            reps = count[b, y, x]
            chunks.append(np.stack([np.repeat(b, reps), np.full(reps.sum(), t), np.repeat(y, reps),
                                    np.repeat(x, reps), np.full(reps.sum(), p)], 1))
    rows = np.concatenate(chunks)
    rows = rows[np.lexsort((rows[:, 4], rows[:, 3], rows[:, 2], rows[:, 1], rows[:, 0]))]  # by sample, t, y, x, p
    bounds = np.searchsorted(rows[:, 0], np.arange(len(images) + 1))
    out = []
    for i in range(len(images)):
        r = rows[bounds[i]:bounds[i + 1]]
        ev = np.zeros(len(r), events_lib.EVENT_DTYPE)
        ev["t"], ev["y"], ev["x"], ev["p"] = r[:, 1], r[:, 2], r[:, 3], r[:, 4]
        ev.flags.writeable = False
        out.append(ev)
    return out


@functools.cache
def events(split: str) -> tuple[np.ndarray, ...]:
    """The event streams of ``split`` (cached, read-only), in the digits' order.

    Example:
        >>> from jsnn.data import event_digits
        >>> len(event_digits.events("train")), len(event_digits.events("test"))
        (1437, 360)
    """
    images, _ = digits.load(split)  # validates split
    return tuple(simulate(images[..., 0]))


@functools.lru_cache(maxsize=8)
def load(split: str, cfg: events_lib.EventsConfig = events_lib.EventsConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``float32 [N, T, H, W, 2]`` and labels ``int32 [N]`` of ``split`` (cached, read-only).

    Example:
        >>> from jsnn.data import event_digits, events
        >>> x, y = event_digits.load("test", events.read_config({"frames": 6, "max_count": 2}))
        >>> x.shape, x.dtype, sorted(set(x.ravel().tolist())), y.shape
        ((360, 6, 10, 10, 2), dtype('float32'), [0.0, 0.5, 1.0], (360,))
    """
    labels = digits.load(split)[1]
    frames = np.stack([events_lib.to_frames(ev, (SENSOR, SENSOR), cfg) for ev in events(split)])
    frames.flags.writeable = False
    return frames, labels


@functools.lru_cache(maxsize=8)
def mean_std(cfg: events_lib.EventsConfig = events_lib.EventsConfig()) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (OFF, ON) mean and std of the train frames under ``cfg``.

    Example:
        >>> from jsnn.data import event_digits
        >>> mean, std = event_digits.mean_std()
        >>> len(mean), all(0 < m < 1 for m in mean), all(s > 0 for s in std)
        (2, True, True)
    """
    x, _ = load("train", cfg)
    return tuple(float(v) for v in x.mean((0, 1, 2, 3))), tuple(float(v) for v in x.std((0, 1, 2, 3)))
