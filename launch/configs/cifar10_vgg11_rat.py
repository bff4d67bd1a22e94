"""CIFAR-10 VGG-11 (IF, T=8), RAT (Ding et al. 2022, SNN-RAT): adversarial training + orthogonal retraction.

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_vgg11_rat.py --workdir=runs/cifar10_vgg11_rat \
      --config.data.data_dir=$DATA
After each SGD step W ← (1+β)W − β·W·Wᵀ·W for every conv/dense kernel, β = 0.001 (VGG-11), dense layers
with > 200 outputs retract a random 30% of their rows per step (authors' code), weight decay 0. Inner
attack R+FGSM at ε = 8/255 (random step ε/2; *unconfirmed* choice of the paper's FGSM-based AT).
"""

from jsnn import defenses
from launch.configs import cifar10_vgg11

BETA = 0.001


def apply(config, beta: float = BETA):
    """R+FGSM adversarial training and the orthogonal retraction on a base recipe."""
    config.optim.weight_decay = 0.0
    config.defense.name = "at+rat"
    config.defense.at = defenses.default_config("at")
    config.defense.at.attack = "rfgsm"
    config.defense.at.eps = 8 / 255
    config.defense.rat = defenses.default_config("rat")
    config.defense.rat.beta = beta
    config.defense.rat.row_fraction = 0.3
    config.defense.rat.row_threshold = 200
    return config


def get_config():
    return apply(cifar10_vgg11.get_config())
