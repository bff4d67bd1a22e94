"""Dataset names and static facts (:class:`DatasetInfo`), the validated data config, batch checks.

Image datasets: ``digits`` (embedded), TFDS ``mnist`` … ``imagenet2012``. Event datasets
(:mod:`jsnn.data.events`): ``event_digits`` (embedded, synthetic), tonic's ``nmnist``,
``dvsgesture``, ``cifar10dvs``; their examples are frames ``[T, H, W, 2]`` shaped by
``config.data.events``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from jsnn.config import check_int
from jsnn.data import digits, event_digits
from jsnn.data import events as events_lib

IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped", "imagenet2012")
EVENT_DATASETS = ("event_digits",) + tuple(events_lib.SOURCES)
DATASETS = IMAGE_DATASETS + EVENT_DATASETS
SPLITS = ("train", "test")
DEFAULT_IMAGENET_SIZE = 64


class DatasetInfo(NamedTuple):
    """Static facts of a dataset.

    Attributes:
      num_classes: number of labels K (labels lie in ``[0, K)``).
      image_shape: the shape of one example the pipeline returns: ``(H, W, C)`` for images,
        ``(T, H, W, 2)`` for event frames.
      mean, std: per-channel pixel statistics of the train split (in [0, 1] units), for the
        model's ``Normalize``.
      train_size, test_size: examples in the full splits (before ``*_limit``).
      hflip: whether a horizontal flip keeps the label (False for digits and house numbers).
      frames: T of event datasets (frames per example); None for images.
      max_count: m of event datasets (frame values are multiples of ``1/m``); None for images.
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int
    hflip: bool
    frames: int | None = None
    max_count: int | None = None


# Train-split statistics as commonly reported (CIFAR/SVHN/MNIST: computed on the train split;
# ImageNet: the torchvision values).
_STATIC = {
    "mnist": DatasetInfo(10, (28, 28, 1), (0.1307,), (0.3081,), 60000, 10000, False),
    "fashion_mnist": DatasetInfo(10, (28, 28, 1), (0.2860,), (0.3530,), 60000, 10000, True),
    "cifar10": DatasetInfo(10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           50000, 10000, True),
    "cifar100": DatasetInfo(100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                            50000, 10000, True),
    "svhn_cropped": DatasetInfo(10, (32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                                73257, 26032, False),
    "imagenet2012": DatasetInfo(1000, (DEFAULT_IMAGENET_SIZE, DEFAULT_IMAGENET_SIZE, 3),
                                (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1281167, 50000, True),
}
# Our split names → TFDS split names (ImageNet's labelled held-out split is 'validation').
_TFDS_SPLIT = {"imagenet2012": {"train": "train", "test": "validation"}}
# Datasets streamed from disk per batch instead of decoded into memory.
_STREAMED = ("imagenet2012",)


def _check_name(name) -> str:
    if name not in DATASETS:
        raise ValueError(f"data.name: unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return name


def info(name: str, image_size: int | None = None, events=None) -> DatasetInfo:
    """Static facts of ``name``; ``image_size`` sets ImageNet's resolution (default 64), ``events``
    (``config.data.events``) the frames of event datasets.

    Digits' and event digits' mean/std are computed once from their train split; the tonic
    datasets normalize with mean 0, std 1 (the first BatchNorm scales their frames).

    Example:
        >>> from jsnn import data
        >>> d = data.info("digits")
        >>> d.num_classes, d.image_shape, d.train_size, d.test_size, d.hflip
        (10, (8, 8, 1), 1437, 360, False)
        >>> data.info("cifar10").image_shape, data.info("imagenet2012", image_size=96).image_shape
        ((32, 32, 3), (96, 96, 3))
        >>> e = data.info("dvsgesture", events={"frames": 16, "size": 48, "max_count": 4})
        >>> e.image_shape, e.frames, e.max_count, e.num_classes
        ((16, 48, 48, 2), 16, 4, 11)
    """
    _check_name(name)
    if name in EVENT_DATASETS:
        return _event_info(name, image_size, events_lib.read_config(events))
    if name == "digits":
        mean, std = digits.mean_std()
        return DatasetInfo(digits.NUM_CLASSES, digits.IMAGE_SHAPE, mean, std,
                           digits.TRAIN_SIZE, digits.TEST_SIZE, False)
    base = _STATIC[name]
    if name in _STREAMED:
        size = DEFAULT_IMAGENET_SIZE if image_size is None else check_int(image_size, "data.image_size", 8)
        return base._replace(image_shape=(size, size, 3))
    if image_size is not None and image_size != base.image_shape[0]:
        raise ValueError(f"data.image_size: only imagenet2012 is resized; {name} images are "
                         f"{base.image_shape[0]}×{base.image_shape[1]}, got image_size={image_size!r} "
                         "(use None)")
    return base


def _event_info(name: str, image_size, cfg: events_lib.EventsConfig) -> DatasetInfo:
    if image_size is not None:
        raise ValueError(f"data.image_size: only imagenet2012 is resized; {name} frames take data.events.size, "
                         f"got image_size={image_size!r} (use None)")
    if name == "event_digits":
        h, w = events_lib.frame_size((event_digits.SENSOR, event_digits.SENSOR), cfg)
        mean, std = event_digits.mean_std(cfg)
        return DatasetInfo(event_digits.NUM_CLASSES, (cfg.frames, h, w, 2), mean, std, event_digits.TRAIN_SIZE,
                           event_digits.TEST_SIZE, False, cfg.frames, cfg.max_count)
    src = events_lib.SOURCES[name]
    h, w = events_lib.frame_size(src.sensor_size, cfg)
    return DatasetInfo(src.num_classes, (cfg.frames, h, w, 2), (0.0, 0.0), (1.0, 1.0), src.train_size,
                       src.test_size, src.hflip, cfg.frames, cfg.max_count)


class DataConfig(NamedTuple):
    """Validated view of a ``data_config`` (see the module docstring for the fields)."""

    name: str
    data_dir: str | None = None
    batch_size: int = 128
    eval_batch_size: int | None = None
    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0
    image_size: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    events: events_lib.EventsConfig | None = None  # event datasets only (``config.data.events``)


def read_config(config) -> DataConfig:
    """Reads and validates a data config (ConfigDict, attribute object or mapping).

    Raises:
      ValueError: naming the field, the value and what is allowed.

    Example:
        >>> from jsnn import data
        >>> cfg = data.read_config({"name": "digits", "batch_size": 32})  # missing fields: defaults
        >>> cfg.batch_size, cfg.eval_batch_size, cfg.crop_padding, cfg.flip
        (32, None, 0, False)
        >>> data.read_config({"name": "digits", "flip": True})
        Traceback (most recent call last):
        ValueError: data.flip: a horizontal flip changes the meaning of digits images ...; set flip=False
    """
    if isinstance(config, DataConfig):
        return config
    get = (lambda k, d: config.get(k, d)) if isinstance(config, Mapping) else (
        lambda k, d: getattr(config, k, d))
    fields = {k: get(k, d) for k, d in DataConfig._field_defaults.items() if k != "events"}
    name = _check_name(get("name", None))
    flip = fields["flip"]
    if not isinstance(flip, (bool, np.bool_)):
        raise ValueError(f"data.flip: must be a bool, got {flip!r}")
    cfg = DataConfig(
        name=name,
        data_dir=None if fields["data_dir"] in (None, "") else str(fields["data_dir"]),
        batch_size=check_int(fields["batch_size"], "data.batch_size", 1),
        eval_batch_size=check_int(fields["eval_batch_size"], "data.eval_batch_size", 1, allow_none=True),
        crop_padding=check_int(fields["crop_padding"], "data.crop_padding", 0),
        flip=bool(flip),
        cutout=check_int(fields["cutout"], "data.cutout", 0),
        image_size=check_int(fields["image_size"], "data.image_size", 8, allow_none=True),
        train_limit=check_int(fields["train_limit"], "data.train_limit", 1, allow_none=True),
        test_limit=check_int(fields["test_limit"], "data.test_limit", 1, allow_none=True),
        events=events_lib.read_config(get("events", None)) if name in EVENT_DATASETS else None,
    )
    meta = info(name, cfg.image_size, cfg.events)  # also validates image_size against the dataset
    if cfg.flip and not meta.hflip:
        raise ValueError(f"data.flip: a horizontal flip changes the meaning of {name} images "
                         "(digits / house numbers); set flip=False")
    h, w = meta.image_shape[-3:-1]
    if cfg.cutout > max(h, w):
        raise ValueError(f"data.cutout: square size {cfg.cutout} exceeds the {h}×{w} image")
    return cfg


def check_batch(images, labels, num_classes: int, image_shape) -> None:
    """Validates one batch: float images ``[B, *image_shape]`` (NHWC images or ``[B, T, H, W, 2]``
    event frames) in [0, 1] without NaN, and integer labels ``[B]`` in ``[0, num_classes)``.

    Raises:
      ValueError: naming the field, the offending value and what is allowed.

    Example:
        >>> import numpy as np
        >>> from jsnn import data
        >>> data.check_batch(np.zeros((2, 8, 8, 1), np.float32), np.array([0, 9]), 10, (8, 8, 1))  # passes
        >>> data.check_batch(np.full((2, 8, 8, 1), 255.0), np.array([0, 9]), 10, (8, 8, 1))
        Traceback (most recent call last):
        ValueError: image: pixel values must lie in [0, 1], got range [255, 255]
    """
    images, labels = np.asarray(images), np.asarray(labels)
    image_shape = tuple(int(d) for d in image_shape)
    if images.ndim != 1 + len(image_shape) or images.shape[1:] != image_shape:
        layout = "NHWC" if len(image_shape) == 3 else "B, T, H, W, 2 event frames"
        raise ValueError(f"image: expected shape [B, {', '.join(map(str, image_shape))}] ({layout}), "
                         f"got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"image: expected a float dtype with values in [0, 1], got {images.dtype}")
    bad = ~np.isfinite(images)
    if bad.any():
        raise ValueError(f"image: {int(bad.sum())} non-finite pixel values (NaN/inf) in the batch")
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError(f"image: pixel values must lie in [0, 1], got range "
                         f"[{images.min():.4g}, {images.max():.4g}]")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"label: expected shape [{images.shape[0]}] (one per image), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label: expected an integer dtype, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"label: values must lie in [0, {num_classes}), got range "
                         f"[{labels.min()}, {labels.max()}]")
