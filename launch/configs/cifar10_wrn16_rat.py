"""CIFAR-10 WRN-16-4 (IF, T=8): RAT with β = 0.004 (the paper's WRN-16 value); residual mixing weights projected onto the simplex.

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_wrn16_rat.py --workdir=runs/cifar10_wrn16_rat \
      --config.data.data_dir=$DATA
Otherwise as ``cifar10_vgg11_rat.py``.
"""

from launch.configs import cifar10_vgg11_rat, cifar10_wrn16


def get_config():
    return cifar10_vgg11_rat.apply(cifar10_wrn16.get_config(), beta=0.004)
