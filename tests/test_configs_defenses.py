"""Defense configs: every digits_* / cifar10_*_<defense> config builds, documents its command,
and the CIFAR recipes take one training step on mock CIFAR-10 (tiny overrides)."""

import glob
import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jsnn import data as data_lib
from jsnn import checkpoint, defenses, losses, models, train

CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "launch", "configs")
DIGITS = ["vanilla", "at", "trades", "noise", "sr", "sr_at", "rsnn", "rat", "rsc", "poisson", "mfdv", "ann",
          "rsc_distill"]
CIFAR_DEFENSES = ["at", "sr", "sr_at", "rsnn", "rat", "rsc", "mfdv"]
CIFAR = [f"cifar10_{arch}_{d}" for arch in ("vgg11", "wrn16") for d in CIFAR_DEFENSES]
# What each config must select (defense.name, model.neuron, model.encoder.name).
EXPECTED = {
    "vanilla": ("none", "lif", "direct"), "at": ("at", "lif", "direct"), "trades": ("trades", "lif", "direct"),
    "noise": ("noise", "lif", "direct"), "sr": ("sr", "lif", "direct"), "sr_at": ("sr+at", "lif", "direct"),
    "rsnn": ("rsnn", "dlif", "direct"), "rat": ("at+rat", "lif", "direct"), "rsc": ("none", "lif", "rsc"),
    "poisson": ("none", "lif", "poisson"), "mfdv": ("mfdv", "lif", "direct"), "ann": ("none", "lif", "direct"),
    "rsc_distill": ("distill", "lif", "rsc"),
}


def _load(name):
    return importlib.import_module(f"launch.configs.{name}")


def test_every_expected_config_file_exists():
    files = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))}
    missing = [n for n in [f"digits_{d}" for d in DIGITS] + CIFAR if n not in files]
    assert not missing


@pytest.mark.parametrize("name", [f"digits_{d}" for d in DIGITS] + CIFAR)
def test_config_builds_and_documents_its_command(name):
    mod = _load(name)
    assert f"python -m launch.train --config=launch/configs/{name}.py" in mod.__doc__
    config = mod.get_config()
    train.validate_config(config)
    model = models.from_config(config)
    if config.defense.name != "distill":  # needs a trained teacher (test below)
        setup = defenses.from_config(config, model)
        assert callable(setup.loss_transform)
        assert (setup.param_transform is not None) == ("rat" in config.defense.name)
    if name.startswith("digits_"):
        assert (config.defense.name, config.model.neuron, config.model.encoder.name) == EXPECTED[name[7:]]
    if "rat" in config.defense.name:
        assert config.optim.weight_decay == 0.0


def test_cifar_recipes_follow_the_papers():
    c = _load("cifar10_vgg11_sr_at").get_config()
    assert (c.defense.at.steps, c.defense.at.eps, c.defense.at.step_size, c.defense.sr.h) == (7, 8 / 255, 0.01, 0.01)
    c = _load("cifar10_vgg11_rsnn").get_config()
    assert (c.model.neuron, c.model.leak, c.defense.rsnn.rho, c.defense.rsnn.eps) == ("dlif", 0.99, 1.0, 4 / 255)
    assert _load("cifar10_vgg11_rat").get_config().defense.rat.beta == 0.001
    assert _load("cifar10_wrn16_rat").get_config().defense.rat.beta == 0.004
    c = _load("cifar10_wrn16_mfdv").get_config()
    assert (c.model.name, c.model.kwargs.backbone) == ("mfdv", "wrn16_4")


def test_rat_finds_the_wrn_mixing_weights():
    """RAT projects WRN-16's residual mixing weights (parameters named ``mix``) onto the simplex."""
    config = _load("cifar10_wrn16_rat").get_config()
    config.model.kwargs.update(dict(depth=10, widen_factor=1))
    model = models.from_config(config)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3))))
    params = jax.tree.map(lambda s: jnp.full(s.shape, 0.7, s.dtype), shapes["params"])
    setup = defenses.from_config(config, model)
    updates, _ = setup.param_transform.update(jax.tree.map(jnp.zeros_like, params),
                                              setup.param_transform.init(params), params)
    new = optax.apply_updates(params, updates)
    mixes = [np.asarray(p) for path, p in jax.tree_util.tree_leaves_with_path(new)
             if jax.tree_util.keystr(path).endswith("['mix']")]
    assert len(mixes) == 3 and all(np.allclose(m, 0.5, atol=1e-6) for m in mixes)


def _tiny(config):
    """Shrinks a CIFAR recipe to one step of a tiny model on a few mock images."""
    config.data.data_dir = "/mock"
    config.data.batch_size = 2
    config.data.eval_batch_size = 2
    config.data.train_limit = 4
    config.data.test_limit = 2
    config.model.T = 1
    config.train.num_steps = 1
    config.train.eval_draws = 1
    arch = config.model.kwargs.get("backbone", config.model.name)
    small = {"vgg11": dict(stages=(4, "A"), hidden=(8,)), "wrn16_4": dict(depth=10, widen_factor=1)}[arch]
    config.model.kwargs.update(small)
    if "at" in config.defense:
        config.defense.at.steps = 1
    return config


@pytest.fixture(scope="module")
def mock_cifar():
    tfds = pytest.importorskip("tensorflow_datasets")
    data_lib.clear_cache()
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        yield
    data_lib.clear_cache()


# The WRN-16 recipes apply the same defense functions as the VGG-11 ones (built above): one step
# each of the VGG-11 recipes.
STEPPED = [f"cifar10_vgg11_{d}" for d in CIFAR_DEFENSES]


@pytest.mark.parametrize("name", STEPPED)
def test_cifar_recipe_takes_one_step_on_mock_data(name, mock_cifar):
    """One jitted training step (the loss transforms and the parameter transform) on a mock batch."""
    config = _tiny(_load(name).get_config())
    train.validate_config(config)
    model = models.from_config(config)
    setup = defenses.from_config(config, model)
    optimizer = train.make_optimizer(config.optim, 10, setup.param_transform)
    step = train.make_train_step(setup.loss_transform(losses.cross_entropy_loss_fn(model)), optimizer)
    state = train.init_state(config, model, optimizer, jax.random.key(0))
    batch = next(data_lib.train_batches(config.data, config.seed))
    assert batch["image"].shape == (2, 32, 32, 3)
    new_state, metrics = step(state, batch, jax.random.key(1))
    assert int(new_state.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values())
    prefix = {"none": "", "at": "at_", "sr": "sr_", "sr+at": "sr_", "rsnn": "rsnn_", "at+rat": "at_", "mfdv": "mfdv_"}
    assert any(k.startswith(prefix[config.defense.name]) for k in metrics)


def test_digits_mfdv_and_distillation_through_the_launcher(tmp_path):
    """The MFDV step counter survives checkpoints; an ANN teacher trained by the launcher teaches RSC."""
    def short(config):
        # The plumbing is under test, not the model: a small MLP backbone compiles fast.
        if config.model.name in ("mfdv", "ann"):
            config.model.kwargs.backbone = "digits_mlp"
        else:
            config.model.name = "digits_mlp"
        config.model.kwargs.hidden = (16,)
        config.train.num_steps = 2
        config.model.T = 2
        config.data.test_limit = 16
        config.train.eval_draws = 1
        config.train.checkpoint_every = 1
        config.train.log_every = 1
        return config

    mfdv = short(_load("digits_mfdv").get_config())
    train.train_and_evaluate(mfdv, str(tmp_path / "mfdv"))
    _, model, variables, *_ = checkpoint.load_run(str(tmp_path / "mfdv"))
    assert int(variables["counters"]["step"]) == 2 and model.stochastic
    teacher = short(_load("digits_ann").get_config())
    train.train_and_evaluate(teacher, str(tmp_path / "ann"))
    student = short(_load("digits_rsc_distill").get_config())
    student.defense.distill.teacher_workdir = str(tmp_path / "ann")
    model = models.from_config(student)
    loss_fn = defenses.from_config(student, model).loss_transform(losses.cross_entropy_loss_fn(model))
    state = train.init_state(student, model, optax.sgd(0.1), jax.random.key(0))
    batch = next(data_lib.train_batches(student.data, 0))
    _, (_, aux) = jax.jit(loss_fn)(state.params, state.model_state, batch, jax.random.key(1))
    metrics = aux["metrics"]
    assert float(metrics["distill_kl"]) > 0
    student.defense.distill.teacher_workdir = str(tmp_path / "nowhere")
    setup = defenses.from_config(student, models.from_config(student))  # built (validated) without its teacher
    with pytest.raises(FileNotFoundError, match="no config.json"):  # loaded when training starts
        setup.loss_transform(losses.cross_entropy_loss_fn(model))
    jax.clear_caches()
