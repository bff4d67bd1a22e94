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

import functools
from typing import Sequence

import flax.linen as nn
from jax.tree_util import Partial

from jsnn.layers import EncoderConfig, LIF, NeuronConfig


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
        if x.ndim != 4:
            raise ValueError(f"model input: expected images of rank 4 [B, H, W, C], got shape {x.shape}")
        if self.input_channels is not None and x.shape[-1] != self.input_channels:
            raise ValueError(f"model input: expected {self.input_channels} channels (NHWC), got shape {x.shape}")


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
        cfg = cfg._replace(surrogate=surrogate)
    if gradient is not None:
        cfg = cfg._replace(gradient=gradient)
    return model.clone(neuron=cfg)


def _eval_apply(model: SpikingModel, gradient, variables, surrogate, x, key):
    m = with_estimator(model, surrogate=surrogate, gradient=gradient)
    return m.apply(variables, x, train=False, rngs={"noise": key})


def logits_fn(model: SpikingModel, variables, *, surrogate=None, gradient: str | None = None) -> Partial:
    """Evaluation-mode forward ``logits_fn(x, key) -> logits`` for attacks and certification.

    BatchNorm uses running statistics; ``key`` feeds the stochastic encoder and
    stochastic layers (rng ``"noise"``) and is ignored by deterministic models.
    ``surrogate`` / ``gradient`` pick the backward estimator independently of training.
    The result is a :class:`jax.tree_util.Partial` whose leaves are ``variables`` and
    ``surrogate``: passed to a jitted attack or sampler, the parameters are traced
    arguments, not constants compiled into the program.
    """
    # functools.partial compares by identity: a model's fields may hold arrays or tracers (surrogate
    # widths), which jit's cache cannot compare by value. So each logits_fn call compiles anew.
    return Partial(functools.partial(_eval_apply, model, gradient), variables, surrogate)
