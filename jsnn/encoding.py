"""Input encoders: images ``[B, ...]`` in [0, 1] → time-major sequences ``[T, B, ...]``.

Event data arrives as frames ``[B, T, ...]`` (:mod:`jsnn.data.events`) and is its own encoding.

Every stochastic encoder takes an explicit ``jax.random`` key; noise is fresh per
example (and per time step where stated).

* ``direct``: the image repeated every step (Rueckauer et al. 2017; the SR / RAT papers).
* ``poisson``: rate coding ``s_t ~ Bernoulli(x)`` per pixel and step. Its true
  gradient is zero; ``gradient="straight_through"`` uses ds/dx = 1 (BPDA).
* ``rsc``: randomized-smoothing coding of RSC-SNN (Wu et al. 2024, arXiv 2407.20099):
  ``x + ε``, ``ε ~ N(0, σ²I)``; RSC-I (``per_step=False``) draws ε once and repeats
  it over T, RSC-II (``per_step=True``) draws fresh ε every step.
* ``frames``: event frames ``[B, T, ...]``, one frame per step (a transpose; no coding on top).
* ``frames_rsc``: RSC noise on the frames, ``f_t + ε_t`` (``per_step=True``: fresh ε per frame,
  ``False``: one ε for all frames), the event counterpart of ``rsc``.

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

ENCODERS = ("direct", "poisson", "rsc", "frames", "frames_rsc")
POISSON_GRADIENTS = ("none", "straight_through")
STOCHASTIC = frozenset({"poisson", "rsc", "frames_rsc"})
FRAME_ENCODERS = frozenset({"frames", "frames_rsc"})  # inputs are event frames [B, T, H, W, 2]


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
    x = jnp.asarray(x)
    return _gaussian(jnp.broadcast_to(x[None], (T,) + x.shape), key, sigma, per_step, clip, "rsc")


def _gaussian(seq, key, sigma, per_step: bool, clip: bool, where: str):
    """``seq + σ·ε`` on a time-major ``[T, ...]`` sequence; ε fresh per step or one for all steps."""
    if not isinstance(sigma, jax.core.Tracer) and not (math.isfinite(float(sigma)) and float(sigma) >= 0):
        raise ValueError(f"encoding.{where}: sigma must be >= 0, got {sigma!r}")
    shape = seq.shape if per_step else (1,) + seq.shape[1:]
    noisy = seq + sigma * jax.random.normal(key, shape, seq.dtype)
    if clip:
        noisy = jnp.clip(noisy, 0.0, 1.0)
    return jnp.broadcast_to(noisy, seq.shape)


def frames(x, T: int):
    """Event frames ``[B, T, ...]`` → time-major ``[T, B, ...]`` (frame t is step t).

    Raises:
      ValueError: ``x`` is not ``[B, T, ...]`` with T = ``T`` (the model's time steps must equal
        the frame count ``data.events.frames``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn import encoding
        >>> x = jnp.arange(6.0).reshape(1, 3, 2)  # B = 1, T = 3 frames of 2 pixels
        >>> encoding.frames(x, T=3)[:, 0].tolist()
        [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
        >>> encoding.frames(x, T=4)
        Traceback (most recent call last):
        ValueError: model.T: 4 time steps but the input has 3 frames (shape (1, 3, 2)); set model.T = data.events.frames
    """
    _check_T(T)
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[1] != T:
        raise ValueError(f"model.T: {T} time steps but the input has {x.shape[1] if x.ndim >= 2 else None} frames "
                         f"(shape {tuple(x.shape)}); set model.T = data.events.frames")
    return jnp.swapaxes(x, 0, 1)


def frames_rsc(x, T: int, key, *, sigma: float, per_step: bool = True, clip: bool = False):
    """RSC on event frames: ``f_t + ε_t``, ε ~ N(0, σ²I) fresh per frame (``per_step``) or shared.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import encoding
        >>> x = jnp.zeros((2, 3, 4, 4, 2))  # [B, T, H, W, 2]
        >>> s = encoding.frames_rsc(x, 3, jax.random.key(0), sigma=0.5)
        >>> s.shape, bool(jnp.all(s[0] != s[1]))  # fresh noise per frame
        ((3, 2, 4, 4, 2), True)
        >>> same = encoding.frames_rsc(x, 3, jax.random.key(0), sigma=0.5, per_step=False)
        >>> bool(jnp.all(same[0] == same[1]))
        True
    """
    return _gaussian(frames(x, T), key, sigma, per_step, clip, "frames_rsc")


def encode(name: str, x, T: int, key=None, **kwargs):
    """Encoder by name (one of :data:`ENCODERS`) with its keyword arguments."""
    if name not in ENCODERS:
        raise ValueError(f"encoder: unknown name {name!r}; allowed: {', '.join(ENCODERS)}")
    if name in ("direct", "frames"):
        return (direct if name == "direct" else frames)(x, T)
    if key is None:
        raise ValueError(f"encoder {name!r} is stochastic and needs a PRNG key")
    return {"poisson": poisson, "rsc": rsc, "frames_rsc": frames_rsc}[name](x, T, key, **kwargs)
