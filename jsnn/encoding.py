"""Input encoders: images ``[B, ...]`` in [0, 1] → time-major sequences ``[T, B, ...]``.

Every stochastic encoder takes an explicit ``jax.random`` key; noise is fresh per
example (and per time step where stated).

* ``direct``: the image repeated every step (Rueckauer et al. 2017; the SR / RAT papers).
* ``poisson``: rate coding ``s_t ~ Bernoulli(x)`` per pixel and step. Its true
  gradient is zero; ``gradient="straight_through"`` uses ds/dx = 1 (BPDA).
* ``rsc``: randomized-smoothing coding of RSC-SNN (Wu et al. 2024, arXiv 2407.20099):
  ``x + ε``, ``ε ~ N(0, σ²I)``; RSC-I (``per_step=False``) draws ε once and repeats
  it over T, RSC-II (``per_step=True``) draws fresh ε every step.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import encoding
    >>> encoding.direct(jnp.ones((2, 3)), T=4).shape
    (4, 2, 3)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

ENCODERS = ("direct", "poisson", "rsc")
POISSON_GRADIENTS = ("none", "straight_through")
STOCHASTIC = frozenset({"poisson", "rsc"})


def _check_T(T):
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"encoding: T (time steps) must be an integer >= 1, got {T!r}")


def direct(x, T: int):
    """Direct coding: ``x`` repeated ``T`` times → ``[T, *x.shape]``."""
    _check_T(T)
    x = jnp.asarray(x)
    return jnp.broadcast_to(x[None], (T,) + x.shape)


def poisson(x, T: int, key, *, gradient: str = "none"):
    """Poisson (Bernoulli) rate coding: ``s_t = 1[U_t < x]``, ``U_t ~ U(0, 1)``.

    Args:
      x: intensities in [0, 1].
      T: time steps.
      key: PRNG key; fresh draws per pixel, example and step.
      gradient: ``"none"`` (the true, zero gradient) or ``"straight_through"`` (ds/dx = 1).
    """
    _check_T(T)
    if gradient not in POISSON_GRADIENTS:
        raise ValueError(f"encoding.poisson: gradient={gradient!r}; allowed: {', '.join(POISSON_GRADIENTS)}")
    x = jnp.asarray(x)
    u = jax.random.uniform(key, (T,) + x.shape, x.dtype)
    s = (u < x[None]).astype(x.dtype)
    if gradient == "none":
        return jax.lax.stop_gradient(s)
    xs = jnp.broadcast_to(x[None], s.shape)
    return xs + jax.lax.stop_gradient(s - xs)


def rsc(x, T: int, key, *, sigma: float, per_step: bool = False, clip: bool = False):
    """Randomized-smoothing (Gaussian) coding: ``x + ε``, ε ~ N(0, σ²I).

    Args:
      x: images in [0, 1].
      T: time steps.
      key: PRNG key.
      sigma: noise std σ ≥ 0 (the robustness–accuracy knob; values *unconfirmed*).
      per_step: False = RSC-I (one ε repeated over T); True = RSC-II (fresh ε each step).
      clip: clip the noisy input to [0, 1] (*unconfirmed* in the paper; default off, which
        keeps the smoothing analysis of Cohen et al. exact).
    """
    _check_T(T)
    if not isinstance(sigma, jax.core.Tracer) and not (math.isfinite(float(sigma)) and float(sigma) >= 0):
        raise ValueError(f"encoding.rsc: sigma must be >= 0, got {sigma!r}")
    x = jnp.asarray(x)
    shape = ((T,) if per_step else (1,)) + x.shape
    noisy = x[None] + sigma * jax.random.normal(key, shape, x.dtype)
    if clip:
        noisy = jnp.clip(noisy, 0.0, 1.0)
    return jnp.broadcast_to(noisy, (T,) + x.shape)


def encode(name: str, x, T: int, key=None, **kwargs):
    """Encoder by name (``direct``, ``poisson``, ``rsc``) with its keyword arguments."""
    if name not in ENCODERS:
        raise ValueError(f"encoder: unknown name {name!r}; allowed: {', '.join(ENCODERS)}")
    if name == "direct":
        return direct(x, T)
    if key is None:
        raise ValueError(f"encoder {name!r} is stochastic and needs a PRNG key")
    return (poisson if name == "poisson" else rsc)(x, T, key, **kwargs)
