"""Event digits, SR + adversarial training: PGD-5 frames (ε = 0.1), then CE + λ·mean(D²) on them.

Command (slower than events_vanilla by its inner PGD; not timed on an idle machine):
  python -m launch.train --config=launch/configs/events_sr_at.py --workdir=/tmp/jsnn/events_sr_at
``defense.name = "sr+at"`` is ``chain(sr, at)`` as in ``digits_sr_at.py``.
"""

from launch.configs import events_at, events_sr


def get_config():
    config = events_at.get_config()
    config.defense.name = "sr+at"
    config.defense.sr = events_sr.get_config().defense.sr
    return config
