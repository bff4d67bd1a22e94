"""Spiking VGG: conv-BN-spike stages with average pooling, then a spiking FC classifier.

The VGG-11 of the robustness papers (SNN-RAT, Ding et al. 2022; SR, Liu et al. 2024;
RSNN, Ding et al. 2024) is

  conv 64-A-128-256-A-512-512-512-A-512-512 (3×3, BN over merged T·B, spike, ``A`` = AvgPool 2)
  → flatten → FC 8192 → 4096 (spike) → FC 4096 → 4096 (spike) → FC → classes

at 32×32 input: the flattened size is ``512·(H/8)·(W/8)`` (8192 at 32×32), so it follows
from the input resolution. Unlike the ResNets, VGG flattens (no global average pooling), as
in the papers' code. The FC hidden layers have no BatchNorm there (``fc_batch_norm=False``).

Initialisation follows the PyTorch references: conv kernels Kaiming-normal (fan-out, ReLU
gain), dense kernels PyTorch's default ``U(±1/√fan_in)`` and zero biases; BatchNorm γ=1, β=0.

Example:
    VGG-11 is slow to initialise on a CPU; :func:`jax.eval_shape` checks its shapes without compute.

    >>> import jax, jax.numpy as jnp
    >>> from jsnn.models import VGG11
    >>> model, x = VGG11(T=1), jnp.zeros((2, 32, 32, 3))
    >>> v = jax.eval_shape(model.init, jax.random.key(0), x)
    >>> [v["params"][f"Dense_{i}"]["kernel"].shape for i in range(3)]  # 512·4·4 = 8192 at 32×32
    [(8192, 4096), (4096, 4096), (4096, 10)]
    >>> jax.eval_shape(model.apply, v, x).shape
    (2, 10)
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import flax.linen as nn

from jsnn.layers import Conv, Dense, SpikingNeuron, avg_pool, batch_norm, time_average
from jsnn.models.base import SpikingModel
from jsnn.models.stem import encode_first
from jsnn.neuron import NeuronConfig

# PyTorch-reference initialisers (torchvision / SNN-RAT / SpikingJelly models).
CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")  # kaiming_normal_(fan_out)
DENSE_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # nn.Linear default

POOLS = ("A", "M")

Stage = Union[int, str]


def check_stages(stages: Sequence[Stage], field: str = "model.stages") -> tuple:
    """Validates a VGG layer list: positive ints (conv widths) and ``"A"``/``"M"`` (avg/max pool 2).

    Example:
        >>> from jsnn.models.vgg import check_stages
        >>> check_stages([64, "A", 128, "M"])
        (64, 'A', 128, 'M')
        >>> check_stages([64, "P"])
        Traceback (most recent call last):
        ValueError: model.stages: entry 'P' in (64, 'P'); allowed: positive conv widths or 'A', 'M' ...
    """
    stages = tuple(stages)
    for s in stages:
        ok = (s in POOLS) if isinstance(s, str) else (isinstance(s, int) and not isinstance(s, bool) and s > 0)
        if not ok:
            raise ValueError(f"{field}: entry {s!r} in {stages!r}; allowed: positive conv widths "
                             f"or {', '.join(repr(p) for p in POOLS)} (avg / max pool 2)")
    if not any(isinstance(s, int) for s in stages):
        raise ValueError(f"{field}: needs at least one conv width, got {stages!r}")
    return stages


def check_rate(rate: float, field: str = "model.dropout") -> float:
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"{field}: dropout rate must be in [0, 1), got {rate!r}")
    return float(rate)


def spiking_dense(h, features: int, *, T: int, neuron: NeuronConfig, train: bool, dropout: float = 0.0,
                  use_batch_norm: bool = False):
    """Dense → (BN) → spike → (dropout) on merged ``[B·T, F]``; call inside a compact module.

    Dropout (rng ``"dropout"``) is active only when ``train`` and ``dropout > 0``; the mask is
    drawn independently per merged T·B row, as ``nn.Dropout`` on merged time in the papers' code.
    """
    h = Dense(features, use_bias=not use_batch_norm, kernel_init=DENSE_INIT)(h)
    if use_batch_norm:
        h = batch_norm(train)(h)
    h = SpikingNeuron(T, neuron)(h)
    if train and dropout > 0:
        h = nn.Dropout(dropout, deterministic=False)(h)
    return h


class SpikingVGG(SpikingModel):
    """Generic spiking VGG.

    ``x → encoder → normalize → [conv3×3-BN-spike | pool]* → flatten → [FC-spike]* → FC → mean over T``.

    Attributes:
      stages: conv widths and pools, e.g. ``(64, "A", 128, 128, "A")``; ``"A"`` avg-pool 2, ``"M"`` max-pool 2.
      hidden: widths of the spiking FC hidden layers (``(4096, 4096)`` for VGG-11).
      dropout: dropout rate after each spiking FC hidden layer (train only; rng ``"dropout"``).
      fc_batch_norm: BatchNorm (merged T·B) in the FC hidden layers; the papers use none.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.models import SpikingVGG
        >>> model = SpikingVGG(stages=(4, "A", 8, "M"), hidden=(16,), T=2, num_classes=3)
        >>> x = jnp.zeros((5, 8, 8, 1))
        >>> v = jax.eval_shape(model.init, jax.random.key(0), x)
        >>> v["params"]["Dense_0"]["kernel"].shape  # two pools: 8·(8/4)·(8/4) = 32 inputs
        (32, 16)
        >>> jax.eval_shape(model.apply, v, x).shape
        (5, 3)
    """

    stages: Sequence[Stage] = (64, "A", 128, 256, "A", 512, 512, 512, "A", 512, 512)
    hidden: Sequence[int] = (4096, 4096)
    dropout: float = 0.0
    fc_batch_norm: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.check_input(x)
        stages = check_stages(self.stages)
        rate = check_rate(self.dropout)
        n_pool = sum(1 for s in stages if s in POOLS)
        if min(x.shape[-3], x.shape[-2]) < 2 ** n_pool:
            raise ValueError(f"model input: {n_pool} pooling stages need H, W >= {2 ** n_pool}, got shape {x.shape}")
        h = None if stages else encode_first(self, x, lambda a: a)
        for i, s in enumerate(stages):
            if s == "A":
                layer = lambda a: avg_pool(a, (2, 2))
            elif s == "M":
                layer = lambda a: nn.max_pool(a, (2, 2), (2, 2))
            else:
                layer = Conv(s, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=CONV_INIT)
            h = encode_first(self, x, layer) if i == 0 else layer(h)  # direct coding: once over T
            if s not in POOLS:
                h = batch_norm(train)(h)
                h = SpikingNeuron(self.T, self.neuron)(h)
        h = h.reshape((h.shape[0], -1))
        for f in self.hidden:
            h = spiking_dense(h, f, T=self.T, neuron=self.neuron, train=train, dropout=rate,
                              use_batch_norm=self.fc_batch_norm)
        logits = Dense(self.num_classes, kernel_init=DENSE_INIT)(h)
        return time_average(logits, self.T)


# SNN-RAT's VGG-5 feature stack with a single linear readout (a small CIFAR model).
VGG5 = functools.partial(SpikingVGG, stages=(64, "A", 128, 128, "A"), hidden=())
# The robustness papers' VGG-11 (FC 8192→4096→4096→classes at 32×32).
VGG11 = functools.partial(SpikingVGG, stages=(64, "A", 128, 256, "A", 512, 512, 512, "A", 512, 512),
                          hidden=(4096, 4096))
