"""Wrapper models: a registered backbone run another way (ANN twin, stochastic-feature head).

* ``"ann"`` — :class:`ANNNet`: the backbone with T = 1, direct coding and every
  :class:`~jsnn.layers.SpikingNeuron` replaced by a ReLU (the distillation teacher,
  :mod:`jsnn.defenses.distill`).
* ``"mfdv"`` — :class:`FeatureVarianceNet`: the backbone's readout widened to ``2·d`` outputs read as
  the mean and pre-scale of stochastic features, ``z = μ + σ⊙ε``, ``σ = softplus(s) + σ_min``, then a
  (unit-norm) classifier (MFDV, arXiv 2201.00148; its loss is :mod:`jsnn.defenses.feature_variance`).

Both are registered by importing :mod:`jsnn.models`; ``config.model.kwargs.backbone`` names the
backbone and the other kwargs go to it.

Example:
    >>> from jsnn import get_model
    >>> type(get_model("ann", backbone="digits_mlp")).__name__, get_model("mfdv", features=4).stochastic
    ('ANNNet', True)
    >>> get_model("ann", backbone="ann")
    Traceback (most recent call last):
    ValueError: model.kwargs.backbone: unknown backbone 'ann'; allowed: ...
"""

from __future__ import annotations

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jsnn.config import check_int
from jsnn.layers import Dense, EncoderConfig, SpikingNeuron
from jsnn.models.base import SpikingModel
from jsnn.models.registry import MODELS, register

_WRAPPER_FIELDS = ("num_classes", "T", "neuron", "encoder", "mean", "std", "input_channels", "name", "parent")


def _split_fields(name: str, backbone: str, kwargs: dict) -> tuple[dict, tuple]:
    """``(wrapper fields, backbone kwargs)`` of a wrapper factory's keywords; the backbone must be registered."""
    own = {k: kwargs.pop(k) for k in list(kwargs) if k in _WRAPPER_FIELDS}
    if backbone not in MODELS or backbone in WRAPPERS:
        allowed = ", ".join(sorted(n for n in MODELS if n not in WRAPPERS))
        raise ValueError(f"model.kwargs.backbone: unknown backbone {backbone!r}; allowed: {allowed}")
    return own, tuple(sorted(kwargs.items()))


def _relu_for_spikes(next_fun, args, kwargs, context):
    if isinstance(context.module, SpikingNeuron) and context.method_name == "__call__":
        return jax.nn.relu(args[0])
    return next_fun(*args, **kwargs)


class ANNNet(SpikingModel):
    """The ANN twin of a registered spiking model: T = 1, direct coding, ReLU for every spike layer.

    Attributes:
      backbone: registered model name.
      backbone_kwargs: extra backbone fields ``((name, value), ...)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import get_model
        >>> model = get_model("ann", backbone="digits_mlp", hidden=(8,))
        >>> x = jnp.linspace(0.0, 1.0, 3 * 64).reshape(3, 8, 8, 1)
        >>> v = jax.jit(model.init)(jax.random.key(1), x)
        >>> p = v["params"]["backbone"]  # at init BatchNorm (eval) is x / √(1 + 1e-5); then ReLU, not spikes
        >>> h = jax.nn.relu(x.reshape(3, -1) @ p["Dense_0"]["kernel"] / jnp.sqrt(1 + 1e-5))
        >>> expected = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
        >>> bool(jnp.allclose(jax.jit(model.apply)(v, x), expected, atol=1e-5))
        True
    """

    backbone: str = "digits_conv"
    backbone_kwargs: Tuple[Tuple[str, Any], ...] = ()

    @nn.compact
    def __call__(self, x, train: bool = False):
        net = MODELS[self.backbone](num_classes=self.num_classes, T=1, neuron=self.neuron,
                               encoder=EncoderConfig(), mean=self.mean, std=self.std,
                               input_channels=self.input_channels, name="backbone", **dict(self.backbone_kwargs))
        with nn.intercept_methods(_relu_for_spikes):
            return net(x, train=train)


def ann_model(*, backbone: str = "digits_conv", **kwargs) -> ANNNet:
    """Registry factory: SpikingModel fields go to the wrapper, the rest to the backbone."""
    own, backbone_kwargs = _split_fields("ann", backbone, kwargs)
    return ANNNet(backbone=backbone, backbone_kwargs=backbone_kwargs, **own)


class StochasticFeatures(nn.Module):
    """``z = μ + σ⊙ε``, ``σ = softplus(s) + σ_min``, ``ε ~ N(0, I)`` from rng ``"noise"``.

    Sows ``σ`` into ``"intermediates"`` as ``"sigma"``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.models.wrappers import StochasticFeatures
        >>> mu, s = jnp.zeros((2, 3)), jnp.zeros((2, 3))  # σ = softplus(0) + 0.001 = log 2 + 0.001
        >>> z, inter = StochasticFeatures().apply({}, mu, s, rngs={"noise": jax.random.key(0)},
        ...                                       mutable=["intermediates"])
        >>> round(float(inter["intermediates"]["sigma"][0][0, 0]), 4), z.shape, bool(jnp.any(z != mu))
        (0.6941, (2, 3), True)
    """

    min_sigma: float = 1e-3

    @nn.compact
    def __call__(self, mu, s):
        sigma = jax.nn.softplus(s) + self.min_sigma
        self.sow("intermediates", "sigma", sigma)
        eps = jax.random.normal(self.make_rng("noise"), mu.shape, mu.dtype)
        return mu + sigma * eps


def unit_columns(w):
    """``w`` with unit-L2 columns (one per class): the scale guard's classifier, ``w / ‖w‖₂``."""
    return w / jnp.sqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True) + 1e-12)


class UnitNormDense(nn.Module):
    """``z ↦ z·(W / ‖W‖_col) + b``: each class's weight vector has unit L2 norm."""

    features: int

    @nn.compact
    def __call__(self, z):
        w = self.param("kernel", nn.initializers.lecun_normal(), (z.shape[-1], self.features), jnp.float32)
        b = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        w = unit_columns(w)
        return z @ w.astype(z.dtype) + b.astype(z.dtype)


class FeatureVarianceNet(SpikingModel):
    """A registered backbone with a stochastic-feature head (module docstring).

    Attributes:
      backbone: registered model name (``config.model.kwargs.backbone``).
      features: d, the stochastic feature dimension.
      unit_norm: unit-norm classifier rows (the scale guard).
      min_sigma: σ floor.
      backbone_kwargs: extra constructor fields of the backbone, as ``((name, value), ...)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import get_model
        >>> model = get_model("mfdv", backbone="digits_mlp", features=4, hidden=(8,), T=2)
        >>> x = jnp.zeros((3, 8, 8, 1))
        >>> v = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
        >>> v["params"]["backbone"]["Dense_1"]["kernel"].shape  # backbone readout: 2·features = [μ, s]
        (8, 8)
        >>> logits = jax.eval_shape(model.apply, v, x, rngs={"noise": jax.random.key(1)})
        >>> v["params"]["classifier"]["kernel"].shape, logits.shape  # z = μ + σ⊙ε → 10 classes
        ((4, 10), (3, 10))
    """

    backbone: str = "digits_conv"
    features: int = 64
    unit_norm: bool = True
    min_sigma: float = 1e-3
    backbone_kwargs: Tuple[Tuple[str, Any], ...] = ()

    stochastic = True  # noise is on at test time (read by evaluation code choosing EOT)

    @nn.compact
    def __call__(self, x, train: bool = False):
        self.variable("counters", "step", lambda: jnp.zeros((), jnp.int32))
        net = MODELS[self.backbone](num_classes=2 * self.features, T=self.T, neuron=self.neuron,
                               encoder=self.encoder, mean=self.mean, std=self.std,
                               input_channels=self.input_channels, name="backbone", **dict(self.backbone_kwargs))
        h = net(x, train=train)
        mu, s = jnp.split(h, 2, axis=-1)
        z = StochasticFeatures(self.min_sigma, name="features")(mu, s)
        head = UnitNormDense(self.num_classes, name="classifier") if self.unit_norm else Dense(
            self.num_classes, name="classifier")
        return head(z)


def mfdv_model(*, backbone: str = "digits_conv", features: int = 64, unit_norm: bool = True,
               min_sigma: float = 1e-3, **kwargs) -> FeatureVarianceNet:
    """Registry factory: the SpikingModel fields go to the wrapper, the rest to the backbone."""
    own, backbone_kwargs = _split_fields("mfdv", backbone, kwargs)
    check_int(features, "model.kwargs.features")
    return FeatureVarianceNet(backbone=backbone, features=features, unit_norm=bool(unit_norm),
                              min_sigma=float(min_sigma), backbone_kwargs=backbone_kwargs, **own)


WRAPPERS = {"ann": ann_model, "mfdv": mfdv_model}
for _name, _factory in WRAPPERS.items():
    register(_name, _factory)
