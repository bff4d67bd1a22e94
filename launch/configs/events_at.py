"""Event digits, PGD adversarial training (Madry et al. 2018) on the frames at ε = 0.1 (dense L∞, frame units).

Command (slower than events_vanilla by its inner PGD; not timed on an idle machine):
  python -m launch.train --config=launch/configs/events_at.py --workdir=/tmp/jsnn/events_at
Inner attack: PGD-5 in frame space (L∞, projected to [0, 1]), step 2.5·ε/5, random start, BatchNorm in
eval mode, the training surrogate; the defense is exactly the one of ``digits_at.py``.
"""

from launch.configs import digits_at, events_vanilla


def get_config():
    config = events_vanilla.get_config()
    config.defense = digits_at.get_config().defense  # PGD-5, step 2.5·ε/5, at the event radius
    config.defense.at.eps = events_vanilla.EPS
    config.defense.at.step_size = 2.5 * events_vanilla.EPS / config.defense.at.steps
    return config
