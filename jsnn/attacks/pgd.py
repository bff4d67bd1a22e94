"""Projected gradient descent (Madry et al. 2018, "Towards deep learning models resistant to
adversarial attacks", ICLR), L∞ and L2, with random starts, restarts, EOT and any attack loss.

    x⁰ = x + U(ball) (random start) or x;   xᵏ⁺¹ = P(xᵏ + α·s(∇ₓ ℓ(xᵏ)))

with ``s = sign`` (L∞) or ``g/‖g‖₂`` (L2) and P the projection onto the ε-ball ∩ [0, 1].
Every iterate (x⁰ … x^N) is scored; the returned point is misclassified if any iterate
was, otherwise the highest-loss one; restarts run under ``vmap`` and the best is kept.
The default step is ``α = 2.5·ε/steps`` (Madry et al.).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from jsnn.attacks import common
from jsnn.attacks.common import Best, expand
from jsnn.attacks.eot import check_eot, oracle
from jsnn.config import check_int


def _run(orc, x, key, eps, step_size, *, norm: str, steps: int, random_start: bool, unroll: int) -> Best:
    k_init, k_noise = jax.random.split(key)
    x0 = common.random_init(k_init, x, eps, norm) if random_start else x
    start = common.Best(x0, jnp.full(x.shape[:1], -jnp.inf, x.dtype), jnp.zeros(x.shape[:1], bool))

    def body(i, carry):
        xi, best = carry
        loss, g, fooled = orc.value_and_grad(xi, common.fold(k_noise, i))
        best = common.update_best(best, xi, loss, fooled)
        x_next = common.project(xi + expand(step_size, x) * common.normalize(g, norm), x, eps, norm)
        return x_next, best

    x_last, best = jax.lax.fori_loop(0, steps, body, (x0, start), unroll=unroll)
    loss, fooled = orc.value(x_last, common.fold(k_noise, steps))
    return common.update_best(best, x_last, loss, fooled)


@functools.partial(jax.jit, static_argnames=("norm", "steps", "restarts", "loss", "eot", "random_start",
                                             "eot_chunk", "restart_chunk", "unroll"))
def _pgd(logits_fn, x, y, key, eps, step_size, target, *, norm, steps, restarts, loss, eot, random_start,
         eot_chunk, restart_chunk, unroll):
    orc = oracle(logits_fn, loss, y, target, eot=eot, eot_chunk=eot_chunk)
    run = lambda k: _run(orc, x, k, eps, step_size, norm=norm, steps=steps, random_start=random_start,
                         unroll=unroll)
    return common.run_restarts(run, key, restarts, restart_chunk)


def check_iterative(logits_fn, x, y, key, eps, norm, steps, restarts, eot):
    """The boundary checks of an iterative gradient attack (PGD, APGD): inputs, norm, ε, counts, EOT.

    Returns ``(x, y)`` as arrays; each failure is one ``ValueError`` line naming the argument.
    """
    x, y = common.check_inputs(x, y, key, logits_fn)
    common.check_norm(norm)
    common.check_eps(eps, batch=x.shape[0])
    check_int(steps, "steps", where="attack ")
    check_int(restarts, "restarts", where="attack ")
    check_eot(eot)
    return x, y


def pgd(logits_fn, x, y, key, *, eps, norm: str = "linf", steps: int = 10, step_size=None,
        restarts: int = 1, loss="ce", target=None, random_start: bool = True, eot: int = 1,
        eot_chunk: Optional[int] = None, restart_chunk: Optional[int] = None, unroll: Optional[int] = None,
        full_output: bool = False):
    """PGD attack, L∞ or L2.

    Args:
      logits_fn: ``logits_fn(x, key) -> logits [B, K]``.
      x: clean images ``[B, ...]`` in [0, 1].
      y: labels ``[B]``.
      key: PRNG key (random starts; model noise, ``fold_in`` per step).
      eps: radius in pixel units (scalar or ``[B]``).
      norm: ``"linf"`` or ``"l2"``.
      steps: gradient steps N.
      step_size: α; default ``2.5·ε/steps``.
      restarts: random restarts under ``vmap``.
      loss: ``"ce"``, ``"cw"``, ``"dlr"``, a targeted loss (with ``target``) or a callable
        ``loss(logits, y, target) -> [B]``.
      target: target classes ``[B]`` for a targeted loss.
      random_start: start uniformly in the ball (else at ``x``).
      eot: EOT draws per gradient.
      eot_chunk, restart_chunk: chunk sizes of the EOT / restart ``vmap`` (``lax.map``).
      unroll: steps per iteration of the compiled loop; default
        :func:`~jsnn.attacks.common.default_unroll` (the whole loop for ≤ 20 steps, else 1).
      full_output: return the :class:`~jsnn.attacks.common.Best` instead of ``x_adv``.

    Example:
        On a linear model the loss is maximised at the corner ``x + ε·sign(w₁ − w₀)`` of the
        ball; 5 steps of ``2.5·ε/5`` from a random start reach it:

        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jsnn.attacks import pgd
        >>> W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])  # sign(w₁ − w₀) = (−, +, −, +)
        >>> x, y = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]), jnp.array([0, 0])
        >>> best = pgd(lambda x, key: x @ W, x, y, jax.random.key(0), eps=0.15, steps=5,
        ...            full_output=True)
        >>> np.asarray(best.x, float).round(3).tolist()  # the 2nd example is too far from the boundary
        [[0.45, 0.55, 0.45, 0.55], [0.75, 0.25, 0.75, 0.25]]
        >>> best.fooled.tolist(), bool(jnp.all(jnp.abs(best.x - x) <= 0.15 + 1e-6))
        ([True, False], True)
    """
    x, y = check_iterative(logits_fn, x, y, key, eps, norm, steps, restarts, eot)
    common.check_target(loss, target, y)
    unroll = common.default_unroll(steps, unroll)
    if step_size is None:
        step_size = 2.5 * jnp.asarray(eps, x.dtype) / steps
    else:
        common.check_eps(step_size, "step_size")
    best = _pgd(common.as_partial(logits_fn), x, y, key, eps, step_size, target, norm=norm, steps=steps,
                restarts=restarts, loss=loss, eot=eot, random_start=random_start, eot_chunk=eot_chunk,
                restart_chunk=restart_chunk, unroll=unroll)
    return best if full_output else best.x
