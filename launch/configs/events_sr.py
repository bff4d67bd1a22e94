"""Event digits, sparse-gradient regularization SR (Liu et al. 2024) on the frames: CE + λ·mean(D²).

Command (slower than events_vanilla by its finite-difference term; not timed on an idle machine):
  python -m launch.train --config=launch/configs/events_sr.py --workdir=/tmp/jsnn/events_sr
D ≈ ‖∇ₓσ(z_y − z_j*)‖₁ with x the frames; h and λ as in ``digits_sr.py`` (h = 0.01, λ = 0.03).
"""

from launch.configs import digits_sr, events_vanilla


def get_config():
    config = events_vanilla.get_config()
    config.defense.name = "sr"
    config.defense.sr = digits_sr.get_config().defense.sr
    return config
