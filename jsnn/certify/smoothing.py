"""Randomized-smoothing PREDICT and CERTIFY (Cohen, Rosenfeld & Kolter 2019, arXiv 1902.02918).

The smoothed classifier of a base classifier ``f`` is
``g(x) = argmax_c P(f(x + ε) = c)``, ``ε ~ N(0, σ²I)``. If the top class has probability
``p_A ≥ p_A_lower > 1/2``, then ``g`` is constant on the L2 ball of radius
``R = σ·Φ⁻¹(p_A_lower)`` around ``x`` (Cohen et al., Theorem 1 with p_B = 1 − p_A).

Where the noise comes from (``noise=``):

* ``"input"`` (default): ``logits_fn`` is a deterministic base classifier (an ANN, a
  direct-coded SNN, or any model whose own randomness is independent of ``x``); this
  module adds ``ε ~ N(0, σ²I)`` to ``x`` and calls ``logits_fn(x + ε, key)``.
* ``"model"``: the base classifier draws the Gaussian noise itself, e.g. an SNN with
  the RSC encoder ``EncoderConfig(name="rsc", sigma=σ, per_step=...)`` (RSC-SNN, Wu et
  al. 2024, arXiv 2407.20099). No noise is added here; every sample gets a fresh key,
  and ``sigma`` must be the encoder's σ (it only enters the radius).

RSC-II (``per_step=True``) draws T independent ``ε_t`` and feeds ``x + ε_t`` at step t:
the base classifier sees ``x ⊗ 1_T + ε`` with ``ε ~ N(0, σ²I_{T·d})``, and an input
shift δ becomes a shift of norm ``√T·‖δ‖``. The certified radius in input space is
therefore ``σ·Φ⁻¹(p_A_lower)/√T``: pass ``steps=T``. RSC-I (one ε repeated over T)
is ordinary smoothing: ``steps=1``. Clipping the noisy input to [0, 1] inside the model
is post-processing of ``x + ε`` and keeps the certificate valid.

Sampling is one jitted program per configuration: samples of all images are laid out
as ``image × sample`` indices and processed in chunks of ``batch_size`` forward passes
(``lax.fori_loop``; the last chunk is masked), each chunk ``vmap``-ed over samples, class
counts accumulated on device. Sample ``j`` of image ``i`` uses the key
``fold_in(fold_in(key_i, phase), j)``, so counts do not depend on ``batch_size`` or on how
images are grouped into batches, and an interrupted run can be resumed exactly.
The Clopper–Pearson and binomial tests run on the host with scipy.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import certify
    >>> f = lambda x, key: jnp.stack([x.sum(-1), jnp.zeros(x.shape[0])], -1)  # [B, 2]
    >>> pred, radius = certify.certify(f, jnp.array([0.5]), jax.random.key(0), sigma=0.25,
    ...                                n0=100, n=10_000, image_ndim=1)
    >>> pred, round(radius, 2)
    (0, 0.49)
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jsnn import config as cfg
from jsnn.attacks.common import as_partial

NOISES = ("input", "model")
ABSTAIN = -1
RADII = (0.0, 0.25, 0.5, 0.75, 1.0)

# Phase constants folded into each image key: selection (n0), estimation (n), PREDICT.
_SELECT, _ESTIMATE, _PREDICT = 0, 1, 2


class Certificate(NamedTuple):
    """CERTIFY outcome per image (numpy arrays, or scalars for one image).

    Attributes:
      prediction: ĉ_A, or −1 (abstain) when ``p_lower < 0.5``.
      radius: certified L2 radius ``σ·Φ⁻¹(p_lower)/√steps`` (0 when abstaining).
      p_lower: one-sided Clopper–Pearson lower bound of p_A at level α.
      count: n_A, the estimation samples classified as ĉ_A.
      top: ĉ_A = argmax of the selection counts (kept when abstaining).
    """

    prediction: np.ndarray
    radius: np.ndarray
    p_lower: np.ndarray
    count: np.ndarray
    top: np.ndarray


# ----------------------------------------------------------------------------- statistics


def clopper_pearson_lower(count, n, alpha: float):
    """One-sided (1 − α) Clopper–Pearson lower bound of a binomial proportion.

    ``p_lower = B⁻¹(α; k, n − k + 1)`` (Beta quantile), 0 when ``k = 0``; this is
    ``proportion_confint(k, n, alpha=2α, method="beta")[0]`` of Cohen et al.'s code.
    ``P(Binom(n, p_lower) ≥ k) = α``: the smallest p that makes k or more successes
    at least α-likely.
    """
    _check_alpha(alpha)
    k = np.asarray(count, np.float64)
    n = np.asarray(n, np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError(f"clopper_pearson_lower: count must lie in [0, n], got count={count!r}, n={n!r}")
    safe_k = np.maximum(k, 1.0)
    lower = stats.beta.ppf(alpha, safe_k, n - safe_k + 1.0)
    return np.where(k > 0, lower, 0.0)


def certified_radius(p_lower, sigma: float, steps: int = 1):
    """``σ·Φ⁻¹(p_lower)/√steps`` where ``p_lower ≥ 0.5``, else 0 (abstain)."""
    p = np.asarray(p_lower, np.float64)
    r = sigma * stats.norm.ppf(np.where(p >= 0.5, p, 0.5)) / math.sqrt(steps)
    return np.where(p >= 0.5, r, 0.0)


def certify_from_counts(select_counts, counts, *, sigma: float, alpha: float = 0.001, steps: int = 1) -> Certificate:
    """CERTIFY's decision from class counts ``[..., K]`` of the n0 and n samples.

    ĉ_A = argmax(select_counts); n_A = counts[ĉ_A]; p_lower = CP-lower(n_A, n, α);
    abstain (−1, radius 0) if p_lower < 0.5, else radius σ·Φ⁻¹(p_lower)/√steps.
    """
    _check_sigma(sigma)
    _check_alpha(alpha)
    _check_int("steps", steps, 1)
    select_counts = np.asarray(select_counts)
    counts = np.asarray(counts)
    top = np.argmax(select_counts, axis=-1)
    n_a = np.take_along_axis(counts, top[..., None], axis=-1)[..., 0]
    n = counts.sum(-1)
    p_lower = clopper_pearson_lower(n_a, n, alpha)
    radius = certified_radius(p_lower, sigma, steps)
    prediction = np.where(p_lower >= 0.5, top, ABSTAIN)
    return Certificate(prediction.astype(np.int64), radius, p_lower, n_a.astype(np.int64), top.astype(np.int64))


def predict_from_counts(counts, *, alpha: float = 0.001):
    """PREDICT's decision from class counts ``[..., K]``.

    Top two counts n_A ≥ n_B; the class ĉ_A if the two-sided binomial test of
    ``n_A ~ Binom(n_A + n_B, 1/2)`` has p-value ≤ α, else −1 (abstain).
    """
    _check_alpha(alpha)
    counts = np.asarray(counts)
    if counts.shape[-1] < 2:
        raise ValueError(f"predict: need at least 2 classes, got counts of shape {counts.shape}")
    order = np.argsort(-counts, axis=-1, kind="stable")
    top = order[..., 0]
    n_a = np.take_along_axis(counts, order[..., :1], -1)[..., 0]
    n_b = np.take_along_axis(counts, order[..., 1:2], -1)[..., 0]
    flat = [stats.binomtest(int(a), int(a + b), 0.5).pvalue if a + b > 0 else 1.0
            for a, b in zip(np.ravel(n_a), np.ravel(n_b))]
    pvalue = np.reshape(np.asarray(flat, np.float64), n_a.shape)
    return np.where(pvalue <= alpha, top, ABSTAIN).astype(np.int64)


# ------------------------------------------------------------------------------- sampling


@functools.partial(jax.jit, static_argnames=("num", "batch_size", "noise", "num_classes"))
def _sample_counts(logits_fn, x, keys, sigma, *, num, batch_size, noise, num_classes):
    """Counts ``[B, K]`` of the base classifier's argmax over ``num`` noisy samples per image."""
    num_images = x.shape[0]
    total = num_images * num
    chunk = min(batch_size, total)
    num_chunks = -(-total // chunk)

    def classify(xi, key):
        if noise == "input":
            xi = xi + sigma.astype(xi.dtype) * jax.random.normal(jax.random.fold_in(key, 0), xi.shape, xi.dtype)
            key = jax.random.fold_in(key, 1)
        return jnp.argmax(logits_fn(xi[None], key)[0], axis=-1)

    def body(c, counts):
        idx = c * chunk + jnp.arange(chunk)
        valid = idx < total
        idx = jnp.minimum(idx, total - 1)
        image, sample = idx // num, idx % num
        sample_keys = jax.vmap(jax.random.fold_in)(keys[image], sample)
        classes = jax.vmap(classify)(x[image], sample_keys)
        return counts.at[image, classes].add(valid.astype(jnp.int32))

    return jax.lax.fori_loop(0, num_chunks, body, jnp.zeros((num_images, num_classes), jnp.int32))


def sample_counts(logits_fn: Callable, x, key, *, num: int, sigma: float, noise: str = "input",
                  batch_size: int = 1000, image_ndim: int = 3, phase: int = 0):
    """Class counts of the base classifier over ``num`` noisy samples of each image.

    Args:
      logits_fn: base classifier ``logits_fn(x[B, ...], key) -> logits[B, K]``.
      x: one image (rank ``image_ndim``) or a batch (rank ``image_ndim + 1``).
      key: one PRNG key, or one per image (shape ``[B]`` typed / ``[B, 2]`` raw); a single
        key for a batch gives image i the key ``fold_in(key, i)``.
      num: samples per image.
      sigma: Gaussian noise std (added here only when ``noise="input"``).
      noise: ``"input"`` or ``"model"`` (see the module docstring).
      batch_size: forward passes per chunk (bounds memory).
      image_ndim: rank of one input (3 for HWC images).
      phase: folded into each image key (distinct phases draw independent samples).

    Returns:
      int32 counts ``[B, K]`` (``[K]`` for one image), each row summing to ``num``.
    """
    _check_int("num", num, 1)
    _check_int("batch_size", batch_size, 1)
    _check_noise(noise)
    sigma = _check_sigma(sigma)
    x, keys, single = _prepare(x, key, image_ndim)
    phase_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, phase)
    num_classes = _num_classes(logits_fn, x, keys[0])
    # A Partial's arrays (the parameters) are traced arguments; a plain function is cached by identity.
    counts = _sample_counts(as_partial(logits_fn), x, phase_keys, jnp.float32(sigma), num=num, batch_size=batch_size,
                            noise=noise, num_classes=num_classes)
    return counts[0] if single else counts


def predict(logits_fn: Callable, x, key, *, sigma: float, n: int = 100_000, alpha: float = 0.001,
            batch_size: int = 1000, noise: str = "input", image_ndim: int = 3):
    """Cohen et al.'s PREDICT: the smoothed class, or −1 (abstain).

    Draws n samples, takes the top two counts n_A, n_B and returns ĉ_A if the two-sided
    binomial test (n_A of n_A + n_B at p = 1/2) rejects at level α; the returned class
    differs from g(x) with probability at most α.

    Returns:
      An int for one image, an int array ``[B]`` for a batch.
    """
    _check_alpha(alpha)
    counts = sample_counts(logits_fn, x, key, num=n, sigma=sigma, noise=noise, batch_size=batch_size,
                           image_ndim=image_ndim, phase=_PREDICT)
    out = predict_from_counts(np.asarray(counts), alpha=alpha)
    return int(out) if out.ndim == 0 else out


def certify(logits_fn: Callable, x, key, *, sigma: float, n0: int = 100, n: int = 100_000,
            alpha: float = 0.001, batch_size: int = 1000, steps: int = 1, noise: str = "input",
            image_ndim: int = 3, return_certificate: bool = False):
    """Cohen et al.'s CERTIFY: the smoothed class and its certified L2 radius.

    1. n0 selection samples → ĉ_A = argmax of the counts.
    2. n estimation samples (independent) → n_A = count of ĉ_A.
    3. p_lower = one-sided Clopper–Pearson lower bound at level α
       (``scipy.stats.beta.ppf(α, n_A, n − n_A + 1)``).
    4. p_lower < 1/2 → abstain (−1, radius 0); else radius ``σ·Φ⁻¹(p_lower)/√steps``.
    With probability ≥ 1 − α a returned class is g(x) and g is constant on that ball.

    Args:
      logits_fn: base classifier ``logits_fn(x[B, ...], key) -> logits[B, K]``.
      x: one image (rank ``image_ndim``) or a batch of images.
      key: one PRNG key, or one per image (see :func:`sample_counts`).
      sigma: noise std σ > 0 (the model encoder's σ when ``noise="model"``).
      n0, n: selection and estimation samples.
      alpha: failure probability α.
      batch_size: forward passes per chunk.
      steps: independent noise draws the model makes per input (T for RSC-II, else 1);
        ``steps > 1`` requires ``noise="model"``.
      noise: ``"input"`` (added here) or ``"model"`` (drawn by the model's own encoder).
      image_ndim: rank of one input (3 for HWC images).
      return_certificate: return the full :class:`Certificate` instead of
        ``(prediction, radius)``.

    Returns:
      ``(prediction, radius)``: an int and a float for one image, arrays ``[B]`` for a batch
      (or a :class:`Certificate` with ``return_certificate=True``).
    """
    _check_int("n0", n0, 1)
    _check_int("n", n, 1)
    _check_alpha(alpha)
    _check_int("steps", steps, 1)
    _check_noise(noise)
    if steps > 1 and noise != "model":
        raise ValueError(f"certify: steps={steps} needs noise='model' (T independent draws made by the model's "
                         "RSC-II encoder); with noise='input' a single draw is added, so steps must be 1")
    common = dict(sigma=sigma, noise=noise, batch_size=batch_size, image_ndim=image_ndim)
    select = sample_counts(logits_fn, x, key, num=n0, phase=_SELECT, **common)
    counts = sample_counts(logits_fn, x, key, num=n, phase=_ESTIMATE, **common)
    cert = certify_from_counts(np.asarray(select), np.asarray(counts), sigma=sigma, alpha=alpha, steps=steps)
    if cert.prediction.ndim == 0:
        cert = Certificate(int(cert.prediction), float(cert.radius), float(cert.p_lower), int(cert.count),
                           int(cert.top))
    return cert if return_certificate else (cert.prediction, cert.radius)


def model_smoothing(model) -> tuple[str, float, int] | None:
    """``(noise, sigma, steps)`` for a model whose encoder smooths its input with Gaussian noise, else None.

    An RSC-coded model smooths itself: ``("model", encoder.sigma, T if per_step else 1)`` (T fresh
    views of one image are a smoothing at σ/√T). ``frames_rsc`` with ``per_step`` adds fresh noise to
    every coordinate of the frames ``[T, H, W, 2]``, an isotropic smoothing of the whole input:
    ``("model", σ, 1)``, radii in L2 over the frames. Without ``per_step`` one ε is shared by all
    frames, a noise that leaves the input's other directions unsmoothed: None (no certificate).
    """
    enc = getattr(model, "encoder", None)
    name = getattr(enc, "name", None)
    if enc is None or name not in ("rsc", "frames_rsc") or not float(enc.sigma) > 0:
        return None
    if name == "frames_rsc":
        return ("model", float(enc.sigma), 1) if enc.per_step else None
    return "model", float(enc.sigma), int(model.T) if enc.per_step else 1


# -------------------------------------------------------------------------------- summary


def certified_accuracy(radius, correct, radii: Sequence[float] = RADII) -> np.ndarray:
    """Fraction of images that are correct and certified at radius ≥ r, for each r in ``radii``.

    An abstention (prediction −1) is never correct, so at r = 0 this is the smoothed
    classifier's accuracy.
    """
    radius = np.asarray(radius, np.float64)
    correct = np.asarray(correct, bool)
    if radius.size == 0:
        return np.zeros(len(radii))
    return np.asarray([np.mean(correct & (radius >= r)) for r in radii])


def average_certified_radius(radius, correct) -> float:
    """ACR = mean over images of ``radius · 1[correct]`` (Zhai et al. 2020, MACER)."""
    radius = np.asarray(radius, np.float64)
    if radius.size == 0:
        return 0.0
    return float(np.mean(radius * np.asarray(correct, bool)))


def certified_curve(radius, correct, num: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """``(radii, certified accuracy)`` on ``num`` radii from 0 to ``max(1, 1.1·largest radius)``."""
    radius = np.asarray(radius, np.float64)
    grid = np.linspace(0.0, max(1.0, float(radius.max(initial=0.0)) * 1.1), num)
    return grid, certified_accuracy(radius, correct, grid)


def plot_certified_accuracy(radius, correct, path, *, title: str = "") -> None:
    """Writes a PNG of certified accuracy vs L2 radius (Cohen et al., Fig. 6 style)."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    grid, curve = certified_curve(radius, correct)
    top = float(grid[-1])
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.plot(grid, curve, lw=2)
    ax.plot(RADII, certified_accuracy(radius, correct, RADII), "o", color="C1")
    ax.set(xlabel="L2 radius", ylabel="certified accuracy", ylim=(0, 1), xlim=(0, top), title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------- validation (jsnn.config's)


def _check_int(field, value, minimum):
    return cfg.check_int(value, field, minimum, where="certify: ")


def _check_alpha(alpha):
    return cfg.check_number(alpha, "alpha", low=0.0, high=1.0, low_open=True, high_open=True, where="certify: ")


def _check_sigma(sigma):
    return cfg.check_number(sigma, "sigma", low=0.0, low_open=True, where="certify: ")


def _check_noise(noise):
    return cfg.check_choice(noise, "noise", NOISES, where="certify: ")


def _prepare(x, key, image_ndim):
    """Batches ``x`` and returns one typed key per image."""
    _check_int("image_ndim", image_ndim, 0)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if x.ndim not in (image_ndim, image_ndim + 1):
        raise ValueError(f"certify: x must have rank {image_ndim} (one input) or {image_ndim + 1} (a batch), "
                         f"got shape {x.shape}; set image_ndim for non-image inputs")
    single = x.ndim == image_ndim
    if single:
        x = x[None]
    if x.shape[0] < 1:
        raise ValueError(f"certify: x holds no inputs (shape {x.shape})")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.dtype != jnp.uint32 or key.ndim < 1:
            raise ValueError(f"certify: key must be a PRNG key (jax.random.key) or keys, got {key.dtype}{key.shape}")
        key = jax.random.wrap_key_data(key)
    if key.ndim == 0:
        keys = key[None] if single else jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(x.shape[0]))
    elif key.shape == (x.shape[0],) and not single:
        keys = key
    else:
        raise ValueError(f"certify: key must be one key or one per input ({x.shape[0]}), got key shape {key.shape}")
    return x, keys, single


def _num_classes(logits_fn, x, key):
    out = jax.eval_shape(logits_fn, jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype), key)
    if len(out.shape) != 2 or out.shape[0] != 1 or out.shape[1] < 2:
        raise ValueError(f"certify: logits_fn must map [B, ...] inputs to logits [B, K] with K >= 2; "
                         f"got {out.shape} for a batch of 1")
    return int(out.shape[1])
