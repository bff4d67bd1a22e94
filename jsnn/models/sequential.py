"""A spiking model described by data: a chain of layers, the form NIR graphs are imported into.

Each layer is a small mapping (``config.model.kwargs.layers`` in ``config.json``):

=============  ==============================================================================
``kind``       fields (defaults)
=============  ==============================================================================
``conv``       ``features``, ``kernel`` (3, 3), ``strides`` (1, 1), ``padding`` ((0, 0), (0, 0)),
               ``dilation`` (1, 1), ``groups`` 1, ``bias`` True — NHWC, kernel HWIO
``dense``      ``features``, ``bias`` True
``avg_pool``   ``window``, ``strides`` (= window), ``padding`` ((0, 0), (0, 0))
``sum_pool``   as ``avg_pool``
``flatten``    — (NHWC order: h, w, c)
``neuron``     any of ``kind`` (``neuron``), ``tau``, ``leak``, ``v_threshold``, ``v_reset``,
               ``decay_input`` of :class:`~jsnn.neuron.NeuronConfig`; the model's own ``neuron``
               supplies the rest (surrogate, gradient, remat), so attacks swap estimators as usual
=============  ==============================================================================

The logits are the last layer's output averaged over time (a spike rate when it is a neuron).
A ``name`` entry names the layer's variables (an imported NIR node keeps its key).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import get_model
    >>> layers = [{"kind": "flatten"}, {"kind": "dense", "features": 16, "name": "fc1"},
    ...           {"kind": "neuron", "neuron": "if"}, {"kind": "dense", "features": 10}]
    >>> model, x = get_model("sequential", layers=layers, T=2), jnp.full((3, 8, 8, 1), 0.5)
    >>> v = jax.eval_shape(model.init, jax.random.key(0), x)
    >>> sorted(v["params"]), v["params"]["fc1"]["kernel"].shape, jax.eval_shape(model.apply, v, x).shape
    (['dense_3', 'fc1'], (64, 16), (3, 10))
    >>> get_model("sequential", layers=[{"kind": "maxpool"}])
    Traceback (most recent call last):
    ValueError: model.kwargs.layers[0].kind: 'maxpool'; allowed: conv, dense, avg_pool, sum_pool, flatten, neuron
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Sequence, Tuple

import flax.linen as nn

from jsnn.layers import Conv, Dense, Encoder, EncoderConfig, Normalize, SpikingNeuron, avg_pool, sum_pool, time_average
from jsnn.models.base import SpikingModel
from jsnn.neuron import LIF, NeuronConfig

KINDS = ("conv", "dense", "avg_pool", "sum_pool", "flatten", "neuron")
NEURON_FIELDS = {"neuron": "kind", "tau": "tau", "leak": "leak", "v_threshold": "v_threshold",
                 "v_reset": "v_reset", "decay_input": "decay_input"}
FIELDS = {
    "conv": ("features", "kernel", "strides", "padding", "dilation", "groups", "bias"),
    "dense": ("features", "bias"),
    "avg_pool": ("window", "strides", "padding"),
    "sum_pool": ("window", "strides", "padding"),
    "flatten": (),
    "neuron": tuple(NEURON_FIELDS),
}
DEFAULTS = {"kernel": (3, 3), "strides": (1, 1), "padding": ((0, 0), (0, 0)), "dilation": (1, 1), "groups": 1,
            "bias": True}


def _freeze(value):
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def layer_dict(layer) -> Dict[str, Any]:
    """A layer (frozen tuple of pairs or a mapping) as a plain dict with the defaults of its kind filled in.

    Example:
        >>> from jsnn.models.sequential import layer_dict
        >>> layer_dict({"kind": "avg_pool", "window": (2, 2)})["strides"]  # strides default to the window
        (2, 2)
    """
    d = dict(layer) if not isinstance(layer, Mapping) else dict(_freeze(layer))
    kind = d.get("kind")
    if kind in ("avg_pool", "sum_pool"):
        d.setdefault("strides", d.get("window"))
    for k in FIELDS.get(kind, ()):
        if k in DEFAULTS:
            d.setdefault(k, DEFAULTS[k])
    return d


def check_layers(layers, num_classes: int | None = None) -> Tuple:
    """Validates ``layers`` (one line naming ``model.kwargs.layers[i].field``) and returns them frozen (hashable)."""
    if isinstance(layers, (str, bytes, Mapping)) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"model.kwargs.layers: must be a non-empty list of layer dicts, got {layers!r}")
    frozen, names = [], set()
    for i, layer in enumerate(layers):
        where = f"model.kwargs.layers[{i}]"
        if not isinstance(layer, (Mapping, tuple)):
            raise ValueError(f"{where}: must be a dict with a 'kind', got {layer!r}")
        d = layer_dict(layer)
        kind = d.get("kind")
        if kind not in KINDS:
            raise ValueError(f"{where}.kind: {kind!r}; allowed: {', '.join(KINDS)}")
        for k in d:
            if k not in FIELDS[kind] + ("kind", "name"):
                raise ValueError(f"{where}.{k}: unknown field of a {kind} layer; allowed: "
                                 f"{', '.join(FIELDS[kind] + ('name',))}")
        if kind in ("conv", "dense") and not (isinstance(d.get("features"), int) and d["features"] >= 1):
            raise ValueError(f"{where}.features: must be an int >= 1, got {d.get('features')!r}")
        if kind in ("avg_pool", "sum_pool") and d.get("window") is None:
            raise ValueError(f"{where}.window: required for a {kind} layer (e.g. [2, 2])")
        d["name"] = re.sub(r"\W", "_", str(d.get("name") or f"{kind}_{i}"))
        if d["name"] in names:
            raise ValueError(f"{where}.name: {d['name']!r} is used twice")
        names.add(d["name"])
        frozen.append(_freeze(d))
    return tuple(frozen)


class SequentialSNN(SpikingModel):
    """Encoder → normalize (when ``normalize``) → ``layers`` in order → time-averaged last output.

    Attributes:
      layers: the layer specs (see the module docstring), frozen by :func:`check_layers`.
      normalize: apply the dataset's ``(x − mean) / std``; an imported graph that was made on raw
        pixels sets it False.
    """

    layers: Tuple = ()
    normalize: bool = True

    def layer_neuron(self, d):
        """The :class:`NeuronConfig` of a neuron layer: the model's ``neuron`` with the layer's dynamics."""
        return self.neuron._replace(**{NEURON_FIELDS[k]: d[k] for k in NEURON_FIELDS if k in d}).check("model.")

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.check_input(x)
        h = Encoder(self.T, self.encoder)(x)
        if self.normalize:
            h = Normalize(self.mean, self.std)(h)
        for layer in self.layers:
            d = layer_dict(layer)
            kind, name = d["kind"], d["name"]
            if kind == "conv":
                h = Conv(d["features"], tuple(d["kernel"]), tuple(d["strides"]), padding=d["padding"],
                         kernel_dilation=tuple(d["dilation"]), feature_group_count=d["groups"],
                         use_bias=d["bias"], name=name)(h)
            elif kind == "dense":
                h = Dense(d["features"], use_bias=d["bias"], name=name)(h)
            elif kind == "avg_pool":
                h = avg_pool(h, d["window"], d["strides"], padding=d["padding"])
            elif kind == "sum_pool":
                h = sum_pool(h, d["window"], d["strides"], padding=d["padding"])
            elif kind == "flatten":
                h = h.reshape((h.shape[0], -1))
            else:
                h = SpikingNeuron(self.T, self.layer_neuron(d), name=name)(h)
        if h.ndim != 2 or h.shape[-1] != self.num_classes:
            raise ValueError(f"model.kwargs.layers: the last layer gives shape {h.shape[1:]} per step; "
                             f"expected ({self.num_classes},) for {self.num_classes} classes")
        return time_average(h, self.T)


def sequential(layers: Sequence = (), normalize: bool = True, *, num_classes: int = 10, T: int = 4,
               neuron: NeuronConfig = LIF, encoder: EncoderConfig = EncoderConfig(), mean: Sequence[float] = (0.0,),
               std: Sequence[float] = (1.0,), input_channels: int | None = None) -> SequentialSNN:
    """The registered ``"sequential"`` model: :class:`SequentialSNN` with ``layers`` checked and frozen.

    Its config fields (``model.kwargs.*``) are ``layers`` and ``normalize``; the others are the
    :class:`~jsnn.models.SpikingModel` fields that :func:`jsnn.models.from_config` fills in.
    """
    return SequentialSNN(layers=check_layers(layers), normalize=bool(normalize), num_classes=num_classes, T=T,
                         neuron=neuron, encoder=encoder, mean=mean, std=std, input_channels=input_channels)
