"""Digits, PGD adversarial training (Madry et al. 2018) at the study radius ε = 0.15.

Command (≈4 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_at.py --workdir=/tmp/jsnn/digits_at
Inner attack: PGD-5, step 2.5·ε/5, random start, BatchNorm in eval mode, the training surrogate.
"""

from jsnn import defenses
from launch.configs import digits_vanilla


def get_config():
    config = digits_vanilla.get_config()
    config.defense.name = "at"
    config.defense.at = defenses.default_config("at")
    config.defense.at.attack = "pgd"
    config.defense.at.eps = digits_vanilla.EPS
    config.defense.at.steps = 5
    config.defense.at.step_size = 2.5 * digits_vanilla.EPS / 5
    return config
