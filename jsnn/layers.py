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
from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jsnn import encoding, neuron
from jsnn.neuron import DLIF, IF, LIF, NeuronConfig
from jsnn.surrogate import Surrogate

# The neuron presets live with their dynamics in jsnn.neuron; re-exported for model code.
__all__ = ["DLIF", "IF", "LIF", "NeuronConfig", "SpikingNeuron", "Conv", "Encoder", "EncoderConfig", "Normalize",
           "attack_surrogate", "batch_norm", "conv_general_dilated", "merge_time", "neuron_override", "split_time",
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


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None):
    """``lax.conv_general_dilated`` whose input gradient is a canonical convolution, in loops too.

    The input gradient of ``y = conv(x, W)`` is ``conv(g, rev(W))`` with W's in/out feature axes
    swapped (``01oi`` kernel labels). XLA CPU rewrites such convolutions into Eigen's canonical
    ``01io`` form only in the entry computation (``xla/service/cpu/conv_canonicalization.h``: "all
    top-level convolutions"); inside a ``while`` body (APGD's ``fori_loop``, ``lax.map`` chunks,
    TRADES' inner attack) it ran as a generic loop, ~3.5× slower (docs/attack_speed.md). Here the
    backward swaps W's feature axes itself, ``Wᵀ = swapaxes(W, i, o)``, and differentiates
    ``conv(x, Wᵀ)`` under the swapped labels: the same function, whose transpose is canonical.
    Values and gradients equal ``lax.conv_general_dilated``'s (grouped convolutions take it as is).
    Reverse mode only: ``jax.jvp`` through it raises (jsnn uses no forward mode).

    Args and returns: as ``lax.conv_general_dilated``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jax import lax
        >>> from jsnn.layers import conv_general_dilated
        >>> x, w = jnp.ones((1, 4, 4, 2)), jnp.arange(36.).reshape(3, 3, 2, 2)
        >>> dn = ("NHWC", "HWIO", "NHWC")
        >>> ours = jax.grad(lambda x: conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn).sum())(x)
        >>> ref = jax.grad(lambda x: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn).sum())(x)
        >>> bool(jnp.all(ours == ref))
        True
    """
    conv = functools.partial(lax.conv_general_dilated, window_strides=window_strides,
                             padding=padding if isinstance(padding, str) else tuple(map(tuple, padding)),
                             lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                             feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                             precision=precision, preferred_element_type=preferred_element_type)
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if feature_group_count != 1 or batch_group_count != 1:
        return conv(lhs, rhs, dimension_numbers=dn)
    return _conv_canonical_transpose(conv, dn, lhs, rhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _conv_canonical_transpose(conv, dn, lhs, rhs):
    return conv(lhs, rhs, dimension_numbers=dn)


def _conv_fwd(conv, dn, lhs, rhs):
    return conv(lhs, rhs, dimension_numbers=dn), (lhs, rhs)


def _conv_bwd(conv, dn, residuals, g):
    lhs, rhs = residuals
    out_axis, in_axis = dn.rhs_spec[:2]
    swapped = dn._replace(rhs_spec=(in_axis, out_axis) + tuple(dn.rhs_spec[2:]))
    rhs_t = jnp.swapaxes(rhs, in_axis, out_axis)
    (d_lhs,) = jax.vjp(lambda x: conv(x, rhs_t, dimension_numbers=swapped), lhs)[1](g)
    (d_rhs,) = jax.vjp(lambda w: conv(lhs, w, dimension_numbers=dn), rhs)[1](g)
    return d_lhs, d_rhs


_conv_canonical_transpose.defvjp(_conv_fwd, _conv_bwd)

Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
Conv.__doc__ = """``flax.linen.Conv`` running :func:`conv_general_dilated` (same parameters and values)."""


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
