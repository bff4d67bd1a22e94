"""Default: the small conv SNN (LIF, T=4, direct coding) on scikit-learn's 8×8 digits.

Command (≈1 min on 2 CPU cores, ≥ 95% clean test accuracy):
  python -m launch.train --config=launch/configs/default.py --workdir=/tmp/jsnn/default
Any field can be overridden, e.g. ``--config.seed=3 --config.model.T=8``.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "digits"
    config.data.data_dir = config_dict.placeholder(str)
    config.data.batch_size = 64
    config.data.eval_batch_size = 512
    config.data.crop_padding = 0
    config.data.flip = False
    config.data.cutout = 0
    config.data.image_size = config_dict.placeholder(int)
    config.data.train_limit = config_dict.placeholder(int)
    config.data.test_limit = config_dict.placeholder(int)

    config.model = ml_collections.ConfigDict()
    config.model.name = "digits_conv"
    config.model.T = 4
    config.model.neuron = "lif"  # lif | if | dlif
    config.model.tau = 2.0  # LIF τ
    config.model.leak = 1.0  # IF / DLIF λ (DLIF uses 0.99)
    config.model.v_threshold = 1.0
    config.model.reset = "hard"  # hard | soft
    config.model.v_reset = 0.0
    config.model.decay_input = True
    config.model.detach_reset = False
    config.model.surrogate = "sigmoid"  # sigmoid | atan | triangle | rectangle | fast_sigmoid | straight_through
    config.model.surrogate_width = config_dict.placeholder(float)  # None: the shape's default
    config.model.spike_gradient = "bptt"  # bptt | bptr
    config.model.remat = False
    config.model.encoder = ml_collections.ConfigDict()
    config.model.encoder.name = "direct"  # direct | poisson | rsc
    config.model.encoder.sigma = 0.0  # rsc noise std
    config.model.encoder.per_step = False  # rsc: False = RSC-I, True = RSC-II
    config.model.encoder.clip = False
    config.model.encoder.poisson_gradient = "straight_through"
    config.model.kwargs = ml_collections.ConfigDict()

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"  # sgd | adam
    config.optim.learning_rate = 0.1
    config.optim.momentum = 0.9
    config.optim.nesterov = False
    config.optim.weight_decay = 5e-4  # coupled L2
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 0

    config.defense = ml_collections.ConfigDict()
    config.defense.name = "none"

    config.train = ml_collections.ConfigDict()
    config.train.num_epochs = 15.0
    config.train.num_steps = config_dict.placeholder(int)  # overrides num_epochs
    config.train.checkpoint_every = 100
    config.train.log_every = 25
    config.train.eval_draws = 10  # stochastic models: clean accuracy averaged over draws
    config.train.tensorboard = True  # event files under workdir/tb (train, evaluate, certify); see docs/tensorboard.md
    return config
