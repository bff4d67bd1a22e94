"""NIR export / import (Pedersen et al. 2024, "Neuromorphic intermediate representation", Nat. Commun.).

**Time step.** NIR neurons are continuous-time; jsnn's are discrete. One jsnn step is one explicit
Euler step of length ``dt`` (default 1.0, stored as the graph's ``metadata["dt"]``) of NIR's

  LIF: ``τ·dv/dt = (v_leak − v) + r·I``  →  ``v' = v + (dt/τ)·(v_leak − v + r·I)``;  IF: ``v' = v + dt·r·I``

followed by fire ``z = v' > v_threshold`` and reset ``v' = v_reset`` where ``z``. jsnn's neurons map to

===========================  ===================================================================
jsnn (:mod:`jsnn.neuron`)    NIR node
===========================  ===================================================================
LIF, decay_input=True        LIF ``τ = τ_jsnn·dt``, ``r = 1``, ``v_leak = V_reset``
LIF, decay_input=False       LIF ``τ = τ_jsnn·dt``, ``r = τ_jsnn``, ``v_leak = V_reset``
IF, λ = 1                    IF ``r = 1/dt``
IF, λ < 1 (``H = λV + X``)   LIF ``τ = dt/(1 − λ)``, ``r = 1/(1 − λ)``, ``v_leak = 0``
DLIF (``H = λV + g·X``)      as IF with ``r`` times ``g``: the gain must be the same at every step
===========================  ===================================================================

jsnn fires at ``H ≥ V_th``, NIR at ``v > v_threshold``, so the exported threshold is the next float32
below ``V_th`` (and an imported one the next float32 above): the spikes agree exactly in float32.
Both start from ``v = V_reset``. Reset by subtraction has no NIR node (export refuses it).
Arrays: NIR is channels-first without a batch axis (``Conv2d`` weights OIHW, inputs (C, H, W),
``Flatten`` in C·H·W order); jsnn is NHWC, so kernels are transposed and the dense layer after a
flatten has its inputs permuted. BatchNorm is folded into the preceding affine layer (see
:mod:`jsnn.interop.trace`). NIR has no encoder: the graph's input is the encoded, normalized image
at each step, and its metadata records the encoder, T, the normalization and the readout (logits =
the output averaged over time). Each neuron node carries its jsnn layer as JSON in
``metadata["jsnn"]``, used on import when it agrees with the node's parameters (exact round trip).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import get_model
    >>> from jsnn.interop import nir as jnir
    >>> model, x = get_model("digits_mlp", hidden=(16,), T=3), jnp.full((2, 8, 8, 1), 0.5)
    >>> variables = model.init(jax.random.key(0), x)
    >>> graph = jnir.export(model, variables, x)
    >>> [type(graph.nodes[k]).__name__ for k in ("input", "Dense_0", "SpikingNeuron_0", "output")]
    ['Input', 'Affine', 'LIF', 'Output']
    >>> model2, variables2 = jnir.to_jsnn(graph, input_shape=(8, 8, 1))
    >>> bool(jnp.allclose(model2.apply(variables2, x), model.apply(variables, x), atol=1e-5))
    True
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import nir
import numpy as np

from jsnn.interop import trace as trace_lib
from jsnn.layers import EncoderConfig
from jsnn.models import sequential as seq
from jsnn.neuron import LIF, NeuronConfig

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "LIF", "IF")
_F32 = np.float32


def _below(v: float) -> float:
    return float(np.nextafter(_F32(v), _F32(-np.inf)))


def _above(v: float) -> float:
    return float(np.nextafter(_F32(v), _F32(np.inf)))


# ----------------------------------------------------------------------------- neurons


def neuron_node(layer: Dict[str, Any], shape: Sequence[int], *, dt: float = 1.0, gain=None) -> nir.NIRNode:
    """The NIR node of a jsnn neuron layer (see the table above) for neurons of ``shape`` (C, H, W or N).

    Example:
        >>> from jsnn.interop.nir import neuron_node
        >>> n = neuron_node({"neuron": "lif", "tau": 2.0, "v_threshold": 1.0, "v_reset": 0.0}, (3,))
        >>> type(n).__name__, n.tau.tolist(), n.r.tolist(), float(n.v_threshold[0])  # next float32 below 1
        ('LIF', [2.0, 2.0, 2.0], [1.0, 1.0, 1.0], 0.9999999403953552)
        >>> neuron_node({"neuron": "lif", "v_reset": None, "name": "SpikingNeuron_0"}, (3,))
        Traceback (most recent call last):
        ValueError: NIR export: neuron SpikingNeuron_0: reset by subtraction (model.reset=soft) has no NIR equivalent
    """
    name = layer.get("name", "?")
    kind = layer.get("neuron", "lif")
    d = {"tau": LIF.tau, "leak": 1.0 if kind == "if" else 0.99, "v_threshold": 1.0, "v_reset": 0.0,
         "decay_input": True, **{k: v for k, v in layer.items() if k in seq.NEURON_FIELDS}}
    if d["v_reset"] is None:
        raise ValueError(f"NIR export: neuron {name}: reset by subtraction (model.reset=soft) has no NIR equivalent")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"NIR export: dt={dt!r}; must be a finite number > 0")
    g = 1.0
    if kind == "dlif":
        gain = np.asarray(gain if gain is not None else 1.0, np.float64).ravel()
        if not np.all(gain == gain[0]):
            raise ValueError(f"NIR export: neuron {name}: the DLIF gain varies over time ({gain.tolist()}); "
                             "NIR has no time-varying parameter")
        g = float(gain[0])
    full = lambda v: np.full(tuple(int(s) for s in shape), v, np.float64)
    vth, vr = full(_below(d["v_threshold"])), full(d["v_reset"])
    meta = {"jsnn": json.dumps({**{k: d[k] for k in seq.NEURON_FIELDS if k in d}, "neuron": kind, "gain": g})}
    if kind == "lif":
        tau = float(d["tau"])
        return nir.LIF(tau=full(tau * dt), r=full(1.0 if d["decay_input"] else tau), v_leak=full(d["v_reset"]),
                       v_threshold=vth, v_reset=vr, metadata=meta)
    lam = float(d["leak"])
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"NIR export: neuron {name}: leak {lam} outside [0, 1] has no NIR equivalent")
    if lam == 1.0:
        return nir.IF(r=full(g / dt), v_threshold=vth, v_reset=vr, metadata=meta)
    return nir.LIF(tau=full(dt / (1.0 - lam)), r=full(g / (1.0 - lam)), v_leak=full(0.0), v_threshold=vth,
                   v_reset=vr, metadata=meta)


def _scalar(key: str, node, field: str) -> float:
    a = np.asarray(getattr(node, field), np.float64)
    if a.size == 0 or not np.all(a == a.ravel()[0]):
        raise ValueError(f"NIR node {key!r}: {type(node).__name__}.{field} varies across neurons; "
                         "a jsnn neuron layer has one value per layer")
    return float(a.ravel()[0])


def neuron_layer(key: str, node, *, dt: float) -> Tuple[Dict[str, Any], float]:
    """``(layer, gain)``: the jsnn neuron layer of a NIR ``LIF`` / ``IF`` node stepped with ``dt``.

    Example:
        snnTorch's ``Leaky(beta=0.9)`` exports ``τ = dt/(1 − β)``, ``r = τ/dt`` with ``dt = 1e-4``:

        >>> import nir, numpy as np
        >>> from jsnn.interop.nir import neuron_layer
        >>> a = lambda v: np.array([v])
        >>> node = nir.LIF(tau=a(1e-4 / 0.1), r=a(10.0), v_leak=a(0.0), v_threshold=a(1.0), v_reset=a(0.0))
        >>> layer, gain = neuron_layer("lif1", node, dt=1e-4)
        >>> layer["neuron"], round(layer["leak"], 12), gain  # H = 0.9·V + X
        ('if', 0.9, 1.0)
    """
    vth, vr = _scalar(key, node, "v_threshold"), _scalar(key, node, "v_reset")
    if not vr < _above(vth):
        raise ValueError(f"NIR node {key!r}: v_reset {vr} must be below v_threshold {vth}")
    base = {"v_threshold": _above(vth), "v_reset": vr}
    if isinstance(node, nir.IF):
        a, g, v_leak = 0.0, dt * _scalar(key, node, "r"), 0.0
    else:
        tau, r, v_leak = _scalar(key, node, "tau"), _scalar(key, node, "r"), _scalar(key, node, "v_leak")
        a = dt / tau
        g = a * r
        if not 0.0 < a <= 1.0:
            raise ValueError(f"NIR node {key!r}: dt/tau = {a:g} with dt={dt:g}, tau={tau:g}; a discrete step needs "
                             "0 < dt/tau <= 1: pass the graph's time step dt (snnTorch exports with dt=1e-4)")
    recorded = node.metadata.get("jsnn") if isinstance(node.metadata, dict) else None
    if isinstance(recorded, (str, bytes)):
        layer = json.loads(recorded)
        gain = float(layer.pop("gain", 1.0))
        other = neuron_node(layer, np.asarray(node.v_threshold).shape, dt=dt, gain=[gain])
        if type(other) is type(node) and all(
                np.allclose(getattr(other, f), getattr(node, f), rtol=1e-9, atol=0.0)
                for f in ("tau", "r", "v_leak", "v_threshold", "v_reset") if hasattr(node, f)):
            return layer, gain
    same = lambda u, v: math.isclose(u, v, rel_tol=1e-6, abs_tol=1e-12)
    if same(g, 1.0) and v_leak == 0.0:
        return {"neuron": "if", "leak": 1.0 - a, **base}, 1.0
    if same(g, a) and v_leak == vr:
        return {"neuron": "lif", "tau": dt / a if a else math.inf, "decay_input": True, **base}, 1.0
    if same(g, 1.0) and v_leak == vr:
        return {"neuron": "lif", "tau": 1.0 / a, "decay_input": False, **base}, 1.0
    if v_leak == 0.0:
        return {"neuron": "dlif", "leak": 1.0 - a, **base}, g
    raise ValueError(f"NIR node {key!r}: {type(node).__name__} with v_leak={v_leak:g} != v_reset={vr:g} and input "
                     f"gain dt/tau*r={g:g} has no jsnn neuron")


# ----------------------------------------------------------------------------- export


def _window_out(size, padding, window, strides, dilation=(1, 1)):
    """Output H, W of a conv / pooling window: ``(n + p_lo + p_hi − ((k − 1)·d + 1)) // s + 1``."""
    return tuple(int((n + lo + hi - ((k - 1) * dl + 1)) // s + 1)
                 for n, (lo, hi), k, s, dl in zip(size, padding, window, strides, dilation))


def from_layers(t: trace_lib.Traced, *, dt: float = 1.0) -> nir.NIRGraph:
    """The NIR graph of a traced layer chain (see :func:`export`)."""
    H, W, C = t.input_shape
    shape: Tuple[int, ...] = (C, H, W)
    nodes: Dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(shape)})}
    flat_from: Optional[Tuple[int, int, int]] = None  # (C, H, W) of the last flatten, for the next dense
    params = t.variables["params"]
    for layer in t.layers:
        d = seq.layer_dict(layer)
        kind, name, p = d["kind"], d["name"], params.get(d["name"], {})
        if kind == "conv":
            (pt, pb), (pl, pr) = d["padding"]
            if pt != pb or pl != pr:
                raise ValueError(f"NIR export: conv {name}: padding {d['padding']} is not symmetric (NIR pads "
                                 "both sides alike)")
            k = np.asarray(p["kernel"])
            bias = np.asarray(p["bias"]) if d["bias"] else np.zeros(k.shape[-1], k.dtype)
            node = nir.Conv2d(input_shape=shape[1:], weight=k.transpose(3, 2, 0, 1), stride=tuple(d["strides"]),
                              padding=(pt, pl), dilation=tuple(d["dilation"]), groups=d["groups"], bias=bias)
            shape = tuple(int(s) for s in node.output_type["output"])
        elif kind == "dense":
            k = np.asarray(p["kernel"])
            if flat_from is not None:  # jsnn flattens h, w, c; NIR c, h, w
                c, h, w = flat_from
                k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
                flat_from = None
            weight = np.ascontiguousarray(k.T)
            node = nir.Affine(weight=weight, bias=np.asarray(p["bias"])) if d["bias"] else nir.Linear(weight=weight)
            shape = (int(k.shape[1]),)
        elif kind in ("avg_pool", "sum_pool"):
            (pt, pb), (pl, pr) = d["padding"]
            if pt != pb or pl != pr:
                raise ValueError(f"NIR export: {kind} {name}: padding {d['padding']} is not symmetric")
            cls = nir.AvgPool2d if kind == "avg_pool" else nir.SumPool2d
            node = cls(kernel_size=np.array(d["window"]), stride=np.array(d["strides"]), padding=np.array((pt, pl)))
            shape = (shape[0], *_window_out(shape[1:], ((pt, pt), (pl, pl)), d["window"], d["strides"]))
        elif kind == "flatten":
            node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            flat_from = shape if len(shape) == 3 else None
            shape = (int(np.prod(shape)),)
        else:
            node = neuron_node(d, shape, dt=dt, gain=p.get("gain"))
        nodes[name] = node
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    keys = list(nodes)
    meta = {"dt": float(dt), "T": int(t.T), "framework": "jsnn", "readout": "mean over time of the output",
            "encoder": json.dumps(t.encoder._asdict()), "input_layout": "CHW (the encoded, normalized image)"}
    if t.normalize:
        meta.update(input_mean=np.asarray(t.mean, np.float64), input_std=np.asarray(t.std, np.float64))
    return nir.NIRGraph(nodes=nodes, edges=list(zip(keys[:-1], keys[1:])), metadata=meta)


def export(model, variables, x, *, dt: float = 1.0, key=None) -> nir.NIRGraph:
    """The NIR graph of ``model`` (a chain of supported layers) with ``variables``.

    ``x``: images ``[B, H, W, C]`` of the model's input shape (the trace replaces every layer's
    output by a probe, see :func:`jsnn.interop.trace.trace`); ``dt``: the time step one jsnn step
    stands for (stored as ``metadata["dt"]``).
    """
    return from_layers(trace_lib.trace(model, variables, x, key), dt=dt)


def write(path: str, graph: nir.NIRGraph) -> None:
    """Writes ``graph`` to ``path`` (HDF5, via a temporary file renamed into place)."""
    tmp = f"{path}.tmp{os.getpid()}"
    nir.write(tmp, graph)
    os.replace(tmp, path)


def read(path: str) -> nir.NIRGraph:
    """Reads a ``.nir`` file; a missing or unreadable file is one line naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--nir={path}: no such file")
    try:
        return nir.read(path)
    except Exception as e:  # h5py / NIR raise many types for foreign or damaged files
        raise ValueError(f"--nir={path}: not a readable NIR graph ({type(e).__name__}: {str(e)[:120]})") from None


# ----------------------------------------------------------------------------- import


def chain(graph: nir.NIRGraph) -> List[str]:
    """The node keys from the Input to the Output; anything but a simple chain is one line."""
    for key, node in graph.nodes.items():
        if type(node).__name__ not in SUPPORTED:
            raise ValueError(f"NIR node {key!r}: {type(node).__name__} has no jsnn layer; supported: "
                             f"{', '.join(SUPPORTED)}")
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"NIR graph: needs one Input and one Output node, got inputs {inputs}, outputs {outputs}")
    nxt: Dict[str, str] = {}
    for a, b in graph.edges:
        if a in nxt or sum(1 for _, v in graph.edges if v == b) > 1:
            raise ValueError(f"NIR graph: node {a!r} -> {b!r}: branches and recurrence are not supported "
                             "(jsnn imports chains)")
        nxt[a] = b
    order, key = [inputs[0]], inputs[0]
    while key != outputs[0]:
        if key not in nxt or nxt[key] in order:
            raise ValueError(f"NIR graph: no chain from {inputs[0]!r} to {outputs[0]!r} (stops at {key!r})")
        key = nxt[key]
        order.append(key)
    if len(order) != len(graph.nodes):
        raise ValueError(f"NIR graph: nodes {sorted(set(graph.nodes) - set(order))} are off the input-output chain")
    return order


def to_layers(graph: nir.NIRGraph, *, input_shape: Sequence[int], dt: Optional[float] = None,
              T: int = 4) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """``(layers, variables)`` of the ``"sequential"`` model computing ``graph`` on NHWC images.

    Args:
      graph: a chain of the :data:`SUPPORTED` nodes.
      input_shape: ``(H, W, C)`` of the images (the graph's input is (C, H, W) or flat C·H·W).
      dt: the time step of one jsnn step; ``None`` = the graph's ``metadata["dt"]``.
      T: time steps (a DLIF gain is a ``[T]`` parameter).
    """
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if dt is None:
        if "dt" not in meta:
            raise ValueError("dt: the NIR graph does not record its time step; pass dt (launch.import_nir: --dt; "
                             "snnTorch exports with 1e-4, jsnn with 1.0)")
        dt = float(np.asarray(meta["dt"]))
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt={dt!r}: must be a finite number > 0")
    H, W, C = (int(s) for s in input_shape)
    order = chain(graph)
    in_shape = tuple(int(s) for s in np.asarray(graph.nodes[order[0]].input_type["input"]).ravel())
    layers: List[Dict[str, Any]] = []
    params: Dict[str, Any] = {}
    if in_shape == (C, H, W):
        shape, flat_from = (C, H, W), None
    elif in_shape == (C * H * W,):
        layers.append({"kind": "flatten", "name": "input_flatten"})
        shape, flat_from = in_shape, (C, H, W)
    else:
        raise ValueError(f"NIR node {order[0]!r}: input shape {in_shape} fits neither (C, H, W) = {(C, H, W)} "
                         f"nor C·H·W = {C * H * W} of the images")
    for key in order[1:-1]:
        node = graph.nodes[key]
        t = type(node).__name__
        if t in ("Affine", "Linear"):
            w = np.asarray(node.weight)
            if w.ndim != 2 or w.shape[1] != int(np.prod(shape)):
                raise ValueError(f"NIR node {key!r}: {t} weight {w.shape} does not take the {shape} input")
            if flat_from is not None:  # NIR flattens c, h, w; jsnn h, w, c
                c, h, ww = flat_from
                w = w.reshape(-1, c, h, ww).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
                flat_from = None
            p = {"kernel": np.ascontiguousarray(w.T)}
            if t == "Affine":
                p["bias"] = np.asarray(node.bias)
            layers.append({"kind": "dense", "features": int(w.shape[0]), "bias": t == "Affine", "name": key})
            params[key] = p
            shape = (int(w.shape[0]),)
        elif t == "Conv2d":
            w = np.asarray(node.weight)
            if len(shape) != 3 or w.ndim != 4:
                raise ValueError(f"NIR node {key!r}: Conv2d needs a (C, H, W) input, got {shape}")
            pad = node.padding
            if isinstance(pad, (str, bytes)):
                pad = pad.decode() if isinstance(pad, bytes) else pad
                if pad == "same":
                    eff = [(k - 1) * dl + 1 for k, dl in zip(w.shape[2:], np.ravel(node.dilation))]
                    pad = [((e - 1) // 2, e - 1 - (e - 1) // 2) for e in eff]
                else:
                    pad = [(0, 0), (0, 0)]
            else:
                pad = [(int(q), int(q)) for q in np.broadcast_to(np.ravel(pad), (2,))]
            stride = tuple(int(s) for s in np.broadcast_to(np.ravel(node.stride), (2,)))
            dil = tuple(int(s) for s in np.broadcast_to(np.ravel(node.dilation), (2,)))
            layers.append({"kind": "conv", "features": int(w.shape[0]), "kernel": tuple(w.shape[2:]),
                           "strides": stride, "padding": tuple(pad), "dilation": dil, "groups": int(node.groups),
                           "bias": True, "name": key})
            params[key] = {"kernel": np.ascontiguousarray(w.transpose(2, 3, 1, 0)), "bias": np.asarray(node.bias)}
            shape = (int(w.shape[0]), *_window_out(shape[1:], pad, w.shape[2:], stride, dil))
        elif t in ("AvgPool2d", "SumPool2d"):
            win = tuple(int(s) for s in np.broadcast_to(np.ravel(node.kernel_size), (2,)))
            stride = tuple(int(s) for s in np.broadcast_to(np.ravel(node.stride), (2,)))
            pad = tuple(int(s) for s in np.broadcast_to(np.ravel(node.padding), (2,)))
            layers.append({"kind": "avg_pool" if t == "AvgPool2d" else "sum_pool", "window": win, "strides": stride,
                           "padding": tuple((q, q) for q in pad), "name": key})
            shape = (shape[0], *_window_out(shape[1:], tuple((q, q) for q in pad), win, stride))
        elif t == "Flatten":
            if len(shape) == 1:
                continue  # already flat
            if int(node.end_dim) != -1 or int(node.start_dim) not in (0, 1):  # 1: counts a batch axis
                raise ValueError(f"NIR node {key!r}: Flatten(start_dim={node.start_dim}, end_dim={node.end_dim}) "
                                 "must flatten the whole sample")
            layers.append({"kind": "flatten", "name": key})
            flat_from = shape if len(shape) == 3 else None
            shape = (int(np.prod(shape)),)
        else:  # LIF, IF
            layer, gain = neuron_layer(key, node, dt=dt)
            layers.append({"kind": "neuron", **layer, "name": key})
            if layer["neuron"] == "dlif":
                params[key] = {"gain": np.full((T,), gain, np.float32)}
    return layers, {"params": params}


def to_jsnn(graph: nir.NIRGraph, *, input_shape: Sequence[int], dt: Optional[float] = None,
            T: Optional[int] = None, neuron: NeuronConfig = LIF, encoder: Optional[EncoderConfig] = None,
            mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None):
    """``(model, variables)``: a ``"sequential"`` jsnn model of ``graph`` (see :func:`to_layers`).

    ``T`` and ``encoder`` default to the graph's metadata (else 4 and direct coding); the model
    normalizes its input with ``mean``/``std`` (default: the graph's ``input_mean``/``input_std``)
    only when the graph records a normalization. ``neuron`` supplies the training-time fields
    (surrogate, gradient); the dynamics come from each node.
    """
    from jsnn.models.registry import get_model

    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    T = int(np.asarray(meta.get("T", 4))) if T is None else int(T)
    if encoder is None:
        enc = meta.get("encoder")
        encoder = EncoderConfig(**json.loads(enc)) if isinstance(enc, (str, bytes)) else EncoderConfig()
    layers, variables = to_layers(graph, input_shape=input_shape, dt=dt, T=T)
    normalize = "input_mean" in meta
    mean = tuple(np.ravel(meta.get("input_mean", 0.0)).tolist()) if mean is None else tuple(mean)
    std = tuple(np.ravel(meta.get("input_std", 1.0)).tolist()) if std is None else tuple(std)
    out = np.asarray(graph.nodes[chain(graph)[-1]].output_type["output"]).ravel()
    model = get_model("sequential", layers=layers, normalize=normalize, T=T, neuron=neuron, encoder=encoder,
                      mean=mean, std=std, num_classes=int(np.prod(out)), input_channels=int(input_shape[-1]))
    return model, variables
