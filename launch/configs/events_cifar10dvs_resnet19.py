"""CIFAR10-DVS, spiking ResNet-19 (tdBN, Zheng et al. 2021) on 48×48 event frames (T=10), LIF neurons.

Prepare the data once (on a machine with internet; nothing is downloaded at run time):
  python -c "import tonic; tonic.datasets.CIFAR10DVS(save_to='$DATA')"
Train (GPU host; every local device is used):
  python -m launch.train --config=launch/configs/events_cifar10dvs_resnet19.py --workdir=runs/cifar10dvs_resnet19 \
      --config.data.data_dir=$DATA
CIFAR10-DVS has no official split: the first 90% of each class (sorted file paths) train, the rest
test (9000 / 1000). Frames: 10 equal-time bins, 128×128 → 48×48, counts clipped at 4; crop 4 and
flip (the objects keep their class when mirrored); LIF neurons, the CIFAR-10 VGG-11 optimizer.
"""

from launch.configs import cifar10_vgg11, events_vanilla

FRAMES = 10


def get_config():
    config = events_vanilla.get_config()
    config.data.name = "cifar10dvs"
    config.data.batch_size = 32
    config.data.eval_batch_size = 64
    config.data.crop_padding = 4
    config.data.flip = True
    config.data.events.frames = FRAMES
    config.data.events.max_count = 4
    config.data.events.size = 48
    base = cifar10_vgg11.get_config()  # SGD 0.1 cosine, triangle(1) surrogate, logging
    config.optim, config.train = base.optim, base.train
    config.train.num_epochs = 100.0
    config.model.name = "resnet19"
    config.model.T = FRAMES
    config.model.surrogate, config.model.surrogate_width = base.model.surrogate, base.model.surrogate_width
    return config
