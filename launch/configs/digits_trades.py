"""Digits, TRADES (Zhang et al. 2019): CE + β·KL(clean ‖ adv), β = 6, at the study radius ε = 0.15.

Command (≈4 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_trades.py --workdir=/tmp/jsnn/digits_trades
Inner maximization: 5 L∞ steps of ε/4 on the KL from x + 0.001·N(0, I), BatchNorm in eval mode.
"""

from jsnn import defenses
from launch.configs import digits_vanilla


def get_config():
    config = digits_vanilla.get_config()
    config.defense.name = "trades"
    config.defense.trades = defenses.default_config("trades")
    config.defense.trades.beta = 6.0
    config.defense.trades.eps = digits_vanilla.EPS
    config.defense.trades.steps = 5
    config.defense.trades.step_size = digits_vanilla.EPS / 4
    return config
