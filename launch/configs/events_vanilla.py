"""Event digits baseline: DigitsConv on 2-channel event frames (the frames are the encoder), LIF, T=6.

Command (98.1% clean test accuracy; not timed on an idle machine):
  python -m launch.train --config=launch/configs/events_vanilla.py --workdir=/tmp/jsnn/events_vanilla
Evaluate it:
  python -m launch.evaluate --workdir=/tmp/jsnn/events_vanilla
Data: ``event_digits`` (embedded, SYNTHETIC: the 8×8 digits moved along three N-MNIST-like saccades
on a 10×10 DVS model, see jsnn/data/event_digits.py and docs/events.md), binned into T=6 frames of
equal time (``data.events.*``) with counts clipped at ``max_count`` = 2: frame values are
{0, 1/2, 1}, one event = 1/2. ``model.T`` must equal ``data.events.frames``. The same options
read N-MNIST / DVS128 Gesture / CIFAR10-DVS from a prepared ``data.data_dir`` (see
``events_dvsgesture_vgg11.py``). Every events_* defense config starts from this one. The
evaluation's FGSM/PGD perturb every frame value densely (L∞, frame units, clipped to [0, 1]);
the event-space attacks that add or remove whole events are in docs/events_attacks.md.
"""

import ml_collections

from launch.configs import digits_vanilla

FRAMES = 6
EPS = 0.1  # matched dense L∞ radius in frame units (vanilla: PGD-10 ≈ 20% at 0.1, 82% at 0.05; 100 test digits)
EVAL_EPS = "0.025,0.05,0.1,0.2"  # ε sweep of the evaluation (PGD, FGSM) in frame units


def get_config() -> ml_collections.ConfigDict:
    config = digits_vanilla.get_config()  # model, optimizer, evaluation suite; frames replace the images
    config.data.name = "event_digits"
    config.data.events = ml_collections.ConfigDict()
    config.data.events.frames = FRAMES  # T
    config.data.events.binning = "time_bins"  # time_bins | event_bins | time_window | event_count
    config.data.events.time_window = ml_collections.config_dict.placeholder(float)  # µs, binning=time_window
    config.data.events.event_count = ml_collections.config_dict.placeholder(int)  # binning=event_count
    config.data.events.max_count = 2  # m: frames hold min(count, m) / m
    config.data.events.size = ml_collections.config_dict.placeholder(int)  # downsample to size×size
    config.data.events.denoise_us = 0.0  # tonic Denoise filter time; 0 = off
    config.model.name = "digits_conv"
    config.model.T = FRAMES
    config.model.encoder.name = "frames"  # frames | frames_rsc (sigma, per_step, clip)
    config.train.num_epochs = 10.0
    config.evaluate.eps = EVAL_EPS
    config.evaluate.main_eps = str(EPS)
    config.evaluate.large_eps = "1.0"
    return config
