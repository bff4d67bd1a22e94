"""End-to-end test of ``python -m launch.certify`` on a briefly trained default model."""

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
from launch import certify as launcher
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
    real = certify_lib.certify

    def counting(fn, x, key, **kw):
        calls.append(len(np.unique(np.asarray(x).reshape(len(x), -1), axis=0)))
        return real(fn, x, key, **kw)

    monkeypatch.setattr(certify_lib, "certify", counting)

    # An "interrupted" run: 2 of the 3 images.
    first = launcher.run(workdir, num_images=2, **SMALL)
    assert first["summary"]["num_images"] == 2
    # Rerun with 3: only the missing image is certified, the first two are kept as they were.
    calls.clear()
    result = launcher.run(workdir, num_images=3, **SMALL)
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
    again = launcher.run(workdir, num_images=3, **SMALL)
    assert calls == [] and again["images"] == result["images"]

    # The resumed result equals an uninterrupted run (keys are per image index).
    fresh = launcher.run(workdir, num_images=3, output="fresh.json", **SMALL)
    assert fresh["images"] == result["images"]

    # Other settings: refuse instead of mixing results.
    with pytest.raises(ValueError, match="sigma"):
        launcher.run(workdir, num_images=3, **{**SMALL, "sigma": 0.5})


def test_resolve_smoothing():
    direct = DigitsMLP(T=3)
    assert launcher.resolve_smoothing(direct, sigma=0.5, noise="auto") == ("input", 0.5, 1)
    with pytest.raises(ValueError, match="--sigma"):
        launcher.resolve_smoothing(direct, sigma=None, noise="auto")
    with pytest.raises(ValueError, match="--noise=model"):
        launcher.resolve_smoothing(direct, sigma=0.5, noise="model")
    rsc2 = DigitsMLP(T=3, encoder=EncoderConfig(name="rsc", sigma=0.25, per_step=True))
    assert launcher.resolve_smoothing(rsc2, sigma=None, noise="auto") == ("model", 0.25, 3)
    assert launcher.resolve_smoothing(rsc2, sigma=0.5, noise="input") == ("input", 0.5, 1)
    with pytest.raises(ValueError, match="differs"):
        launcher.resolve_smoothing(rsc2, sigma=0.5, noise="model")


def test_bad_flag_is_one_message(workdir):
    proc = subprocess.run([sys.executable, "-m", "launch.certify", f"--workdir={workdir}", "--noise=model"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--noise=model" in proc.stderr and "Traceback" not in proc.stderr
