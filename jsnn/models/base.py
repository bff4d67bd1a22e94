"""Shared parts of every jsnn model: encoder → normalize → body → time-averaged logits."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from jsnn.layers import EncoderConfig, LIF, NeuronConfig


class SpikingModel(nn.Module):
    """Base of the registered models; subclasses implement ``body(x, train)`` on merged T·B.

    Attributes:
      num_classes: output classes.
      T: time steps (≥ 1).
      neuron: neuron preset of every spiking layer.
      encoder: input encoder.
      mean, std: per-channel normalization applied after encoding.
      input_channels: expected image channels (checked at call time).
    """

    num_classes: int = 10
    T: int = 4
    neuron: NeuronConfig = LIF
    encoder: EncoderConfig = EncoderConfig()
    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)
    input_channels: int | None = None

    def check_input(self, x):
        if x.ndim != 4:
            raise ValueError(f"model input: expected images of rank 4 [B, H, W, C], got shape {x.shape}")
        if self.input_channels is not None and x.shape[-1] != self.input_channels:
            raise ValueError(f"model input: expected {self.input_channels} channels (NHWC), got shape {x.shape}")


def with_estimator(model: SpikingModel, *, surrogate=None, gradient: str | None = None) -> SpikingModel:
    """The same model (same parameters) with another backward estimator.

    Attacks choose their surrogate independently of training:
    ``with_estimator(model, surrogate=surrogate.atan(2.0))`` or ``gradient="bptr"``.
    """
    cfg = model.neuron
    if surrogate is not None:
        cfg = cfg._replace(surrogate=surrogate)
    if gradient is not None:
        cfg = cfg._replace(gradient=gradient)
    return model.clone(neuron=cfg)


def logits_fn(model: SpikingModel, variables, *, surrogate=None, gradient: str | None = None):
    """Evaluation-mode forward ``logits_fn(x, key) -> logits`` for attacks and certification.

    BatchNorm uses running statistics; ``key`` feeds the stochastic encoder and
    stochastic layers (rng ``"noise"``) and is ignored by deterministic models.
    ``surrogate`` / ``gradient`` pick the backward estimator independently of training.
    """
    m = with_estimator(model, surrogate=surrogate, gradient=gradient)

    def fn(x, key):
        return m.apply(variables, x, train=False, rngs={"noise": key})

    return fn
