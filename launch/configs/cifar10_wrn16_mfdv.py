"""CIFAR-10 WRN-16-4 (IF, T=8) backbone with MFDV stochastic features.

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_wrn16_mfdv.py --workdir=runs/cifar10_wrn16_mfdv \
      --config.data.data_dir=$DATA
Otherwise as ``cifar10_vgg11_mfdv.py``.
"""

from launch.configs import cifar10_vgg11_mfdv, cifar10_wrn16


def get_config():
    config = cifar10_wrn16.get_config()
    return cifar10_vgg11_mfdv.apply(config, backbone=config.model.name)
