"""Datasets for training, evaluation and certification, behind one small interface.

* :data:`DATASETS`, :func:`info` — names and static facts (classes, shape, normalization).
* :func:`load` — one split as a random-access dataset (``len``, ``get(indices)``).
* :func:`train_batches` — infinite, shuffled, augmented batches that can start at any step.
* :func:`eval_batches` — finite, in-order batches; the last one may be smaller.
* :func:`check_batch` — the validation every batch passes (training calls it too).

Batches are dicts ``{'image': float32 [B, H, W, C] in [0, 1], 'label': int32 [B]}`` (NHWC,
pixel space; normalization happens inside the model). Event datasets (``event_digits``,
``nmnist``, ``dvsgesture``, ``cifar10dvs``) give frames ``[B, T, H, W, 2]`` instead; their contract
and binning options (``config.data.events``) are in :mod:`jsnn.data.events`.

Modules: :mod:`~jsnn.data.info` (names, facts, config, batch checks), :mod:`~jsnn.data.pipeline`
(splits and batches), :mod:`~jsnn.data.digits`, :mod:`~jsnn.data.tfds`, :mod:`~jsnn.data.events`,
:mod:`~jsnn.data.event_digits`, :mod:`~jsnn.data.augment`.

``data_config`` is an ``ml_collections.ConfigDict`` (or any object with attributes, or a
mapping) with fields ``name``, ``data_dir`` (None: TFDS default), ``batch_size``,
``eval_batch_size`` (None: ``batch_size``), ``crop_padding`` (0 = off), ``flip`` (bool),
``cutout`` (0 = off), ``image_size`` (ImageNet only; None: 64), ``train_limit`` /
``test_limit`` (None = all), ``events`` (event datasets only). Missing optional fields take these
defaults.

Determinism: the epoch permutation comes from ``(seed, epoch)`` and the augmentation draws
from ``(seed, step)``, so ``train_batches(cfg, seed, start_step=k)`` yields exactly the batches
an uninterrupted run yields from step ``k`` on (resume after a checkpoint).

Example:
    >>> from jsnn import data
    >>> batch = next(data.train_batches({"name": "digits", "batch_size": 4}, seed=0))
    >>> batch["image"].shape, batch["label"].shape
    ((4, 8, 8, 1), (4,))
    >>> frames = next(data.eval_batches({"name": "event_digits", "events": {"frames": 6}}, batch_size=4))
    >>> frames["image"].shape  # [B, T, H, W, (OFF, ON)]
    (4, 6, 10, 10, 2)
"""

from jsnn.data import augment, digits, event_digits, events
from jsnn.data import tfds as tfds_lib
from jsnn.data.info import (DATASETS, DEFAULT_IMAGENET_SIZE, EVENT_DATASETS, IMAGE_DATASETS, SPLITS, DataConfig,
                            DatasetInfo, check_batch, info, read_config)
from jsnn.data.pipeline import (ArrayDataset, StreamDataset, augment_rng, clear_cache, epoch_permutation,
                                eval_arrays, eval_batches, load, steps_per_epoch, train_batches)

__all__ = [
    "DATASETS", "IMAGE_DATASETS", "EVENT_DATASETS", "SPLITS", "DEFAULT_IMAGENET_SIZE", "DatasetInfo", "DataConfig",
    "ArrayDataset", "StreamDataset", "info", "read_config", "load", "clear_cache", "check_batch", "train_batches",
    "eval_batches", "eval_arrays", "epoch_permutation", "augment_rng", "steps_per_epoch", "augment", "digits",
    "events", "event_digits",
]
