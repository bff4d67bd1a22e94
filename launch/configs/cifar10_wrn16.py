"""CIFAR-10, WRN-16-4 (pre-activation, learnable residual mixing), IF neurons, T=8: the SNN-RAT base recipe.

Prepare the data once (on a machine with TensorFlow and internet):
  tfds build cifar10 --data_dir=$DATA --file_format=array_record
Train:
  python -m launch.train --config=launch/configs/cifar10_wrn16.py --workdir=runs/cifar10_wrn16 \
      --config.data.data_dir=$DATA
"""

from launch.configs import cifar10_vgg11


def get_config():
    config = cifar10_vgg11.get_config()
    config.model.name = "wrn16_4"
    return config
