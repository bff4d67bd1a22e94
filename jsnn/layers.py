"""Flax building blocks for time-major spiking models.

Layers that hold no state over time (conv, dense, BatchNorm, pooling) run on the
merged ``[B·T, ...]`` axis (batch outermost, see :func:`merge_time`); only :class:`SpikingNeuron` splits it into ``[T, B, ...]``
and scans the neuron dynamics over T. BatchNorm over merged T·B is the "one
BatchNorm over the merged time×batch axis" of the robustness papers.

A :class:`SpikingNeuron` sows its input current ``X[t]`` and charged potential
``H[t]`` into the ``"intermediates"`` collection (free when not requested), which
the defenses (MPPD) and the notebooks read.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jsnn import encoding, neuron
from jsnn import surrogate as surrogate_lib
from jsnn.surrogate import Surrogate

NEURONS = ("lif", "if", "dlif")


class NeuronConfig(NamedTuple):
    """Neuron preset shared by every spiking layer of a model.

    Attributes:
      kind: ``"lif"`` (SpikingJelly LIF), ``"if"`` (H = λV + X) or ``"dlif"`` (RSNN).
      tau: LIF time constant τ.
      leak: IF / DLIF leak λ (1.0 IF, 0.99 DLIF).
      v_threshold: V_th.
      v_reset: hard-reset value, ``None`` for soft reset.
      decay_input: LIF only.
      detach_reset: stop the gradient through the reset.
      surrogate: backward shape; ``None`` = sigmoid(4) for LIF, triangle(1) for IF/DLIF.
      gradient: ``"bptt"`` or ``"bptr"``.
      remat: recompute neuron steps in the backward pass.

    Example:
        >>> from jsnn.layers import DLIF, IF, LIF, NeuronConfig
        >>> (LIF.kind, LIF.tau), (IF.kind, IF.leak), (DLIF.kind, DLIF.leak)
        (('lif', 2.0), ('if', 1.0), ('dlif', 0.99))
        >>> LIF._replace(v_reset=None).v_reset is None  # soft reset
        True
    """

    kind: str = "lif"
    tau: float = 2.0
    leak: float = 1.0
    v_threshold: float = 1.0
    v_reset: Optional[float] = 0.0
    decay_input: bool = True
    detach_reset: bool = False
    surrogate: Optional[Surrogate] = None
    gradient: str = "bptt"
    remat: bool = False


LIF = NeuronConfig()
IF = NeuronConfig(kind="if", leak=1.0, surrogate=None)
DLIF = NeuronConfig(kind="dlif", leak=0.99)


def check_neuron_config(cfg: NeuronConfig) -> NeuronConfig:
    """Validates a :class:`NeuronConfig` with errors naming the field.

    Example:
        >>> from jsnn.layers import LIF, check_neuron_config
        >>> check_neuron_config(LIF) is LIF
        True
        >>> check_neuron_config(LIF._replace(tau=0.0))
        Traceback (most recent call last):
        ValueError: model.tau: must be > 0 for the LIF neuron, got 0.0
    """
    if cfg.kind not in NEURONS:
        raise ValueError(f"model.neuron: unknown neuron {cfg.kind!r}; allowed: {', '.join(NEURONS)}")
    if cfg.kind == "lif" and not float(cfg.tau) > 0:
        raise ValueError(f"model.tau: must be > 0 for the LIF neuron, got {cfg.tau!r}")
    if cfg.kind != "lif" and not float(cfg.leak) >= 0:
        raise ValueError(f"model.leak: must be >= 0, got {cfg.leak!r}")
    if cfg.gradient not in neuron.GRADIENTS:
        raise ValueError(f"model.spike_gradient: {cfg.gradient!r}; allowed: {', '.join(neuron.GRADIENTS)}")
    return cfg


def merge_time(x):
    """``[T, B, ...]`` → merged ``[B·T, ...]`` (batch outermost).

    Batch-major merging keeps each device's shard of a data-parallel batch contiguous in the
    merged axis, so the partitioner never gathers the whole batch (a time-major merge made every
    device compute the full T·B). Stateless layers do not depend on the row order.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.layers import merge_time, split_time
        >>> x = jnp.array([[0, 1, 2], [10, 11, 12]])  # [T=2, B=3]: 10·t + b
        >>> merge_time(x).tolist()  # b0t0, b0t1, b1t0, b1t1, ...
        [0, 10, 1, 11, 2, 12]
        >>> bool(jnp.all(split_time(merge_time(x), T=2) == x))
        True
    """
    return jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])


def split_time(x, T: int):
    """Merged ``[B·T, ...]`` → ``[T, B, ...]`` (inverse of :func:`merge_time`)."""
    return jnp.swapaxes(x.reshape((-1, T) + x.shape[1:]), 0, 1)


class SpikingNeuron(nn.Module):
    """Spiking nonlinearity on merged ``[B·T, ...]`` activations.

    Example:
        A constant current of 1.5 into a LIF neuron (τ = 2, V_th = 1) spikes every other step.

        >>> import jax.numpy as jnp
        >>> from jsnn.layers import SpikingNeuron, merge_time, split_time
        >>> x = merge_time(jnp.full((4, 1, 1), 1.5))  # T = 4, B = 1, one feature
        >>> spikes, inter = SpikingNeuron(T=4).apply({}, x, mutable=["intermediates"])
        >>> split_time(spikes, 4).ravel().tolist()
        [0.0, 1.0, 0.0, 1.0]
        >>> inter["intermediates"]["current"][0].shape  # sown for MPPD: [T, B, ...]
        (4, 1, 1)
    """

    T: int
    config: NeuronConfig = LIF

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        xs = split_time(x, self.T)
        common = dict(v_threshold=cfg.v_threshold, v_reset=cfg.v_reset, detach_reset=cfg.detach_reset,
                      surrogate=cfg.surrogate, remat=cfg.remat, gradient=cfg.gradient, return_trace=True)
        if cfg.kind == "lif":
            trace = neuron.lif(xs, tau=cfg.tau, decay_input=cfg.decay_input, **common)
        elif cfg.kind == "if":
            trace = neuron.if_neuron(xs, leak=cfg.leak, **common)
        elif cfg.kind == "dlif":
            gain = self.param("gain", nn.initializers.ones, (self.T,), jnp.float32)
            xs = xs * gain.reshape((-1,) + (1,) * (xs.ndim - 1)).astype(xs.dtype)
            trace = neuron.if_neuron(xs, leak=cfg.leak, **common)
        else:
            raise ValueError(f"model.neuron: unknown neuron {cfg.kind!r}; allowed: {', '.join(NEURONS)}")
        self.sow("intermediates", "current", xs)
        self.sow("intermediates", "membrane", trace.h)
        return merge_time(trace.spikes)


class EncoderConfig(NamedTuple):
    """Input encoder of a model (see :mod:`jsnn.encoding`).

    Example:
        >>> from jsnn.layers import EncoderConfig
        >>> EncoderConfig().stochastic, EncoderConfig("rsc", sigma=0.1, per_step=True).stochastic
        (False, True)
    """

    name: str = "direct"
    sigma: float = 0.0
    per_step: bool = False
    clip: bool = False
    poisson_gradient: str = "straight_through"

    @property
    def stochastic(self) -> bool:
        return self.name in encoding.STOCHASTIC


class Encoder(nn.Module):
    """Encodes ``[B, H, W, C]`` images to merged ``[B·T, H, W, C]``; draws from rng ``"noise"``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.layers import Encoder, split_time
        >>> x = jnp.full((2, 4, 4, 1), 0.5)
        >>> h = Encoder(T=3).apply({}, x)  # direct coding: the image at every step
        >>> h.shape, bool(jnp.all(split_time(h, 3) == x))
        ((6, 4, 4, 1), True)
    """

    T: int
    config: EncoderConfig = EncoderConfig()

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        if cfg.name == "direct":
            seq = encoding.direct(x, self.T)
        elif cfg.name == "poisson":
            seq = encoding.poisson(x, self.T, self.make_rng("noise"), gradient=cfg.poisson_gradient)
        elif cfg.name == "rsc":
            seq = encoding.rsc(x, self.T, self.make_rng("noise"), sigma=cfg.sigma,
                               per_step=cfg.per_step, clip=cfg.clip)
        else:
            raise ValueError(f"model.encoder: unknown encoder {cfg.name!r}; allowed: {', '.join(encoding.ENCODERS)}")
        return merge_time(seq)


class Normalize(nn.Module):
    """``(x − mean) / std`` per channel, inside the model so ε lives in pixel space.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.layers import Normalize
        >>> Normalize(mean=(0.5, 0.0), std=(0.25, 2.0)).apply({}, jnp.ones((1, 2))).tolist()
        [[2.0, 0.5]]
    """

    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)

    def __call__(self, x):
        mean = jnp.asarray(self.mean, x.dtype)
        std = jnp.asarray(self.std, x.dtype)
        return (x - mean) / std


def batch_norm(train: bool, name: Optional[str] = None):
    """BatchNorm over the merged T·B axis (momentum 0.9, ε 1e-5 as in PyTorch).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.layers import batch_norm
        >>> x = jnp.array([[1.0], [3.0]])
        >>> v = batch_norm(train=True).init(jax.random.key(0), x)
        >>> y, upd = batch_norm(train=True).apply(v, x, mutable=["batch_stats"])
        >>> [round(float(t), 3) for t in y.ravel()], round(float(upd["batch_stats"]["mean"][0]), 4)  # 0.1·2
        ([-1.0, 1.0], 0.2)
    """
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def time_average(logits, T: int):
    """Mean over time of merged logits ``[B·T, K]`` → ``[B, K]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.layers import merge_time, time_average
        >>> logits = merge_time(jnp.array([[[1.0], [2.0]], [[3.0], [6.0]]]))  # [T=2, B=2, K=1]
        >>> time_average(logits, T=2).tolist()
        [[2.0], [4.0]]
    """
    return split_time(logits, T).mean(0)


def default_surrogate(cfg: NeuronConfig) -> Surrogate:
    """The surrogate a neuron preset uses when ``cfg.surrogate`` is None.

    Example:
        >>> from jsnn import surrogate
        >>> from jsnn.layers import DLIF, LIF, default_surrogate
        >>> default_surrogate(LIF), default_surrogate(DLIF)
        (sigmoid(4), triangle(1))
        >>> default_surrogate(LIF._replace(surrogate=surrogate.atan(3.0)))  # an explicit one wins
        atan(3)
    """
    if cfg.surrogate is not None:
        return cfg.surrogate
    return surrogate_lib.sigmoid(4.0) if cfg.kind == "lif" else surrogate_lib.triangle(1.0)
