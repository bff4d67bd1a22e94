"""CIFAR-10 WRN-16-4 (IF, T=8): the defense of ``cifar10_vgg11_sr.py`` on the WRN-16 base recipe.

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_wrn16_sr.py --workdir=runs/cifar10_wrn16_sr \
      --config.data.data_dir=$DATA
"""

from launch.configs import cifar10_vgg11_sr, cifar10_wrn16


def get_config():
    return cifar10_vgg11_sr.apply(cifar10_wrn16.get_config())
