"""CIFAR-10 VGG-11 (IF, T=8), RSC coding (Wu et al. 2024, RSC-SNN): RSC-II encoder x + N(0, σ²) per step.

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_vgg11_rsc.py --workdir=runs/cifar10_vgg11_rsc \
      --config.data.data_dir=$DATA
σ = 0.25 (*unconfirmed*; the robustness–accuracy knob), no clipping; RSC-I is
``--config.model.encoder.per_step=False``. Stochastic at test time: evaluate with EOT; certify with
``launch.certify`` (radius σ·Φ⁻¹(p_A)/√T for RSC-II). Distillation from an ANN teacher (E-RSCT idea):
train ``--config.model.name=ann --config.model.kwargs.backbone=vgg11`` first, then add
``--config.defense.name=distill --config.defense.distill.teacher_workdir=runs/<teacher>``.
Anchor: clean 82.0, FGSM 54.5, PGD-7 40.0.
"""

from jsnn import defenses
from launch.configs import cifar10_vgg11


def apply(config, sigma: float = 0.25):
    """RSC-II coding on a base recipe (distillation settings present, off by default)."""
    config.model.encoder.name = "rsc"
    config.model.encoder.sigma = sigma
    config.model.encoder.per_step = True
    config.model.encoder.clip = False
    config.defense.name = "none"
    config.defense.distill = defenses.default_config("distill")
    config.train.eval_draws = 4
    return config


def get_config():
    return apply(cifar10_vgg11.get_config())
