"""DVS128 Gesture, spiking VGG-11 on 48×48 event frames (T=16), IF neurons: the event-robustness papers' setting.

Prepare the data once (on a machine with internet; nothing is downloaded at run time):
  python -c "import tonic; tonic.datasets.DVSGesture(save_to='$DATA', train=True); tonic.datasets.DVSGesture(save_to='$DATA', train=False)"
Train (GPU host; every local device is used):
  python -m launch.train --config=launch/configs/events_dvsgesture_vgg11.py --workdir=runs/dvsgesture_vgg11 \
      --config.data.data_dir=$DATA
Frames: 16 equal-time bins of each recording, downsampled 128×128 → 48×48 (``data.events.size``; 128
keeps the full sensor), counts clipped at 4 (quantum 1/4). No flip (left/right-hand gestures are
different classes); random crop 4. VGG-11 flattens 512·6·6 at 48×48; the recipe (SGD 0.1 cosine,
IF + triangle(1)) is the CIFAR-10 VGG-11 one.
"""

from launch.configs import cifar10_vgg11, events_vanilla

FRAMES = 16


def get_config():
    config = events_vanilla.get_config()
    base = cifar10_vgg11.get_config()
    config.model = base.model
    config.optim = base.optim
    config.train = base.train
    config.train.num_epochs = 100.0
    config.data.name = "dvsgesture"
    config.data.batch_size = 16
    config.data.eval_batch_size = 32
    config.data.crop_padding = 4
    config.data.events.frames = FRAMES
    config.data.events.max_count = 4
    config.data.events.size = 48
    config.model.T = FRAMES
    config.model.encoder.name = "frames"
    return config
