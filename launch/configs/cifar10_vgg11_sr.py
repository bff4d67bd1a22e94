"""CIFAR-10 VGG-11 (IF, T=8), sparse-gradient regularization SR (Liu et al. 2024, ICML).

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_vgg11_sr.py --workdir=runs/cifar10_vgg11_sr \
      --config.data.data_dir=$DATA
loss = CE + λ·mean(D²), D = (σ(z_y − z_j*)(x + h·sign ∇) − σ(z_y − z_j*)(x))/h, h = 0.01; λ = 0.001
(*unconfirmed*: 0.001 and 0.1 are both seen; sweep ``--config.defense.sr.lam``).
"""

from jsnn import defenses
from launch.configs import cifar10_vgg11


def apply(config):
    """Sets the SR regularizer on a base recipe."""
    config.defense.name = "sr"
    config.defense.sr = defenses.default_config("sr")
    config.defense.sr.lam = 0.001
    config.defense.sr.h = 0.01
    return config


def get_config():
    return apply(cifar10_vgg11.get_config())
