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

import contextlib
import contextvars
import functools
import math
from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jsnn import encoding, neuron
from jsnn.conv import conv_general_dilated, dense_dot_general
from jsnn.neuron import DLIF, IF, LIF, NeuronConfig
from jsnn.surrogate import Surrogate

# The neuron presets live with their dynamics in jsnn.neuron; re-exported for model code.
__all__ = ["DLIF", "IF", "LIF", "NeuronConfig", "SpikingNeuron", "Conv", "Dense", "Encoder", "EncoderConfig", "Normalize",
           "BatchNorm", "attack_surrogate", "avg_pool", "batch_norm", "merge_time", "neuron_override", "split_time",
           "sum_pool",
           "time_average"]

_ATTACK_SURROGATE: contextvars.ContextVar = contextvars.ContextVar("jsnn_attack_surrogate", default=None)


@contextlib.contextmanager
def attack_surrogate(surrogate: Optional[Surrogate]):
    """Within the block, every :class:`SpikingNeuron` differentiates with ``surrogate``.

    How :func:`jsnn.models.logits_fn` hands an attack-time surrogate (traced data, possibly
    vmapped) to the neurons without storing it in a model field: models stay hashable specs,
    so one compiled attack serves every run and estimator. It only matters while a forward
    is traced or run inside the block; ``None`` leaves each neuron's own surrogate.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import surrogate
        >>> from jsnn.layers import SpikingNeuron, attack_surrogate
        >>> f = lambda x: SpikingNeuron(T=1).apply({}, x).sum()  # LIF: H = X/2, spike at H >= 1
        >>> float(jax.grad(f)(jnp.array([2.0]))[0])  # own sigmoid(4) at u = 0: α/4 · 1/τ
        0.5
        >>> with attack_surrogate(surrogate.triangle(4.0)):
        ...     float(jax.grad(f)(jnp.array([2.0]))[0])  # 1/γ · 1/τ
        0.125
    """
    token = _ATTACK_SURROGATE.set(surrogate)
    try:
        yield
    finally:
        _ATTACK_SURROGATE.reset(token)


_NEURON_OVERRIDE: contextvars.ContextVar = contextvars.ContextVar("jsnn_neuron_override", default=None)


@contextlib.contextmanager
def neuron_override(run):
    """Within the block, every :class:`SpikingNeuron` calls ``run(module, cfg, x_seq, **kw)`` for
    :func:`jsnn.neuron.run` (same keywords; it returns a :class:`jsnn.neuron.Trace`).

    The hook of the attack-time estimators that read the layer's own membrane potential
    (PDSG, ASSG in :mod:`jsnn.attacks.adaptive`); ``module`` gives the layer's path. Like
    :func:`attack_surrogate` it only matters while a forward is traced inside the block.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn import neuron
        >>> from jsnn.layers import SpikingNeuron, neuron_override
        >>> def loud(module, cfg, x_seq, **kw):
        ...     print(module.path, x_seq.shape)
        ...     return neuron.run(cfg, x_seq, **kw)
        >>> with neuron_override(loud):
        ...     _ = SpikingNeuron(T=2).apply({}, jnp.ones((2, 3)))
        () (2, 1, 3)
    """
    token = _NEURON_OVERRIDE.set(run)
    try:
        yield
    finally:
        _NEURON_OVERRIDE.reset(token)


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
        gain = self.param("gain", nn.initializers.ones, (self.T,), jnp.float32) if cfg.kind == "dlif" else None
        override, surrogate = _NEURON_OVERRIDE.get(), _ATTACK_SURROGATE.get()
        if override is None:  # the batch-major view [B, T, ...] of the merged axis: no transpose
            trace = neuron.run(cfg, x.reshape((-1, self.T) + x.shape[1:]), gain=gain, surrogate=surrogate,
                               return_trace=True, where="model.", time_axis=1)
            time_major = lambda a: jnp.swapaxes(a, 0, 1)  # only for the sown traces (pruned when unused)
            spikes = trace.spikes.reshape(x.shape)
        else:
            trace = override(self, cfg, split_time(x, self.T), gain=gain, surrogate=surrogate,
                             return_trace=True, where="model.")
            time_major = lambda a: a
            spikes = merge_time(trace.spikes)
        self.sow("intermediates", "current", time_major(trace.current))
        self.sow("intermediates", "membrane", time_major(trace.h))
        return spikes


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
    """Encodes ``[B, H, W, C]`` images (or ``[B, T, H, W, C]`` event frames for the ``frames``
    encoders) to merged ``[B·T, H, W, C]``; draws from rng ``"noise"``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.layers import Encoder, split_time
        >>> x = jnp.full((2, 4, 4, 1), 0.5)
        >>> h = Encoder(T=3).apply({}, x)  # direct coding: the image at every step
        >>> h.shape, bool(jnp.all(split_time(h, 3) == x))
        ((6, 4, 4, 1), True)
        >>> from jsnn.layers import EncoderConfig
        >>> f = jnp.arange(2 * 3 * 4.0).reshape(2, 3, 2, 2, 1)  # event frames [B, T, H, W, C]
        >>> bool(jnp.all(Encoder(T=3, config=EncoderConfig("frames")).apply({}, f) == f.reshape(6, 2, 2, 1)))
        True
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
        elif cfg.name == "frames":  # event frames [B, T, H, W, 2]: the merge is a plain reshape
            seq = encoding.frames(x, self.T)
        elif cfg.name == "frames_rsc":
            seq = encoding.frames_rsc(x, self.T, self.make_rng("noise"), sigma=cfg.sigma,
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


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
Conv.__doc__ = """``flax.linen.Conv`` running :func:`conv_general_dilated` (same parameters; values as flax's to float rounding)."""
Dense = functools.partial(nn.Dense, dot_general=dense_dot_general)
Dense.__doc__ = """``flax.linen.Dense`` running :func:`jsnn.conv.dense_dot_general` (same parameters and forward values)."""


def _tiled_window_sum(x, window_shape, strides, padding):
    """``Σ`` over each window of ``x`` (NHWC-like) with a broadcast for its backward, or ``None``.

    Only when the windows tile the input: ``strides`` = ``window_shape`` (or ``None``) and no padding
    (``VALID`` drops the remainder, as lax's). The forward is lax's ``reduce_window``: XLA CPU does
    not fuse the spiking layer's time chain into it, so the spikes are computed once (written as a
    reduction of a reshaped view, the compiled program fused the unrolled LIF chain into the pool's
    reduction, each time step's spikes recomputing the steps before). The backward is the broadcast
    of the cotangent to each window, where lax's transpose is a padded ``reduce_window`` that XLA
    CPU runs as a generic loop. Both bit for bit lax's values.
    """
    window_shape = tuple(int(k) for k in window_shape)
    nd = len(window_shape)
    strides = window_shape if strides is None else tuple(int(st) for st in strides)
    no_pad = padding == "VALID" or (not isinstance(padding, str) and all(tuple(p) == (0, 0) for p in padding))
    if strides != window_shape or not no_pad or x.ndim < nd + 2:
        return None
    return _window_sum(window_shape, tuple(x.shape), x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _window_sum(window_shape, shape, x):
    return nn.pool(x, 0.0, lax.add, window_shape, window_shape, "VALID")


def _window_sum_fwd(window_shape, shape, x):
    return _window_sum(window_shape, shape, x), None


def _window_sum_bwd(window_shape, shape, _, g):
    nd = len(window_shape)
    lead = g.ndim - 1 - nd
    expanded = g.reshape(sum(((n, 1) for n in g.shape[lead:lead + nd]), g.shape[:lead]) + g.shape[-1:])
    tiles = g.shape[:lead] + sum(((n, k) for n, k in zip(g.shape[lead:lead + nd], window_shape)), ()) + g.shape[-1:]
    dx = jnp.broadcast_to(expanded, tiles).reshape(
        g.shape[:lead] + tuple(n * k for n, k in zip(g.shape[lead:lead + nd], window_shape)) + g.shape[-1:])
    pads = [(0, 0)] * lead + [(0, full - n) for full, n in zip(shape[lead:lead + nd], dx.shape[lead:lead + nd])]
    return (jnp.pad(dx, pads + [(0, 0)]),)


_window_sum.defvjp(_window_sum_fwd, _window_sum_bwd)


def avg_pool(x, window_shape: Sequence[int], strides: Optional[Sequence[int]] = None, padding="VALID"):
    """``flax.linen.avg_pool``; when the windows tile the input, its backward is a broadcast.

    ``y[i, j] = (1/(k_h·k_w)) Σ_{a<k_h, b<k_w} x[k_h·i + a, k_w·j + b]``. With tiling windows the
    backward broadcasts the cotangent instead of XLA CPU's loop over a padded ``reduce_window``
    (``[128, 16, 16, 256]``: 2.96 → 1.12 ms). Values and gradients bit for bit flax's (tested);
    other windows, strides and paddings are flax's own code.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.layers import avg_pool
        >>> avg_pool(jnp.arange(16.0).reshape(1, 4, 4, 1), (2, 2))[0, ..., 0].tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    return sum_pool(x, window_shape, strides, padding) / math.prod(window_shape)  # flax's avg_pool, written out


def sum_pool(x, window_shape: Sequence[int], strides: Optional[Sequence[int]] = None, padding="VALID"):
    """``Σ`` over each window (``flax.linen.pool`` with ``lax.add``); tiling windows as :func:`avg_pool`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.layers import sum_pool
        >>> sum_pool(jnp.arange(16.0).reshape(1, 4, 4, 1), (2, 2))[0, ..., 0].tolist()
        [[10.0, 18.0], [42.0, 50.0]]
    """
    y = _tiled_window_sum(x, window_shape, strides, padding)
    if y is None:
        window_shape = tuple(window_shape)
        return nn.pool(x, 0.0, lax.add, window_shape, window_shape if strides is None else tuple(strides), padding)
    return y


@jax.custom_vjp
def _normalize_channels(x2, mean, mul, bias):
    """``(x − μ)·m + β`` on ``[N, C]``, broadcast over N; the backward's sums over N are dot products."""
    return (x2 - mean) * mul + bias


def _normalize_channels_fwd(x2, mean, mul, bias):
    return _normalize_channels(x2, mean, mul, bias), (x2, mean, mul)


def _normalize_channels_bwd(residuals, g):
    """``∂x = g·m``, ``∂μ = −m·Σg``, ``∂m = Σ g·(x − μ)``, ``∂β = Σg``; each ``Σ`` over N as ``1ᵀ·[N, C]``.

    As reductions, XLA CPU fused the spiking layer's whole backward time chain (BatchNorm's input
    cotangent) into each of them again and ran them as serial loops: 0.49 s of thread time per
    VGG-11 CIFAR training step in its 8 BatchNorms (``jax.profiler``). A dot cannot take a fused
    producer, so the cotangent is computed once; the sums are the same up to float rounding.
    """
    x2, mean, mul = residuals
    ones = jnp.ones((x2.shape[0],), g.dtype)
    total = lambda a: jnp.dot(ones, a, precision=lax.Precision.HIGHEST)  # f32 accumulation on TPU/GPU too
    g_sum = total(g)
    return g * mul, -mul * g_sum, total(g * (x2 - mean)), g_sum


_normalize_channels.defvjp(_normalize_channels_fwd, _normalize_channels_bwd)


class BatchNorm(nn.BatchNorm):
    """``flax.linen.BatchNorm`` (same fields, variables and forward values); its backward's channel sums are dots.

    ``y = (x − μ)·γ/√(σ² + ε) + β`` over every axis but the last (Ioffe & Szegedy 2015), μ, σ² the
    batch statistics in training (running averages updated with ``momentum``) and the running
    averages in evaluation, exactly as flax computes them. Only the backward of the normalization
    differs: see :func:`_normalize_channels_bwd` (VGG-11 CIFAR training step 2.70–3.37 → 2.03–2.21 s,
    ``python bench/cifar.py --attacks=`` before and after, interleaved, 2-core AMD EPYC, load 1.4). Other
    settings (a mask, ``axis_name``, another axis, slow variance, no scale or bias, other dtypes) are
    flax's own code. Reverse mode only (as :func:`jsnn.conv.conv_general_dilated`).
    """

    @nn.compact
    def __call__(self, x, use_running_average: Optional[bool] = None, *, mask=None):
        f32 = jnp.dtype(jnp.float32)
        if (mask is not None or self.axis_name is not None or self.axis not in (-1, x.ndim - 1)
                or not (self.use_fast_variance and self.use_scale and self.use_bias and self.force_float32_reductions)
                or x.dtype != f32 or self.dtype not in (None, f32) or jnp.dtype(self.param_dtype) != f32):
            return super().__call__(x, use_running_average, mask=mask)
        use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, f32), (c,))
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, f32), (c,))
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:  # flax's _compute_stats with use_fast_variance, written out
            axes = tuple(range(x.ndim - 1))
            mean, mean2 = x.mean(axes), lax.square(x).mean(axes)
            var = jnp.maximum(0.0, mean2 - lax.square(mean))
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        scale = self.param("scale", self.scale_init, (c,), self.param_dtype)
        bias = self.param("bias", self.bias_init, (c,), self.param_dtype)
        mul = lax.rsqrt(var + self.epsilon) * scale
        return _normalize_channels(x.reshape(-1, c), mean, mul, bias).reshape(x.shape)


def batch_norm(train: bool, name: Optional[str] = None):
    """:class:`BatchNorm` over the merged T·B axis (momentum 0.9, ε 1e-5 as in PyTorch).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.layers import batch_norm
        >>> x = jnp.array([[1.0], [3.0]])
        >>> v = batch_norm(train=True).init(jax.random.key(0), x)
        >>> y, upd = batch_norm(train=True).apply(v, x, mutable=["batch_stats"])
        >>> [round(float(t), 3) for t in y.ravel()], round(float(upd["batch_stats"]["mean"][0]), 4)  # 0.1·2
        ([-1.0, 1.0], 0.2)
    """
    return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


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
