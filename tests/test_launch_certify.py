"""``jsnn.certify.certify_workdir`` and ``python -m launch.certify`` end to end on a briefly trained default model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jsnn import certify as certify_lib
from jsnn import train
from jsnn.layers import EncoderConfig
from jsnn.models import DigitsMLP
from launch.configs import default

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(sigma=0.25, n0=16, n=64, batch_size=128, seed=0, images_per_call=1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    config = default.get_config()
    config.train.num_steps = 2
    config.train.checkpoint_every = 2
    config.train.log_every = 1
    config.data.test_limit = 16
    path = str(tmp_path_factory.mktemp("run"))
    train.train_and_evaluate(config, path)
    return path


def test_certify_writes_json_and_png_and_resumes(workdir, monkeypatch):
    calls = []
    real = certify_lib.smoothing.certify

    def counting(fn, x, key, **kw):
        calls.append(len(np.unique(np.asarray(x).reshape(len(x), -1), axis=0)))
        return real(fn, x, key, **kw)

    monkeypatch.setattr(certify_lib.smoothing, "certify", counting)

    # An "interrupted" run: 2 of the 3 images.
    first = certify_lib.certify_workdir(workdir, num_images=2, **SMALL)
    assert first["summary"]["num_images"] == 2
    # Rerun with 3: only the missing image is certified, the first two are kept as they were.
    calls.clear()
    result = certify_lib.certify_workdir(workdir, num_images=3, **SMALL)
    assert sum(calls) == 1
    assert result["images"][:2] == first["images"]
    with open(os.path.join(workdir, "certify.json")) as f:
        on_disk = json.load(f)
    assert on_disk["images"] == result["images"]
    assert on_disk["settings"] == dict(sigma=0.25, noise="input", steps=1, n0=16, n=64, alpha=0.001, seed=0,
                                       split="test")
    for rec in on_disk["images"]:
        assert set(rec) >= {"index", "label", "prediction", "radius", "correct"}
        assert rec["correct"] == (rec["prediction"] == rec["label"])
        assert rec["radius"] >= 0 and (rec["prediction"] != -1 or rec["radius"] == 0)
    summary = on_disk["summary"]
    assert list(summary["certified_accuracy"]) == ["0.0", "0.25", "0.5", "0.75", "1.0"]
    radius = np.array([r["radius"] for r in on_disk["images"]])
    correct = np.array([r["correct"] for r in on_disk["images"]])
    np.testing.assert_allclose(summary["average_certified_radius"], np.mean(radius * correct))
    assert os.path.getsize(os.path.join(workdir, "certify.png")) > 1000

    # Nothing left to do: no sampling at all.
    calls.clear()
    again = certify_lib.certify_workdir(workdir, num_images=3, **SMALL)
    assert calls == [] and again["images"] == result["images"]

    # The resumed result equals an uninterrupted run (keys are per image index).
    fresh = certify_lib.certify_workdir(workdir, num_images=3, output="fresh.json", **SMALL)
    assert fresh["images"] == result["images"]

    # Other settings: refuse instead of mixing results.
    with pytest.raises(ValueError, match="sigma"):
        certify_lib.certify_workdir(workdir, num_images=3, **{**SMALL, "sigma": 0.5})


def test_resolve_smoothing():
    direct = DigitsMLP(T=3)
    assert certify_lib.resolve_smoothing(direct, sigma=0.5, noise="auto") == ("input", 0.5, 1)
    with pytest.raises(ValueError, match="--sigma"):
        certify_lib.resolve_smoothing(direct, sigma=None, noise="auto")
    with pytest.raises(ValueError, match="--noise=model"):
        certify_lib.resolve_smoothing(direct, sigma=0.5, noise="model")
    rsc2 = DigitsMLP(T=3, encoder=EncoderConfig(name="rsc", sigma=0.25, per_step=True))
    assert certify_lib.resolve_smoothing(rsc2, sigma=None, noise="auto") == ("model", 0.25, 3)
    assert certify_lib.resolve_smoothing(rsc2, sigma=0.5, noise="input") == ("input", 0.5, 1)
    with pytest.raises(ValueError, match="differs"):
        certify_lib.resolve_smoothing(rsc2, sigma=0.5, noise="model")


def test_bad_flag_is_one_message(workdir):
    proc = subprocess.run([sys.executable, "-m", "launch.certify", f"--workdir={workdir}", "--noise=model"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--noise=model" in proc.stderr and "Traceback" not in proc.stderr


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "launch.certify", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    return proc


def _one_line(proc, *parts):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(line) == 1, proc.stderr[-3000:]
    for p in parts:
        assert p in line[0], line[0]


def test_records_name_their_model_and_are_redone_for_another(workdir, tmp_path):
    """Issue 15: each image names checkpoint step + fingerprint; another checkpoint recomputes the images."""
    import shutil

    from jsnn import checkpoint

    run = checkpoint.load_run(workdir)
    out = certify_lib.certify_workdir(workdir, num_images=2, output="bound.json", **SMALL)
    assert out["model"]["checkpoint_step"] == run.step and out["model"]["fingerprint"] == run.fingerprint
    assert all(r["checkpoint_step"] == run.step and r["fingerprint"] == run.fingerprint for r in out["images"])
    # Another model in the same place (perturbed parameters): the stored images are not reused.
    path = os.path.join(workdir, "bound.json")
    doc = json.load(open(path))
    for r in doc["images"]:
        r["fingerprint"], r["prediction"] = "0" * 16, 123
    json.dump(doc, open(path, "w"))
    again = certify_lib.certify_workdir(workdir, num_images=2, output="bound.json", **SMALL)
    assert again["images"] == out["images"]
    # An unfinished run is refused unless a step is named; the named step is recorded.
    copy = str(tmp_path / "unfinished")
    shutil.copytree(workdir, copy)
    os.remove(os.path.join(copy, "results.json"))
    with pytest.raises(ValueError, match=r"training has not finished.*--step=2"):
        certify_lib.certify_workdir(copy, num_images=1, **SMALL)
    named = certify_lib.certify_workdir(copy, num_images=1, step=2, **SMALL)
    assert named["model"]["checkpoint_step"] == 2 and named["images"][0]["checkpoint_step"] == 2


def test_too_few_samples_warn_with_the_smallest_n(workdir, caplog):
    assert certify_lib.min_samples(0.001) == 10 and certify_lib.min_samples(0.5) == 1
    assert certify_lib.clopper_pearson_lower(10, 10, 0.001) >= 0.5 > certify_lib.clopper_pearson_lower(9, 9, 0.001)
    import logging

    with caplog.at_level(logging.WARNING):
        out = certify_lib.certify_workdir(workdir, num_images=1, output="small.json", **{**SMALL, "n": 5})
    assert "use --n >= 10" in caplog.text and out["images"][0]["prediction"] == -1


def test_user_errors_are_one_line(workdir, tmp_path):
    """Damaged certify.json, unfinished run, unknown step, non-finite parameters: one line, no traceback."""
    import shutil

    small = ["--sigma=0.25", "--n0=8", "--n=16", "--num_images=1", "--batch_size=32"]
    damaged = str(tmp_path / "damaged")
    shutil.copytree(workdir, damaged)
    with open(os.path.join(damaged, "certify.json"), "w") as f:
        f.write('{"settings": {"sigma": 0.25,')
    _one_line(_cli(f"--workdir={damaged}", *small), os.path.join(damaged, "certify.json"), "damaged JSON", "delete")
    os.remove(os.path.join(damaged, "results.json"))
    _one_line(_cli(f"--workdir={damaged}", *small, "--output=x.json"), "training has not finished", "--step=2")
    _one_line(_cli(f"--workdir={damaged}", *small, "--output=x.json", "--step=7"), "7")
    _one_line(_cli(f"--workdir={tmp_path / 'nowhere'}", *small), "config.json")


def test_non_finite_parameters_are_refused(workdir, monkeypatch):
    import jax

    from jsnn import checkpoint

    run = checkpoint.load_run(workdir)
    bad = jax.tree.map(lambda a: a * float("nan"), run.variables)
    monkeypatch.setattr(checkpoint, "load_run", lambda w, step=None: run._replace(variables=bad))
    with pytest.raises(ValueError, match=r"parameters are not finite.*diverged"):
        certify_lib.certify_workdir(workdir, num_images=1, output="nan.json", **SMALL)
    assert not os.path.exists(os.path.join(workdir, "nan.json"))


def test_an_event_model_with_frames_rsc_certifies_itself(tmp_path):
    """frames_rsc (fresh noise on every frame coordinate) smooths the frames [T, H, W, 2] themselves: the
    certificate uses the model's own σ with steps 1 and an L2 radius over the frames."""
    from launch.configs import events_vanilla

    config = events_vanilla.get_config()
    config.model.encoder.name, config.model.encoder.sigma, config.model.encoder.per_step = "frames_rsc", 0.25, True
    config.train.num_steps, config.train.checkpoint_every, config.train.log_every = 2, 2, 1
    config.train.num_epochs = None
    config.data.test_limit = 8
    train.train_and_evaluate(config, str(tmp_path))
    result = certify_lib.certify_workdir(str(tmp_path), num_images=2, n0=8, n=32, batch_size=32, seed=0)
    s = result["settings"]
    assert (s["noise"], s["sigma"], s["steps"]) == ("model", 0.25, 1)
    assert len(result["images"]) == 2 and all(r["radius"] >= 0 for r in result["images"])
