"""Plumbing shared by the defenses: the model's forwards inside a loss, keys, settings.

Every defense is ``transform(loss_fn) -> loss_fn`` with
``loss_fn(params, model_state, batch, key) -> (loss, (model_state, metrics))``
(DESIGN.md, "Defenses are loss transforms"). A defense that needs the model gets it at
construction and runs its own forwards with the helpers here:

* :func:`train_forward` — the training-mode forward (BatchNorm batch statistics), with the
  same key split as :func:`jsnn.train.cross_entropy_loss_fn` (``noise, dropout = split(key)``),
  optionally returning the ``"intermediates"`` collection.
* :func:`eval_logits_fn` — the evaluation-mode ``logits_fn(x, key)`` built from the *current*
  parameters under ``stop_gradient`` (BatchNorm running statistics), which inner attacks
  (adversarial training, TRADES, RSNN's RFGSM) craft their examples against.
* :func:`settings` — a defense's config sub-dict merged over its defaults, with unknown
  fields rejected.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import get_model
    >>> from jsnn.defenses import base
    >>> model = get_model("digits_mlp", hidden=(8,), T=2)
    >>> x = jnp.full((3, 8, 8, 1), 0.5)
    >>> variables = jax.jit(model.init)(jax.random.key(0), x)
    >>> params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    >>> logits, new_state, inter = base.train_forward(model, params, state, x, jax.random.key(1),
    ...                                               intermediates=True)
    >>> logits.shape, inter["SpikingNeuron_0"]["current"][0].shape  # current: [T, B, 8]
    ((3, 10), (2, 3, 8))
    >>> bool(jnp.any(new_state["batch_stats"]["BatchNorm_0"]["mean"] != 0))  # running stats moved
    True
    >>> f = base.eval_logits_fn(model, params, state)  # BatchNorm running statistics
    >>> bool(jnp.allclose(f(x, jax.random.key(2)), model.apply(variables, x)))
    True
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from jsnn.models.base import logits_fn

def with_image(batch, image):
    """``batch`` with ``'image'`` replaced (other entries, e.g. labels, kept).

    Example:
        >>> from jsnn.defenses.base import with_image
        >>> batch = {"image": 0, "label": 1}
        >>> with_image(batch, 2), batch
        ({'image': 2, 'label': 1}, {'image': 0, 'label': 1})
    """
    return {**batch, "image": image}


def train_forward(model, params, model_state, x, key, *, intermediates: bool = False):
    """Training-mode forward ``(logits, new_model_state[, intermediates])``.

    Args:
      model: the Flax model.
      params, model_state: variables (``model_state`` holds ``batch_stats`` and any other
        non-parameter collection).
      x: images ``[B, H, W, C]`` in [0, 1].
      key: split as in the vanilla loss into the ``"noise"`` and ``"dropout"`` rngs.
      intermediates: also collect and return the ``"intermediates"`` collection.
    """
    noise_key, dropout_key = jax.random.split(key)
    mutable = ["batch_stats", "intermediates"] if intermediates else ["batch_stats"]
    logits, updates = model.apply({"params": params, **model_state}, x, train=True,
                                  rngs={"noise": noise_key, "dropout": dropout_key}, mutable=mutable)
    updates = dict(updates)
    inter = updates.pop("intermediates", {})
    new_state = {**model_state, **updates}
    if intermediates:
        return logits, new_state, inter
    return logits, new_state


def eval_logits_fn(model, params, model_state):
    """``logits_fn(x, key)`` in evaluation mode from the current parameters, gradient-stopped.

    Returned as a :class:`jax.tree_util.Partial` whose leaves are the variables, so the
    jit-compiled attacks of :mod:`jsnn.attacks` take the parameters as traced arguments.
    """
    return logits_fn(model, jax.lax.stop_gradient({"params": params, **model_state}))


def cross_entropy(logits, labels):
    """Per-example softmax cross-entropy with integer labels.

    Example:
        >>> import math, jax.numpy as jnp
        >>> from jsnn.defenses.base import cross_entropy
        >>> ce = cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))  # uniform over 4 classes
        >>> ce.shape, round(float(ce[0]), 4) == round(math.log(4), 4)
        ((2,), True)
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def accuracy(logits, labels):
    return jnp.mean(jnp.argmax(logits, -1) == labels)


def kl_divergence(p_logits, q_logits, temperature: float = 1.0):
    """Per-example ``KL(softmax(p/τ) ‖ softmax(q/τ))``.

    Example:
        >>> import math, jax.numpy as jnp
        >>> from jsnn.defenses.base import kl_divergence
        >>> p, q = jnp.array([[0.0, 0.0]]), jnp.array([[math.log(3.0), 0.0]])  # (1/2, 1/2) vs (3/4, 1/4)
        >>> round(float(kl_divergence(p, q)[0]), 4), round(0.5 * math.log(4 / 3), 4)
        (0.1438, 0.1438)
        >>> float(kl_divergence(q, q)[0])
        0.0
    """
    log_p = jax.nn.log_softmax(p_logits / temperature, axis=-1)
    log_q = jax.nn.log_softmax(q_logits / temperature, axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def settings(name: str, sub, defaults: Mapping[str, Any]) -> dict:
    """``defaults`` overridden by the fields of ``config.defense.<name>`` (a ConfigDict, dict or None).

    Raises:
      ValueError: a field that the defense does not know (listing the known ones).

    Example:
        >>> from jsnn.defenses.base import settings
        >>> settings("noise", {"sigma": 0.1}, {"sigma": 0.03, "clip": True})
        {'sigma': 0.1, 'clip': True}
        >>> settings("noise", {"sgima": 0.1}, {"sigma": 0.03, "clip": True})
        Traceback (most recent call last):
        ValueError: defense.noise.sgima: unknown field; allowed: clip, sigma
    """
    out = dict(defaults)
    if sub is None:
        return out
    items = sub.items() if hasattr(sub, "items") else dict(sub).items()
    for k, v in items:
        if k not in defaults:
            raise ValueError(f"defense.{name}.{k}: unknown field; allowed: {', '.join(sorted(defaults))}")
        out[k] = v
    return out


def check_range(value, field: str, *, low=None, high=None, low_open=False, high_open=False):
    """Validates a number in a range; ``ValueError`` naming the field otherwise.

    Example:
        >>> from jsnn.defenses.base import check_range
        >>> check_range(0.5, "defense.at.mix", low=0.0, high=1.0, low_open=True)
        0.5
        >>> check_range(0, "defense.at.mix", low=0.0, high=1.0, low_open=True)
        Traceback (most recent call last):
        ValueError: defense.at.mix: must be > 0.0 and <= 1.0, got 0
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: must be a number, got {value!r}") from None
    ok = v == v
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ValueError(f"{field}: must be {' and '.join(s for s in (lo, hi) if s)}, got {value!r}")
    return v


def check_int(value, field: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{field}: must be an integer >= {minimum}, got {value!r}")
    return value


def check_choice(value, field: str, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{field}: {value!r}; allowed: {', '.join(allowed)}")
    return value
