"""Gaussian noise augmentation (Gaussian data augmentation; the training side of randomized
smoothing, Cohen et al. 2019, "Certified Adversarial Robustness via Randomized Smoothing", ICML).

    loss = L(x + σ·ε),   ε ~ N(0, I) fresh per example and pixel (clipped to [0, 1] if ``clip``)

Unlike RSC coding (``config.model.encoder.name = "rsc"``), the noise is a training-time
augmentation only: the deployed model sees clean inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jsnn.defenses import base

DEFAULTS = dict(sigma=8 / 255, clip=True)


def perturb(x, key, sigma: float, clip: bool = True):
    """``x + σ·N(0, I)``, clipped to [0, 1] if ``clip``."""
    x_noisy = x + sigma * jax.random.normal(key, x.shape, x.dtype)
    return jnp.clip(x_noisy, 0.0, 1.0) if clip else x_noisy


def gaussian_noise(*, sigma: float = 8 / 255, clip: bool = True):
    """Loss transform evaluating the wrapped loss on ``x + σ·N(0, I)``."""
    sigma = base.check_range(sigma, "defense.noise.sigma", low=0.0)

    def transform(loss_fn):
        def noisy_loss_fn(params, model_state, batch, key):
            k_noise, k_loss = jax.random.split(key)
            noisy = base.with_image(batch, perturb(batch["image"], k_noise, sigma, clip))
            return loss_fn(params, model_state, noisy, k_loss)

        return noisy_loss_fn

    return transform


def from_config(sub, model):
    del model
    return gaussian_noise(**base.settings("noise", sub, DEFAULTS))
