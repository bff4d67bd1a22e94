"""Digits, RSNN (Ding et al. 2024): DLIF neurons (leak 0.99, learnable per-step gain) + MPPD.

Command (≈2 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_rsnn.py --workdir=/tmp/jsnn/digits_rsnn
loss = 0.5·CE(x) + 0.5·CE(x_pert) + ρ·mean(Y²), ρ = 1, Y the leaky (0.99) sum of the input-current
gap of the last spiking layer; x_pert: N(0, 0.001²) start + one FGSM step of ε/2 (the paper's
4/255 at an attack radius of 8/255). ``--config.defense.rsnn.perturbation=gaussian`` for the
noise-training variant (σ = ``defense.rsnn.sigma``).
"""

from jsnn import defenses
from launch.configs import digits_vanilla


def get_config():
    config = digits_vanilla.get_config()
    config.model.neuron = "dlif"
    config.model.leak = 0.99
    config.model.surrogate = "triangle"
    config.model.surrogate_width = 1.0
    config.defense.name = "rsnn"
    config.defense.rsnn = defenses.default_config("rsnn")
    config.defense.rsnn.rho = 1.0
    config.defense.rsnn.leak = 0.99
    config.defense.rsnn.perturbation = "rfgsm"
    config.defense.rsnn.eps = digits_vanilla.EPS / 2
    config.defense.rsnn.sigma = digits_vanilla.EPS / 2
    return config
