"""Compaction of the still-robust examples between targets and stages (host side, bucketed shapes).

AutoAttack's reference cascade (Croce & Hein 2020, ``autoattack/autoattack.py``) attacks, at
each stage and each target, only the examples nothing has broken yet. jsnn does the same on
the host between compiled calls: the active rows are gathered and padded (by repetition) to a
*bucket* size, a power of two or three quarters of one (:func:`bucket`), ≥ :data:`MIN_BUCKET` and
capped at the batch (or chunk) size, so an attack compiles for at most ``2⌈log₂(B / 8)⌉ + 1``
shapes however many examples are left.

Keys: a compacted attack draws its random numbers (random starts, Square's windows) for the
*whole* batch and gathers the active rows, so an example's random start does not depend on
which other examples are still active (deterministic models: the same per-example result as
the uncompacted call, up to floating-point effects of the smaller batch). The model's own noise
(stochastic models) is drawn for the compacted batch: same distribution, other draws.

Example:
    >>> import numpy as np
    >>> from jsnn.attacks import compact
    >>> [compact.bucket(n, 128) for n in (1, 8, 9, 40, 100, 128)]
    [8, 8, 12, 48, 128, 128]
    >>> active = np.array([True, False, True, True, False])
    >>> [(sel.tolist(), rows.tolist()) for sel, rows in compact.chunks(active, chunk=2)]
    [([0, 2], [0, 2]), ([3], [3, 3])]
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import jax
import numpy as np

MIN_BUCKET = 8


def bucket(n: int, full: int, step: Optional[int] = None) -> int:
    """The padded size of ``n`` active rows, capped at ``full``: the smallest ``2^k`` or ``3·2^(k−2)``
    (8, 12, 16, 24, 32, 48, …) ≥ max(n, 8), or, given ``step``, the smallest multiple of ``step`` ≥ n
    (finer: less padding, more shapes).

    The 3/4 steps between powers of two keep the bucket under 1.5× the rows, not 2×: with powers of
    two alone 87 robust rows of 128 still ran as 128. AutoAttack's components at ε = 0.1 on the
    default digits model, 128 images, one process: APGD-T 25.9 → 18.2 s, FAB-T 36.6 → 28.4 s,
    Square 57.3 → 44.3 s with its compaction every 250 iterations (``docs/attack_speed.md``).

    Example:
        >>> from jsnn.attacks import compact
        >>> [compact.bucket(n, 100, step=16) for n in (1, 16, 17, 40, 97)]
        [16, 16, 32, 48, 100]
    """
    if step is not None:
        return min(max(int(step), -(-int(n) // int(step)) * int(step)), int(full))
    power = max(MIN_BUCKET, 1 << max(int(n) - 1, 0).bit_length())
    if 3 * power // 4 >= max(int(n), MIN_BUCKET):
        power = 3 * power // 4
    return min(power, int(full))


def chunks(active, chunk: Optional[int] = None, step: Optional[int] = None) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """``(selected rows, padded rows)`` for the active rows, in chunks of at most ``chunk`` (default: all).

    ``padded rows`` repeats ``selected rows`` up to :func:`bucket` of its length (the batch, or
    ``chunk``, caps it; ``step`` as there); results of the padding rows are discarded by the caller.
    """
    active = np.asarray(active, bool)
    full = len(active) if chunk is None else min(int(chunk), len(active))
    sel = np.flatnonzero(active)
    for start in range(0, len(sel), max(full, 1)):
        s = sel[start:start + full]
        yield s, np.resize(s, bucket(len(s), full, step))



def check_active(active, batch: int):
    """Validates an ``active`` mask: ``None`` or booleans of shape ``[batch]`` (traced masks pass)."""
    if active is not None and not isinstance(active, jax.core.Tracer) and np.shape(active) != (batch,):
        raise ValueError(f"attack active: expected a boolean mask of shape ({batch},), got shape {np.shape(active)}")
    return active


def take(rows, *arrays):
    """``a[rows]`` for each array with a batch axis (``None`` and scalars pass through; ``rows=None``: all)."""
    if rows is None:
        return arrays if len(arrays) != 1 else arrays[0]
    out = tuple(a if a is None or np.ndim(a) == 0 else a[rows] for a in arrays)
    return out if len(out) != 1 else out[0]


def run(call, active, init, chunk: Optional[int] = None, step: Optional[int] = None):
    """Runs ``call(rows) -> pytree`` on the compacted active rows and scatters it into ``init``.

    ``init`` is a pytree of full-batch arrays (the value of the inactive rows); every leaf of
    ``call``'s result has the padded rows on its first axis. Returns numpy arrays.

    Example:
        >>> import numpy as np
        >>> from jsnn.attacks import compact
        >>> x = np.arange(5.0)
        >>> compact.run(lambda rows: 10 * x[rows], x > 2, np.zeros(5)).tolist()  # rows padded to 8
        [0.0, 0.0, 0.0, 30.0, 40.0]
    """
    out = jax.tree.map(np.array, init)
    leaves, tree = jax.tree_util.tree_flatten(out)
    for sel, rows in chunks(active, chunk, step):
        part = jax.tree_util.tree_leaves(call(rows))
        for leaf, p in zip(leaves, part):
            leaf[sel] = np.asarray(p)[:len(sel)]
    return jax.tree_util.tree_unflatten(tree, leaves)
