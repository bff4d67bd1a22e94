"""Host-side image augmentation in numpy, vectorized over the batch.

Every op takes a seeded ``np.random.Generator`` and a batch of NHWC images and returns a
new array of the same shape and dtype (the input is never modified). :func:`augment` also takes
event frames ``[B, T, H, W, C]``: each example's T frames get the same crop, flip and Cutout (a
translation, mirror or occlusion of the whole recording), and frame values stay multiples of the
event quantum (crops shift zeros in, Cutout writes zeros). The pipeline in
:mod:`jsnn.data` seeds the generator from ``(seed, step)`` so a resumed run draws the same
augmentation as an uninterrupted one.

References: random crop with zero padding and horizontal flip as in He et al. 2016
("Deep Residual Learning for Image Recognition", CIFAR setting); Cutout from DeVries &
Taylor 2017 ("Improved Regularization of Convolutional Neural Networks with Cutout").
"""

from __future__ import annotations

import numpy as np


def _check_images(images: np.ndarray, fn: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{fn}: images must be NHWC of rank 4, got shape {images.shape}")
    return images


def _check_size(value, field: str, fn: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{fn}: {field} must be an integer >= 0, got {value!r}")
    return int(value)


def random_crop(rng: np.random.Generator, images: np.ndarray, pad: int) -> np.ndarray:
    """Random ``H×W`` crop of each image zero-padded by ``pad`` pixels on every side.

    ``out[b, i, j] = padded[b, i + oy_b, j + ox_b]`` with offsets ``oy_b, ox_b ~ U{0, …, 2·pad}``,
    i.e. each image is shifted by ``(pad − oy_b, pad − ox_b)`` with zeros shifted in.
    ``pad = 0`` returns a copy.

    Example:
        >>> import numpy as np
        >>> from jsnn.data.augment import random_crop
        >>> x = np.ones((5, 4, 4, 1), np.float32)
        >>> y = random_crop(np.random.default_rng(0), x, pad=1)  # shifts of at most one pixel
        >>> y.shape, y.dtype, bool(np.all((y.sum((1, 2, 3)) >= 9) & (y.sum((1, 2, 3)) <= 16)))
        ((5, 4, 4, 1), dtype('float32'), True)
    """
    images = _check_images(images, "random_crop")
    pad = _check_size(pad, "pad", "random_crop")
    b, h, w, _ = images.shape
    if pad == 0 or b == 0:
        return images.copy()
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oy = rng.integers(0, 2 * pad + 1, size=b)
    ox = rng.integers(0, 2 * pad + 1, size=b)
    rows = oy[:, None] + np.arange(h)[None, :]  # [B, H]
    cols = ox[:, None] + np.arange(w)[None, :]  # [B, W]
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_flip(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """Mirrors each image left–right (along W) independently with probability 1/2.

    Example:
        >>> import numpy as np
        >>> from jsnn.data.augment import random_flip
        >>> x = np.arange(24.0).reshape(8, 1, 3, 1)
        >>> y = random_flip(np.random.default_rng(0), x)
        >>> all(np.array_equal(y[i], x[i]) or np.array_equal(y[i], x[i, :, ::-1]) for i in range(8))
        True
        >>> 0 < sum(not np.array_equal(y[i], x[i]) for i in range(8)) < 8  # some mirrored, some not
        True
    """
    images = _check_images(images, "random_flip")
    flip = rng.random(images.shape[0]) < 0.5
    return np.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def cutout(rng: np.random.Generator, images: np.ndarray, size: int) -> np.ndarray:
    """Zeroes one ``size×size`` square per image, centred uniformly and clipped to the image.

    Centre ``(cy, cx) ~ U{0..H−1} × U{0..W−1}``; the square covers rows
    ``[cy − size//2, cy − size//2 + size) ∩ [0, H)`` (columns alike), so near a border only
    the part inside the image is erased (DeVries & Taylor 2017). ``size = 0`` returns a copy.

    Example:
        >>> import numpy as np
        >>> from jsnn.data.augment import cutout
        >>> x = np.ones((6, 8, 8, 1), np.float32)
        >>> erased = (cutout(np.random.default_rng(0), x, size=4) == 0).sum((1, 2, 3))
        >>> bool(np.all((erased >= 4) & (erased <= 16))), float(x.min())  # 2×2 (corner) to 4×4; x kept
        (True, 1.0)
    """
    images = _check_images(images, "cutout")
    size = _check_size(size, "size", "cutout")
    b, h, w, _ = images.shape
    if size == 0 or b == 0:
        return images.copy()
    cy = rng.integers(0, h, size=b)
    cx = rng.integers(0, w, size=b)
    y0, x0 = cy - size // 2, cx - size // 2
    ys, xs = np.arange(h)[None, :], np.arange(w)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < y0[:, None] + size)  # [B, H]
    in_x = (xs >= x0[:, None]) & (xs < x0[:, None] + size)  # [B, W]
    erase = in_y[:, :, None] & in_x[:, None, :]  # [B, H, W]
    return np.where(erase[..., None], np.zeros((), images.dtype), images)


def augment(rng: np.random.Generator, images: np.ndarray, *, crop_padding: int = 0,
            flip: bool = False, cutout_size: int = 0) -> np.ndarray:
    """Crop (if ``crop_padding``) → flip (if ``flip``) → Cutout (if ``cutout_size``), in that order.

    ``images`` are NHWC, or event frames ``[B, T, H, W, C]`` (one draw per example, applied to all
    its frames: T is folded into the channels).

    Example:
        >>> import numpy as np
        >>> from jsnn.data.augment import augment
        >>> x = np.random.default_rng(1).random((4, 8, 8, 3), dtype=np.float32)
        >>> y = augment(np.random.default_rng(0), x, crop_padding=2, flip=True, cutout_size=3)
        >>> y.shape, y.dtype, bool(np.any(y != x)), bool(np.all((y >= 0) & (y <= 1)))
        ((4, 8, 8, 3), dtype('float32'), True, True)
        >>> bool(np.array_equal(augment(np.random.default_rng(0), x), x))  # all off: unchanged
        True
        >>> f = np.ones((2, 3, 8, 8, 2), np.float32)  # event frames: the same Cutout in every frame
        >>> g = augment(np.random.default_rng(0), f, cutout_size=3)
        >>> g.shape, all(np.array_equal(g[b, 0], g[b, t]) for b in range(2) for t in range(3))
        ((2, 3, 8, 8, 2), True)
    """
    out = np.asarray(images)
    if out.ndim == 5:  # [B, T, H, W, C] → [B, H, W, T·C] → augment → back
        b, t, h, w, c = out.shape
        folded = out.transpose(0, 2, 3, 1, 4).reshape(b, h, w, t * c)
        folded = augment(rng, folded, crop_padding=crop_padding, flip=flip, cutout_size=cutout_size)
        return folded.reshape(b, h, w, t, c).transpose(0, 3, 1, 2, 4)
    if crop_padding:
        out = random_crop(rng, out, crop_padding)
    if flip:
        out = random_flip(rng, out)
    if cutout_size:
        out = cutout(rng, out, cutout_size)
    return out
