"""scikit-learn's bundled 8×8 handwritten digits (UCI optdigits test set), no network needed.

1797 images of 8×8 pixels with 17 grey levels (0..16), scaled to ``[0, 1]`` by ``x / 16``.
A fixed, seeded, stratified split gives 1437 train / 360 test examples; its seed is a module
constant, so the test set never depends on the run seed.
"""

from __future__ import annotations

import functools

import numpy as np

SPLIT_SEED = 0
TRAIN_SIZE = 1437
TEST_SIZE = 360
NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
SPLITS = ("train", "test")


@functools.cache
def _split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits  # lazy: sklearn is slow to import
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images.astype(np.float32) / 16.0).reshape(-1, *IMAGE_SHAPE)
    labels = data.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED)
    out = {"train": (x_tr, y_tr), "test": (x_te, y_te)}
    for arrays in out.values():
        for a in arrays:
            a.flags.writeable = False  # cached: shared by every caller
    return out


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``float32 [N, 8, 8, 1]`` in ``[0, 1]`` and labels ``int32 [N]`` of ``split``.

    The arrays are cached and read-only; copy them before modifying.

    Example:
        >>> import numpy as np
        >>> from jsnn.data import digits
        >>> x, y = digits.load("train")
        >>> x.shape, y.shape, float(x.min()), float(x.max()), bool(np.all(x * 16 == np.round(x * 16)))
        ((1437, 8, 8, 1), (1437,), 0.0, 1.0, True)
        >>> counts = np.bincount(digits.load("test")[1])  # stratified: about 36 per class
        >>> int(counts.sum()), bool(np.all(np.abs(counts - 36) <= 1))
        (360, True)
        >>> digits.load("val")
        Traceback (most recent call last):
        ValueError: digits: split must be one of ('train', 'test'), got 'val'
    """
    if split not in SPLITS:
        raise ValueError(f"digits: split must be one of {SPLITS}, got {split!r}")
    return _split()[split]


@functools.cache
def mean_std() -> tuple[tuple[float], tuple[float]]:
    """Per-channel pixel mean and std of the train split (computed once).

    Example:
        >>> from jsnn.data import digits
        >>> (mean,), (std,) = digits.mean_std()
        >>> round(mean, 4) == round(float(digits.load("train")[0].mean()), 4), round(mean, 2), round(std, 2)
        (True, 0.31, 0.38)
    """
    x, _ = load("train")
    return (float(x.mean()),), (float(x.std()),)
