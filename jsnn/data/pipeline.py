"""Random-access splits (:func:`load`) and the batch iterators built on them.

Batches are dicts ``{'image': float32 [B, H, W, C] in [0, 1], 'label': int32 [B]}`` (NHWC, pixel
space; normalization happens inside the model); event datasets give ``'image'`` as frames
``[B, T, H, W, 2]`` (see :mod:`jsnn.data.events`).

Determinism: the epoch permutation comes from ``(seed, epoch)`` and the augmentation draws
from ``(seed, step)``, so ``train_batches(cfg, seed, start_step=k)`` yields exactly the batches
an uninterrupted run yields from step ``k`` on (resume after a checkpoint).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator

import numpy as np

from jsnn.config import check_int
from jsnn.data import augment, digits, event_digits
from jsnn.data import events as events_lib
from jsnn.data import tfds as tfds_lib
from jsnn.data.info import (_STREAMED, _TFDS_SPLIT, SPLITS, DataConfig, DatasetInfo, check_batch, info,
                            read_config)

def _to_unit_float(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)  # correctly rounded k/255
    return images.astype(np.float32, copy=False)


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A split held in memory.

    Attributes:
      images: ``[N, H, W, C]`` storage: float32 in [0, 1] (digits) or uint8 in 0..255 (TFDS);
        float32 frames ``[N, T, H, W, 2]`` (event digits).
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
    """A split read from prepared files per batch (ImageNet; tonic event datasets, binned per batch)."""

    name: str
    split: str
    source: tfds_lib.ImageSource | events_lib.EventSource
    info: DatasetInfo

    def __len__(self) -> int:
        return len(self.source)

    def get(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 [n, *info.image_shape] in [0, 1], int32 [n])`` of the examples at ``indices``."""
        images, labels = self.source.get(indices)
        images, labels = _to_unit_float(images), labels.astype(np.int32)
        check_batch(images, labels, self.info.num_classes, self.info.image_shape)
        return images, labels


@functools.lru_cache(maxsize=6)
def _load(name: str, split: str, data_dir, limit, image_size, events=None):
    meta = info(name, image_size, events)
    if name == "event_digits":
        frames, labels = event_digits.load(split, events)
        if limit is not None:
            frames, labels = frames[:limit], labels[:limit]
        return ArrayDataset(name, split, frames, labels, meta)
    if name in events_lib.SOURCES:
        return StreamDataset(name, split, events_lib.EventSource(name, split, data_dir, events, limit), meta)
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
      FileNotFoundError: the TFDS or tonic dataset is not prepared in ``data_dir`` (says how to).

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
    ds = _load(cfg.name, split, cfg.data_dir, limit, cfg.image_size, cfg.events)
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
    n = min(info(cfg.name, cfg.image_size, cfg.events).train_size, cfg.train_limit or math.inf)
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
    """:func:`eval_batches` concatenated: ``(images float32 [N, *image_shape], labels int32 [N])``.

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
