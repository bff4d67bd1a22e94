"""Spiking residual networks: WRN-16-4 (SNN-RAT), ResNet-19 (tdBN) and SEW-ResNet-18.

All three run the body on merged ``[B·T, H, W, C]`` activations, end with global average
pooling over space and a Dense readout (ResNet-19: a spiking FC-256 first), and average the
logits over T. Convolutions use PyTorch's padding (3×3 pad 1, 7×7 pad 3: symmetric), bias-free,
Kaiming-normal (fan-out) initialised.

* :class:`WideResNet` — Zagoruyko & Komodakis 2016 pre-activation blocks (BN-spike-conv) as in
  SNN-RAT (Ding et al. 2022): ``out = a0·shortcut + a1·residual`` with learnable mixing weights
  ``mix = [a0, a1]`` initialised to ``[0.5, 0.5]`` (RAT projects them onto the simplex).
* :class:`ResNet19` — Zheng et al. 2021, "Going Deeper With Directly-Trained Larger Spiking
  Neural Networks" (AAAI): conv-tdBN-spike blocks, stages 128×3, 256×3, 512×2, then
  avgpool → FC-256 (spike) → FC.
* :class:`SEWResNet` — Fang et al. 2021, "Deep Residual Learning in Spiking Neural Networks"
  (NeurIPS): ``out = g(SN(residual), shortcut_spikes)`` with g = ADD (default), AND or IAND.

Example:
    The full-size models are slow to initialise on a CPU; :func:`jax.eval_shape` checks them
    without compute.

    >>> import jax, jax.numpy as jnp
    >>> from jsnn.models import ResNet19, SEWResNet18, WRN16_4
    >>> x = jnp.zeros((2, 32, 32, 3))
    >>> for make in (WRN16_4, ResNet19, SEWResNet18):
    ...     model = make(T=1, num_classes=100)
    ...     v = jax.eval_shape(model.init, jax.random.key(0), x)
    ...     n = sum(p.size for p in jax.tree.leaves(v["params"]))
    ...     print(type(model).__name__, jax.eval_shape(model.apply, v, x).shape, f"{n / 1e6:.1f}M")
    WideResNet (2, 100) 2.8M
    SpikingResNet (2, 100) 12.7M
    SEWResNet (2, 100) 11.2M
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jsnn.layers import Conv, Dense, SpikingNeuron, batch_norm, time_average
from jsnn.models.base import SpikingModel
from jsnn.models.stem import encode_first
from jsnn.neuron import NeuronConfig
from jsnn.models.vgg import CONV_INIT, DENSE_INIT, check_rate, spiking_dense

PAD1 = ((1, 1), (1, 1))


def conv3x3(features: int, strides: int = 1, name: Optional[str] = None):
    """3×3 conv, PyTorch padding 1, no bias (a BatchNorm follows or precedes it)."""
    return Conv(features, (3, 3), (strides, strides), padding=PAD1, use_bias=False,
                   kernel_init=CONV_INIT, name=name)


def conv1x1(features: int, strides: int = 1, name: Optional[str] = None):
    """1×1 projection shortcut, no bias."""
    return Conv(features, (1, 1), (strides, strides), padding="VALID", use_bias=False,
                   kernel_init=CONV_INIT, name=name)


def global_avg_pool(h):
    """Mean over the spatial axes of ``[N, H, W, C]`` → ``[N, C]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.models.resnet import global_avg_pool
        >>> global_avg_pool(jnp.arange(8.0).reshape(1, 2, 2, 2)).tolist()  # channel 0: 0, 2, 4, 6
        [[3.0, 4.0]]
    """
    return jnp.mean(h, axis=(1, 2))


def td_batch_norm(train: bool, alpha: float, v_threshold: float, enabled: bool = True,
                  name: Optional[str] = None):
    """Threshold-dependent BatchNorm (tdBN, Zheng et al. 2021) over the merged T·B axis.

    tdBN normalises pre-activations to N(0, (α·V_th)²): ``y = λ·α·V_th·x̂ + β``. As in
    SpikingJelly's ``ThresholdDependentBatchNorm2d`` this is a BatchNorm whose scale λ is
    *initialised* to ``α·V_th`` (same function class; only the initial value and the
    weight decay on the scale differ from a fixed ``α·V_th`` multiplier). α = 1, and
    α = 1/√2 for the two BatchNorms whose outputs are summed in a residual block.
    ``enabled=False`` gives the plain BatchNorm of :func:`jsnn.layers.batch_norm`.

    Example:
        >>> import math, jax, jax.numpy as jnp
        >>> from jsnn.models.resnet import td_batch_norm
        >>> bn = td_batch_norm(train=True, alpha=1 / math.sqrt(2), v_threshold=1.0)
        >>> scale = bn.init(jax.random.key(0), jnp.zeros((4, 3)))["params"]["scale"]
        >>> [round(float(s), 4) for s in scale]  # λ starts at α·V_th
        [0.7071, 0.7071, 0.7071]
    """
    if not enabled:
        return batch_norm(train, name=name)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        scale_init=nn.initializers.constant(alpha * v_threshold), name=name)


# ----------------------------------------------------------------------------- WRN


class WideBlock(nn.Module):
    """Pre-activation wide basic block (SNN-RAT): BN-spike-conv3×3, BN-spike-(dropout)-conv3×3.

    When the width or stride changes, the pre-activated input feeds both branches and the
    shortcut is a 1×1 conv of it (Zagoruyko & Komodakis); otherwise the shortcut is the
    identity. ``out = mix[0]·shortcut + mix[1]·residual``, ``mix`` initialised to 1/2.
    """

    features: int
    strides: int
    T: int
    neuron: NeuronConfig
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        equal = x.shape[-1] == self.features and self.strides == 1
        o = SpikingNeuron(self.T, self.neuron)(batch_norm(train)(x))
        if not equal:
            x = o
        h = conv3x3(self.features, self.strides)(o)
        h = SpikingNeuron(self.T, self.neuron)(batch_norm(train)(h))
        if train and self.dropout > 0:
            h = nn.Dropout(self.dropout, deterministic=False)(h)
        h = conv3x3(self.features)(h)
        shortcut = x if equal else conv1x1(self.features, self.strides)(x)
        mix = self.param("mix", nn.initializers.constant(0.5), (2,), jnp.float32)
        return mix[0].astype(h.dtype) * shortcut + mix[1].astype(h.dtype) * h


class WideResNet(SpikingModel):
    """Spiking pre-activation Wide ResNet (WRN-depth-k) with convex residual mixing.

    conv3×3(16) → 3 groups of (depth−4)/6 :class:`WideBlock` (widths 16k, 32k, 64k; strides
    1, 2, 2) → BN → spike → global avg pool → Dense. WRN-16-4: widths 64, 128, 256, 2 blocks each.
    See the module docstring for an example.

    Attributes:
      depth: 6n + 4.
      widen_factor: k.
      dropout: dropout inside each block (train only; rng ``"dropout"``).
    """

    depth: int = 16
    widen_factor: int = 4
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.check_input(x)
        if not (isinstance(self.depth, int) and self.depth >= 10 and (self.depth - 4) % 6 == 0):
            raise ValueError(f"model.depth: Wide ResNet depth must be 6n + 4 with n >= 1, got {self.depth!r}")
        if not (isinstance(self.widen_factor, int) and self.widen_factor >= 1):
            raise ValueError(f"model.widen_factor: must be an integer >= 1, got {self.widen_factor!r}")
        rate = check_rate(self.dropout)
        n = (self.depth - 4) // 6
        k = self.widen_factor
        h = encode_first(self, x, conv3x3(16, name="stem"))
        for g, (width, stride) in enumerate(((16 * k, 1), (32 * k, 2), (64 * k, 2))):
            for i in range(n):
                h = WideBlock(width, stride if i == 0 else 1, self.T, self.neuron, rate,
                              name=f"group{g + 1}_block{i}")(h, train)
        h = SpikingNeuron(self.T, self.neuron)(batch_norm(train)(h))
        h = global_avg_pool(h)
        logits = Dense(self.num_classes, kernel_init=DENSE_INIT)(h)
        return time_average(logits, self.T)


# ----------------------------------------------------------------------------- ResNet-19 (tdBN)


class TdBasicBlock(nn.Module):
    """Post-activation basic block with tdBN: conv-tdBN(α=1)-spike-conv-tdBN(α=1/√2), + shortcut, spike.

    The shortcut is the identity, or conv1×1-tdBN(α=1/√2) when the width or stride changes.
    """

    features: int
    strides: int
    T: int
    neuron: NeuronConfig
    tdbn: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        vth = float(self.neuron.v_threshold)
        half = 1.0 / math.sqrt(2.0)
        h = conv3x3(self.features, self.strides)(x)
        h = td_batch_norm(train, 1.0, vth, self.tdbn)(h)
        h = SpikingNeuron(self.T, self.neuron)(h)
        h = conv3x3(self.features)(h)
        h = td_batch_norm(train, half, vth, self.tdbn)(h)
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = conv1x1(self.features, self.strides)(x)
            shortcut = td_batch_norm(train, half, vth, self.tdbn)(shortcut)
        else:
            shortcut = x
        return SpikingNeuron(self.T, self.neuron)(h + shortcut)


class SpikingResNet(SpikingModel):
    """tdBN spiking ResNet (Zheng et al. 2021): conv3×3-tdBN-spike stem, basic-block stages,
    global avg pool, spiking FC hidden layers, Dense readout.

    Attributes:
      stem_features: width of the 3×3 stem conv (stride 1).
      stages: ``(width, blocks, stride)`` per stage; ResNet-19: (128,3,1), (256,3,2), (512,2,2).
      hidden: spiking FC layers after pooling (ResNet-19: (256,)); no BatchNorm, as in the paper.
      tdbn: scale BatchNorms by α·V_th (tdBN); ``False`` gives plain BatchNorm (γ=1 init).
    """

    stem_features: int = 128
    stages: Sequence[Tuple[int, int, int]] = ((128, 3, 1), (256, 3, 2), (512, 2, 2))
    hidden: Sequence[int] = (256,)
    tdbn: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.check_input(x)
        stages = _check_stage_triples(self.stages)
        vth = float(self.neuron.v_threshold)
        h = encode_first(self, x, conv3x3(self.stem_features, name="stem"))
        h = td_batch_norm(train, 1.0, vth, self.tdbn, name="stem_bn")(h)
        h = SpikingNeuron(self.T, self.neuron, name="stem_sn")(h)
        for s, (width, blocks, stride) in enumerate(stages):
            for i in range(blocks):
                h = TdBasicBlock(width, stride if i == 0 else 1, self.T, self.neuron, self.tdbn,
                                 name=f"layer{s + 1}_block{i}")(h, train)
        h = global_avg_pool(h)
        for f in self.hidden:
            h = spiking_dense(h, f, T=self.T, neuron=self.neuron, train=train)
        logits = Dense(self.num_classes, kernel_init=DENSE_INIT)(h)
        return time_average(logits, self.T)


def _check_stage_triples(stages, field: str = "model.stages"):
    stages = tuple(tuple(s) for s in stages)
    for s in stages:
        if len(s) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in s):
            raise ValueError(f"{field}: each stage must be (width, blocks, stride) of integers >= 1, got {s!r}")
    if not stages:
        raise ValueError(f"{field}: needs at least one stage, got {stages!r}")
    return stages


# ----------------------------------------------------------------------------- SEW-ResNet

CONNECTS = ("add", "and", "iand")
STEMS = ("auto", "imagenet", "cifar")


def sew_connect(residual_spikes, shortcut, connect: str):
    """SEW element-wise function g(A, S): ADD ``A + S``, AND ``A·S``, IAND ``(1 − A)·S``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.models.resnet import sew_connect
        >>> a, s = jnp.array([0.0, 0.0, 1.0, 1.0]), jnp.array([0.0, 1.0, 0.0, 1.0])
        >>> [sew_connect(a, s, g).tolist() for g in ("add", "and", "iand")]
        [[0.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]]
    """
    if connect == "add":
        return residual_spikes + shortcut
    if connect == "and":
        return residual_spikes * shortcut
    if connect == "iand":
        return (1.0 - residual_spikes) * shortcut
    raise ValueError(f"model.connect: unknown SEW connection {connect!r}; allowed: {', '.join(CONNECTS)}")


class SEWBlock(nn.Module):
    """SEW basic block: ``A = SN(BN(conv(SN(BN(conv(x))))))``, ``out = g(A, S)``.

    ``S`` is the input spikes, or ``SN(BN(conv1×1(x)))`` when the width or stride changes.
    """

    features: int
    strides: int
    T: int
    neuron: NeuronConfig
    connect: str = "add"

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = SpikingNeuron(self.T, self.neuron)(batch_norm(train)(conv3x3(self.features, self.strides)(x)))
        h = SpikingNeuron(self.T, self.neuron)(batch_norm(train)(conv3x3(self.features)(h)))
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = conv1x1(self.features, self.strides)(x)
            shortcut = SpikingNeuron(self.T, self.neuron)(batch_norm(train)(shortcut))
        else:
            shortcut = x
        return sew_connect(h, shortcut, self.connect)


class SEWResNet(SpikingModel):
    """Spike-element-wise ResNet (Fang et al. 2021), basic blocks.

    Stem: ImageNet ``conv7×7/2(64)-BN-SN-maxpool3×3/2`` or CIFAR ``conv3×3(64)-BN-SN`` (no
    maxpool); ``stem="auto"`` picks CIFAR when the input is at most 64×64. Then stages of
    :class:`SEWBlock` (widths 64·2^i, strides 1, 2, 2, 2), global avg pool, Dense readout.

    Attributes:
      blocks: blocks per stage; SEW-ResNet-18: (2, 2, 2, 2).
      widths: stage widths; (64, 128, 256, 512).
      connect: ``"add"`` (default), ``"and"`` or ``"iand"``.
      stem: ``"auto"``, ``"imagenet"`` or ``"cifar"``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.models import SEWResNet
        >>> model = SEWResNet(blocks=(1, 1), widths=(8, 16), T=1)
        >>> for size in (32, 96):  # stem="auto": CIFAR stem up to 64×64, ImageNet stem above
        ...     v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
        ...     print(size, v["params"]["stem"]["kernel"].shape)
        32 (3, 3, 3, 8)
        96 (7, 7, 3, 8)
    """

    blocks: Sequence[int] = (2, 2, 2, 2)
    widths: Sequence[int] = (64, 128, 256, 512)
    connect: str = "add"
    stem: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.check_input(x)
        if self.connect not in CONNECTS:
            raise ValueError(f"model.connect: unknown SEW connection {self.connect!r}; allowed: {', '.join(CONNECTS)}")
        if self.stem not in STEMS:
            raise ValueError(f"model.stem: unknown stem {self.stem!r}; allowed: {', '.join(STEMS)}")
        blocks, widths = tuple(self.blocks), tuple(self.widths)
        if len(blocks) != len(widths) or not blocks or min(blocks) < 1 or min(widths) < 1:
            raise ValueError(f"model.blocks / model.widths: need equal-length lists of integers >= 1, "
                             f"got blocks={blocks!r}, widths={widths!r}")
        stem = self.stem
        if stem == "auto":
            stem = "cifar" if max(x.shape[-3], x.shape[-2]) <= 64 else "imagenet"
        if stem == "imagenet":
            first = Conv(widths[0], (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                            kernel_init=CONV_INIT, name="stem")
        else:
            first = conv3x3(widths[0], name="stem")
        h = encode_first(self, x, first)
        h = batch_norm(train, name="stem_bn")(h)
        h = SpikingNeuron(self.T, self.neuron, name="stem_sn")(h)
        if stem == "imagenet":
            h = nn.max_pool(h, (3, 3), (2, 2), padding=PAD1)
        for s, (n, width) in enumerate(zip(blocks, widths)):
            for i in range(n):
                stride = 2 if (i == 0 and s > 0) else 1
                h = SEWBlock(width, stride, self.T, self.neuron, self.connect,
                             name=f"layer{s + 1}_block{i}")(h, train)
        h = global_avg_pool(h)
        logits = Dense(self.num_classes, kernel_init=DENSE_INIT)(h)
        return time_average(logits, self.T)


WRN16_4 = functools.partial(WideResNet, depth=16, widen_factor=4)
ResNet19 = functools.partial(SpikingResNet, stem_features=128,
                             stages=((128, 3, 1), (256, 3, 2), (512, 2, 2)), hidden=(256,))
SEWResNet18 = functools.partial(SEWResNet, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512))
