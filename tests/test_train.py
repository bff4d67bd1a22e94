"""Training: determinism, resume after interruption, results, restore, config validation, launcher."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jsnn import data as data_lib
from jsnn import checkpoint, train
from launch.configs import default

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING_KEYS = ("steps_per_sec", "elapsed_sec")


def tiny_config(**overrides):
    config = default.get_config()
    config.train.num_steps = 12
    config.train.checkpoint_every = 4
    config.train.log_every = 2
    config.data.batch_size = 32
    config.data.test_limit = 64
    config.model.T = 2
    for key, value in overrides.items():
        node = config
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return config


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def read_results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ref"))
    train.train_and_evaluate(tiny_config(), workdir)
    return workdir


def test_results_json_fields(reference_run):
    r = read_results(reference_run)
    for key in ("clean_accuracy", "seed", "steps", "config", "test_loss", "environment"):
        assert key in r
    assert r["steps"] == 12 and r["seed"] == 0 and r["test_examples"] == 64
    assert 0.0 <= r["clean_accuracy"] <= 1.0
    assert r["config"]["model"]["name"] == "digits_conv"
    assert r["environment"]["device_kind"]
    assert [m["step"] for m in read_metrics(reference_run)] == [2, 4, 6, 8, 10, 12]


def test_same_seed_is_bitwise_identical(reference_run, tmp_path):
    train.train_and_evaluate(tiny_config(), str(tmp_path))
    a, b = read_results(reference_run), read_results(str(tmp_path))
    assert a["clean_accuracy"] == b["clean_accuracy"] and a["test_loss"] == b["test_loss"]
    assert read_metrics(reference_run) == read_metrics(str(tmp_path))


def test_different_seed_differs(reference_run, tmp_path):
    train.train_and_evaluate(tiny_config(seed=1), str(tmp_path))
    assert read_results(reference_run)["test_loss"] != read_results(str(tmp_path))["test_loss"]
    assert read_metrics(reference_run) != read_metrics(str(tmp_path))


def test_interrupted_run_resumes_to_the_same_result(reference_run, tmp_path, monkeypatch):
    workdir = str(tmp_path)
    real = data_lib.train_batches

    def dying_batches(config, seed, start_step=0):
        it = real(config, seed, start_step)
        for i, batch in enumerate(it):
            if i == 7:  # dies after 7 steps: last checkpoint at step 4, metrics logged up to step 6
                raise KeyboardInterrupt("simulated kill")
            yield batch

    monkeypatch.setattr(data_lib, "train_batches", dying_batches)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(tiny_config(), workdir)
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    assert checkpoint.manager(workdir).latest_step() == 4
    monkeypatch.setattr(data_lib, "train_batches", real)
    train.train_and_evaluate(tiny_config(), workdir)
    a, b = read_results(reference_run), read_results(workdir)
    assert a["clean_accuracy"] == b["clean_accuracy"] and a["test_loss"] == b["test_loss"]
    assert read_metrics(reference_run) == read_metrics(workdir)


def test_restore_gives_the_trained_model(reference_run):
    config, model, variables, *_ = checkpoint.load_run(reference_run)
    ev = train.evaluate_clean(model, variables, config, jax.random.key(0))
    assert ev["accuracy"] == read_results(reference_run)["clean_accuracy"]


def test_resume_with_other_config_is_refused(reference_run):
    with pytest.raises(ValueError, match="different config.*optim.learning_rate"):
        train.train_and_evaluate(tiny_config(**{"optim.learning_rate": 0.5}), reference_run)


@pytest.mark.parametrize("field,value,match", [
    ("model.name", "resnet9000", r"model.name: unknown model 'resnet9000'; allowed: .*digits_conv"),
    ("data.name", "imagenet21k", r"unknown dataset.*imagenet21k|data.name.*imagenet21k"),
    ("model.encoder.name", "latency", r"model.encoder.name: unknown encoder 'latency'; allowed: direct, poisson, rsc"),
    ("model.surrogate", "relu", r"model.surrogate.*'relu'; allowed: sigmoid"),
    ("model.surrogate_width", -1.0, r"model.surrogate.*width must be .*> 0"),
    ("model.neuron", "izhikevich", r"model.neuron: unknown neuron 'izhikevich'; allowed: lif, if, dlif"),
    ("model.T", 0, r"model.T: must be an integer >= 1, got 0"),
    ("model.tau", 0.0, r"model.tau: must be > 0"),
    ("model.reset", "sometimes", r"model.reset: 'sometimes'; allowed: hard, soft"),
    ("optim.name", "lion", r"optim.name: 'lion'; allowed: sgd, adam"),
    ("optim.learning_rate", -0.1, r"optim.learning_rate: must be a finite number > 0"),
    ("data.batch_size", 0, r"data.batch_size"),
    ("train.checkpoint_every", 3, r"train.checkpoint_every: 3 must be a multiple of train.log_every=2"),
])
def test_bad_config_is_a_clear_error(field, value, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        train.train_and_evaluate(tiny_config(**{field: value}), str(tmp_path))


def test_bad_batch_is_a_clear_error():
    info = data_lib.info("digits")
    images = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="label"):
        data_lib.check_batch(images, np.array([0, 10]), info.num_classes, info.image_shape)
    images[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN|nan|finite"):
        data_lib.check_batch(images, np.array([0, 1]), info.num_classes, info.image_shape)
    with pytest.raises(ValueError, match="shape|rank"):
        data_lib.check_batch(np.zeros((2, 8, 8), np.float32), np.array([0, 1]), info.num_classes, info.image_shape)


def test_launcher_prints_one_message_and_exits_nonzero(tmp_path):
    cmd = [sys.executable, "-m", "launch.train", "--config=launch/configs/default.py",
           f"--workdir={tmp_path}", "--config.model.encoder.name=latency"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "model.encoder.name: unknown encoder 'latency'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_coupled_weight_decay_is_added_to_gradients():
    import jax.numpy as jnp
    import ml_collections

    cfg = ml_collections.ConfigDict({"name": "sgd", "learning_rate": 1.0, "momentum": 0.0, "weight_decay": 0.1,
                                     "schedule": "constant"})
    opt = train.make_optimizer(cfg, 10)
    params = {"w": jnp.array([2.0])}
    updates, _ = opt.update({"w": jnp.array([0.5])}, opt.init(params), params)
    np.testing.assert_allclose(updates["w"], -(0.5 + 0.1 * 2.0))
