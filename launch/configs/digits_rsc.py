"""Digits, RSC coding (Wu et al. 2024, RSC-SNN): RSC-II encoder x + N(0, σ²) fresh every step, σ = 0.25.

Command (≈1 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_rsc.py --workdir=/tmp/jsnn/digits_rsc
The noise stays on at test time (a stochastic model: evaluate it with EOT). RSC-I is
``--config.model.encoder.per_step=False``. Add the ANN-teacher distillation of E-RSCT with
``launch/configs/digits_rsc_distill.py``.
"""

from launch.configs import digits_vanilla


def get_config():
    config = digits_vanilla.get_config()
    config.model.encoder.name = "rsc"
    config.model.encoder.sigma = 0.25
    config.model.encoder.per_step = True
    config.model.encoder.clip = False
    return config
