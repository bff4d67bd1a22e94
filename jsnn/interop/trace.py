"""Any chain-shaped jsnn model as a :mod:`jsnn.models.sequential` layer list, BatchNorm folded.

:func:`trace` runs the model once in evaluation mode and records every call of a known leaf module
(``nn.Conv``, ``nn.Dense``, ``nn.BatchNorm``, :class:`~jsnn.layers.SpikingNeuron`,
:class:`~jsnn.layers.Encoder`, :class:`~jsnn.layers.Normalize`), replacing each one's output by a
random Gaussian probe. What happens between two recorded modules is not a module (pooling,
reshapes), so it is inferred from the shapes and then *checked on the probe*: average or sum
pooling with window = stride = the size ratio, and flattening. The probes are not spikes, so sum,
average and max pooling cannot be confused. Anything else (max pooling, residual additions,
scaling) does not reproduce the next module's input and is a one-line error naming the two modules.

BatchNorm in evaluation mode is folded into the preceding affine layer (Ioffe & Szegedy 2015):
with ``s = γ / √(σ² + ε)``, ``W' = W·s`` (per output channel) and ``b' = s·(b − μ) + β``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import get_model
    >>> from jsnn.interop import trace
    >>> model, x = get_model("digits_conv", features=(4,), hidden=8, T=2), jnp.full((2, 8, 8, 1), 0.5)
    >>> variables = model.init(jax.random.key(0), x)
    >>> t = trace.trace(model, variables, x)  # x: the input shape
    >>> [layer["kind"] for layer in t.layers]  # conv+BN folded, pooling and flatten inferred
    ['conv', 'neuron', 'avg_pool', 'flatten', 'dense', 'neuron', 'dense']
    >>> z = t.model().apply(t.variables, x)  # the same function as a "sequential" model
    >>> bool(jnp.allclose(z, model.apply(variables, x), atol=1e-5))
    True
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jsnn.layers import Encoder, EncoderConfig, Normalize, SpikingNeuron, avg_pool, sum_pool, time_average
from jsnn.neuron import NeuronConfig

LEAVES = (nn.Conv, nn.Dense, nn.BatchNorm, SpikingNeuron, Encoder, Normalize)


class Traced(NamedTuple):
    """A model as a layer list: ``layers`` (dicts of :mod:`jsnn.models.sequential`), their ``variables``,
    and what surrounds them (time steps, encoder, normalization, the model's neuron preset)."""

    layers: List[Dict[str, Any]]
    variables: Dict[str, Any]
    T: int
    encoder: EncoderConfig
    mean: Sequence[float]
    std: Sequence[float]
    normalize: bool
    neuron: NeuronConfig
    num_classes: int
    input_shape: Sequence[int]  # H, W, C of the images

    def model(self):
        """The ``"sequential"`` jsnn model computing the same function (BatchNorm folded)."""
        from jsnn.models.registry import get_model

        return get_model("sequential", layers=self.layers, normalize=self.normalize, T=self.T,
                         neuron=self.neuron, encoder=self.encoder, mean=tuple(self.mean), std=tuple(self.std),
                         num_classes=self.num_classes, input_channels=int(self.input_shape[-1]))


def _pairs(value, n: int = 2):
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)


def _conv(m: nn.Conv, x) -> Dict[str, Any]:
    where = f"NIR export: conv {m.name}"
    kernel = tuple(int(k) for k in m.kernel_size)
    if len(kernel) != 2:
        raise ValueError(f"{where}: only 2-D convolutions are supported, got kernel {kernel}")
    strides = _pairs(1 if m.strides is None else m.strides)
    dilation = _pairs(1 if m.kernel_dilation is None else m.kernel_dilation)
    if _pairs(1 if m.input_dilation is None else m.input_dilation) != (1, 1):
        raise ValueError(f"{where}: input_dilation {m.input_dilation} has no NIR equivalent")
    pad = m.padding
    if isinstance(pad, str):
        if pad.upper() not in ("SAME", "VALID"):
            raise ValueError(f"{where}: padding {pad!r} has no NIR equivalent; allowed: SAME, VALID, explicit")
        eff = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
        pad = jax.lax.padtype_to_pads(x.shape[1:3], eff, strides, pad.upper())
    elif isinstance(pad, int):
        pad = ((pad, pad), (pad, pad))
    else:
        pad = tuple(_pairs(p) if not isinstance(p, int) else (p, p) for p in pad)
    return {"kind": "conv", "features": int(m.features), "kernel": kernel, "strides": strides,
            "padding": tuple(tuple(int(v) for v in p) for p in pad), "dilation": dilation,
            "groups": int(m.feature_group_count), "bias": bool(m.use_bias)}


def _fold(layer: Dict[str, Any], params: Dict[str, Any], bn: nn.BatchNorm, variables) -> None:
    """Folds the evaluation-mode BatchNorm ``bn`` into ``layer`` / ``params`` (in place)."""
    if not bn.use_running_average or bn.axis not in (-1,):
        raise ValueError(f"NIR export: BatchNorm {bn.name} must normalize the last axis with running statistics")
    mean = np.asarray(variables["batch_stats"]["mean"], np.float64)
    var = np.asarray(variables["batch_stats"]["var"], np.float64)
    p = variables.get("params", {})
    gamma = np.asarray(p["scale"], np.float64) if bn.use_scale else np.ones_like(mean)
    beta = np.asarray(p["bias"], np.float64) if bn.use_bias else np.zeros_like(mean)
    s = gamma / np.sqrt(var + bn.epsilon)
    kernel = params["kernel"]
    b = np.asarray(params["bias"], np.float64) if "bias" in params else np.zeros_like(mean)
    params["kernel"] = (np.asarray(kernel, np.float64) * s).astype(kernel.dtype)
    params["bias"] = (s * (b - mean) + beta).astype(kernel.dtype)
    layer["bias"] = True


def _pool(h, kind: str, window):
    if kind == "avg_pool":
        return avg_pool(h, window)
    return sum_pool(h, window)


def _bridge(a, b, between: str, T: int) -> List[Dict[str, Any]]:
    """The pooling / flatten layers that turn ``a`` (one module's output) into ``b`` (the next one's input).

    A stem that runs the first layer once over T (direct coding, :mod:`jsnn.models.stem`) repeats
    its ``[B, ...]`` output to ``[B·T, ...]``: the same values at every step, so no layer.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape[0] != b.shape[0] and a.shape[0] * T == b.shape[0]:
        a = jnp.repeat(a, T, axis=0)
    close = lambda u, v: u.shape == v.shape and bool(np.allclose(u, v, rtol=1e-5, atol=1e-6))
    if close(a, b):
        return []
    layers = []
    if a.ndim == 4:
        H, W, C = a.shape[1:]
        if b.ndim == 4:
            target = b.shape[1:3]
        elif b.ndim == 2 and b.shape[1] * 1 <= H * W * C and (H * W * C) % b.shape[1] == 0:
            k = int(round(np.sqrt(H * W * C / b.shape[1])))
            target = (H // k, W // k) if k >= 1 else (H, W)
        else:
            target = None
        if target is not None and tuple(target) != (H, W) and H % target[0] == 0 and W % target[1] == 0:
            window = (H // target[0], W // target[1])
            ref = b.reshape((b.shape[0], target[0], target[1], -1)) if b.ndim == 2 else b
            found = [k for k in ("avg_pool", "sum_pool") if close(_pool(a, k, window), ref)]
            if found:
                layers.append({"kind": found[0], "window": window, "strides": window, "padding": ((0, 0), (0, 0))})
                a = _pool(a, found[0], window)
        if b.ndim == 2:
            layers.append({"kind": "flatten"})
            a = a.reshape((a.shape[0], -1))
    if not close(a, b):
        raise ValueError(f"NIR export: between {between}: an operation that is not conv, dense, BatchNorm, "
                         f"spiking neuron, average/sum pooling or flatten (shape {tuple(a.shape[1:])} -> "
                         f"{tuple(b.shape[1:])}); only chains of those export")
    return layers


def trace(model, variables, x, key: Optional[jax.Array] = None) -> Traced:
    """Records ``model`` on images shaped like ``x`` ``[B, H, W, C]`` and returns it as a :class:`Traced` chain.

    ``key`` feeds a stochastic encoder (its output is replaced by a probe anyway).
    """
    records = []
    rng = np.random.default_rng(0)

    running = []  # leaf modules whose call is in progress: a subclass calling super().__call__ counts once

    def interceptor(next_fun, args, kwargs, context):
        m = context.module
        leaf = context.method_name == "__call__" and isinstance(m, LEAVES)
        outer = leaf and not any(r is m for r in running)
        running.extend([m] if leaf else [])
        try:
            out = next_fun(*args, **kwargs)
        finally:
            del running[len(running) - int(leaf):]
        if outer:
            variables_m = jax.tree.map(np.asarray, dict(m.variables)) if m.variables else {}
            path = "_".join(m.scope.path) if m.scope is not None and m.scope.path else str(m.name)
            out = jnp.asarray(rng.standard_normal(out.shape), out.dtype)  # the probe
            records.append((m.clone(parent=None, name=path), args[0], out, variables_m))
        return out

    x = jnp.asarray(x)
    rngs = {"noise": jax.random.key(0) if key is None else key}
    with nn.intercept_methods(interceptor):
        logits = model.apply(variables, x, train=False, rngs=rngs)
    T, encoder = int(model.T), model.encoder
    rest = [r for r in records if not isinstance(r[0], Encoder)]  # a stem may skip it (direct coding)
    if len(rest) < len(records) - 1 or (len(rest) < len(records) and not isinstance(records[0][0], Encoder)):
        raise ValueError(f"NIR export: {type(model).__name__} encodes its input more than once or not first")
    mean, std, normalize = (0.0,), (1.0,), False
    prev_out, prev_name = (records[0][2] if len(rest) < len(records) else x), "the encoder"
    if rest and isinstance(rest[0][0], Normalize):
        norm = rest[0][0]
        mean, std, normalize = tuple(norm.mean), tuple(norm.std), True
        prev_out, prev_name = rest[0][2], "the input normalization"
        rest = rest[1:]
    input_shape = tuple(int(s) for s in prev_out.shape[1:])
    layers: List[Dict[str, Any]] = []
    params: Dict[str, Any] = {}
    for m, inp, out, mv in rest:
        here = f"{prev_name} and {type(m).__name__} {m.name}"
        bridge = _bridge(prev_out, inp, here, T)
        if isinstance(m, nn.BatchNorm):
            if bridge or not layers or layers[-1]["kind"] not in ("conv", "dense"):
                raise ValueError(f"NIR export: BatchNorm {m.name} does not directly follow a conv or dense layer, "
                                 "so it cannot be folded")
            _fold(layers[-1], params[layers[-1]["name"]], m, mv)
        else:
            for extra in bridge:
                layers.append({**extra, "name": f"{extra['kind']}_{len(layers)}"})
            name = f"{m.name}"
            if isinstance(m, nn.Conv):
                layers.append({**_conv(m, inp), "name": name})
                params[name] = dict(mv["params"])
            elif isinstance(m, nn.Dense):
                layers.append({"kind": "dense", "features": int(m.features), "bias": bool(m.use_bias), "name": name})
                params[name] = dict(mv["params"])
            elif isinstance(m, SpikingNeuron):
                c = m.config
                layers.append({"kind": "neuron", "neuron": c.kind, "tau": c.tau, "leak": c.leak,
                               "v_threshold": c.v_threshold, "v_reset": c.v_reset, "decay_input": c.decay_input,
                               "name": name})
                if mv.get("params"):
                    params[name] = dict(mv["params"])
            else:
                raise ValueError(f"NIR export: {type(m).__name__} {m.name} inside the body is not supported")
        prev_out, prev_name = out, f"{type(m).__name__} {m.name}"
    if prev_out.shape[0] != logits.shape[0] * T or not np.allclose(
            time_average(prev_out, T), logits, rtol=1e-5, atol=1e-6):
        raise ValueError(f"NIR export: the logits are not the time average of {prev_name}'s output")
    return Traced(layers, {"params": params}, T, encoder, mean, std, normalize, model.neuron,
                  int(logits.shape[-1]), input_shape)
