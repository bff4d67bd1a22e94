"""Shared parts of every jsnn model: encoder → normalize → body → time-averaged logits.

Example:
    :func:`logits_fn` is the evaluation-mode forward that attacks and certification call.

    >>> import jax, jax.numpy as jnp
    >>> from jsnn import get_model, surrogate
    >>> from jsnn.models import logits_fn
    >>> model, x = get_model("digits_mlp", hidden=(8,), T=2), jnp.full((3, 8, 8, 1), 0.5)
    >>> variables = jax.jit(model.init)(jax.random.key(0), x)
    >>> f = logits_fn(model, variables, surrogate=surrogate.atan(2.0))  # the attack's estimator
    >>> z = f(x, jax.random.key(1))  # the key feeds stochastic encoders; unused here
    >>> z.shape, bool(jnp.allclose(z, model.apply(variables, x)))  # same forward, BatchNorm eval
    ((3, 10), True)
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
from jax.tree_util import Partial

from jsnn import encoding
from jsnn import surrogate as surrogate_lib
from jsnn.layers import EncoderConfig, attack_surrogate
from jsnn.neuron import LIF, NeuronConfig


class SpikingModel(nn.Module):
    """Base of the registered models; subclasses implement ``__call__(x, train)`` (body on merged B·T).

    Attributes:
      num_classes: output classes.
      T: time steps (≥ 1).
      neuron: neuron preset of every spiking layer.
      encoder: input encoder.
      mean, std: per-channel normalization applied after encoding.
      input_channels: expected image channels (checked at call time).

    Example:
        A new model implements ``__call__(x, train)``: images ``[B, H, W, C]`` → logits ``[B, K]``.

        >>> import flax.linen as nn, jax, jax.numpy as jnp
        >>> from jsnn.layers import Encoder, SpikingNeuron, time_average
        >>> from jsnn.models import SpikingModel
        >>> class Tiny(SpikingModel):
        ...     @nn.compact
        ...     def __call__(self, x, train=False):
        ...         self.check_input(x)
        ...         h = Encoder(self.T, self.encoder)(x)  # merged [B·T, H, W, C]
        ...         h = SpikingNeuron(self.T, self.neuron)(nn.Dense(4)(h.reshape((h.shape[0], -1))))
        ...         return time_average(nn.Dense(self.num_classes)(h), self.T)
        >>> model, x = Tiny(num_classes=3, T=2, input_channels=1), jnp.zeros((5, 4, 4, 1))
        >>> jax.eval_shape(model.init_with_output, jax.random.key(0), x)[0].shape
        (5, 3)
        >>> model.init(jax.random.key(0), jnp.zeros((5, 4, 4, 3)))
        Traceback (most recent call last):
        ValueError: model input: expected 1 channels (NHWC), got shape (5, 4, 4, 3)
        ...
    """

    num_classes: int = 10
    T: int = 4
    neuron: NeuronConfig = LIF
    encoder: EncoderConfig = EncoderConfig()
    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)
    input_channels: int | None = None

    @property
    def stochastic(self) -> bool:
        """Whether logits depend on the noise key: a stochastic encoder here; models with noisy layers
        (MFDV's features) override it. Decides EOT and averaged clean evaluation."""
        return self.encoder.stochastic

    def check_input(self, x):
        if self.encoder.name in encoding.FRAME_ENCODERS:
            if x.ndim != 5:
                raise ValueError(f"model input: encoder {self.encoder.name!r} expects event frames of rank 5 "
                                 f"[B, T, H, W, 2], got shape {x.shape}")
        elif x.ndim != 4:
            raise ValueError(f"model input: expected images of rank 4 [B, H, W, C], got shape {x.shape}")
        if self.input_channels is not None and x.shape[-1] != self.input_channels:
            raise ValueError(f"model input: expected {self.input_channels} channels (NHWC), got shape {x.shape}")


# Attack-time gradient modes that are not neuron dynamics (jsnn.neuron.GRADIENTS) but a context the eval
# forward runs in: name -> context(surrogate) (e.g. jsnn.layers.neuron_override(...) for estimators that read
# the layer's membrane potential). ``logits_fn(..., gradient=name)`` enters it; the model is left unchanged.
ESTIMATOR_MODES: dict = {}


def with_estimator(model: SpikingModel, *, surrogate=None, gradient: str | None = None) -> SpikingModel:
    """The same model (same parameters) with another backward estimator.

    Attacks choose their surrogate independently of training:
    ``with_estimator(model, surrogate=surrogate.atan(2.0))`` or ``gradient="bptr"``.

    Example:
        >>> from jsnn import get_model, surrogate, with_estimator
        >>> model = get_model("digits_conv")
        >>> m = with_estimator(model, surrogate=surrogate.atan(2.0), gradient="bptr")
        >>> m.neuron.surrogate, m.neuron.gradient, m.neuron.tau  # other neuron fields kept
        (atan(2), 'bptr', 2.0)
        >>> model.neuron.surrogate is None, model.neuron.gradient  # the original is unchanged
        (True, 'bptt')
    """
    if surrogate is None and gradient is None:
        return model  # also any non-spiking model (an ANN teacher, a test's linear model)
    cfg = model.neuron
    if surrogate is not None:
        cfg = cfg._replace(surrogate=surrogate_lib.spec(surrogate))  # Python numbers: the model stays hashable
    if gradient is not None:
        cfg = cfg._replace(gradient=gradient)
    return model.clone(neuron=cfg.check())


def _stochastic_reason(model) -> str | None:
    if not getattr(model, "stochastic", False):
        return None
    encoder = getattr(model, "encoder", None)
    if encoder is not None and encoder.stochastic:
        return f"encoder {encoder.name}"
    return f"{type(model).__name__} has noisy layers"


class _EvalForward(NamedTuple):
    """``(variables, surrogate, x, key) -> logits`` in evaluation mode.

    Equal and hashable by value (a Flax module compares by its fields, all Python values), so
    a jitted attack compiled for one :func:`logits_fn` serves every ``logits_fn`` of an equal
    model: each seed of a sweep, each checkpoint, each estimator passed as ``surrogate``.
    """

    model: SpikingModel
    gradient: str | None

    def __call__(self, variables, surrogate, x, key):
        mode = ESTIMATOR_MODES.get(self.gradient)
        model = self.model if mode is not None else with_estimator(self.model, gradient=self.gradient)
        if key is None:
            reason = _stochastic_reason(model)
            if reason is not None:
                raise ValueError(f"logits_fn: this model is stochastic ({reason}); pass a PRNG key")
            rngs = {}
        else:
            rngs = {"noise": key}
        with attack_surrogate(surrogate), (mode(surrogate) if mode is not None else contextlib.nullcontext()):
            return model.apply(variables, x, train=False, rngs=rngs)  # the surrogate: traced data, not a field


def logits_fn(model: SpikingModel, variables, *, surrogate=None, gradient: str | None = None) -> Partial:
    """Evaluation-mode forward ``logits_fn(x, key) -> logits`` for attacks and certification.

    BatchNorm uses running statistics; ``key`` feeds the stochastic encoder and stochastic
    layers (rng ``"noise"``); deterministic models also accept ``key=None``. ``surrogate``
    (``None`` = the model's own) and ``gradient`` (a mode of :data:`jsnn.neuron.GRADIENTS` or of
    :data:`ESTIMATOR_MODES`, static) pick the backward estimator independently of training.

    The result is a :class:`jax.tree_util.Partial` of a value-equal function whose leaves are
    ``variables`` and ``surrogate`` (as int32/float arrays): passed to a jitted attack, the
    parameters and the surrogate's shape and width are traced arguments, so one compiled attack
    serves every run of the same architecture and every surrogate, and ``jax.vmap`` over a
    :func:`jsnn.surrogate.stack` runs an ensemble of estimators in one program.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import get_model, surrogate
        >>> from jsnn.models import logits_fn
        >>> model, x = get_model("digits_mlp", hidden=(4,), T=2), jnp.full((1, 8, 8, 1), 0.5)
        >>> v = jax.jit(model.init)(jax.random.key(0), x)
        >>> logits_fn(model, v)(x, None).shape  # deterministic: no key needed
        (1, 10)
        >>> a = logits_fn(model, v, surrogate=surrogate.atan(2.0))
        >>> b = logits_fn(get_model("digits_mlp", hidden=(4,), T=2), v, surrogate=surrogate.triangle(1.0))
        >>> jax.tree.structure(a) == jax.tree.structure(b)  # the same jit cache entry
        True
        >>> from jsnn.layers import EncoderConfig
        >>> logits_fn(model.clone(encoder=EncoderConfig("poisson")), v)(x, None)
        Traceback (most recent call last):
        ValueError: logits_fn: this model is stochastic (encoder poisson); pass a PRNG key
    """
    data = None if surrogate is None else surrogate_lib.as_data(surrogate)
    return Partial(_EvalForward(model, gradient), variables, data)


def train_forward(model, params, model_state, x, key, *, intermediates: bool = False):
    """Training-mode forward ``(logits, new_model_state[, intermediates])`` (BatchNorm batch statistics).

    The training loss and every defense's own forwards go through here; :func:`logits_fn` is
    the evaluation-mode counterpart.

    Args:
      model: the Flax model.
      params, model_state: variables (``model_state`` holds ``batch_stats`` and any other
        non-parameter collection).
      x: images ``[B, H, W, C]`` in [0, 1].
      key: split as ``noise, dropout = split(key)`` into the ``"noise"`` and ``"dropout"`` rngs.
      intermediates: also collect and return the ``"intermediates"`` collection.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import get_model
        >>> from jsnn.models.base import train_forward
        >>> model, x = get_model("digits_mlp", hidden=(8,), T=2), jnp.full((3, 8, 8, 1), 0.5)
        >>> variables = jax.jit(model.init)(jax.random.key(0), x)
        >>> params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
        >>> logits, new_state, inter = train_forward(model, params, state, x, jax.random.key(1),
        ...                                          intermediates=True)
        >>> logits.shape, inter["SpikingNeuron_0"]["current"][0].shape  # current: [T, B, 8]
        ((3, 10), (2, 3, 8))
        >>> bool(jnp.any(new_state["batch_stats"]["BatchNorm_0"]["mean"] != 0))  # running stats moved
        True
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


class _Estimators(NamedTuple):
    """``(variables, surrogate, gradient) -> logits_fn``, equal by value like :class:`_EvalForward`."""

    model: SpikingModel

    def __call__(self, variables, surrogate, gradient):
        return logits_fn(self.model, variables, surrogate=surrogate, gradient=gradient)


def estimator_factory(model: SpikingModel, variables) -> Partial:
    """``make_logits_fn(surrogate, gradient) -> logits_fn`` for :func:`jsnn.attacks.ensemble`.

    Value-equal (the jitted ensemble compiled for one run serves the next); ``variables`` are
    its traced leaves. The ensemble stacks its BPTT estimators of any shapes and widths with
    :func:`jsnn.surrogate.stack` and vmaps this factory over them: one compiled program.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import get_model, surrogate
        >>> from jsnn.models import estimator_factory
        >>> model, x = get_model("digits_mlp", hidden=(4,), T=2), jnp.full((1, 8, 8, 1), 0.5)
        >>> v = jax.jit(model.init)(jax.random.key(0), x)
        >>> bank = surrogate.stack([surrogate.triangle(1.0), surrogate.sigmoid(4.0), surrogate.atan(2.0)])
        >>> make = estimator_factory(model, v)
        >>> jax.vmap(lambda s: make(s, "bptt")(x, None))(bank).shape  # [E, B, K]
        (3, 1, 10)
    """
    return Partial(_Estimators(model), variables)
