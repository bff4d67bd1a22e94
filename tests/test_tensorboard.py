"""TensorBoard event files (jsnn/tensorboard.py), read back with TensorBoard's own EventAccumulator.

The reader is TensorBoard's (the ``tensorboard`` package), independent of the writer (tensorboardX): what it
shows must equal ``metrics.jsonl`` / ``robustness.json`` / ``certify.json``, and a resumed or rerun job must
leave no duplicated step.
"""

import os

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jsnn import certify, config as cfg_lib, evaluate, io, tensorboard, train
from jsnn import data as data_lib
from tests.test_train import tiny_config

MLP = {"model.name": "digits_mlp", "model.kwargs": {"hidden": (16,)}, "data.test_limit": 16}  # compiles fast


def read(path):
    """``{tag: [(step, value), ...]}`` as TensorBoard shows it (restarts purged)."""
    ea = EventAccumulator(path, size_guidance={"scalars": 0})
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def f32(x):
    return float(np.float32(x))


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A run killed after step 7 (checkpoint 4, metrics logged to step 6), then resumed to step 12."""
    workdir = str(tmp_path_factory.mktemp("tb"))
    config = tiny_config(**MLP)
    real = data_lib.train_batches

    def dying(config, seed, start_step=0):
        for i, batch in enumerate(real(config, seed, start_step)):
            if i == 7:
                raise KeyboardInterrupt("simulated kill")
            yield batch

    data_lib.train_batches = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            train.train_and_evaluate(config, workdir)
    finally:
        data_lib.train_batches = real
    before = read(tensorboard.logdir(workdir, "train"))
    train.train_and_evaluate(config, workdir)
    return workdir, config, before


def test_train_events_equal_metrics_jsonl_and_a_resume_duplicates_no_step(resumed_run):
    workdir, config, before = resumed_run
    # the killed run had flushed what it logged: steps 2, 4, 6 (6 is past its last checkpoint)
    assert [s for s, _ in before["train/loss"]] == [2, 4, 6]
    rows = io.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    got = read(tensorboard.logdir(workdir, "train"))
    schedule = train.make_schedule(cfg_lib.read_optim(config.optim), 12)
    for key in ("loss", "accuracy", "grad_norm"):
        assert got[f"train/{key}"] == [(r["step"], f32(r[key])) for r in rows], key
    # timing is the resumed run's own for steps > 4 (the events of step 6 from before the kill are purged)
    assert got["speed/steps_per_sec"] == [(r["step"], f32(r["steps_per_sec"])) for r in rows]
    assert got["speed/images_per_sec"] == [(r["step"], f32(r["steps_per_sec"] * 32)) for r in rows]
    assert got["train/learning_rate"] == [(r["step"], f32(schedule(r["step"] - 1))) for r in rows]
    results = io.read_json(os.path.join(workdir, "results.json"))
    assert got["test/accuracy"] == [(12, f32(results["clean_accuracy"]))]
    assert got["test/loss"] == [(12, f32(results["test_loss"]))]


def test_evaluate_and_certify_events_mirror_their_json(resumed_run):
    workdir, config, _ = resumed_run
    overrides = {"attacks": "clean,fgsm", "eps": "0.1", "main_eps": "0.1", "large_eps": "",
                 "num_examples": 8, "batch_size": 8}
    doc = evaluate.evaluate_workdir(workdir, overrides=overrides)
    evaluate.evaluate_workdir(workdir, overrides=overrides)  # a rerun replaces the snapshot, no duplicates
    path = tensorboard.logdir(workdir, "evaluate")
    assert len(tensorboard.event_files(path)) == 1
    got = read(path)
    for name in doc["suite"]:
        if "accuracy" in doc["records"][name]:
            assert got[f"robust/{name}"] == [(12, f32(doc["records"][name]["accuracy"]))]
    fgsm = doc["qte"]["fgsm"]
    assert got["accuracy_vs_eps/fgsm"] == [(round(1000 * e), f32(a)) for e, a in zip(fgsm["eps"], fgsm["accuracy"])]
    assert [s for s, _ in got["accuracy_vs_eps/fgsm"]] == [0, 100]  # step = 1000·ε
    assert got["robust/worst_case"] == [(12, f32(doc["worst_case"]["accuracy"]))]

    small = dict(sigma=0.25, n0=8, n=32, batch_size=64, num_images=3, images_per_call=3)
    result = certify.certify_workdir(workdir, **small)
    certify.certify_workdir(workdir, **small)
    path = tensorboard.logdir(workdir, "certify")
    assert len(tensorboard.event_files(path)) == 1
    got = read(path)
    s = result["summary"]
    assert got["certify/average_certified_radius"] == [(12, f32(s["average_certified_radius"]))]
    assert got["certify/abstain_rate"] == [(12, f32(s["abstain_rate"]))]
    curve = dict(got["certify/certified_accuracy_vs_radius"])
    assert len(curve) == 200 and curve[0] == f32(s["certified_accuracy"]["0.0"])
    assert curve[1000] == f32(s["certified_accuracy"]["1.0"])  # the grid reaches radius 1 exactly (step 1000)

    # the switch off (a resumable field): rerunning the finished run and evaluating again write no event file
    files = {d: tensorboard.event_files(tensorboard.logdir(workdir, d)) for d in ("train", "evaluate")}
    config.train.tensorboard = False
    train.train_and_evaluate(config, workdir)
    evaluate.evaluate_workdir(workdir, overrides=overrides)
    assert {d: tensorboard.event_files(tensorboard.logdir(workdir, d)) for d in ("train", "evaluate")} == files


def test_writer_snapshot_replaces_and_an_error_keeps_the_old_one(tmp_path):
    path = str(tmp_path / "snap")
    with tensorboard.Writer(path, kind="x", replace=True) as w:
        w.scalars(1, {"a": 1.0})
    with pytest.raises(RuntimeError):
        with tensorboard.Writer(path, kind="x", replace=True) as w:
            w.scalars(1, {"a": 2.0})
            raise RuntimeError("killed half-way")
    assert read(path) == {"a": [(1, 1.0)]}
    with tensorboard.Writer(path, kind="x", replace=True) as w:
        w.scalars(1, {"a": 3.0})
    assert read(path) == {"a": [(1, 3.0)]} and len(tensorboard.event_files(path)) == 1


def test_disabled_unusable_and_bad_settings(tmp_path):
    off = tmp_path / "off"
    with tensorboard.Writer(str(off), enabled=False) as w:
        w.scalars(1, {"a": 1.0})
    assert not off.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"^tensorboard logdir=.*file: is a file, not a directory"):
        tensorboard.Writer(str(tmp_path / "file"))
    with pytest.raises(ValueError, match=r"^train.tensorboard: must be true or false, got 1$"):
        cfg_lib.read_train({"tensorboard": 1})
    # the switch may change between a run and its resumption (it does not change the trajectory)
    assert cfg_lib.differences({"train": {"log_every": 2}}, {"train": {"log_every": 2, "tensorboard": False}}) == ""
    assert tensorboard.enabled({"train": {"tensorboard": False}}) is False and tensorboard.enabled({"train": {}})
