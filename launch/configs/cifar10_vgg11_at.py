"""CIFAR-10 VGG-11 (IF, T=8, triangle surrogate), PGD adversarial training (Madry et al. 2018).

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_vgg11_at.py --workdir=runs/cifar10_vgg11_at \
      --config.data.data_dir=$DATA
Inner attack PGD-7, ε = 8/255, α = 0.01 (2.55/255), random start, BatchNorm in eval mode while
crafting, the training surrogate. Base recipe: ``cifar10_vgg11.py`` (SGD 0.1 cosine, wd 5e-4, 200 epochs).
"""

from jsnn import defenses
from launch.configs import cifar10_vgg11


def apply(config):
    """Sets the PGD-7 adversarial-training defense on a base recipe."""
    config.defense.name = "at"
    config.defense.at = defenses.default_config("at")
    config.defense.at.attack = "pgd"
    config.defense.at.eps = 8 / 255
    config.defense.at.steps = 7
    config.defense.at.step_size = 0.01
    config.defense.at.random_start = True
    return config


def get_config():
    return apply(cifar10_vgg11.get_config())
