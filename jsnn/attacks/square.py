"""Square attack: score-based black-box L∞ attack (Andriushchenko et al., ECCV 2020).

Reference: M. Andriushchenko, F. Croce, N. Flammarion, M. Hein, "Square Attack: a
query-efficient black-box adversarial attack via random search", arXiv 1912.00049, and its
AutoAttack implementation (``autoattack/square.py``), which this module follows:

* margin loss ``L(x) = z_y(x) − max_{i≠y} z_i(x)`` (minimised; ``≤ 0`` means fooled);
* initialisation with vertical stripes ``x + ε·u``, ``u ∈ {−1, 1}^{C×1×W}`` per example,
  clipped to ``[0, 1]``;
* at iteration ``i`` a square window of side ``s = max(round(√(p·H·W)), 1)`` at a uniform
  position gets ``x_best + 2ε·σ_c`` (``σ_c ∈ {−1, 1}`` per channel), projected to the ε-ball
  and ``[0, 1]``; the candidate is kept iff its margin is lower;
* ``p`` follows exactly the reference schedule: ``p_init`` halved at iterations
  10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of a 10000-query run, the iteration
  rescaled to ``int(i / n_queries · 10000)``;
* only not-yet-fooled examples are updated and charged queries.

Differences from the reference, all deliberate:

* the window position and signs are drawn per example (the reference shares them across
  the batch);
* the window's top-left corner is uniform on ``{0, …, H − s} × {0, …, W − s}``; the
  reference draws from ``[0, H − s)``, so after the initialisation it never changes the last
  row and column (15 of 64 pixels on 8×8 digits, where it then misses examples a linear
  model makes attackable);
* the search stops when every example is fooled (``lax.while_loop``); with concrete inputs it
  goes on every :data:`COMPACT_EVERY` iterations with the not-yet-fooled examples only, compacted
  (the reference queries only those at every iteration);
* the returned point is the clean image when no queried point has a lower margin than the
  clean one, so the margin of ``x_adv`` never exceeds the clean margin;
* queries count every score evaluation of an example, the clean one and the stripe
  initialisation included, so at most ``queries`` per example (the reference makes
  ``queries`` iterations after its initialisation).

Stochastic models: one *query* is the margin averaged over ``eot`` fresh draws of the
model's noise (``logits_fn(x, key)`` with independent keys); every query uses new keys, so
"fooled" means "fooled on average over ``eot`` draws at that query".
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jsnn.attacks import common, compact, losses
from jsnn.attacks.eot import check_eot, expectation
from jsnn.config import check_int

# Iterations (of a 10000-query run) after which p is halved; reference ``p_selection``.
_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_selection(i: int, n_queries: int, p_init: float = 0.8) -> float:
    """Fraction ``p`` of pixels changed at iteration ``i`` (reference schedule).

    ``p = p_init / 2^k`` where ``k`` counts the halving points ``{10, 50, 200, 500, 1000,
    2000, 4000, 6000, 8000}`` strictly below ``int(i / n_queries · 10000)``.

    Example:
        >>> from jsnn.attacks.square import p_selection
        >>> p_selection(0, 100), p_selection(50, 100)  # 50/100 · 10000 = 5000: 7 halvings
        (0.8, 0.00625)
    """
    it = int(i / n_queries * 10000)
    return p_init / 2 ** sum(it > h for h in _P_HALVINGS)


def square_sizes(n_queries: int, p_init: float, height: int, width: int) -> np.ndarray:
    """Side ``s_i = max(round(√(p_i · H · W)), 1)`` (capped to ``min(H, W)``) for each iteration.

    Example:
        >>> from jsnn.attacks.square import square_sizes
        >>> square_sizes(10, 0.8, 8, 8).tolist()  # √(0.8·64) ≈ 7, then p = 0.05: √3.2 ≈ 2, ...
        [7, 2, 1, 1, 1, 1, 1, 1]
    """
    n_iter = max(n_queries - 2, 0)
    sizes = [max(int(round(math.sqrt(p_selection(i, n_queries, p_init) * height * width))), 1)
             for i in range(n_iter)]
    return np.minimum(np.asarray(sizes, np.int32), min(height, width)).reshape(-1)


def margin(logits, y):
    """Margin ``z_y − max_{i≠y} z_i`` per example (minus the CW loss); ``≤ 0`` iff misclassified.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks.square import margin
        >>> margin(jnp.array([[3., 1., 0.], [0., 2., 1.]]), jnp.array([0, 0])).tolist()
        [2.0, -2.0]
    """
    return -losses.cw_margin(logits, y)


def _check(logits_fn, x, y, key, eps, queries, p_init, eot):
    x, y = common.check_inputs(x, y, key, logits_fn)
    if x.ndim != 4:
        raise ValueError(f"square x: expected images [B, H, W, C], got shape {x.shape}")
    common.check_eps(eps)
    check_int(queries, "queries", 2, where="attack ")
    if not 0 < p_init <= 1:
        raise ValueError(f"square p_init: must be in (0, 1], got {p_init!r}")
    check_eot(eot)
    return x, y


def square(logits_fn, x, y, key, *, eps, queries: int = 5000, p_init: float = 0.8, eot: int = 1,
           active=None, full_output: bool = False):
    """Square attack (L∞, margin loss): jitted ``lax.while_loop`` segments on the examples not yet fooled.

    Concrete inputs: the search runs in segments of :data:`COMPACT_EVERY` iterations, each on the
    still-unfooled (and ``active``) examples, compacted into bucketed batches
    (:mod:`~jsnn.attacks.compact`); traced inputs (inside a jit): one ``lax.while_loop`` on the whole
    batch. Both give the same per-example result (deterministic models: every draw of iteration i
    is made for the whole batch and gathered).

    Args:
      logits_fn: ``logits_fn(x, key) -> [B, K]`` logits (only scores are used: black box); a
        function or a ``jax.tree_util.Partial`` (see :func:`jsnn.attacks.common.as_partial`).
      x: clean images ``[B, H, W, C]`` in ``[0, 1]``.
      y: labels ``[B]``.
      key: PRNG key (window positions, signs, and the model's noise).
      eps: L∞ radius.
      queries: query budget per example (clean and initial queries included); 5000 in
        AutoAttack "standard".
      p_init: initial fraction of changed pixels (0.8 for L∞ in the reference).
      eot: noise draws averaged per query (stochastic models; 1 for deterministic ones).
      active: optional boolean ``[B]``: attack only these examples (the others come back as ``x``,
        0 queries); concrete inputs are compacted into bucketed batches, every random draw made for
        the whole batch (:mod:`~jsnn.attacks.compact`), so an example's windows do not depend on the others.
      full_output: also return ``{"queries": [B] int32, "margin": [B]}`` (score of ``x_adv``).

    Returns:
      ``x_adv`` in the ε-ball around ``x`` and in ``[0, 1]`` (and the info dict).

    Example:
        A 2-class linear model on 2×2 images; the best margin in the ball is ``margin − 4ε``
        (the corner), −0.2 for the first image and 1.0 for the second, which stays robust
        and uses the whole budget:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import square
        >>> W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])
        >>> logits_fn = lambda x, key: x.reshape(x.shape[0], -1) @ W
        >>> x = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]).reshape(2, 2, 2, 1)
        >>> x_adv, info = square(logits_fn, x, jnp.array([0, 0]), jax.random.key(0), eps=0.15,
        ...                      queries=20, full_output=True)
        >>> [round(m, 3) for m in info["margin"].tolist()], int(info["queries"][1])
        ([-0.2, 1.0], 20)
        >>> bool(jnp.all(jnp.abs(x_adv - x) <= 0.15 + 1e-6))
        True
    """
    x, y = _check(logits_fn, x, y, key, eps, queries, p_init, eot)
    fn, eps = common.as_partial(logits_fn), jnp.asarray(eps, x.dtype)
    kw = dict(n_queries=queries, p_init=float(p_init), eot=eot)
    compact.check_active(active, x.shape[0])
    if common._concrete((x, y, key, eps, active)):
        todo = np.ones(x.shape[0], bool) if active is None else np.asarray(active, bool)
        x_adv, used, best = map(jnp.asarray, _square_compacted(fn, x, y, key, eps, todo, **kw))
    else:
        x_adv, used, best = _square(fn, x, y, key, eps, **kw)
        if active is not None:
            a = jnp.asarray(active, bool)
            x_adv = jnp.where(a[:, None, None, None], x_adv, x)
            used, best = jnp.where(a, used, 0), jnp.where(a, best, jnp.inf)
    if full_output:
        return x_adv, {"queries": used, "margin": best}
    return x_adv


COMPACT_EVERY = 250  # Square iterations between compactions of the still-robust examples (host mode)


def _keys(key):
    """``(clean, stripes, init, loop)`` keys of a run, the same in both modes."""
    return jax.random.split(key, 4)


def _sign(k, shape, dtype):
    return jnp.where(jax.random.bernoulli(k, 0.5, shape), 1.0, -1.0).astype(dtype)


def _score(logits_fn, y, eot):
    return lambda xq, k: expectation(lambda xx, kk: margin(logits_fn(xx, kk), y), xq, k, samples=eot)


def _start(logits_fn, x, y, key, eps, rows, eot):
    """Clean and stripe-initialisation queries on ``x[rows]`` (all if None): ``(x_best, m_best, queries, m_clean)``."""
    N, _, W, C = x.shape  # N: the whole batch, for the random draws
    k_clean, k_stripes, k_init, _ = _keys(key)
    x, y, stripes = compact.take(rows, x, y, _sign(k_stripes, (N, 1, W, C), x.dtype))
    score = _score(logits_fn, y, eot)
    m_clean = score(x, k_clean)
    attack = m_clean > 0  # only correctly classified examples are attacked
    x_init = jnp.clip(x + eps * stripes, 0.0, 1.0)
    m_init = score(x_init, k_init)
    x_best = jnp.where(attack[:, None, None, None], x_init, x)
    m_best = jnp.where(attack, m_init, m_clean)
    return x_best, m_best, 1 + attack.astype(jnp.int32), m_clean


def _iterate(logits_fn, x, y, key, eps, rows, state, first, stop, *, n_queries, p_init, eot):
    """Iterations ``first ≤ i < stop`` of the search on ``x[rows]`` from ``state = (x_best, m_best, queries)``
    (rows already taken); it stops early when every example is fooled. Every draw of iteration i is made
    for the whole batch from ``fold_in(loop key, i)`` and gathered, so where it is cut does not matter."""
    N, H, W, C = x.shape
    sizes = jnp.asarray(square_sizes(n_queries, p_init, H, W))
    stop = jnp.minimum(stop, sizes.shape[0])
    k_loop = _keys(key)[3]
    x, y = compact.take(rows, x, y)
    score = _score(logits_fn, y, eot)
    lo, hi = jnp.clip(x - eps, 0.0, 1.0), jnp.clip(x + eps, 0.0, 1.0)
    r_idx, c_idx = jnp.arange(H), jnp.arange(W)

    def cond(carry):
        i, _, m, _ = carry
        return (i < stop) & jnp.any(m > 0)

    def body(carry):
        i, x_best, m_best, queries = carry
        active = m_best > 0
        s = sizes[i]
        k_h, k_w, k_s, k_m = jax.random.split(jax.random.fold_in(k_loop, i), 4)
        vh, vw, sg = compact.take(rows, jax.random.randint(k_h, (N, 1), 0, H - s + 1),
                                  jax.random.randint(k_w, (N, 1), 0, W - s + 1), _sign(k_s, (N, 1, 1, C), x.dtype))
        in_h = (r_idx >= vh) & (r_idx < vh + s)
        in_w = (c_idx >= vw) & (c_idx < vw + s)
        window = in_h[:, :, None, None] & in_w[:, None, :, None]
        delta = jnp.where(window, 2.0 * eps * sg, 0.0)
        x_new = jnp.clip(x_best + delta, lo, hi)
        m_new = score(x_new, k_m)
        better = active & (m_new < m_best)
        x_best = jnp.where(better[:, None, None, None], x_new, x_best)
        m_best = jnp.where(better, m_new, m_best)
        return i + 1, x_best, m_best, queries + active.astype(jnp.int32)

    _, *state = jax.lax.while_loop(cond, body, (jnp.asarray(first, jnp.int32), *state))
    return tuple(state)


def _finish(x, x_best, m_best, m_clean):
    """The clean image where no query beat it: ``(x_adv, margin)``."""
    keep_clean = m_clean <= m_best
    return jnp.where(keep_clean[:, None, None, None], x, x_best), jnp.minimum(m_best, m_clean)


@functools.partial(jax.jit, static_argnames=("n_queries", "p_init", "eot"))
def _square(logits_fn, x, y, key, eps, *, n_queries, p_init, eot):
    """The whole search in one jitted ``lax.while_loop`` on the whole batch (traced inputs)."""
    x_best, m_best, queries, m_clean = _start(logits_fn, x, y, key, eps, None, eot)
    x_best, m_best, queries = _iterate(logits_fn, x, y, key, eps, None, (x_best, m_best, queries), 0, n_queries,
                                       n_queries=n_queries, p_init=p_init, eot=eot)
    x_adv, best = _finish(x, x_best, m_best, m_clean)
    return x_adv, queries, best


_start_rows = jax.jit(_start, static_argnames=("eot",))
_iterate_rows = jax.jit(_iterate, static_argnames=("n_queries", "p_init", "eot"))


def _square_compacted(logits_fn, x, y, key, eps, todo, *, n_queries, p_init, eot):
    """Host mode: every :data:`COMPACT_EVERY` iterations the search goes on with the examples still not
    fooled only, compacted into bucketed batches (as the reference, which queries only those). Per
    example the same draws and the same result as :func:`_square` (deterministic models)."""
    B = x.shape[0]
    init = (np.asarray(x), np.full(B, np.inf, x.dtype), np.zeros(B, np.int32), np.full(B, np.inf, x.dtype))
    x_best, m_best, queries, m_clean = compact.run(
        lambda rows: _start_rows(logits_fn, x, y, key, eps, rows, eot), todo, init)
    n_iter = len(square_sizes(n_queries, p_init, x.shape[1], x.shape[2]))
    for first in range(0, n_iter, COMPACT_EVERY):
        todo = todo & (m_best > 0)
        if not todo.any():
            break
        state = (x_best, m_best, queries)
        x_best, m_best, queries = compact.run(
            lambda rows: _iterate_rows(logits_fn, x, y, key, eps, rows, tuple(a[rows] for a in state), first,
                                       first + COMPACT_EVERY, n_queries=n_queries, p_init=p_init, eot=eot),
            todo, state)
    x_adv, best = _finish(np.asarray(x), x_best, m_best, m_clean)
    return x_adv, queries, best
