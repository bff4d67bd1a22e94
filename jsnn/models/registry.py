"""Model registry: models are chosen by name in the config (``config.model.name``)."""

from __future__ import annotations

from typing import Callable, Dict

from jsnn.models.base import SpikingModel
from jsnn.models.resnet import ResNet19, SEWResNet18, WRN16_4
from jsnn.models.sequential import sequential
from jsnn.models.small import DigitsConv, DigitsMLP
from jsnn.models.vgg import VGG5, VGG11

MODELS: Dict[str, Callable[..., SpikingModel]] = {
    "digits_conv": DigitsConv,
    "digits_mlp": DigitsMLP,
    "vgg5": VGG5,
    "vgg11": VGG11,
    "wrn16_4": WRN16_4,
    "resnet19": ResNet19,
    "sew_resnet18": SEWResNet18,
    "sequential": sequential,
}


def register(name: str, factory: Callable[..., SpikingModel]) -> None:
    """Adds a model factory under ``name``.

    Example:
        >>> import functools
        >>> from jsnn import models
        >>> models.register("tiny_mlp", functools.partial(models.SpikingMLP, hidden=(16,), T=2))
        >>> model = models.get_model("tiny_mlp", num_classes=3)
        >>> model.hidden, model.T, model.num_classes
        ((16,), 2, 3)
        >>> del models.MODELS["tiny_mlp"]  # leave the registry as it was
    """
    MODELS[name] = factory


def get_model(name: str, **kwargs) -> SpikingModel:
    """Builds the registered model ``name``; unknown names list the known ones.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import get_model
        >>> model = get_model("digits_mlp", T=2)  # keyword arguments set the model's fields
        >>> x = jnp.zeros((3, 8, 8, 1))  # NHWC images in [0, 1]
        >>> variables = jax.jit(model.init)(jax.random.key(0), x)
        >>> logits = jax.jit(model.apply)(variables, x)  # black images: no spikes, logits = bias (0)
        >>> sorted(variables), logits.shape, float(jnp.abs(logits).max())
        (['batch_stats', 'params'], (3, 10), 0.0)
        >>> get_model("vgg16")
        Traceback (most recent call last):
        ValueError: model.name: unknown model 'vgg16'; allowed: ..., digits_conv, digits_mlp, ...
    """
    if name not in MODELS:
        raise ValueError(f"model.name: unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


