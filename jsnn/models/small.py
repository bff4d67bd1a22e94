"""Small spiking models for 8×8 digits (and MNIST-sized inputs): a conv SNN and an MLP."""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn

from jsnn.layers import Encoder, Normalize, SpikingNeuron, batch_norm, time_average
from jsnn.models.base import SpikingModel


class SpikingConvNet(SpikingModel):
    """Conv-BN-spike stages, average pooling, a spiking hidden dense layer, a linear readout.

    Default (digits): conv32 → conv64 → avgpool2 → fc128 → fc10, all spiking but the readout.
    """

    features: Sequence[int] = (32, 64)
    hidden: int = 128

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.check_input(x)
        h = Encoder(self.T, self.encoder)(x)
        h = Normalize(self.mean, self.std)(h)
        for f in self.features:
            h = nn.Conv(f, (3, 3), padding="SAME", use_bias=False)(h)
            h = batch_norm(train)(h)
            h = SpikingNeuron(self.T, self.neuron)(h)
        h = nn.avg_pool(h, (2, 2), (2, 2))
        h = h.reshape((h.shape[0], -1))
        h = nn.Dense(self.hidden, use_bias=False)(h)
        h = batch_norm(train)(h)
        h = SpikingNeuron(self.T, self.neuron)(h)
        logits = nn.Dense(self.num_classes)(h)
        return time_average(logits, self.T)


class SpikingMLP(SpikingModel):
    """Flatten → (dense-BN-spike)×len(hidden) → linear readout."""

    hidden: Sequence[int] = (256, 128)

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.check_input(x)
        h = Encoder(self.T, self.encoder)(x)
        h = Normalize(self.mean, self.std)(h)
        h = h.reshape((h.shape[0], -1))
        for f in self.hidden:
            h = nn.Dense(f, use_bias=False)(h)
            h = batch_norm(train)(h)
            h = SpikingNeuron(self.T, self.neuron)(h)
        logits = nn.Dense(self.num_classes)(h)
        return time_average(logits, self.T)


DigitsConv = functools.partial(SpikingConvNet, features=(32, 64), hidden=128)
DigitsMLP = functools.partial(SpikingMLP, hidden=(256, 128))
