"""Digits, SR + adversarial training: PGD-5 examples (ε = 0.15), then CE + λ·mean(D²) on them.

Command (≈5 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_sr_at.py --workdir=/tmp/jsnn/digits_sr_at
``defense.name = "sr+at"`` is ``chain(sr, at)``: AT replaces the batch, SR regularizes at it.
"""

from launch.configs import digits_at, digits_sr


def get_config():
    config = digits_at.get_config()
    config.defense.name = "sr+at"
    config.defense.sr = digits_sr.get_config().defense.sr
    return config
