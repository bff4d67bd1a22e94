"""Digits, Gaussian noise augmentation: CE on x + N(0, σ²), σ = 0.15 (clipped to [0, 1]).

Command (≈1 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_noise.py --workdir=/tmp/jsnn/digits_noise
The deployed model is deterministic (noise only while training); compare ``digits_rsc`` (noise in
the encoder, also at test time).
"""

from jsnn import defenses
from launch.configs import digits_vanilla


def get_config():
    config = digits_vanilla.get_config()
    config.defense.name = "noise"
    config.defense.noise = defenses.default_config("noise")
    config.defense.noise.sigma = digits_vanilla.EPS
    return config
