"""Losses: per-example cross-entropy and KL, accuracy, and the vanilla training loss.

Every training loss follows one contract (DESIGN.md, "Defenses are loss transforms")::

    loss_fn(params, model_state, batch, key) -> (loss, (model_state, aux))
    aux = {"metrics": {...}, "logits": ..., "image": ..., "intermediates": ...}

``aux["metrics"]`` are the scalars logged by :func:`jsnn.train.make_train_step`; ``"logits"``
are the training-mode logits of the forward the loss ran on ``aux["image"]`` (the images it saw,
the very array object, so a wrapping defense can tell whether that forward was on *its* batch)
and ``"intermediates"`` that forward's ``"intermediates"`` collection (when the loss was built
asking for it). A regularizing defense (MFDV, distill, RSNN) reuses them instead of
running the clean forward again; under ``jit`` unused outputs are pruned, so carrying them is free.
:func:`cross_entropy_loss_fn` is the vanilla loss; the defenses of :mod:`jsnn.defenses` wrap it.

Example:
    >>> import jax.numpy as jnp
    >>> from jsnn import losses
    >>> z = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    >>> float(losses.accuracy(z, jnp.array([0, 0]))), losses.cross_entropy(z, jnp.array([0, 1])).shape
    (0.5, (2,))
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jsnn.models.base import train_forward


def cross_entropy(logits, labels):
    """Per-example softmax cross-entropy with integer labels.

    Example:
        >>> import math, jax.numpy as jnp
        >>> from jsnn.losses import cross_entropy
        >>> ce = cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))  # uniform over 4 classes
        >>> ce.shape, round(float(ce[0]), 4) == round(math.log(4), 4)
        ((2,), True)
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def accuracy(logits, labels):
    """Mean of ``argmax(logits) == labels``."""
    return jnp.mean(jnp.argmax(logits, -1) == labels)


def kl_divergence(p_logits, q_logits, temperature: float = 1.0):
    """Per-example ``KL(softmax(p/τ) ‖ softmax(q/τ))``.

    Example:
        >>> import math, jax.numpy as jnp
        >>> from jsnn.losses import kl_divergence
        >>> p, q = jnp.array([[0.0, 0.0]]), jnp.array([[math.log(3.0), 0.0]])  # (1/2, 1/2) vs (3/4, 1/4)
        >>> round(float(kl_divergence(p, q)[0]), 4), round(0.5 * math.log(4 / 3), 4)
        (0.1438, 0.1438)
        >>> float(kl_divergence(q, q)[0])
        0.0
    """
    log_p = jax.nn.log_softmax(p_logits / temperature, axis=-1)
    log_q = jax.nn.log_softmax(q_logits / temperature, axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def cross_entropy_loss_fn(model: nn.Module, *, intermediates: bool = True):
    """The vanilla loss ``loss_fn(params, model_state, batch, key) -> (loss, (model_state, aux))``.

    Mean softmax cross-entropy of the time-averaged logits; BatchNorm in train mode. ``aux`` as in
    the module docstring; ``intermediates=False`` leaves ``aux["intermediates"]`` out.

    Example:
        >>> import jax, jax.numpy as jnp, math
        >>> from jsnn import get_model
        >>> from jsnn.losses import cross_entropy_loss_fn
        >>> model, x = get_model("digits_mlp", hidden=(8,), T=2), jnp.zeros((4, 8, 8, 1))
        >>> variables = jax.jit(model.init)(jax.random.key(0), x)
        >>> params = variables.pop("params")
        >>> params = jax.tree.map(jnp.zeros_like, params)  # zero weights: uniform logits
        >>> loss, (state, aux) = cross_entropy_loss_fn(model)(
        ...     params, variables, {"image": x, "label": jnp.arange(4)}, jax.random.key(1))
        >>> round(float(loss), 4) == round(math.log(10), 4), sorted(aux["metrics"])  # CE of uniform, 10 classes
        (True, ['accuracy', 'loss'])
        >>> sorted(aux), aux["logits"].shape, aux["image"] is x
        (['image', 'intermediates', 'logits', 'metrics'], (4, 10), True)
    """

    def loss_fn(params, model_state, batch, key):
        x = batch["image"]
        out = train_forward(model, params, model_state, x, key, intermediates=intermediates)
        logits, new_state = out[0], out[1]
        loss = cross_entropy(logits, batch["label"]).mean()
        aux = {"metrics": {"loss": loss, "accuracy": accuracy(logits, batch["label"])}, "logits": logits, "image": x}
        if intermediates:
            aux["intermediates"] = out[2]
        return loss, (new_state, aux)

    return loss_fn
