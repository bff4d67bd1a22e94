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
* :func:`linear_problem` — the tiny linear classification problem the defenses' examples use.
* :func:`settings` — a defense's config sub-dict merged over its defaults, with unknown
  fields rejected; :func:`signature_defaults` — those defaults, read from the defense's factory
  signature (their one home; validation is :mod:`jsnn.config`'s).

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

import inspect
import typing
from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

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


def signature_defaults(factory, skip=()) -> dict:
    """The settings of a defense factory and their defaults: its parameters that have one (minus ``skip``).

    The factory's signature is the one home of a defense's defaults; ``config.defense.<name>``
    overrides them (:func:`settings`).

    Example:
        >>> from jsnn.defenses.base import signature_defaults
        >>> def noise(*, sigma: float = 0.03, clip: bool = True): ...
        >>> signature_defaults(noise)
        {'sigma': 0.03, 'clip': True}
    """
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()
            if p.default is not p.empty and p.name not in skip}


def setting_type(factory, name: str) -> type:
    """The type a setting of ``factory`` takes, from its annotation (``Optional[float]`` → ``float``).

    Example:
        >>> from typing import Optional
        >>> from jsnn.defenses.base import setting_type
        >>> def at(*, alpha: Optional[float] = None, norm: str = "linf"): ...
        >>> setting_type(at, "alpha"), setting_type(at, "norm")
        (<class 'float'>, <class 'str'>)
    """
    hint = typing.get_type_hints(factory).get(name, str)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


class _Linear(nn.Module):
    """``model(x, train) -> logits``: one dense layer on the flattened image."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))


class LinearProblem(NamedTuple):
    """A model, its parameters, a batch, a key and the vanilla ``loss_fn`` (see :func:`linear_problem`)."""

    model: nn.Module
    params: Any
    batch: dict
    key: jax.Array
    loss_fn: Callable


def linear_problem() -> LinearProblem:
    """Two 2×2 grey images (labels 0, 1) and a 3-class linear model with its cross-entropy loss.

    The setting of the defenses' examples: CE of a linear model is convex in the input, so an
    attack step provably raises it.

    Example:
        >>> import jax
        >>> from jsnn.defenses.base import linear_problem
        >>> model, params, batch, key, loss_fn = linear_problem()
        >>> loss, (_, aux) = jax.jit(loss_fn)(params, {}, batch, key)
        >>> batch["image"].shape, aux["logits"].shape, round(float(loss), 3) > 0
        ((2, 2, 2, 1), (2, 3), True)
    """
    from jsnn.losses import cross_entropy_loss_fn

    model, x = _Linear(), jnp.full((2, 2, 2, 1), 0.5)
    params = jax.jit(model.init)(jax.random.key(0), x)["params"]
    batch = {"image": x, "label": jnp.array([0, 1])}
    return LinearProblem(model, params, batch, jax.random.key(1), cross_entropy_loss_fn(model))
