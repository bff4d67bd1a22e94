"""Digits, Poisson (rate) coding, vanilla training: s_t ~ Bernoulli(x) per pixel and step.

Command (≈1 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_poisson.py --workdir=/tmp/jsnn/digits_poisson
T = 8 (rate coding needs more steps than direct coding). A stochastic model whose true input
gradient is zero: attack it with the straight-through (BPDA) gradient *and* EOT, or its
robustness is overestimated.
"""

from launch.configs import digits_vanilla


def get_config():
    config = digits_vanilla.get_config()
    config.model.T = 8
    config.model.encoder.name = "poisson"
    config.model.encoder.poisson_gradient = "straight_through"
    return config
