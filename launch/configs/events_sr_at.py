"""Event digits, SR + adversarial training: PGD-5 frames (ε = 0.1), then CE + λ·mean(D²) on them.

Command (≈10× the events_vanilla time: 0.1–0.2 vs 1.3 steps/s on the same loaded 2-core machine):
  python -m launch.train --config=launch/configs/events_sr_at.py --workdir=/tmp/jsnn/events_sr_at
``defense.name = "sr+at"`` is ``chain(sr, at)`` as in ``digits_sr_at.py``.
"""

from launch.configs import events_at, events_sr


def get_config():
    config = events_at.get_config()
    config.defense.name = "sr+at"
    config.defense.sr = events_sr.get_config().defense.sr
    return config
