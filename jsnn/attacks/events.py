"""Event-space attacks: add or remove events of binned event frames under a budget of k events (L0).

Event frames ``x`` ``[B, T, H, W, 2]`` (any ``[B, ...]`` works) hold per-bin event counts clipped
to ``m = max_count`` and divided by m, so every value lies on the lattice ``{0, 1/m, ..., 1}`` and one
event is one quantum ``1/m``. With counts ``c = m·x`` and clean counts ``c⁰``, the threat model is

    S_k(x) = { x' = c'/m : c' ∈ {0, …, m}^D,  Σ_i |c'_i − c⁰_i| ≤ k }

— the adversarial input is again a valid event-frame tensor that differs from the clean one by at
most k added or removed events. (Frame-space L∞ / L2 PGD, the threat model the event-robustness
papers report, is :func:`jsnn.attacks.pgd` on the same frames: it works on any rank and clips to
[0, 1], but its output is off the lattice.)

:func:`event_attack` — gradient-guided greedy search (first-order, in the spirit of the
gradient-to-spike conversion of Liang et al. 2021, "Exploring adversarial attack in spiking neural
networks with spike-compatible gradient", IEEE TNNLS, and of the generation–reduction sparse
dynamic attack of Lun et al. 2025, "Towards effective and sparse adversarial attack on spiking
neural networks via breaking invisible surrogate gradients", CVPR). At iterate cⁿ, with the EOT
loss gradient g = ∇ₓ ℓ(cⁿ/m), the first-order gain of one event at cell i in direction
``dᵢ = sign(gᵢ)`` is ``|gᵢ|/m``. Each step

1. *reduces*: cells already moved against their gradient (``dᵢ·(cⁿᵢ − c⁰ᵢ) < 0``) go back to c⁰ᵢ
   (a positive first-order gain that also refunds budget);
2. *generates*: ``nₜ = min(per_step, k − Σ|c − c⁰|)`` events go to the cells of largest ``|gᵢ|``,
   each cell taking up to its feasible capacity (``m − cᵢ`` for additions, ``cᵢ`` for removals),
   filled in order of gain (a sort and a cumulative sum: the exact maximiser of the linearised
   loss over nₜ events).

``per_step`` defaults to ``⌈k / ⌈steps/2⌉⌉`` so the budget is spent in the first half of the
steps and the second half swaps events (reduce, then regenerate). Every iterate is scored and the
best kept per example (a misclassified point beats a higher loss, as in every jsnn attack);
restarts after the first start from ``⌈k/2⌉`` random events. On a linear model (fixed gradient)
the greedy reaches the optimum of ``S_k`` exactly (tested against brute force).

:func:`random_events` — the sanity baseline with the same budget: k distinct random cells, each
moved by one event in a random feasible direction; the best of ``restarts`` draws is kept. A
gradient-guided attack weaker than this baseline points to masked gradients
(:mod:`jsnn.evaluate.sanity` flags it).

Example:
    A linear model on 1×2×2 binary frames (m = 1): class 0's logit is 2.5, class 1's is ``w·x``,
    −1 at the clean point. One event (the largest gain, +3) is not enough; two (+3, +2) flip it:

    >>> import jax, jax.numpy as jnp
    >>> from jsnn.attacks import events
    >>> w = jnp.array([3., -1., 0.5, 2.])
    >>> logits_fn = lambda x, key: jnp.stack([jnp.full(x.shape[0], 2.5), x.reshape(len(x), -1) @ w], -1)
    >>> x, y = jnp.array([[[[0., 1.], [0., 0.]]]]), jnp.array([0])
    >>> for k in (1, 2):
    ...     x_adv = events.event_attack(logits_fn, x, y, jax.random.key(0), budget=k, max_count=1)
    ...     print(k, x_adv.reshape(-1).tolist(), events.changed_events(x_adv, x, 1).tolist(),
    ...           jnp.argmax(logits_fn(x_adv, None), -1).tolist())
    1 [1.0, 1.0, 0.0, 0.0] [1] [0]
    2 [1.0, 1.0, 0.0, 1.0] [2] [1]
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jsnn.attacks import common
from jsnn.attacks.common import Best
from jsnn.attacks.eot import check_eot, oracle
from jsnn.config import check_int

_LATTICE_TOL = 1e-4  # |m·x − round(m·x)| allowed for float32 frames k/m


# ----------------------------------------------------------------------------- validation and counting


def check_events(x, max_count: int):
    """Checks that ``x`` holds event frames of quantum ``1/max_count``: every ``m·x`` is an integer in [0, m].

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import events
        >>> events.check_events(jnp.array([[0.5, 0.3]]), 2)
        Traceback (most recent call last):
        ...
        ValueError: attack x: 1 value(s) off the event lattice {0, 1/2, ..., 1} (max_count=2), e.g. 0.3
    """
    m = check_int(max_count, "max_count", where="attack ")
    if common._concrete(x) and np.size(x):
        xs = np.asarray(x, np.float64)
        off = np.abs(xs * m - np.round(xs * m)) > _LATTICE_TOL
        if off.any():
            raise ValueError(f"attack x: {int(off.sum())} value(s) off the event lattice {{0, 1/{m}, ..., 1}} "
                             f"(max_count={m}), e.g. {xs[off].flat[0]:.4g}")
    return x


def check_budget(budget, batch: int):
    """``budget``: a whole number of events ≥ 0, or a ``[batch]`` vector of them."""
    common.check_eps(budget, "budget", batch=batch)
    if common._concrete(budget):
        b = np.asarray(budget, np.float64)
        if np.any(b != np.round(b)):
            raise ValueError(f"attack budget: a whole number of events, got {budget!r}")
    return budget


def counts(x, max_count):
    """Event counts ``round(m·x)`` (as floats of ``x``'s dtype)."""
    return jnp.round(x * jnp.asarray(max_count, x.dtype))


def changed_events(x_adv, x, max_count):
    """Per-example number of added or removed events ``Σ |m·x_adv − m·x|`` → ``[B]`` (integers).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import events
        >>> x, x_adv = jnp.array([[0., 0.5, 1.]]), jnp.array([[0.5, 0., 0.]])
        >>> events.changed_events(x_adv, x, 2).tolist()  # +1, −1, −2 events
        [4]
    """
    d = jnp.abs(counts(x_adv, max_count) - counts(x, max_count))
    return jnp.sum(d.reshape(d.shape[0], -1), axis=1).astype(jnp.int32)


def _frames(c, c0, x, m):
    """Counts back to frames; unchanged cells keep the clean values bit for bit."""
    return jnp.where(c == c0, x, c / m).astype(x.dtype)


# ----------------------------------------------------------------------------- the moves


def random_flips(key, c, n, m):
    """Moves ``n`` [B] distinct random cells of counts ``c`` [B, D] by one event each, in a random feasible
    direction (up from 0, down from m, either way in between)."""
    k_cell, k_dir = jax.random.split(key)
    score = jax.random.uniform(k_cell, c.shape)
    rank = jnp.argsort(jnp.argsort(score, axis=1), axis=1)
    chosen = rank < n[:, None]
    d = jnp.where(jax.random.bernoulli(k_dir, 0.5, c.shape), 1.0, -1.0).astype(c.dtype)
    d = jnp.where(c <= 0, 1.0, jnp.where(c >= m, -1.0, d))
    return c + jnp.where(chosen, d, 0.0)


def greedy_step(c, c0, g, budget, per_step, m):
    """One reduce–generate step of :func:`event_attack` on counts ``c`` [B, D] (clean ``c0``), gradient ``g``.

    Returns counts with ``Σ|c' − c0| ≤ budget`` whenever ``Σ|c − c0| ≤ budget``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import events
        >>> c0 = jnp.array([[0., 1., 2., 2.]])
        >>> c = jnp.array([[1., 1., 2., 2.]])  # one event added at cell 0, whose gradient is now negative
        >>> g = jnp.array([[-0.1, 0.9, -0.5, 0.2]])
        >>> events.greedy_step(c, c0, g, jnp.array([3.]), jnp.array([3.]), 2.0).tolist()
        [[0.0, 2.0, 0.0, 2.0]]
    """
    d = jnp.sign(g)
    back = d * (c - c0) < 0
    c = jnp.where(back, c0, c)  # reduce: undo events the gradient now opposes
    used = jnp.sum(jnp.abs(c - c0), axis=1)
    n = jnp.clip(jnp.minimum(per_step, budget - used), 0.0)
    cap = jnp.where(back, 0.0, jnp.where(d > 0, m - c, jnp.where(d < 0, c, 0.0)))
    order = jnp.argsort(-jnp.abs(g), axis=1, stable=True)
    cap_sorted = jnp.take_along_axis(cap, order, axis=1)
    before = jnp.cumsum(cap_sorted, axis=1) - cap_sorted
    amount_sorted = jnp.clip(n[:, None] - before, 0.0, cap_sorted)
    amount = jnp.take_along_axis(amount_sorted, jnp.argsort(order, axis=1), axis=1)
    return c + d * amount


# ----------------------------------------------------------------------------- the attacks


def _flat(a):
    return a.reshape(a.shape[0], -1)


def _run_greedy(orc, x, key, budget, per_step, init, m, *, steps: int) -> Best:
    shape = x.shape
    c0 = _flat(counts(x, m))
    k_init, k_noise = jax.random.split(key)
    c_start = random_flips(k_init, c0, init, m)
    start = Best(x, jnp.full(shape[:1], -jnp.inf, x.dtype), jnp.zeros(shape[:1], bool))

    def body(i, carry):
        c, best = carry
        xi = _frames(c.reshape(shape), c0.reshape(shape), x, m)
        loss, g, fooled = orc.value_and_grad(xi, common.fold(k_noise, i))
        best = common.update_best(best, xi, loss, fooled)
        return greedy_step(c, c0, _flat(g), budget, per_step, m), best

    c_last, best = jax.lax.fori_loop(0, steps, body, (c_start, start))
    x_last = _frames(c_last.reshape(shape), c0.reshape(shape), x, m)
    loss, fooled = orc.value(x_last, common.fold(k_noise, steps))
    return common.update_best(best, x_last, loss, fooled)


@functools.partial(jax.jit, static_argnames=("steps", "restarts", "loss", "eot", "eot_chunk", "restart_chunk"))
def _event_attack(logits_fn, x, y, key, budget, per_step, m, target, *, steps, restarts, loss, eot, eot_chunk,
                  restart_chunk):
    orc = oracle(logits_fn, loss, y, target, eot=eot, eot_chunk=eot_chunk)
    half = jnp.ceil(budget / 2)

    def run(k, r):
        return _run_greedy(orc, x, k, budget, per_step, jnp.where(r == 0, 0.0, half), m, steps=steps)

    if restarts == 1:
        return run(key, 0)
    return common.select_best(common.map_chunked(lambda a: run(*a), (jax.random.split(key, restarts),
                                                                     jnp.arange(restarts)), restart_chunk))


@functools.partial(jax.jit, static_argnames=("restarts", "loss", "eot", "eot_chunk", "restart_chunk"))
def _random_events(logits_fn, x, y, key, budget, m, target, *, restarts, loss, eot, eot_chunk, restart_chunk):
    orc = oracle(logits_fn, loss, y, target, eot=eot, eot_chunk=eot_chunk)
    c0 = _flat(counts(x, m))

    def run(k):
        k_flip, k_noise = jax.random.split(k)
        x_r = _frames(random_flips(k_flip, c0, budget, m).reshape(x.shape), c0.reshape(x.shape), x, m)
        loss_r, fooled = orc.value(x_r, k_noise)
        return common.init_best(x_r, loss_r, fooled)

    return common.run_restarts(run, key, restarts, restart_chunk)


def _prepare(logits_fn, x, y, key, budget, max_count, restarts, eot, loss, target):
    x, y = common.check_inputs(x, y, key, logits_fn)
    check_events(x, max_count)
    check_budget(budget, x.shape[0])
    check_int(restarts, "restarts", where="attack ")
    check_eot(eot)
    common.check_target(loss, target, y)
    b = jnp.broadcast_to(jnp.asarray(budget, x.dtype), x.shape[:1])
    return x, y, b, jnp.asarray(max_count, x.dtype)


def event_attack(logits_fn, x, y, key, *, budget, max_count: int = 1, steps: int = 10, per_step=None,
                 restarts: int = 1, loss="ce", target=None, eot: int = 1, eot_chunk: Optional[int] = None,
                 restart_chunk: Optional[int] = None, full_output: bool = False):
    """Gradient-guided event attack: at most ``budget`` added/removed events (see the module docstring).

    Args:
      logits_fn: ``logits_fn(x, key) -> logits [B, K]`` on event frames.
      x: clean event frames ``[B, ...]`` on the lattice ``{0, 1/m, ..., 1}``.
      y: labels ``[B]``.
      key: PRNG key (random starts of later restarts; model noise, ``fold_in`` per step).
      budget: k, events that may change (a whole number ≥ 0, or ``[B]``).
      max_count: m, the frames' quantum is ``1/m`` (1: binary frames).
      steps: reduce–generate steps (each one gradient).
      per_step: events generated per step; default ``⌈k / ⌈steps/2⌉⌉``.
      restarts: runs under ``vmap``; run 0 starts at ``x``, the others at ``⌈k/2⌉`` random events.
      loss, target: the attack loss (a name of :mod:`jsnn.attacks.losses` or a callable) and targets.
      eot, eot_chunk, restart_chunk: EOT draws per gradient and the chunk sizes of the EOT / restart ``vmap``.
      full_output: return the :class:`~jsnn.attacks.common.Best` instead of ``x_adv``.

    Returns:
      ``x_adv`` on the lattice, in [0, 1], with ``changed_events(x_adv, x, m) ≤ budget``.
    """
    x, y, b, m = _prepare(logits_fn, x, y, key, budget, max_count, restarts, eot, loss, target)
    check_int(steps, "steps", where="attack ")
    if per_step is None:
        per = jnp.maximum(jnp.ceil(b / math.ceil(steps / 2)), 1.0)
    else:
        per = jnp.broadcast_to(jnp.asarray(check_int(per_step, "per_step", where="attack "), x.dtype), b.shape)
    best = _event_attack(common.as_partial(logits_fn), x, y, key, b, per, m, target, steps=steps,
                         restarts=restarts, loss=loss, eot=eot, eot_chunk=eot_chunk, restart_chunk=restart_chunk)
    return best if full_output else best.x


def random_events(logits_fn, x, y, key, *, budget, max_count: int = 1, restarts: int = 1, loss="ce", target=None,
                  eot: int = 1, eot_chunk: Optional[int] = None, restart_chunk: Optional[int] = None,
                  full_output: bool = False):
    """Random-event baseline: ``budget`` distinct random cells moved by one event each; best of ``restarts``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import events
        >>> x = jnp.zeros((2, 3, 4, 4, 2)).at[:, :, 1:3, 1:3, 0].set(1.0)  # binary frames
        >>> logits_fn = lambda x, key: jnp.stack([x.mean((1, 2, 3, 4)), 0.1 - x.mean((1, 2, 3, 4))], -1)
        >>> x_adv = events.random_events(logits_fn, x, jnp.array([0, 0]), jax.random.key(0), budget=5,
        ...                              restarts=4)
        >>> events.changed_events(x_adv, x, 1).tolist(), bool(jnp.all((x_adv == 0) | (x_adv == 1)))
        ([5, 5], True)
    """
    x, y, b, m = _prepare(logits_fn, x, y, key, budget, max_count, restarts, eot, loss, target)
    best = _random_events(common.as_partial(logits_fn), x, y, key, b, m, target, restarts=restarts, loss=loss,
                          eot=eot, eot_chunk=eot_chunk, restart_chunk=restart_chunk)
    return best if full_output else best.x
