"""CIFAR-10 WRN-16-4 (IF, T=8): the defense of ``cifar10_vgg11_rsnn.py`` on the WRN-16 base recipe.

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_wrn16_rsnn.py --workdir=runs/cifar10_wrn16_rsnn \
      --config.data.data_dir=$DATA
"""

from launch.configs import cifar10_vgg11_rsnn, cifar10_wrn16


def get_config():
    return cifar10_vgg11_rsnn.apply(cifar10_wrn16.get_config())
