"""Running records: batches (padded, sharded over devices), record keys, progress, per-record resume.

Keys: record key = ``fold_in(PRNGKey(seed), crc32(name))``; batch ``b`` of ``batch_size``
images uses ``fold_in(record key, b)``; the last batch is padded by repeating its last image (one
compile per attack). A record is reused on a rerun iff :func:`reusable`: same attack and
settings, and measured on the same model (checkpoint step and parameter fingerprint).

Example:
    >>> import numpy as np
    >>> from jsnn.evaluate import runner
    >>> [(idx.tolist(), padded.tolist()) for idx, padded in runner.batches(5, 3)]
    [([0, 1, 2], [0, 1, 2]), ([3, 4], [3, 4, 4])]
    >>> old = {"attack": "pgd", "settings": {"steps": 10}, "accuracy": 0.5, "checkpoint_step": 100,
    ...        "fingerprint": "ab12"}
    >>> new = {"attack": "pgd", "settings": {"steps": 10}}
    >>> runner.reusable(old, new, {"checkpoint_step": 100, "fingerprint": "ab12"})
    True
    >>> runner.reusable(old, new, {"checkpoint_step": 200, "fingerprint": "cd34"})  # the run trained on
    False
"""

from __future__ import annotations

import math
import time
import zlib
from typing import Any, Dict, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jsnn import attacks, parallel
from jsnn.evaluate import suite

KEYS = ("record key = fold_in(PRNGKey(seed), crc32(name)); batch b of batch_size images uses fold_in(record key, b), "
        "split into (attack key, judgement key); the last batch is padded by repeating its last image; an AutoAttack "
        "stage listed in the record's settings.stages_from uses that record's batch keys (and its outcome)")


def is_stochastic(model, fn, x) -> bool:
    """The model says so (``SpikingModel.stochastic``), or its logits change with the key."""
    if getattr(model, "stochastic", False):
        return True
    a = jax.jit(fn)(x, jax.random.PRNGKey(1))
    b = jax.jit(fn)(x, jax.random.PRNGKey(2))
    return not bool(jnp.array_equal(a, b))


def record_key(seed: int, name: str):
    """The key of record ``name``: ``fold_in(PRNGKey(seed), crc32(name))``."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def batches(n: int, bs: int):
    """``(indices, padded indices)`` of each batch; the last is padded with its last index."""
    for start in range(0, n, bs):
        idx = np.arange(start, min(start + bs, n))
        yield idx, np.concatenate([idx, np.full(bs - len(idx), idx[-1])])


def reusable(old: Optional[Mapping], new: Mapping, stamp: Mapping) -> bool:
    """A previous record can stand for ``new``: it finished, with the same attack and settings, on the model
    ``stamp`` names (every key of ``stamp``, e.g. checkpoint step, fingerprint, transfer source)."""
    return (isinstance(old, Mapping) and "accuracy" in old and old.get("attack") == new["attack"]
            and old.get("settings") == new["settings"] and all(old.get(k) == v for k, v in stamp.items()))


def stage_sources(records) -> set:
    """Names of the records whose per-batch outcome an AutoAttack record reuses (``settings.stages_from``)."""
    return {n for r in records for n in r["settings"].get("stages_from", {}).values()}


def _stages(rec, b: int, memo: Mapping):
    """Batch ``b``'s AutoAttack stages run by other records: their batch key, and their outcome when in ``memo``."""
    s = rec["settings"]
    out = {}
    for stage, name in s.get("stages_from", {}).items():
        x_adv, fooled = memo.get((name, b), (None, None))
        out[stage] = attacks.AutoAttackStage(jax.random.fold_in(record_key(s["seed"], name), b), x_adv, fooled)
    return out


def run_record(rec: Dict[str, Any], target: suite.Target, images, labels, *, mesh=None, index: int = 1,
               total: int = 1, memo: Optional[Dict] = None, keep: bool = False) -> Dict[str, Any]:
    """Runs record ``rec`` over every batch; returns it with ``accuracy`` (mean over examples and draws),
    ``accuracy_all_draws`` (correct in every draw), ``num_examples``, ``seconds`` and its kind's extras.

    ``memo`` (one evaluation's): with ``keep``, each batch's ``(x_adv, fooled)`` is stored there under
    ``(name, b)``; a record with ``settings.stages_from`` takes its sources' entries (AutoAttack's stages).
    """
    s = rec["settings"]
    key, n, bs, draws = record_key(s["seed"], rec["name"]), len(labels), s["batch_size"], s["draws"]
    hits = np.zeros(n, np.int64)
    extras: Dict[str, list] = {}
    memo = {} if memo is None else memo
    t0, nb = time.time(), math.ceil(n / bs)
    for b, (idx, padded) in enumerate(batches(n, bs)):
        xb, yb = images[padded], labels[padded]
        xb, yb = (jnp.asarray(xb), jnp.asarray(yb)) if mesh is None else parallel.shard_batch((xb, yb), mesh)
        t = target._replace(stages=_stages(rec, b, memo)) if s.get("stages_from") else target
        h, extra = suite.run_batch(rec, t, xb, yb, jax.random.fold_in(key, b))
        x_adv = extra.pop("x_adv", None)
        if keep and x_adv is not None:
            memo[(rec["name"], b)] = (np.asarray(x_adv), 2 * np.asarray(h) <= draws)  # fooled: at most half correct
        hits[idx] = np.asarray(h)[: len(idx)]
        for k, v in extra.items():
            extras.setdefault(k, []).append(np.asarray(v)[..., : len(idx)])
        done, el = int(idx[-1]) + 1, time.time() - t0
        logging.info("[%d/%d] %s: batch %d/%d, accuracy so far %.4f, %.1fs, ETA %.0fs", index, total, rec["name"],
                     b + 1, nb, hits[:done].sum() / (draws * done), el, el / done * (n - done))
    out = {k: v for k, v in rec.items() if k != "skip"}
    out.update(accuracy=float(hits.sum() / (draws * n)), accuracy_all_draws=float(np.mean(hits == draws)),
               num_examples=n, seconds=time.time() - t0)
    out.update(suite.summarize(rec, {k: np.concatenate(v, axis=-1) for k, v in extras.items()}))
    return out
