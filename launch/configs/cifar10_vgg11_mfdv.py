"""CIFAR-10 VGG-11 (IF, T=8) backbone with MFDV stochastic features (arXiv 2201.00148; details *unconfirmed*).

Command (GPU/TPU host; data prepared as in ``cifar10_vgg11.py``):
  python -m launch.train --config=launch/configs/cifar10_vgg11_mfdv.py --workdir=runs/cifar10_vgg11_mfdv \
      --config.data.data_dir=$DATA
The backbone's readout gives μ, σ of d = 256 features, z = μ + σ⊙ε (noise on at test time), unit-norm
classifier rows; loss = CE − λ_t·mean log σ², λ = 0.1 ramped over the first 10 epochs (3910 steps).
"""

from jsnn import defenses
from launch.configs import cifar10_vgg11


def apply(config, backbone: str = "vgg11"):
    """Wraps the base model in the stochastic-feature head and sets the variance term."""
    config.model.name = "mfdv"
    config.model.kwargs.backbone = backbone
    config.model.kwargs.features = 256
    config.model.kwargs.unit_norm = True
    config.defense.name = "mfdv"
    config.defense.mfdv = defenses.default_config("mfdv")
    config.defense.mfdv.lam = 0.1
    config.defense.mfdv.ramp_steps = 3910
    config.defense.mfdv.reg = "log_var"
    config.train.eval_draws = 4
    return config


def get_config():
    return apply(cifar10_vgg11.get_config())
