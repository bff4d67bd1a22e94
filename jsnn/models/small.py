"""Small spiking models for 8×8 digits (and MNIST-sized inputs): a conv SNN and an MLP.

``DigitsConv`` and ``DigitsMLP`` are the registered presets ``"digits_conv"`` and ``"digits_mlp"``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn.models import DigitsMLP
    >>> model, x = DigitsMLP(T=2), jnp.zeros((3, 8, 8, 1))
    >>> v = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
    >>> [v["params"][f"Dense_{i}"]["kernel"].shape for i in range(3)]  # 64 → 256 → 128 → 10
    [(64, 256), (256, 128), (128, 10)]
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn

from jsnn.layers import Conv, Dense, SpikingNeuron, avg_pool, batch_norm, time_average
from jsnn.models.base import SpikingModel
from jsnn.models.stem import encode_first


class SpikingConvNet(SpikingModel):
    """Conv-BN-spike stages, average pooling, a spiking hidden dense layer, a linear readout.

    Default (digits): conv32 → conv64 → avgpool2 → fc128 → fc10, all spiking but the readout.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.models import SpikingConvNet
        >>> model = SpikingConvNet(features=(4, 8), hidden=16, T=2, num_classes=3)
        >>> x = jnp.zeros((5, 8, 8, 1))
        >>> v = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> v["params"]["Dense_0"]["kernel"].shape  # avgpool 8×8 → 4×4: 4·4·8 = 128 inputs
        (128, 16)
        >>> jax.eval_shape(model.apply, v, x).shape
        (5, 3)
    """

    features: Sequence[int] = (32, 64)
    hidden: int = 128

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.check_input(x)
        conv = lambda f: Conv(f, (3, 3), padding="SAME", use_bias=False)
        h = None if self.features else encode_first(self, x, lambda a: a)
        for i, f in enumerate(self.features):
            h = encode_first(self, x, conv(f)) if i == 0 else conv(f)(h)
            h = batch_norm(train)(h)
            h = SpikingNeuron(self.T, self.neuron)(h)
        h = avg_pool(h, (2, 2))
        h = h.reshape((h.shape[0], -1))
        h = Dense(self.hidden, use_bias=False)(h)
        h = batch_norm(train)(h)
        h = SpikingNeuron(self.T, self.neuron)(h)
        logits = Dense(self.num_classes)(h)
        return time_average(logits, self.T)


class SpikingMLP(SpikingModel):
    """Flatten → (dense-BN-spike)×len(hidden) → linear readout.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.models import SpikingMLP
        >>> model, x = SpikingMLP(hidden=(16, 8), T=2), jnp.zeros((5, 28, 28, 1))
        >>> v = jax.eval_shape(model.init, jax.random.key(0), x)
        >>> v["params"]["Dense_0"]["kernel"].shape, jax.eval_shape(model.apply, v, x).shape
        ((784, 16), (5, 10))
    """

    hidden: Sequence[int] = (256, 128)

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.check_input(x)
        dense = lambda f: Dense(f, use_bias=False)
        flat = lambda a: a.reshape((a.shape[0], -1))
        h = None if self.hidden else flat(encode_first(self, x, lambda a: a))
        for i, f in enumerate(self.hidden):
            if i == 0:
                h = encode_first(self, x, lambda a: dense(f)(flat(a)))
            else:
                h = dense(f)(h)
            h = batch_norm(train)(h)
            h = SpikingNeuron(self.T, self.neuron)(h)
        logits = Dense(self.num_classes)(h)
        return time_average(logits, self.T)


DigitsConv = functools.partial(SpikingConvNet, features=(32, 64), hidden=128)
DigitsMLP = functools.partial(SpikingMLP, hidden=(256, 128))
