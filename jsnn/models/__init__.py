"""Model registry: models are chosen by name in the config (``config.model.name``).

Example:
    >>> from jsnn import models
    >>> [name for name in sorted(models.MODELS) if name.startswith("digits")]
    ['digits_conv', 'digits_mlp']
"""

from __future__ import annotations

from typing import Callable, Dict

from jsnn.models.base import SpikingModel, estimator_factory, logits_fn, train_forward, with_estimator
from jsnn.models.resnet import ResNet19, SEWResNet, SEWResNet18, SpikingResNet, WideResNet, WRN16_4
from jsnn.models.small import DigitsConv, DigitsMLP, SpikingConvNet, SpikingMLP
from jsnn.models.vgg import SpikingVGG, VGG5, VGG11
from jsnn.models.registry import MODELS, get_model, register
from jsnn.models.factory import dataset_info, from_config
from jsnn.models.wrappers import ANNNet, FeatureVarianceNet, StochasticFeatures

__all__ = ["ANNNet", "FeatureVarianceNet", "MODELS", "SpikingModel", "StochasticFeatures", "SpikingConvNet", "SpikingMLP", "DigitsConv", "DigitsMLP",
           "SpikingVGG", "VGG5", "VGG11", "WideResNet", "WRN16_4", "SpikingResNet", "ResNet19",
           "SEWResNet", "SEWResNet18",
           "dataset_info", "estimator_factory", "from_config", "get_model", "logits_fn", "register",
           "train_forward", "with_estimator"]
