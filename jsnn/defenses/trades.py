"""TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and
Accuracy", ICML).

    x_adv = argmax_{‖x' − x‖∞ ≤ ε} KL(p(x) ‖ p(x'))      (PGD on the KL, BatchNorm in eval mode,
                                                          start x + 0.001·N(0, I), last iterate)
    loss  = L(x) + β·mean KL(p(x) ‖ p(x_adv))            (both forwards in training mode)

``L`` is the wrapped loss (cross-entropy for vanilla training). Defaults are the paper's
CIFAR-10 recipe: β = 6, ε = 0.031, step 0.007, 10 steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jsnn.config import check_int, check_number
from jsnn import losses
from jsnn.defenses import base, noise
from jsnn.models.base import train_forward


def craft_kl(logits_fn, x, key, *, eps: float, step_size: float, steps: int, init_std: float = 0.001):
    """TRADES' inner maximization: L∞ PGD on ``KL(p(x) ‖ p(x'))``, returning the last iterate.

    Args:
      logits_fn: ``logits_fn(x, key) -> logits`` (evaluation mode).
      x: clean images in [0, 1]; key: start noise and model noise (``fold_in`` per step).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.defenses.trades import craft_kl
        >>> w = jnp.array([[1.0, -1.0], [2.0, 0.0], [0.0, 3.0]])
        >>> logits_fn = lambda x, key: x.reshape((x.shape[0], -1)) @ w  # linear, 3 features
        >>> x = jnp.full((2, 3), 0.5)
        >>> x_adv = craft_kl(logits_fn, x, jax.random.key(0), eps=0.1, step_size=0.05, steps=3)
        >>> bool(jnp.all(jnp.abs(x_adv - x) <= 0.1 + 1e-6)), x_adv.shape
        (True, (2, 3))
    """
    from jsnn.attacks import common

    k_init, k_model = jax.random.split(key)
    p_clean = jax.lax.stop_gradient(logits_fn(x, k_model))
    x0 = noise.perturb(x, k_init, init_std)

    def kl_sum(xa, k):
        return losses.kl_divergence(p_clean, logits_fn(xa, k)).sum()

    def body(i, xa):
        g = jax.grad(kl_sum)(xa, jax.random.fold_in(k_model, i + 1))
        return common.project(xa + step_size * jnp.sign(g), x, eps, "linf")

    return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, x0))


def trades(model, *, beta: float = 6.0, eps: float = 0.031, step_size: float = 0.007, steps: int = 10,
           init_std: float = 0.001):
    """TRADES loss transform: ``L(x) + β·mean KL(p(x) ‖ p(x_adv))`` (module docstring).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.defenses import trades
        >>> from jsnn.defenses import base
        >>> model, params, batch, key, loss_fn = base.linear_problem()  # a linear 3-class model
        >>> clean, _ = jax.jit(loss_fn)(params, {}, batch, key)
        >>> trades_loss_fn = jax.jit(trades(model, beta=2.0, eps=0.1, steps=2)(loss_fn))
        >>> loss, (_, aux) = trades_loss_fn(params, {}, batch, key)
        >>> kl = aux["metrics"]["trades_kl"]
        >>> bool(kl > 0), bool(jnp.allclose(loss, clean + 2.0 * kl))
        (True, True)
    """
    beta = check_number(beta, "defense.trades.beta", low=0.0)
    eps = check_number(eps, "defense.trades.eps", low=0.0)
    step_size = check_number(step_size, "defense.trades.step_size", low=0.0)
    steps = check_int(steps, "defense.trades.steps")
    init_std = check_number(init_std, "defense.trades.init_std", low=0.0)

    def transform(loss_fn):
        def trades_loss_fn(params, model_state, batch, key):
            k_attack, k_loss, k_fwd = jax.random.split(key, 3)
            x = batch["image"]
            logits_fn = base.eval_logits_fn(model, params, model_state)
            x_adv = craft_kl(logits_fn, x, k_attack, eps=eps, step_size=step_size, steps=steps, init_std=init_std)
            loss, (new_state, aux) = loss_fn(params, model_state, batch, k_loss)
            inner = base.reusable(aux, x)
            if inner is None:  # a wrapped transform changed the images: run our own clean forward
                z_clean, _ = train_forward(model, params, model_state, x, k_fwd)
            else:
                z_clean = inner["logits"]
            z_adv, _ = train_forward(model, params, model_state, x_adv, k_fwd)
            kl = losses.kl_divergence(z_clean, z_adv).mean()
            aux = base.with_metrics(aux, trades_kl=kl, trades_adv_accuracy=losses.accuracy(z_adv, batch["label"]))
            return loss + beta * kl, (new_state, aux)

        return trades_loss_fn

    return transform
