"""Datasets for training, evaluation and certification, behind one small interface.

* :data:`DATASETS`, :func:`info` — names and static facts (classes, shape, normalization).
* :func:`load` — one split as a random-access dataset (``len``, ``get(indices)``).
* :func:`train_batches` — infinite, shuffled, augmented batches that can start at any step.
* :func:`eval_batches` — finite, in-order batches; the last one may be smaller.
* :func:`check_batch` — the validation every batch passes (training calls it too).

Batches are dicts ``{'image': float32 [B, H, W, C] in [0, 1], 'label': int32 [B]}`` (NHWC,
pixel space; normalization happens inside the model).

``data_config`` is an ``ml_collections.ConfigDict`` (or any object with attributes, or a
mapping) with fields ``name``, ``data_dir`` (None: TFDS default), ``batch_size``,
``eval_batch_size`` (None: ``batch_size``), ``crop_padding`` (0 = off), ``flip`` (bool),
``cutout`` (0 = off), ``image_size`` (ImageNet only; None: 64), ``train_limit`` /
``test_limit`` (None = all). Missing optional fields take these defaults.

Determinism: the epoch permutation comes from ``(seed, epoch)`` and the augmentation draws
from ``(seed, step)``, so ``train_batches(cfg, seed, start_step=k)`` yields exactly the batches
an uninterrupted run yields from step ``k`` on (resume after a checkpoint).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

from jsnn.config import check_int
from jsnn.data import augment, digits
from jsnn.data import tfds as tfds_lib

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped", "imagenet2012")
SPLITS = ("train", "test")
DEFAULT_IMAGENET_SIZE = 64


class DatasetInfo(NamedTuple):
    """Static facts of a dataset.

    Attributes:
      num_classes: number of labels K (labels lie in ``[0, K)``).
      image_shape: ``(H, W, C)`` of the images the pipeline returns.
      mean, std: per-channel pixel statistics of the train split (in [0, 1] units), for the
        model's ``Normalize``.
      train_size, test_size: examples in the full splits (before ``*_limit``).
      hflip: whether a horizontal flip keeps the label (False for digits and house numbers).
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int
    hflip: bool


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


def info(name: str, image_size: int | None = None) -> DatasetInfo:
    """Static facts of ``name``; ``image_size`` sets ImageNet's resolution (default 64).

    Digits' mean/std are computed once from its train split.

    Example:
        >>> from jsnn import data
        >>> d = data.info("digits")
        >>> d.num_classes, d.image_shape, d.train_size, d.test_size, d.hflip
        (10, (8, 8, 1), 1437, 360, False)
        >>> data.info("cifar10").image_shape, data.info("imagenet2012", image_size=96).image_shape
        ((32, 32, 3), (96, 96, 3))
    """
    _check_name(name)
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
    fields = {k: get(k, d) for k, d in DataConfig._field_defaults.items()}
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
    )
    meta = info(name, cfg.image_size)  # also validates image_size against the dataset
    if cfg.flip and not meta.hflip:
        raise ValueError(f"data.flip: a horizontal flip changes the meaning of {name} images "
                         "(digits / house numbers); set flip=False")
    h, w, _ = meta.image_shape
    if cfg.cutout > max(h, w):
        raise ValueError(f"data.cutout: square size {cfg.cutout} exceeds the {h}×{w} image")
    return cfg


def check_batch(images, labels, num_classes: int, image_shape) -> None:
    """Validates one batch: float NHWC images of ``image_shape`` in [0, 1] without NaN, and
    integer labels ``[B]`` in ``[0, num_classes)``.

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
    if images.ndim != 4 or images.shape[1:] != image_shape:
        raise ValueError(f"image: expected shape [B, {', '.join(map(str, image_shape))}] (NHWC), "
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


def _to_unit_float(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)  # correctly rounded k/255
    return images.astype(np.float32, copy=False)


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A split held in memory.

    Attributes:
      images: ``[N, H, W, C]`` storage: float32 in [0, 1] (digits) or uint8 in 0..255 (TFDS).
      labels: ``int32 [N]``.
      info: the dataset's :class:`DatasetInfo`.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    info: DatasetInfo

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def get(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 [n, H, W, C] in [0, 1], int32 [n])`` of the examples at ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        return _to_unit_float(self.images[indices]), self.labels[indices]


@dataclasses.dataclass(frozen=True, eq=False)
class StreamDataset:
    """A split read from prepared TFDS files per batch (ImageNet)."""

    name: str
    split: str
    source: tfds_lib.ImageSource
    info: DatasetInfo

    def __len__(self) -> int:
        return len(self.source)

    def get(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 [n, H, W, C] in [0, 1], int32 [n])`` of the examples at ``indices``."""
        images, labels = self.source.get(indices)
        images, labels = _to_unit_float(images), labels.astype(np.int32)
        check_batch(images, labels, self.info.num_classes, self.info.image_shape)
        return images, labels


@functools.lru_cache(maxsize=6)
def _load(name: str, split: str, data_dir, limit, image_size):
    meta = info(name, image_size)
    if name == "digits":
        images, labels = digits.load(split)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        return ArrayDataset(name, split, images, labels, meta)
    tfds_split = _TFDS_SPLIT.get(name, {}).get(split, split)
    if name in _STREAMED:
        source = tfds_lib.ImageSource(name, tfds_split, data_dir, image_size=meta.image_shape[0],
                                      limit=limit)
        return StreamDataset(name, split, source, meta)
    images, labels = tfds_lib.load_arrays(name, tfds_split, data_dir, limit)
    if images.shape[1:] != meta.image_shape:
        raise ValueError(f"{name}/{split} in data_dir={data_dir!r}: images have shape {images.shape[1:]}, "
                         f"expected {meta.image_shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= meta.num_classes):
        raise ValueError(f"{name}/{split} in data_dir={data_dir!r}: labels must lie in "
                         f"[0, {meta.num_classes}), got range [{labels.min()}, {labels.max()}]")
    images.flags.writeable = False
    labels = labels.astype(np.int32)
    labels.flags.writeable = False
    return ArrayDataset(name, split, images, labels, meta)


def clear_cache() -> None:
    """Forgets splits loaded by :func:`load` (they are cached per name/split/dir/limit/size).

    Example:
        >>> from jsnn import data
        >>> a = data.load({"name": "digits"}, "test")
        >>> a is data.load({"name": "digits", "batch_size": 7}, "test")  # cached
        True
        >>> data.clear_cache()
        >>> a is data.load({"name": "digits"}, "test")
        False
    """
    _load.cache_clear()


def load(config, split: str) -> ArrayDataset | StreamDataset:
    """One split (``'train'`` or ``'test'``) of the configured dataset, ``*_limit`` applied.

    Small datasets come back as :class:`ArrayDataset` (``.images``, ``.labels`` in memory),
    ImageNet as :class:`StreamDataset`; both have ``len`` and ``get(indices)`` returning
    ``(float32 images in [0, 1], int32 labels)``. Results are cached (see :func:`clear_cache`).
    TFDS data is read from ``data_dir`` only; nothing is downloaded.

    Raises:
      ValueError: invalid config or split, or invalid data (NaN pixels, labels out of range,
        wrong image shape).
      FileNotFoundError: the TFDS dataset is not prepared in ``data_dir`` (says how to).

    Example:
        >>> from jsnn import data
        >>> test = data.load({"name": "digits"}, "test")
        >>> images, labels = test.get([0, 1, 2])
        >>> len(test), images.shape, images.dtype, labels.dtype
        (360, (3, 8, 8, 1), dtype('float32'), dtype('int32'))
        >>> len(data.load({"name": "digits", "train_limit": 100}, "train"))
        100
    """
    cfg = read_config(config)
    if split not in SPLITS:
        raise ValueError(f"split: must be one of {SPLITS}, got {split!r}")
    limit = cfg.train_limit if split == "train" else cfg.test_limit
    ds = _load(cfg.name, split, cfg.data_dir, limit, cfg.image_size)
    if isinstance(ds, ArrayDataset) and ds.images.dtype != np.uint8:
        check_batch(ds.images, ds.labels, ds.info.num_classes, ds.info.image_shape)
    return ds


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` training examples in ``epoch``: a permutation seeded by (seed, epoch).

    Example:
        >>> import numpy as np
        >>> from jsnn.data import epoch_permutation
        >>> p = epoch_permutation(seed=0, epoch=1, n=10)
        >>> sorted(p.tolist()) == list(range(10)), bool(np.all(p == epoch_permutation(0, 1, 10)))
        (True, True)
        >>> bool(np.all(p == epoch_permutation(0, 2, 10)))  # a new order every epoch
        False
    """
    return np.random.default_rng([0, seed, epoch]).permutation(n)


def augment_rng(seed: int, step: int) -> np.random.Generator:
    """The augmentation generator of training step ``step`` (seeded by (seed, step)).

    Example:
        >>> from jsnn.data import augment_rng
        >>> augment_rng(0, 5).random() == augment_rng(0, 5).random() != augment_rng(0, 6).random()
        True
    """
    return np.random.default_rng([1, seed, step])


def train_batches(config, seed: int, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Infinite training batches, from step ``start_step`` on.

    Each epoch visits ``⌊N / batch_size⌋`` full batches of :func:`epoch_permutation`
    (the last ``N mod batch_size`` examples of that epoch's order are dropped, so every batch
    has the same shape). Batch ``step`` is ``perm(seed, epoch)[i·B:(i+1)·B]`` with
    ``epoch, i = divmod(step, steps_per_epoch)``, augmented (crop → flip → Cutout) with
    :func:`augment_rng` ``(seed, step)``. Hence starting at step k reproduces an
    uninterrupted run's batches k, k+1, ... exactly.

    Example:
        >>> import itertools, numpy as np
        >>> from jsnn import data
        >>> cfg = {"name": "digits", "batch_size": 32, "crop_padding": 1, "cutout": 2}
        >>> run = list(itertools.islice(data.train_batches(cfg, seed=0), 3))
        >>> run[0]["image"].shape, run[0]["label"].shape
        ((32, 8, 8, 1), (32,))
        >>> resumed = next(data.train_batches(cfg, seed=0, start_step=2))  # e.g. after a checkpoint
        >>> all(np.array_equal(resumed[k], run[2][k]) for k in ("image", "label"))
        True
    """
    cfg = read_config(config)
    seed = check_int(seed, "seed", 0)
    start_step = check_int(start_step, "start_step", 0)
    ds = load(cfg, "train")
    n, bs = len(ds), cfg.batch_size
    if bs > n:
        raise ValueError(f"data.batch_size: {bs} exceeds the {n} training examples of {cfg.name} "
                         f"(train_limit={cfg.train_limit})")
    return _train_iter(ds, cfg, seed, start_step, n // bs)


def _train_iter(ds, cfg: DataConfig, seed: int, step: int, steps_per_epoch: int):
    bs = cfg.batch_size
    epoch_cached, perm = -1, None
    while True:
        epoch, i = divmod(step, steps_per_epoch)
        if epoch != epoch_cached:
            epoch_cached, perm = epoch, epoch_permutation(seed, epoch, len(ds))
        images, labels = ds.get(perm[i * bs:(i + 1) * bs])
        images = augment.augment(augment_rng(seed, step), images, crop_padding=cfg.crop_padding,
                                 flip=cfg.flip, cutout_size=cfg.cutout)
        yield {"image": images, "label": labels}
        step += 1


def steps_per_epoch(config) -> int:
    """Training batches per epoch: ``⌊N_train / batch_size⌋`` (``train_limit`` applied).

    Example:
        >>> from jsnn import data
        >>> data.steps_per_epoch({"name": "digits", "batch_size": 32})  # ⌊1437 / 32⌋
        44
        >>> data.steps_per_epoch({"name": "cifar10", "batch_size": 128, "train_limit": 1000})
        7
    """
    cfg = read_config(config)
    n = min(info(cfg.name, cfg.image_size).train_size, cfg.train_limit or math.inf)
    return int(n // cfg.batch_size)


def eval_batches(config, split: str = "test", batch_size: int | None = None,
                 limit: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Finite, deterministic batches of ``split`` in dataset order, without augmentation.

    ``batch_size`` defaults to ``eval_batch_size`` (then ``batch_size``); ``limit`` keeps the
    first ``limit`` examples (after ``*_limit``). The LAST BATCH IS SMALLER when the count is not
    a multiple of the batch size (no padding, no mask): a jitted eval step compiles once more
    for it.

    Example:
        >>> from jsnn import data
        >>> [len(b["label"]) for b in data.eval_batches({"name": "digits"}, batch_size=100)]  # 360 test images
        [100, 100, 100, 60]
    """
    cfg = read_config(config)
    bs = batch_size if batch_size is not None else (cfg.eval_batch_size or cfg.batch_size)
    bs = check_int(bs, "batch_size" if batch_size is not None else "data.eval_batch_size", 1)
    limit = check_int(limit, "limit", 1, allow_none=True)
    ds = load(cfg, split)
    n = len(ds) if limit is None else min(limit, len(ds))
    return _eval_iter(ds, n, bs)


def eval_arrays(config, split: str = "test", batch_size: int | None = None, limit: int | None = None, *,
                field: str = "split") -> tuple[np.ndarray, np.ndarray]:
    """:func:`eval_batches` concatenated: ``(images float32 [N, H, W, C], labels int32 [N])``.

    Raises ``ValueError`` naming ``field`` (the caller's name for ``split``) if the split is empty.

    Example:
        >>> from jsnn import data
        >>> images, labels = data.eval_arrays({"name": "digits"}, "test", limit=5)
        >>> images.shape, images.dtype, labels.dtype
        ((5, 8, 8, 1), dtype('float32'), dtype('int32'))
    """
    images, labels = [], []
    for batch in eval_batches(config, split=split, batch_size=batch_size, limit=limit):
        images.append(np.asarray(batch["image"], np.float32))
        labels.append(np.asarray(batch["label"], np.int32))
    if not images:
        raise ValueError(f"{field}: {split!r} holds no images")
    return np.concatenate(images), np.concatenate(labels)


def _eval_iter(ds, n: int, bs: int):
    for start in range(0, n, bs):
        images, labels = ds.get(np.arange(start, min(start + bs, n)))
        yield {"image": images, "label": labels}


__all__ = [
    "DATASETS", "SPLITS", "DatasetInfo", "DataConfig", "ArrayDataset", "StreamDataset",
    "info", "read_config", "load", "clear_cache", "check_batch", "train_batches", "eval_batches", "eval_arrays",
    "epoch_permutation", "augment_rng", "steps_per_epoch", "augment", "digits",
]
