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
import jax
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
    """Validates a :class:`NeuronConfig` with errors naming the field."""
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
    """
    return jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])


def split_time(x, T: int):
    """Merged ``[B·T, ...]`` → ``[T, B, ...]`` (inverse of :func:`merge_time`)."""
    return jnp.swapaxes(x.reshape((-1, T) + x.shape[1:]), 0, 1)


class SpikingNeuron(nn.Module):
    """Spiking nonlinearity on merged ``[B·T, ...]`` activations."""

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
    """Input encoder of a model (see :mod:`jsnn.encoding`)."""

    name: str = "direct"
    sigma: float = 0.0
    per_step: bool = False
    clip: bool = False
    poisson_gradient: str = "straight_through"

    @property
    def stochastic(self) -> bool:
        return self.name in encoding.STOCHASTIC


class Encoder(nn.Module):
    """Encodes ``[B, H, W, C]`` images to merged ``[B·T, H, W, C]``; draws from rng ``"noise"``."""

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
    """``(x − mean) / std`` per channel, inside the model so ε lives in pixel space."""

    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)

    def __call__(self, x):
        mean = jnp.asarray(self.mean, x.dtype)
        std = jnp.asarray(self.std, x.dtype)
        return (x - mean) / std


def batch_norm(train: bool, name: Optional[str] = None):
    """BatchNorm over the merged T·B axis (momentum 0.9, ε 1e-5 as in PyTorch)."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def time_average(logits, T: int):
    """Mean over time of merged logits ``[B·T, K]`` → ``[B, K]``."""
    return split_time(logits, T).mean(0)


def default_surrogate(cfg: NeuronConfig) -> Surrogate:
    """The surrogate a neuron preset uses when ``cfg.surrogate`` is None."""
    if cfg.surrogate is not None:
        return cfg.surrogate
    return surrogate_lib.sigmoid(4.0) if cfg.kind == "lif" else surrogate_lib.triangle(1.0)
