"""Digits, E-RSCT idea: RSC-II SNN (σ = 0.25) distilled from the ANN teacher of ``digits_ann``.

Commands (teacher first, ≈30 s; then the student, ≈1.5 min on 2 CPU cores):
  python -m launch.train --config=launch/configs/digits_ann.py --workdir=/tmp/jsnn/digits_ann
  python -m launch.train --config=launch/configs/digits_rsc_distill.py --workdir=/tmp/jsnn/digits_rsc_distill \
      --config.defense.distill.teacher_workdir=/tmp/jsnn/digits_ann
loss = (1 − α)·CE + α·τ²·KL(teacher ‖ student) with α = 0.5, τ = 4.
"""

from jsnn import defenses
from launch.configs import digits_rsc


def get_config():
    config = digits_rsc.get_config()
    config.defense.name = "distill"
    config.defense.distill = defenses.default_config("distill")
    config.defense.distill.teacher_workdir = "/tmp/jsnn/digits_ann"
    config.defense.distill.alpha = 0.5
    config.defense.distill.temperature = 4.0
    return config
