"""Data parallelism: 8 forced CPU devices train, evaluate and attack like 1 device; the batch must divide.

JAX fixes its device count at import, so each side runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` set before ``import jax`` (the pytest
process itself keeps its single device).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Trains a tiny run on every visible device, saves its parameters, and reports what the test checks.
SCRIPT = r"""
import json, os, sys
import jax
import numpy as np
from jsnn import checkpoint, losses, models, parallel, train
from launch.configs import default

workdir, devices = sys.argv[1], int(sys.argv[2])
assert jax.device_count() == devices, (jax.device_count(), devices)

def tiny(batch_size=16):
    c = default.get_config()
    c.model.T = 2
    c.data.batch_size = batch_size
    c.data.train_limit = 96
    c.data.test_limit = 50          # 50 test examples: the 8-device eval pads 50 -> 56 and masks
    c.data.eval_batch_size = 32     # two eval batches: 32 and a ragged 18
    c.train.num_steps = 3
    c.train.log_every = 1
    c.train.checkpoint_every = 3
    return c

out = {"device_count": jax.device_count(), "mesh_size": int(parallel.data_mesh().devices.size)}


def per_device_flops(compiled):
    ca = compiled.cost_analysis()
    return float((ca[0] if isinstance(ca, (list, tuple)) else ca)["flops"])


# XLA's cost analysis of the partitioned program: the FLOPs ONE device executes per step.
config = tiny(batch_size=64)
config.train.num_steps = 10
model = models.from_config(config)
optimizer = train.make_optimizer(config.optim, 10)
mesh = parallel.data_mesh()
state = parallel.replicate(train.init_state(config, model, optimizer, jax.random.key(0)), mesh)
batch = parallel.shard_batch({"image": np.zeros((64, 8, 8, 1), np.float32), "label": np.zeros(64, np.int32),
                              "mask": np.ones(64, bool)}, mesh)
step = train.make_train_step(losses.cross_entropy_loss_fn(model), optimizer, mesh)
out["train_flops"] = per_device_flops(step.lower(state, batch, jax.random.key(1)).compile())
variables = parallel.replicate({"params": state.params, **state.model_state}, mesh)
out["eval_flops"] = per_device_flops(train.make_eval_step(model).lower(
    variables, batch["image"], batch["label"], batch["mask"], jax.random.key(0)).compile())
results = train.train_and_evaluate(tiny(), workdir)
out["results"] = {k: results[k] for k in ("clean_accuracy", "test_loss", "test_examples")}
out["env_device_count"] = results["environment"]["device_count"]
with open(os.path.join(workdir, "metrics.jsonl")) as f:
    out["train_loss"] = [json.loads(l)["loss"] for l in f if l.strip()]
_, model, variables, *_ = checkpoint.load_run(workdir)
flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
np.savez(os.path.join(workdir, "variables.npz"), **flat)
from jsnn import evaluate  # the attack suite on the trained run: 20 examples (8 devices: 20 -> 24 padded)
doc = evaluate.evaluate_workdir(workdir, overrides={"attacks": "clean,fgsm", "eps": "8/255", "large_eps": "",
                                                    "num_examples": 20, "batch_size": 16})
out["robust"] = {k: doc["records"][k]["accuracy"] for k in doc["suite"]}
out["bad_batch_error"] = None
if devices > 1:  # the check runs before any training
    try:
        train.train_and_evaluate(tiny(batch_size=12), workdir + "-bad")
    except ValueError as e:
        out["bad_batch_error"] = str(e)
print("RESULT " + json.dumps(out))
"""


def _launch(workdir, devices):
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.Popen([sys.executable, "-c", SCRIPT, workdir, str(devices)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multidevice")
    procs = {n: _launch(str(root / f"devices{n}"), n) for n in (1, 8)}  # both at once: halves wall time
    return {n: (_result(p), str(root / f"devices{n}")) for n, p in procs.items()}


def test_eight_devices_are_used(runs):
    out, _ = runs[8]
    assert out["device_count"] == 8 and out["mesh_size"] == 8 and out["env_device_count"] == 8
    assert runs[1][0]["device_count"] == 1


@pytest.mark.parametrize("kind", ["train", "eval"])
def test_each_device_does_an_eighth_of_the_work(runs, kind):
    # Data parallelism means each device computes on B/8 examples. If the sharded batch is
    # all-gathered inside the step (e.g. a reshape the partitioner cannot keep sharded), every
    # device recomputes the whole batch: same metrics, but 8× the work and no speed-up.
    one, eight = runs[1][0][f"{kind}_flops"], runs[8][0][f"{kind}_flops"]
    assert eight <= 1.5 * one / 8, f"{kind} step: {eight:.3g} FLOPs per device on 8 devices vs {one:.3g} on 1"


def test_eight_devices_train_and_evaluate_like_one(runs):
    (one, dir1), (eight, dir8) = runs[1], runs[8]
    # Same seed, same global batches: the sharded step computes the same global means.
    np.testing.assert_allclose(eight["train_loss"], one["train_loss"], rtol=1e-5, atol=1e-6)
    assert eight["results"]["test_examples"] == one["results"]["test_examples"] == 50  # padding masked out
    assert abs(eight["results"]["clean_accuracy"] - one["results"]["clean_accuracy"]) <= 1 / 50 + 1e-9
    np.testing.assert_allclose(eight["results"]["test_loss"], one["results"]["test_loss"], rtol=1e-4)
    a, b = np.load(os.path.join(dir1, "variables.npz")), np.load(os.path.join(dir8, "variables.npz"))
    assert sorted(a.files) == sorted(b.files) and a.files
    for k in a.files:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_eight_devices_attack_like_one(runs):
    one, eight = runs[1][0]["robust"], runs[8][0]["robust"]
    assert list(one) == list(eight) == ["clean", "fgsm-linf-eps8/255"]
    for k in one:  # one example flipping is the float tolerance of a sharded reduction
        assert abs(one[k] - eight[k]) <= 1 / 20 + 1e-9, (k, one[k], eight[k])


def test_batch_must_divide_by_device_count(runs):
    msg = runs[8][0]["bad_batch_error"]
    assert msg is not None, "batch_size=12 on 8 devices should be refused"
    assert "data.batch_size" in msg and "12" in msg and "8" in msg
