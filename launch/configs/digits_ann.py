"""Digits, the ANN twin of DigitsConv (ReLU for every spiking layer, T = 1): the distillation teacher.

Command (≈30 s on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_ann.py --workdir=/tmp/jsnn/digits_ann
Then ``launch/configs/digits_rsc_distill.py`` distills it into an RSC-coded SNN.
"""

from launch.configs import digits_vanilla


def get_config():
    config = digits_vanilla.get_config()
    config.model.name = "ann"
    config.model.kwargs.backbone = "digits_conv"
    return config
