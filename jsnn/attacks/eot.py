"""Expectation over Transformation (EOT; Athalye et al. 2018) for stochastic models.

For Poisson / RSC coding and stochastic features the loss is a random function of the
input. With ``eot=K`` an attack replaces the loss gradient by its average over K
independent keys (vmapped, optionally chunked):

    ĝ(x) = (1/K) Σ_k ∇ₓ ℓ(f(x; ξ_k), y),   ξ_k = split(key, K)[k]

and judges loss / success on the averaged loss and the averaged logits. With K = 1 the
key is used as is. Deterministic models ignore the key, so any K gives the plain gradient.

:func:`oracle` packs this into the two functions every attack needs:
``value_and_grad(x, key) -> (loss [B], grad, fooled [B])`` and
``value(x, key) -> (loss [B], fooled [B])``; ``fooled`` is ``argmax(mean logits) ≠ y``.

:func:`robust_accuracy` is the final judgement of adversarial examples over M fresh draws.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jsnn.attacks import losses as losses_lib
from jsnn.attacks.common import as_partial, map_chunked, misclassified


def _keys(key, samples: int):
    return jax.random.split(key, samples)


def value_and_grad(fn: Callable, x, key, *, samples: int = 1, chunk: Optional[int] = None):
    """EOT estimate of a per-example function and its input gradient.

    Args:
      fn: ``fn(x, key) -> (values [B], aux)``; the gradient is of ``values.sum()``
        (examples are independent, so this is the per-example gradient).
      x: input ``[B, ...]``.
      key: PRNG key; draw k uses ``split(key, samples)[k]`` (``key`` itself if samples = 1).
      samples: K, the number of draws.
      chunk: run the draws in vmapped chunks of this size (``lax.map``) to bound memory.

    Returns:
      ``(mean values [B], mean gradient like x, mean aux)``.

    Example:
        ``‖x + n‖²`` with Gaussian noise n has gradient ``2(x + n)``, whose mean is ``2x``:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import eot
        >>> fn = lambda x, k: (jnp.sum((x + 0.1 * jax.random.normal(k, x.shape)) ** 2, axis=1), ())
        >>> x = jnp.array([[0.5, 0.2]])
        >>> v, g, _ = eot.value_and_grad(fn, x, jax.random.key(0), samples=1000)
        >>> bool(jnp.allclose(g, 2 * x, atol=0.03)), round(float(v[0]), 1)  # E‖x + n‖² = 0.29 + 0.02
        (True, 0.3)
    """

    def one(k):
        def total(xx):
            v, aux = fn(xx, k)
            return v.sum(), (v, aux)

        g, (v, aux) = jax.grad(total, has_aux=True)(x)
        return v, g, aux

    if samples == 1:
        return one(key)
    v, g, aux = map_chunked(one, _keys(key, samples), chunk)
    mean = lambda a: a.mean(0)
    return mean(v), mean(g), jax.tree.map(mean, aux)


def expectation(fn: Callable, x, key, *, samples: int = 1, chunk: Optional[int] = None):
    """EOT average of ``fn(x, key)`` (any pytree of arrays) over ``samples`` draws, forward only.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import eot
        >>> noisy = lambda x, k: x + 0.1 * jax.random.normal(k, x.shape)
        >>> x = jnp.array([[0.5, 0.2]])
        >>> m = eot.expectation(noisy, x, jax.random.key(0), samples=1000)
        >>> bool(jnp.allclose(m, x, atol=0.02)), bool(jnp.all(noisy(x, jax.random.key(0)) != x))
        (True, True)
    """
    if samples == 1:
        return fn(x, key)
    out = map_chunked(lambda k: fn(x, k), _keys(key, samples), chunk)
    return jax.tree.map(lambda a: a.mean(0), out)


class Oracle(NamedTuple):
    """What an attack queries: EOT loss + gradient, and EOT loss alone."""

    value_and_grad: Callable
    value: Callable


def oracle(logits_fn: Callable, loss, y, target=None, *, eot: int = 1,
           eot_chunk: Optional[int] = None) -> Oracle:
    """Builds the EOT loss oracle of an attack (called inside the attack's trace).

    Args:
      logits_fn: ``logits_fn(x, key) -> logits [B, K]``.
      loss: a name of :data:`jsnn.attacks.losses.LOSSES` or ``loss(logits, y, target) -> [B]``.
      y: labels ``[B]``.
      target: target classes ``[B]`` for targeted losses.
      eot: K, draws per query.
      eot_chunk: EOT chunk size.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import eot
        >>> W = jnp.array([[1., 0.], [0., 1.]])
        >>> orc = eot.oracle(lambda x, key: x @ W, "cw", jnp.array([0, 0]))
        >>> loss, grad, fooled = orc.value_and_grad(jnp.array([[0.7, 0.2], [0.2, 0.7]]), jax.random.key(0))
        >>> loss.round(3).tolist(), grad.tolist(), fooled.tolist()  # z₁ − z₀ and w₁ − w₀
        ([-0.5, 0.5], [[-1.0, 1.0], [-1.0, 1.0]], [False, True])
    """
    loss_fn = losses_lib.get(loss)

    def per_draw(x, k):
        logits = logits_fn(x, k)
        return loss_fn(logits, y, target).astype(x.dtype), logits

    def vg(x, key):
        v, g, logits = value_and_grad(per_draw, x, key, samples=eot, chunk=eot_chunk)
        return v, g.astype(x.dtype), misclassified(logits, y)

    def val(x, key):
        v, logits = expectation(lambda xx, k: jax.lax.stop_gradient(per_draw(xx, k)), x, key,
                                samples=eot, chunk=eot_chunk)
        return v, misclassified(logits, y)

    return Oracle(vg, val)


def check_eot(eot) -> int:
    """Validates the EOT sample count (an integer ≥ 1)."""
    if not isinstance(eot, int) or isinstance(eot, bool) or eot < 1:
        raise ValueError(f"attack eot: must be an integer >= 1 (draws per gradient), got {eot!r}")
    return eot




# ----------------------------------------------------------------------------- final judgement


@functools.partial(jax.jit, static_argnames=("draws", "chunk"))
def _correct_draws(logits_fn, x, y, key, *, draws, chunk):
    def one(k):
        return jnp.argmax(jax.lax.stop_gradient(logits_fn(x, k)), axis=-1) == y

    return map_chunked(one, jax.random.split(key, draws), chunk)


def correct_draws(logits_fn: Callable, x, y, key, *, draws: int = 10, chunk: Optional[int] = None):
    """Per-draw correctness ``[draws, B]`` (bool) of ``x`` under ``draws`` fresh keys of the true forward.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import correct_draws
        >>> noisy = lambda x, key: x + 0.1 * jax.random.normal(key, x.shape)  # logits = x + noise
        >>> x, y = jnp.array([[0.9, -0.9], [0.9, -0.9]]), jnp.array([0, 1])
        >>> c = correct_draws(noisy, x, y, jax.random.key(0), draws=5)
        >>> c.shape, c.all(0).tolist(), c.any(0).tolist()  # far from the boundary: same in every draw
        ((5, 2), [True, False], [True, False])
    """
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise ValueError(f"draws: must be an integer >= 1 (fresh model draws to judge on), got {draws!r}")
    return _correct_draws(as_partial(logits_fn), jnp.asarray(x), jnp.asarray(y), key, draws=draws, chunk=chunk)


def robust_accuracy(logits_fn: Callable, x_adv, y, key, *, draws: int = 10, chunk: Optional[int] = None):
    """Final judgement of adversarial examples over ``draws`` = M fresh draws.

    Stochastic models (Poisson / RSC coding, stochastic features) are never judged on one
    draw: with ``c[m, b] = 1[argmax f(x_adv_b; ξ_m) = y_b]`` this returns

    * the mean accuracy over draws, ``mean_{m,b} c[m, b]``, and
    * the fraction of examples correct in every draw, ``mean_b min_m c[m, b]``.

    For deterministic models ``draws=1`` is exact (both numbers coincide).

    Returns:
      ``(mean_accuracy, all_draws_accuracy)`` as float scalars (jax arrays).

    Example:
        A noisy classifier: its mean accuracy over draws exceeds the fraction of examples
        it gets right in every draw; the far-from-the-boundary example stays correct.

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import robust_accuracy
        >>> noisy = lambda x, key: x + 0.3 * jax.random.normal(key, x.shape)  # logits = x + noise
        >>> x, y = jnp.array([[0.6, 0.4], [0.9, -0.9]]), jnp.array([0, 0])
        >>> mean, all_draws = robust_accuracy(noisy, x, y, jax.random.key(0), draws=20)
        >>> 0.5 < float(mean) < 1.0, float(all_draws)
        (True, 0.5)
    """
    c = correct_draws(logits_fn, x_adv, y, key, draws=draws, chunk=chunk)
    return c.mean(), c.all(0).mean()
