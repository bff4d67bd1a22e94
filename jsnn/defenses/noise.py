"""Gaussian noise augmentation (Gaussian data augmentation; the training side of randomized
smoothing, Cohen et al. 2019, "Certified Adversarial Robustness via Randomized Smoothing", ICML).

    loss = L(x + σ·ε),   ε ~ N(0, I) fresh per example and pixel (clipped to [0, 1] if ``clip``)

Unlike RSC coding (``config.model.encoder.name = "rsc"``), the noise is a training-time
augmentation only: the deployed model sees clean inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jsnn.config import check_number
from jsnn.defenses import base


def perturb(x, key, sigma: float, clip: bool = True):
    """``x + σ·N(0, I)``, clipped to [0, 1] if ``clip``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.defenses.noise import perturb
        >>> x = jnp.full((2, 4, 4, 1), 0.9)
        >>> x_noisy = perturb(x, jax.random.key(0), sigma=0.5)
        >>> bool(jnp.all((x_noisy >= 0) & (x_noisy <= 1))), bool(jnp.any(x_noisy == 1.0))  # clipped
        (True, True)
        >>> bool(jnp.all(perturb(x, jax.random.key(0), sigma=0.0) == x))
        True
    """
    x_noisy = x + sigma * jax.random.normal(key, x.shape, x.dtype)
    return jnp.clip(x_noisy, 0.0, 1.0) if clip else x_noisy


def gaussian_noise(*, sigma: float = 8 / 255, clip: bool = True):
    """Loss transform evaluating the wrapped loss on ``x + σ·N(0, I)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.defenses import gaussian_noise
        >>> loss_fn = lambda params, state, batch, key: (jnp.mean(batch["image"]), (state, {"metrics": {}}))
        >>> batch, key = {"image": jnp.full((2, 4, 4, 1), 0.5)}, jax.random.key(0)
        >>> float(gaussian_noise(sigma=0.0)(loss_fn)(None, {}, batch, key)[0])  # σ = 0: the base loss
        0.5
        >>> noisy = gaussian_noise(sigma=0.1, clip=False)(loss_fn)(None, {}, batch, key)[0]
        >>> bool(noisy != 0.5), bool(abs(noisy - 0.5) < 0.1)  # mean of 32 draws of σ = 0.1 noise
        (True, True)
    """
    sigma = check_number(sigma, "defense.noise.sigma", low=0.0)

    def transform(loss_fn):
        def noisy_loss_fn(params, model_state, batch, key):
            k_noise, k_loss = jax.random.split(key)
            noisy = base.with_image(batch, perturb(batch["image"], k_noise, sigma, clip))
            return loss_fn(params, model_state, noisy, k_loss)

        return noisy_loss_fn

    return transform
