"""Sparse-gradient regularization, SR (Liu, Bu, Ding, Yu, Huang 2024, "Enhancing Adversarial
Robustness in SNNs with Sparse Gradients", ICML; arXiv 2405.20355).

With ``z`` the time-averaged logits, ``j*`` the strongest wrong class (fixed, no gradient) and

    f(x)  = σ(z_y(x) − z_j*(x))
    v     = sign(∇ₓ f(x))                  (a constant: no gradient flows through it)
    x₂    = x + h·v                        (h = 0.01, no clipping)
    D     = (f(x₂) − f(x)) / h  ≈ ∇ₓf·sign(∇ₓf) = ‖∇ₓ f(x)‖₁
    loss  = L(x) + λ·mean_batch(D²)

a finite-difference penalty on the L1 norm of the input gradient, i.e. on its density (a
sparse gradient leaves an L∞ attacker little to exploit). Both forwards of the penalty run
in training mode (BatchNorm batch statistics), as in the authors' code. λ is *unconfirmed*
(0.001 and 0.1 are both seen); our default is 0.001. Composed after adversarial training
(``defense.name = "sr+at"``) the penalty is taken at the adversarial examples (SR+AT).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jsnn.config import check_number
from jsnn.defenses import base
from jsnn.models.base import train_forward


def margin_sigmoid(logits, y, j):
    """``σ(z_y − z_j)`` per example.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.sparse_gradient import margin_sigmoid, strongest_wrong_class
        >>> z, y = jnp.array([[3.0, 5.0, 4.0]]), jnp.array([1])
        >>> j = strongest_wrong_class(z, y)  # the largest logit other than the label's
        >>> int(j[0]), round(float(margin_sigmoid(z, y, j)[0]), 4)  # σ(5 − 4)
        (2, 0.7311)
    """
    z_y = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    z_j = jnp.take_along_axis(logits, j[:, None], axis=-1)[:, 0]
    return jax.nn.sigmoid(z_y - z_j)


def strongest_wrong_class(logits, y):
    """``argmax_{j≠y} z_j`` (no gradient)."""
    logits = jax.lax.stop_gradient(logits)
    mask = jax.nn.one_hot(y, logits.shape[-1], dtype=bool)
    return jnp.argmax(jnp.where(mask, -jnp.inf, logits), axis=-1)


def finite_difference(logits_fn, x, y, h: float = 0.01):
    """The SR quantities ``(D [B], f(x) [B], v)`` for ``logits_fn(x) -> logits [B, K]``.

    ``D`` is differentiable w.r.t. whatever ``logits_fn`` closes over (the parameters); ``v``
    and ``j*`` are constants.

    Example:
        A linear margin ``z_0 − z_1 = x·(1, −2)`` at x = 0: ``D ≈ σ'(0)·‖(1, −2)‖₁ = 0.75``.

        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.sparse_gradient import finite_difference
        >>> w = jnp.array([[1.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])
        >>> d, f, v = finite_difference(lambda x: x @ w, jnp.zeros((1, 2)), jnp.array([0]), h=0.01)
        >>> round(float(d[0]), 3), float(f[0]), v.tolist()
        (0.75, 0.5, [[1.0, -1.0]])
    """
    z, vjp = jax.vjp(logits_fn, x)
    j = strongest_wrong_class(z, y)
    f1, f_vjp = jax.vjp(lambda zz: margin_sigmoid(zz, y, j), z)
    (dz,) = f_vjp(jnp.ones_like(f1))
    (g,) = vjp(dz)
    v = jax.lax.stop_gradient(jnp.sign(g))
    x2 = jax.lax.stop_gradient(x) + h * v
    f2 = margin_sigmoid(logits_fn(x2), y, j)
    return (f2 - f1) / h, f1, v


def penalty(logits_fn, x, y, h: float = 0.01):
    """``mean(D²)``, the SR regularizer (without λ)."""
    d, _, _ = finite_difference(logits_fn, x, y, h)
    return jnp.mean(jnp.square(d))


def sparse_gradient(model, *, lam: float = 0.001, h: float = 0.01):
    """SR loss transform: ``L(x) + λ·mean(D²)`` (see the module docstring).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.defenses import sparse_gradient
        >>> from jsnn.defenses import base
        >>> model, params, batch, key, loss_fn = base.linear_problem()  # a linear 3-class model
        >>> clean, _ = jax.jit(loss_fn)(params, {}, batch, key)
        >>> sr_loss_fn = jax.jit(sparse_gradient(model, lam=0.5)(loss_fn))
        >>> loss, (_, aux) = sr_loss_fn(params, {}, batch, key)
        >>> pen = aux["metrics"]["sr_penalty"]
        >>> bool(pen > 0), bool(jnp.allclose(loss, clean + 0.5 * pen))
        (True, True)
    """
    lam = check_number(lam, "defense.sr.lam", low=0.0)
    h = check_number(h, "defense.sr.h", low=0.0, low_open=True)

    def transform(loss_fn):
        def sr_loss_fn(params, model_state, batch, key):
            k_loss, k_fwd = jax.random.split(key)
            loss, (new_state, aux) = loss_fn(params, model_state, batch, k_loss)
            fwd = lambda xx: train_forward(model, params, model_state, xx, k_fwd)[0]
            d, _, _ = finite_difference(fwd, batch["image"], batch["label"], h)
            reg = jnp.mean(jnp.square(d))
            aux = base.with_metrics(aux, sr_penalty=reg, sr_grad_l1=jnp.mean(jnp.abs(d)))
            return loss + lam * reg, (new_state, aux)

        return sr_loss_fn

    return transform
