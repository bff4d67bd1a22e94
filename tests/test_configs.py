"""Every launch config validates, and the paper-scale CIFAR-10 recipes run one step on mock data."""

import glob
import importlib
import os

import pytest

from jsnn import data as data_lib
from jsnn import train

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch", "configs")
ALL = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
             if not p.endswith("__init__.py"))


def load(name):
    return importlib.import_module(f"launch.configs.{name}").get_config()


@pytest.mark.parametrize("name", ALL)
def test_config_validates_and_documents_its_command(name):
    config = load(name)
    train.validate_config(config)
    doc = importlib.import_module(f"launch.configs.{name}").__doc__ or ""
    assert "python -m launch." in doc, f"{name}: the docstring must hold the command that runs it"


@pytest.mark.parametrize("name", ["cifar10_vgg11", "cifar10_wrn16"])
def test_cifar_recipe_runs_one_step_on_mock_data(name, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    config = load(name)
    assert config.model.T == 8 and config.model.neuron == "if" and config.model.surrogate == "triangle"
    config.model.T = 2
    config.data.data_dir = "/mock"
    config.data.batch_size = 2
    config.data.eval_batch_size = 4
    config.data.test_limit = 4
    config.train.num_steps = 1
    config.train.log_every = 1
    config.train.checkpoint_every = 1
    data_lib.clear_cache()
    try:
        with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
            results = train.train_and_evaluate(config, str(tmp_path))
    finally:
        data_lib.clear_cache()
    assert results["steps"] == 1 and results["test_examples"] == 4
    assert 0.0 <= results["clean_accuracy"] <= 1.0
