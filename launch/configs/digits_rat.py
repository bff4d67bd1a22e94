"""Digits, RAT (Ding et al. 2022, SNN-RAT): R+FGSM adversarial training + orthogonal retraction.

Command (≈2 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_rat.py --workdir=/tmp/jsnn/digits_rat
After every SGD step W ← (1+β)W − β·W·Wᵀ·W for every conv/dense kernel (β = 0.001), weight
decay 0 (as in RAT); inner attack R+FGSM at ε = 0.15 (random step ε/2, BatchNorm in eval mode).
"""

from jsnn import defenses
from launch.configs import digits_vanilla


def get_config():
    config = digits_vanilla.get_config()
    config.optim.weight_decay = 0.0
    config.defense.name = "at+rat"
    config.defense.at = defenses.default_config("at")
    config.defense.at.attack = "rfgsm"
    config.defense.at.eps = digits_vanilla.EPS
    config.defense.rat = defenses.default_config("rat")
    config.defense.rat.beta = 0.001
    return config
