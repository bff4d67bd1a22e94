"""Plumbing shared by the defenses: the evaluation forward of inner attacks, batches, settings.

Every defense is ``transform(loss_fn) -> loss_fn`` with
``loss_fn(params, model_state, batch, key) -> (loss, (model_state, aux))`` (``aux`` carries
``"metrics"`` and the forward's outputs; :mod:`jsnn.losses`, DESIGN.md "Defenses are loss
transforms"). A defense that needs the model gets it at construction; its training-mode forwards
go through :func:`jsnn.models.base.train_forward` and its losses are :mod:`jsnn.losses`. Here:

* :func:`with_metrics` — ``aux`` with metrics added; :func:`reusable` — the wrapped loss's forward
  outputs when that forward ran on the defense's own images (else ``None``: run your own).

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
    >>> f = base.eval_logits_fn(model, params, state)  # BatchNorm running statistics
    >>> bool(jnp.allclose(f(x, jax.random.key(2)), model.apply(variables, x)))
    True
"""

from __future__ import annotations

from typing import Any, Mapping

import jax

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


def with_metrics(aux, **metrics):
    """``aux`` with ``metrics`` merged into ``aux["metrics"]`` (the forward's outputs kept).

    Example:
        >>> from jsnn.defenses.base import with_metrics
        >>> with_metrics({"metrics": {"loss": 1.0}, "logits": 2}, kl=0.5)
        {'metrics': {'loss': 1.0, 'kl': 0.5}, 'logits': 2}
    """
    return {**aux, "metrics": {**aux["metrics"], **metrics}}


def reusable(aux, x, *, intermediates: bool = False):
    """The wrapped loss's ``aux`` if its forward ran on exactly ``x`` (and has intermediates if asked), else None.

    "Exactly" is object identity (the same array or tracer): a wrapped transform that changed the
    images (noise, adversarial training) made its logits on other inputs, so the caller runs its
    own clean forward as before.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.base import reusable
        >>> x = jnp.zeros(2)
        >>> aux = {"metrics": {}, "logits": x, "image": x}
        >>> reusable(aux, x) is aux, reusable(aux, x + 0), reusable(aux, x, intermediates=True)
        (True, None, None)
    """
    if aux.get("image") is not x or "logits" not in aux:
        return None
    if intermediates and "intermediates" not in aux:
        return None
    return aux


def eval_logits_fn(model, params, model_state):
    """``logits_fn(x, key)`` in evaluation mode from the current parameters, gradient-stopped.

    Returned as a :class:`jax.tree_util.Partial` whose leaves are the variables, so the
    jit-compiled attacks of :mod:`jsnn.attacks` take the parameters as traced arguments.
    """
    return logits_fn(model, jax.lax.stop_gradient({"params": params, **model_state}))


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
