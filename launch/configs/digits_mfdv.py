"""Digits, MFDV stochastic features: DigitsConv backbone → μ, σ (d = 32) → μ + σ⊙ε → unit-norm classifier.

Command (≈2 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_mfdv.py --workdir=/tmp/jsnn/digits_mfdv
loss = CE − λ_t·mean log σ², λ = 0.1 ramped linearly over the first 100 steps; the feature noise
stays on at test time (evaluate with EOT).
"""

from jsnn import defenses
from launch.configs import digits_vanilla


def get_config():
    config = digits_vanilla.get_config()
    config.model.name = "mfdv"
    config.model.kwargs.backbone = "digits_conv"
    config.model.kwargs.features = 32
    config.model.kwargs.unit_norm = True
    config.defense.name = "mfdv"
    config.defense.mfdv = defenses.default_config("mfdv")
    config.defense.mfdv.lam = 0.1
    config.defense.mfdv.ramp_steps = 100
    config.defense.mfdv.reg = "log_var"
    return config
