"""CIFAR-10 VGG-11 (IF, T=8), SR + adversarial training (SR+AT of Liu et al. 2024).

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_vgg11_sr_at.py --workdir=runs/cifar10_vgg11_sr_at \
      --config.data.data_dir=$DATA
The batch is replaced by PGD-7 examples (ε 8/255, α 0.01, random start) and CE + λ·mean(D²) is taken
there (``defense.name = "sr+at"`` = chain(sr, at)). Reproduced anchor: clean 88.3, FGSM 44.3, PGD-7 28.6.
"""

from launch.configs import cifar10_vgg11, cifar10_vgg11_at, cifar10_vgg11_sr


def apply(config):
    """Sets SR+AT on a base recipe."""
    cifar10_vgg11_at.apply(config)
    cifar10_vgg11_sr.apply(config)
    config.defense.name = "sr+at"
    return config


def get_config():
    return apply(cifar10_vgg11.get_config())
