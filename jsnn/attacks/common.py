"""Shared machinery of the gradient attacks: ε-balls, projection, random starts, best tracking.

Every attack in :mod:`jsnn.attacks` (and the black-box ones of part B: Square, FAB,
AutoAttack) builds on these helpers; import them from here:

* :func:`check_norm`, :func:`check_eps` — boundary validation with clear errors.
* :func:`project` — ``P(x_adv)`` onto the ε-ball around ``x`` intersected with [0, 1].
* :func:`random_init` — random start inside the ball (L∞: uniform in the box; L2:
  uniform in the ball), clipped to [0, 1].
* :func:`normalize` — steepest-ascent direction of a gradient: ``sign(g)`` (L∞) or
  ``g / ‖g‖₂`` (L2), per example.
* :class:`Best`, :func:`init_best`, :func:`update_best`, :func:`select_best` — per-example
  best-so-far tracking. Order: a misclassified point beats a correctly classified one;
  among points of the same status the higher loss wins. The returned point is thus the
  misclassified point if one was found, otherwise the highest-loss point.
* :func:`check_target`, :func:`check_positive_int`, :func:`check_inputs` — more validation.
* :func:`as_partial`, :func:`map_chunked`, :func:`run_restarts`, :func:`fold` — jit plumbing.

Conventions: images ``[B, ...]`` in [0, 1]; ``eps`` is in pixel units; per-example
quantities have shape ``[B]``; ``norm`` is ``"linf"`` or ``"l2"``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from jsnn.attacks import losses as losses_lib

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
    return not isinstance(v, jax.core.Tracer) and jnp.ndim(v) == 0


def check_eps(eps, name: str = "eps"):
    """Validates ``eps`` (a finite number ≥ 0, or a traced value) and returns it."""
    if eps is None:
        raise ValueError(f"attack {name}: required, got None")
    if is_concrete_number(eps):
        e = float(eps)
        if not (math.isfinite(e) and e >= 0):
            raise ValueError(f"attack {name}: must be a finite number >= 0, got {eps!r}")
    return eps


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Validates an integer setting such as ``steps`` or ``restarts``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"attack {name}: must be an integer >= {minimum}, got {value!r}")
    return value


def check_inputs(x, y):
    """Validates images ``x`` ``[B, ...]`` (floating) and labels ``y`` ``[B]`` (integer)."""
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if x.ndim < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"attack x: expected floating images [B, ...], got shape {x.shape} dtype {x.dtype}")
    if y.shape != x.shape[:1] or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"attack y: expected integer labels of shape {x.shape[:1]}, got shape {y.shape} "
                         f"dtype {y.dtype}")
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
