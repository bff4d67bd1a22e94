"""CIFAR-10, VGG-11 (robustness variant), IF neurons, T=8, direct coding: the SR / SNN-RAT base recipe.

Prepare the data once (on a machine with TensorFlow and internet):
  tfds build cifar10 --data_dir=$DATA --file_format=array_record
Train (GPU host or TPU VM; every local device is used, batch split over them):
  python -m launch.train --config=launch/configs/cifar10_vgg11.py --workdir=runs/cifar10_vgg11 \
      --config.data.data_dir=$DATA
Recipe (METHODS.md): SGD momentum 0.9, lr 0.1 cosine to 0, coupled weight decay 5e-4, crop(4)+flip,
200 epochs, batch 128; IF neuron (H = V + X, V_th 1, hard reset 0), triangle(1) surrogate.
"""

from launch.configs import default


def get_config():
    config = default.get_config()
    config.data.name = "cifar10"
    config.data.batch_size = 128
    config.data.eval_batch_size = 500
    config.data.crop_padding = 4
    config.data.flip = True
    config.model.name = "vgg11"
    config.model.T = 8
    config.model.neuron = "if"
    config.model.leak = 1.0
    config.model.surrogate = "triangle"
    config.model.surrogate_width = 1.0
    config.optim.learning_rate = 0.1
    config.optim.weight_decay = 5e-4
    config.train.num_epochs = 200.0
    config.train.checkpoint_every = 1000
    config.train.log_every = 100
    return config
