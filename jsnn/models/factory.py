"""Building a model from an experiment config: ``from_config(config)`` and its typed readers.

Example:
    >>> import ml_collections
    >>> from jsnn.models import factory
    >>> config = ml_collections.ConfigDict({"data": {"name": "digits"}, "model": {"name": "digits_conv", "T": 4}})
    >>> model = factory.from_config(config)
    >>> type(model).__name__, model.T, model.num_classes, model.input_channels
    ('SpikingConvNet', 4, 10, 1)
"""

from __future__ import annotations

import inspect

from jsnn import config as cfg_lib
from jsnn import data as data_lib
from jsnn import encoding
from jsnn import surrogate as surrogate_lib
from jsnn.layers import EncoderConfig
from jsnn.models.base import SpikingModel
from jsnn.models.registry import MODELS, get_model
from jsnn.neuron import DLIF, GRADIENTS, IF, NeuronConfig


def neuron_config(model_cfg) -> NeuronConfig:
    """The :class:`NeuronConfig` described by ``config.model``."""
    kind = cfg_lib.get(model_cfg, "neuron", "lif")
    reset = cfg_lib.get(model_cfg, "reset", "hard")
    if reset not in ("hard", "soft"):
        raise ValueError(f"model.reset: {reset!r}; allowed: hard, soft")
    name = cfg_lib.get(model_cfg, "surrogate", None)
    surrogate, unroll, fused = None, cfg_lib.get(model_cfg, "unroll", None), cfg_lib.get(model_cfg, "fused", None)
    if name:
        try:
            surrogate = surrogate_lib.by_name(name, cfg_lib.get(model_cfg, "surrogate_width", None))
        except ValueError as e:
            raise ValueError(f"model.surrogate / model.surrogate_width: {e}") from None
    cfg = NeuronConfig(
        kind=kind,
        tau=float(cfg_lib.get(model_cfg, "tau", 2.0)),
        leak=float(cfg_lib.get(model_cfg, "leak", IF.leak if kind == "if" else DLIF.leak)),
        v_threshold=float(cfg_lib.get(model_cfg, "v_threshold", 1.0)),
        v_reset=None if reset == "soft" else float(cfg_lib.get(model_cfg, "v_reset", 0.0)),
        decay_input=bool(cfg_lib.get(model_cfg, "decay_input", True)),
        detach_reset=bool(cfg_lib.get(model_cfg, "detach_reset", False)),
        surrogate=surrogate,
        gradient=cfg_lib.check_choice(cfg_lib.get(model_cfg, "spike_gradient", "bptt"), "model.spike_gradient",
                                      GRADIENTS),
        remat=bool(cfg_lib.get(model_cfg, "remat", False)),
        unroll=None if unroll is None else cfg_lib.check_bool(unroll, "model.unroll"),
        fused=None if fused is None else cfg_lib.check_bool(fused, "model.fused"),
    )
    return cfg.check("model.")


def encoder_config(model_cfg) -> EncoderConfig:
    """The :class:`EncoderConfig` described by ``config.model.encoder``."""
    enc = cfg_lib.get(model_cfg, "encoder", None)
    if enc is None or isinstance(enc, str):
        enc = {"name": enc or "direct"}
    name = cfg_lib.get(enc, "name", "direct")
    if name not in encoding.ENCODERS:
        raise ValueError(f"model.encoder.name: unknown encoder {name!r}; allowed: {', '.join(encoding.ENCODERS)}")
    sigma = float(cfg_lib.get(enc, "sigma", 0.0))
    if not sigma >= 0:
        raise ValueError(f"model.encoder.sigma: must be >= 0, got {sigma!r}")
    pg = cfg_lib.get(enc, "poisson_gradient", "straight_through")
    if pg not in encoding.POISSON_GRADIENTS:
        raise ValueError(f"model.encoder.poisson_gradient: {pg!r}; allowed: {', '.join(encoding.POISSON_GRADIENTS)}")
    return EncoderConfig(name=name, sigma=sigma, per_step=bool(cfg_lib.get(enc, "per_step", False)),
                         clip=bool(cfg_lib.get(enc, "clip", False)), poisson_gradient=pg)


def dataset_info(config) -> data_lib.DatasetInfo:
    return data_lib.info(config.data.name, cfg_lib.get(config.data, "image_size", None),
                         cfg_lib.get(config.data, "events", None))


def _check_frames(info, encoder: EncoderConfig, T: int, data_name: str) -> None:
    """Event frames need a ``frames`` encoder with one step per frame; images need an image encoder."""
    if info.frames is None:
        if encoder.name in encoding.FRAME_ENCODERS:
            raise ValueError(f"model.encoder.name: {encoder.name!r} reads event frames, but data.name={data_name!r} "
                             f"gives images; use one of {', '.join(sorted(data_lib.EVENT_DATASETS))} or an image "
                             "encoder (direct, poisson, rsc)")
        return
    if encoder.name not in encoding.FRAME_ENCODERS:
        raise ValueError(f"model.encoder.name: {encoder.name!r} on event data {data_name!r}; event frames are their "
                         f"own encoding: use {', '.join(sorted(encoding.FRAME_ENCODERS))}")
    if T != info.frames:
        raise ValueError(f"model.T: {T} time steps but data.events.frames = {info.frames}; the frames encoder "
                         "feeds one frame per step, so they must be equal")


MODEL_FIELDS = ("name", "T", "neuron", "tau", "leak", "v_threshold", "reset", "v_reset", "decay_input",
                "detach_reset", "surrogate", "surrogate_width", "spike_gradient", "remat", "unroll", "fused",
                "encoder",
                "kwargs")


def _check_kwargs(name: str, extra: dict) -> None:
    """``config.model.kwargs`` must be fields of the model's factory (one line listing them otherwise)."""
    factory = MODELS[name]
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    reserved = ("num_classes", "T", "neuron", "encoder", "mean", "std", "input_channels", "parent", "name")
    allowed = sorted(k for k in params if k not in reserved)
    for k in extra:
        if k not in allowed:
            raise ValueError(f"model.kwargs.{k}: unknown field of model {name!r}; allowed: {', '.join(allowed)}")


def from_config(config) -> SpikingModel:
    """The model of ``config.model`` for the dataset of ``config.data``."""
    info = dataset_info(config)
    cfg_lib.check_known(config.model, "model", MODEL_FIELDS)
    name = config.model.name
    if name not in MODELS:
        raise ValueError(f"model.name: unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    T = cfg_lib.check_int(cfg_lib.get(config.model, "T", 4), "model.T", 1)
    extra = dict(cfg_lib.get(config.model, "kwargs", None) or {})
    _check_kwargs(name, extra)
    encoder = encoder_config(config.model)
    _check_frames(info, encoder, T, config.data.name)
    return get_model(
        name, num_classes=info.num_classes, T=T, neuron=neuron_config(config.model),
        encoder=encoder, mean=tuple(info.mean), std=tuple(info.std),
        input_channels=info.image_shape[-1], **extra)
