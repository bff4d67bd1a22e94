"""Shared machinery of the gradient attacks: ε-balls, projection, random starts, best tracking.

Every attack in :mod:`jsnn.attacks` (and the black-box ones of part B: Square, FAB,
AutoAttack) builds on these helpers; import them from here:

* :func:`check_norm`, :func:`check_eps`, :func:`check_key` — boundary validation with clear errors.
* :func:`project` — ``P(x_adv)`` onto the ε-ball around ``x`` intersected with [0, 1].
* :func:`random_init` — random start inside the ball (L∞: uniform in the box; L2:
  uniform in the ball), clipped to [0, 1].
* :func:`normalize` — steepest-ascent direction of a gradient: ``sign(g)`` (L∞) or
  ``g / ‖g‖₂`` (L2), per example.
* :class:`Best`, :func:`init_best`, :func:`update_best`, :func:`select_best` — per-example
  best-so-far tracking. Order: a misclassified point beats a correctly classified one;
  among points of the same status the higher loss wins. The returned point is thus the
  misclassified point if one was found, otherwise the highest-loss point.
* :func:`check_target`, :func:`check_inputs` — more validation (integers: :func:`jsnn.config.check_int`).
* :func:`as_partial`, :func:`map_chunked`, :func:`run_restarts`, :func:`fold` — jit plumbing.

Conventions: images ``[B, ...]`` in [0, 1]; ``eps`` is in pixel units; per-example
quantities have shape ``[B]``; ``norm`` is ``"linf"`` or ``"l2"``.
"""

from __future__ import annotations

import math
import weakref
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from jsnn.attacks import losses as losses_lib
from jsnn.config import check_int

NORMS = ("linf", "l2")
_TINY = 1e-12


# ----------------------------------------------------------------------------- validation


def check_norm(norm: str) -> str:
    """Returns ``norm`` if it is ``"linf"`` or ``"l2"``; ValueError otherwise.

    Example:
        >>> from jsnn.attacks import common
        >>> common.check_norm("l1")
        Traceback (most recent call last):
        ...
        ValueError: attack norm: 'l1'; allowed: linf, l2
    """
    if norm not in NORMS:
        raise ValueError(f"attack norm: {norm!r}; allowed: {', '.join(NORMS)}")
    return norm


def is_concrete_number(v) -> bool:
    return not isinstance(v, jax.core.Tracer) and np.ndim(v) == 0


def _concrete(v) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(v))


def check_eps(eps, name: str = "eps", batch: Optional[int] = None):
    """Validates ``eps``: a finite number ≥ 0 or, given ``batch``, a ``[batch]`` vector of them.

    Traced values pass through (checked where they were concrete).

    Example:
        >>> from jsnn.attacks import common
        >>> common.check_eps([0.1, 0.2, 0.3], batch=2)
        Traceback (most recent call last):
        ...
        ValueError: attack eps: expected a number or a per-example vector of shape (2,), got shape (3,)
    """
    if eps is None:
        raise ValueError(f"attack {name}: required, got None")
    if is_concrete_number(eps):
        e = float(eps)
        if not (math.isfinite(e) and e >= 0):
            raise ValueError(f"attack {name}: must be a finite number >= 0, got {eps!r}")
    elif _concrete(eps):
        shape = np.shape(eps)
        if batch is None or shape != (batch,):
            allowed = "a number" + (f" or a per-example vector of shape ({batch},)" if batch is not None else "")
            raise ValueError(f"attack {name}: expected {allowed}, got shape {shape}")
        e = np.asarray(eps, np.float64)
        if not (np.all(np.isfinite(e)) and np.all(e >= 0)):
            raise ValueError(f"attack {name}: must be finite numbers >= 0, got min {e.min():.4g} max {e.max():.4g}")
    return eps


def check_key(key):
    """Validates a PRNG key: ``jax.random.key(s)`` or the old-style ``jax.random.PRNGKey(s)`` (uint32 [2]).

    Example:
        >>> from jsnn.attacks import common
        >>> common.check_key(0)
        Traceback (most recent call last):
        ...
        ValueError: attack key: expected a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got int 0
    """
    if not _concrete(key):
        return key
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        ok = key.shape == ()
    else:
        ok = dtype is not None and dtype == jnp.uint32 and np.shape(key) == (2,)
    if not ok:
        got = (f"{type(key).__name__} {key!r}" if dtype is None
               else f"array of shape {np.shape(key)} dtype {dtype}")
        raise ValueError(f"attack key: expected a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
                         f"got {got}")
    return key


_CLASSES = weakref.WeakKeyDictionary()


def num_classes(logits_fn, x, key) -> int:
    """K of ``logits_fn`` on images like ``x`` (one abstract trace per function and image shape, cached)."""
    try:
        per_fn = _CLASSES.setdefault(logits_fn, {})
    except TypeError:  # not weak-referenceable: trace every time
        per_fn = {}
    sig = (tuple(x.shape[1:]), str(x.dtype))
    if sig not in per_fn:
        per_fn[sig] = int(jax.eval_shape(as_partial(logits_fn), x[:1], key).shape[-1])
    return per_fn[sig]


_UNSET = object()


def check_inputs(x, y, key=_UNSET, logits_fn=None):
    """Validates images ``x`` ``[B, ...]`` (floating, finite, in [0, 1]), labels ``y`` ``[B]`` (integer).

    With ``key`` the key is checked (:func:`check_key`); with ``logits_fn`` (and ``key``) the
    labels must lie in ``[0, K)`` for the model's ``K`` classes. Value checks run on concrete
    inputs only; traced inputs inside a jit pass through.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import common
        >>> common.check_inputs(jnp.array([[0.5, 2.0]]), jnp.array([0]))
        Traceback (most recent call last):
        ...
        ValueError: attack x: pixel values in [0.5, 2]; images must be in [0, 1]
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"attack x: expected floating images [B, ...], got shape {x.shape} dtype {x.dtype}")
    if y.shape != x.shape[:1] or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"attack y: expected integer labels of shape {x.shape[:1]}, got shape {y.shape} "
                         f"dtype {y.dtype}")
    if key is not _UNSET:
        check_key(key)
    if _concrete(x) and x.size:
        xs = np.asarray(x)  # numpy: concrete arrays inside someone else's trace stay concrete
        nan = int(np.isnan(xs).sum())
        lo, hi = (float(np.nanmin(xs)), float(np.nanmax(xs))) if nan < xs.size else (0.0, 0.0)
        if nan:
            raise ValueError(f"attack x: {nan} NaN pixel(s) of {x.size}; images must be finite and in [0, 1]")
        if lo < 0 or hi > 1:
            raise ValueError(f"attack x: pixel values in [{lo:.4g}, {hi:.4g}]; images must be in [0, 1]")
    if _concrete(y) and y.size:
        ys = np.asarray(y)
        lo, hi = int(ys.min()), int(ys.max())
        classes = num_classes(logits_fn, x, key) if logits_fn is not None and key is not _UNSET else None
        if lo < 0 or (classes is not None and hi >= classes):
            allowed = f"[0, {classes})" if classes is not None else ">= 0"
            raise ValueError(f"attack y: labels in [{lo}, {hi}]; allowed: {allowed}")
    return x, y


def check_target(loss, target, y):
    """Checks that ``target`` is given exactly when ``loss`` is targeted, with the shape of ``y``."""
    losses_lib.get(loss)
    if losses_lib.is_targeted(loss) and target is None:
        raise ValueError(f"attack target: loss {loss!r} is targeted and needs target classes [B]")
    if target is not None:
        if isinstance(loss, str) and not losses_lib.is_targeted(loss):
            raise ValueError(f"attack target: loss {loss!r} is untargeted; use one of "
                             f"{', '.join(losses_lib.TARGETED)} with a target")
        if jnp.shape(target) != jnp.shape(y):
            raise ValueError(f"attack target: expected shape {jnp.shape(y)}, got {jnp.shape(target)}")


# ----------------------------------------------------------------------------- geometry


def expand(v, x):
    """Per-example ``[B]`` (or scalar) → broadcastable against ``x`` ``[B, ...]``."""
    v = jnp.asarray(v, x.dtype)
    if v.ndim == 0:
        return v
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def flat_norm(v):
    """Per-example L2 norm of ``v`` ``[B, ...]`` → ``[B]``."""
    return jnp.sqrt(jnp.sum(jnp.square(v.reshape(v.shape[0], -1)), axis=1))


def normalize(g, norm: str):
    """Steepest-ascent direction: ``sign(g)`` (L∞) or ``g / (‖g‖₂ + 1e-12)`` per example (L2).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import common
        >>> g = jnp.array([[3., -4.]])
        >>> print(common.normalize(g, "linf"), common.normalize(g, "l2"))
        [[ 1. -1.]] [[ 0.6 -0.8]]
    """
    if norm == "linf":
        return jnp.sign(g)
    return g / expand(flat_norm(g) + _TINY, g)


def project(x_adv, x, eps, norm: str):
    """Projects ``x_adv`` onto ``{‖x_adv − x‖ ≤ ε} ∩ [0, 1]``.

    L∞: ``clip(clip(x_adv, x − ε, x + ε), 0, 1)`` (the exact projection).
    L2: ``clip(x + δ·min(1, ε/‖δ‖₂), 0, 1)`` with δ = x_adv − x (as in Croce & Hein's
    reference code); the final clip moves every coordinate towards ``x`` (``x`` ∈ [0, 1]),
    so the result stays inside the ball.

    Args:
      x_adv: candidate points ``[B, ...]``.
      x: clean images ``[B, ...]`` in [0, 1].
      eps: radius, a scalar or per-example ``[B]``.
      norm: ``"linf"`` or ``"l2"``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import common
        >>> x = jnp.array([[0.5, 0.95]])
        >>> print(common.project(jnp.array([[0.9, 1.2]]), x, 0.1, "linf"))  # ball, then [0, 1]
        [[0.6 1. ]]
        >>> x = jnp.array([[0.5, 0.5]])  # δ = (0.3, 0.4), ‖δ‖₂ = 0.5, scaled to ε = 0.1
        >>> print(common.project(jnp.array([[0.8, 0.9]]), x, 0.1, "l2"))
        [[0.56 0.58]]
    """
    eps_b = expand(eps, x)
    if norm == "linf":
        out = jnp.clip(x_adv, x - eps_b, x + eps_b)
    else:
        delta = x_adv - x
        n = expand(flat_norm(delta), x)
        out = x + delta * jnp.minimum(1.0, eps_b / jnp.maximum(n, _TINY))
    return jnp.clip(out, 0.0, 1.0).astype(x.dtype)


def random_init(key, x, eps, norm: str):
    """A random point of the ε-ball around ``x`` (projected to [0, 1]).

    L∞: ``x + U(−ε, ε)`` per coordinate (Madry et al. 2018).
    L2: uniform in the ball: direction ``N(0, I)/‖·‖``, radius ``ε·U^{1/d}``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import common
        >>> x = jnp.full((3, 8), 0.5)
        >>> x0 = common.random_init(jax.random.key(0), x, 0.2, "l2")
        >>> bool(jnp.all(common.flat_norm(x0 - x) <= 0.2 + 1e-6)), bool(jnp.any(x0 != x))
        (True, True)
    """
    eps_b = expand(eps, x)
    if norm == "linf":
        delta = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps_b
    else:
        k1, k2 = jax.random.split(key)
        d = math.prod(x.shape[1:])
        g = jax.random.normal(k1, x.shape, x.dtype)
        r = jax.random.uniform(k2, x.shape[:1], x.dtype) ** (1.0 / d)
        delta = g / expand(flat_norm(g) + _TINY, x) * expand(r, x) * eps_b
    return project(x + delta, x, eps, norm)


# ----------------------------------------------------------------------------- best tracking


class Best(NamedTuple):
    """Per-example best point so far: ``x`` ``[B, ...]``, ``loss`` ``[B]``, ``fooled`` ``[B]`` bool."""

    x: jax.Array
    loss: jax.Array
    fooled: jax.Array


def _clean_loss(loss):
    return jnp.where(jnp.isnan(loss), -jnp.inf, loss)


def init_best(x, loss, fooled) -> Best:
    """Starts tracking at ``x`` with its per-example ``loss`` and ``fooled`` flags."""
    return Best(x, _clean_loss(loss), jnp.asarray(fooled, bool))


def is_better(loss, fooled, best_loss, best_fooled):
    """``(fooled, loss)`` beats ``(best_fooled, best_loss)`` lexicographically, per example."""
    loss = _clean_loss(loss)
    return (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))


def update_best(best: Best, x, loss, fooled) -> Best:
    """Replaces, per example, the tracked point by ``x`` when it is better (see :func:`is_better`).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import common
        >>> best = common.init_best(jnp.zeros((2, 1)), jnp.array([5.0, 1.0]), jnp.array([False, False]))
        >>> # Example 0: a fooling point beats a higher loss; example 1: a higher loss wins.
        >>> best = common.update_best(best, jnp.ones((2, 1)), jnp.array([0.5, 2.0]), jnp.array([True, False]))
        >>> best.x.ravel().tolist(), best.loss.tolist(), best.fooled.tolist()
        ([1.0, 1.0], [0.5, 2.0], [True, False])
    """
    fooled = jnp.asarray(fooled, bool)
    better = is_better(loss, fooled, best.loss, best.fooled)
    return Best(
        jnp.where(expand(better, x).astype(bool), x, best.x),
        jnp.where(better, _clean_loss(loss), best.loss),
        jnp.where(better, fooled, best.fooled),
    )


def select_best(best: Best) -> Best:
    """Reduces a stacked ``Best`` (leading axis: restarts, targets, estimators) to one per example.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import common
        >>> runs = common.Best(x=jnp.array([[[0.], [1.]], [[2.], [3.]]]),  # 2 restarts, 2 examples
        ...                    loss=jnp.array([[1.0, 4.0], [3.0, 2.0]]),
        ...                    fooled=jnp.array([[True, False], [False, False]]))
        >>> common.select_best(runs).x.ravel().tolist()  # fooled run for ex. 0, highest loss for ex. 1
        [0.0, 1.0]
    """
    fooled = best.fooled
    any_fooled = fooled.any(0, keepdims=True)
    eligible = jnp.where(any_fooled, fooled, True)
    score = jnp.where(eligible, best.loss, -jnp.inf)
    # argmax on [R, B]; ties (e.g. all -inf) resolve to the first run.
    idx = jnp.argmax(score, axis=0)
    take = lambda a: jnp.take_along_axis(a, idx.reshape((1,) + idx.shape + (1,) * (a.ndim - 2)), 0)[0]
    return Best(take(best.x), take(best.loss), take(best.fooled))


# ----------------------------------------------------------------------------- plumbing


def as_partial(fn: Callable) -> Partial:
    """Wraps ``logits_fn`` as a pytree so it can be a (non-static) ``jit`` argument.

    A plain function becomes a leafless :class:`jax.tree_util.Partial` (cached by identity);
    ``Partial(apply, variables)`` keeps its arrays as traced leaves, so new parameters of the
    same structure reuse the compiled attack instead of being baked in as constants.
    """
    if isinstance(fn, Partial):
        return fn
    if not callable(fn):
        raise ValueError(f"attack logits_fn: must be callable (x, key) -> logits, got {type(fn).__name__}")
    return Partial(fn)


def map_chunked(fn: Callable, xs, chunk: Optional[int] = None):
    """``jax.vmap(fn)(xs)``, or ``lax.map`` in vmapped chunks of ``chunk`` where memory demands."""
    if chunk is None:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=int(chunk))


def run_restarts(run: Callable, key, restarts: int, chunk: Optional[int] = None) -> Best:
    """Runs ``run(key) -> Best`` for ``restarts`` split keys under ``vmap`` and keeps the best."""
    if restarts == 1:
        return run(key)
    return select_best(map_chunked(run, jax.random.split(key, restarts), chunk))


def fold(key, *data: int):
    """``fold_in`` of several integers (step index, restart, ...) into ``key``."""
    for d in data:
        key = jax.random.fold_in(key, d)
    return key


def misclassified(logits, y):
    """``argmax(logits) != y`` per example."""
    return jnp.argmax(logits, axis=-1) != y


def default_unroll(steps: int, unroll: Optional[int] = None, full: int = 20) -> int:
    """Unroll factor of an attack's step loop: ``unroll`` if given, else ``steps`` if ``steps ≤ full``,
    else 1. Short loops run ~1.2–1.4× faster unrolled on XLA CPU (PGD-10, digits model); at 100
    steps a partial unroll gained nothing and cost compile time.

    >>> default_unroll(10), default_unroll(100), default_unroll(10, 1)
    (10, 1, 1)
    """
    if unroll is None:
        return steps if steps <= full else 1
    return check_int(unroll, "unroll", where="attack ")
