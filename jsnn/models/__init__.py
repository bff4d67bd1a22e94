"""Model registry: models are chosen by name in the config (``config.model.name``)."""

from __future__ import annotations

from typing import Callable, Dict

from jsnn.models.base import SpikingModel, logits_fn, with_estimator
from jsnn.models.resnet import ResNet19, SEWResNet, SEWResNet18, SpikingResNet, WideResNet, WRN16_4
from jsnn.models.small import DigitsConv, DigitsMLP, SpikingConvNet, SpikingMLP
from jsnn.models.vgg import SpikingVGG, VGG5, VGG11

MODELS: Dict[str, Callable[..., SpikingModel]] = {
    "digits_conv": DigitsConv,
    "digits_mlp": DigitsMLP,
    "vgg5": VGG5,
    "vgg11": VGG11,
    "wrn16_4": WRN16_4,
    "resnet19": ResNet19,
    "sew_resnet18": SEWResNet18,
}


def register(name: str, factory: Callable[..., SpikingModel]) -> None:
    """Adds a model factory under ``name``."""
    MODELS[name] = factory


def get_model(name: str, **kwargs) -> SpikingModel:
    """Builds the registered model ``name``; unknown names list the known ones."""
    if name not in MODELS:
        raise ValueError(f"model.name: unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


__all__ = ["MODELS", "SpikingModel", "SpikingConvNet", "SpikingMLP", "DigitsConv", "DigitsMLP",
           "SpikingVGG", "VGG5", "VGG11", "WideResNet", "WRN16_4", "SpikingResNet", "ResNet19",
           "SEWResNet", "SEWResNet18",
           "get_model", "logits_fn", "register", "with_estimator"]
