"""N-MNIST, the small spiking conv net on 34×34 event frames (T=10): the first real event dataset to try.

Prepare the data once (on a machine with internet; nothing is downloaded at run time):
  python -c "import tonic; tonic.datasets.NMNIST(save_to='$DATA', train=True); tonic.datasets.NMNIST(save_to='$DATA', train=False)"
Train:
  python -m launch.train --config=launch/configs/events_nmnist.py --workdir=runs/nmnist --config.data.data_dir=$DATA
Frames: 10 equal-time bins over the three saccades (≈30 ms each), counts clipped at 4, denoised
with a 10 ms filter (tonic ``Denoise``). DigitsConv pools 34×34 → 17×17 before its dense layer.
"""

from launch.configs import events_vanilla

FRAMES = 10


def get_config():
    config = events_vanilla.get_config()
    config.data.name = "nmnist"
    config.data.batch_size = 64
    config.data.events.frames = FRAMES
    config.data.events.max_count = 4
    config.data.events.denoise_us = 10000.0
    config.model.T = FRAMES
    config.train.num_epochs = 10.0
    config.train.checkpoint_every = 1000
    config.train.log_every = 100
    return config
