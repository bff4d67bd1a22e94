"""Digits baseline for the defense study: DigitsConv, LIF, T=4, direct coding, plain cross-entropy.

Command (≈1 min on 2 CPU cores, ≈99% clean test accuracy):
  python -m launch.train --config=launch/configs/digits_vanilla.py --workdir=/tmp/jsnn/digits_vanilla
Evaluate it:
  python -m launch.evaluate --workdir=/tmp/jsnn/digits_vanilla
Every digits_* defense config starts from this one, so the study (``launch/configs/study_digits.py``)
compares defenses on the same model, data, optimizer, schedule and evaluation suite
(``config.evaluate``: ε ∈ {0.05, 0.1, 0.15, 0.2}, main ε 0.15). ``EPS`` = 0.15 is the study's
matched L∞ radius in pixel units (8×8 digits in [0, 1]: a vanilla model keeps ≈70% PGD-20
accuracy at 0.1 and ≈35% at 0.15).
"""

import ml_collections

from jsnn.evaluate import default_eval_config
from launch.configs import default

EPS = 0.15  # matched training / evaluation radius of the digits study
EVAL_EPS = "0.05,0.1,0.15,0.2"  # ε sweep of the evaluation (PGD, FGSM)


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.defense.name = "none"
    # The robustness suite of ``python -m launch.evaluate`` at the digits radii.
    config.evaluate = default_eval_config()
    config.evaluate.eps = EVAL_EPS
    config.evaluate.main_eps = str(EPS)
    config.evaluate.large_eps = "0.5"
    return config
