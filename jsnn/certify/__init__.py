"""Randomized smoothing (Cohen et al. 2019): PREDICT / CERTIFY and the driver that certifies a trained run.

* :mod:`jsnn.certify.smoothing` — the statistics, the sampler, ``predict`` / ``certify``, summaries, plot.
* :mod:`jsnn.certify.driver` — :func:`certify_workdir` (``launch.certify``), resumable, records bound to
  their model (checkpoint step, parameter fingerprint).

Example:
    >>> from jsnn import certify
    >>> certify.min_samples(0.001)  # CERTIFY with fewer samples abstains on every image at α = 0.001
    10
    >>> round(float(certify.certified_radius(0.9, sigma=0.5)), 4)  # R = σ·Φ⁻¹(p_lower)
    0.6408
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
