"""One-step attacks.

* FGSM (Goodfellow et al. 2015): ``x_adv = P(x + ε·s(∇ₓ ℓ(x)))``, ``s = sign`` (L∞) or
  ``g/‖g‖₂`` (L2, the fast gradient method).
* R+FGSM (Tramèr et al. 2018, "Ensemble adversarial training"): a random step first,
  ``x' = P(x + α·s(N(0, I)))``, then ``x_adv = P(x' + (ε − α)·s(∇ₓ ℓ(x')))``; α = ε/2 by default.

P projects onto the ε-ball ∩ [0, 1]. With ``eot=K`` the gradient is averaged over K draws.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from jsnn.attacks import common
from jsnn.attacks.common import expand
from jsnn.attacks.eot import check_eot, oracle


@functools.partial(jax.jit, static_argnames=("norm", "loss", "eot", "eot_chunk", "random_step"))
def _fgsm(logits_fn, x, y, key, eps, alpha, target, *, norm, loss, eot, eot_chunk, random_step):
    orc = oracle(logits_fn, loss, y, target, eot=eot, eot_chunk=eot_chunk)
    k_rand, k_noise = jax.random.split(key)
    if random_step:
        x_start = common.project(x + expand(alpha, x) * common.normalize(
            jax.random.normal(k_rand, x.shape, x.dtype), norm), x, eps, norm)
        size = jnp.asarray(eps, x.dtype) - jnp.asarray(alpha, x.dtype)
    else:
        x_start, size = x, jnp.asarray(eps, x.dtype)
    _, g, _ = orc.value_and_grad(x_start, k_noise)
    return common.project(x_start + expand(size, x) * common.normalize(g, norm), x, eps, norm)


def _validate(logits_fn, x, y, key, eps, norm, loss, target, eot):
    x, y = common.check_inputs(x, y, key, logits_fn)
    common.check_norm(norm)
    common.check_eps(eps, batch=x.shape[0])
    check_eot(eot)
    common.check_target(loss, target, y)
    return x, y


def fgsm(logits_fn, x, y, key, *, eps, norm: str = "linf", loss="ce", target=None, eot: int = 1,
         eot_chunk: Optional[int] = None):
    """FGSM / FGM: one step of size ε along the steepest-ascent direction of ``loss``.

    Args:
      logits_fn: ``logits_fn(x, key) -> logits [B, K]``.
      x: clean images ``[B, ...]`` in [0, 1]; y: labels ``[B]``; key: PRNG key (model noise).
      eps: radius; norm: ``"linf"`` or ``"l2"``; loss / target: see :func:`jsnn.attacks.pgd`.
      eot: EOT draws for the gradient; eot_chunk: EOT chunk size.

    Example:
        On a linear model the CE gradient points along ``w₁ − w₀``, so FGSM lands on the
        corner ``x + ε·sign(w₁ − w₀)`` of the ball, which here crosses the boundary:

        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jsnn.attacks import fgsm
        >>> W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])  # sign(w₁ − w₀) = (−, +, −, +)
        >>> logits_fn = lambda x, key: x @ W
        >>> x, y = jnp.array([[0.6, 0.4, 0.6, 0.4]]), jnp.array([0])
        >>> x_adv = fgsm(logits_fn, x, y, jax.random.key(0), eps=0.15)
        >>> np.asarray(x_adv, float).round(3).tolist(), logits_fn(x_adv, None).argmax(-1).tolist()
        ([[0.45, 0.55, 0.45, 0.55]], [1])
        >>> x_l2 = fgsm(logits_fn, x, y, jax.random.key(0), eps=0.15, norm="l2")
        >>> round(float(jnp.linalg.norm(x_l2 - x)), 3)  # a full step on the L2 sphere
        0.15
    """
    x, y = _validate(logits_fn, x, y, key, eps, norm, loss, target, eot)
    return _fgsm(common.as_partial(logits_fn), x, y, key, eps, 0.0, target, norm=norm, loss=loss, eot=eot,
                 eot_chunk=eot_chunk, random_step=False)


def rfgsm(logits_fn, x, y, key, *, eps, alpha=None, norm: str = "linf", loss="ce", target=None,
          eot: int = 1, eot_chunk: Optional[int] = None):
    """R+FGSM: random step of size α (default ε/2), then a gradient step of size ε − α.

    Arguments as in :func:`fgsm`; ``alpha`` must satisfy 0 ≤ α ≤ ε.

    Example:
        L∞ on a linear model: each coordinate moves ±α at random, then ε − α along the gradient
        sign, and the ε-ball clips it: it ends at ``x`` or at the FGSM corner ``x + ε·sign(g)``.

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import rfgsm
        >>> W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])
        >>> x, y = jnp.array([[0.6, 0.4, 0.6, 0.4]]), jnp.array([0])
        >>> x_adv = rfgsm(lambda x, key: x @ W, x, y, jax.random.key(0), eps=0.15)
        >>> s = jnp.array([-1., 1., -1., 1.])  # sign(w₁ − w₀)
        >>> steps = ((x_adv - x) * s / 0.15).round(3)
        >>> bool(jnp.all((steps == 0) | (steps == 1))), bool(jnp.any(steps == 1))
        (True, True)
    """
    x, y = _validate(logits_fn, x, y, key, eps, norm, loss, target, eot)
    if alpha is None:
        alpha = 0.5 * jnp.asarray(eps, x.dtype)
    else:
        common.check_eps(alpha, "alpha")
        if common.is_concrete_number(alpha) and common.is_concrete_number(eps) and float(alpha) > float(eps):
            raise ValueError(f"rfgsm alpha: must be <= eps={eps!r}, got {alpha!r}")
    return _fgsm(common.as_partial(logits_fn), x, y, key, eps, alpha, target, norm=norm, loss=loss, eot=eot,
                 eot_chunk=eot_chunk, random_step=True)
