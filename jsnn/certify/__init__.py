"""Randomized smoothing (Cohen et al. 2019): PREDICT / CERTIFY and the driver that certifies a trained run.

* :mod:`jsnn.certify.smoothing` — the statistics, the sampler, ``predict`` / ``certify``, summaries, plot.
* :mod:`jsnn.certify.driver` — :func:`certify_workdir` (``launch.certify``), resumable, records bound to
  their model (checkpoint step, parameter fingerprint).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import certify
    >>> f = lambda x, key: jnp.stack([x.sum(-1), jnp.zeros(x.shape[0])], -1)  # [B, 2]
    >>> pred, radius = certify.certify(f, jnp.array([0.5]), jax.random.key(0), sigma=0.25,
    ...                                n0=100, n=10_000, image_ndim=1)
    >>> pred, round(radius, 2)
    (0, 0.49)
"""

from jsnn.certify import driver, smoothing
from jsnn.certify.driver import NOISE_CHOICES, SETTING_KEYS, certify_workdir, min_samples, resolve_smoothing, summarize
from jsnn.certify.smoothing import (ABSTAIN, NOISES, RADII, Certificate, average_certified_radius, certified_accuracy,
                                    certified_radius, certify, certify_from_counts, clopper_pearson_lower,
                                    model_smoothing, plot_certified_accuracy, predict, predict_from_counts,
                                    sample_counts)

__all__ = ["ABSTAIN", "NOISES", "NOISE_CHOICES", "RADII", "SETTING_KEYS", "Certificate", "average_certified_radius",
           "certified_accuracy", "certified_radius", "certify", "certify_from_counts", "certify_workdir", "driver",
           "clopper_pearson_lower", "min_samples", "model_smoothing", "plot_certified_accuracy", "predict",
           "predict_from_counts", "resolve_smoothing", "sample_counts", "smoothing", "summarize"]
