"""bench/cifar.py: the weight export to torch layouts (no torch needed) and, where a peer interpreter is
given in JSNN_PEER_PYTHON (a virtualenv with torch + spikingjelly 2.0 + torchattacks), same logits."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import cifar
from jsnn import models, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny():
    config = cifar.make_config(T=2, batch=4, width=1 / 32)  # convs 2..16 wide, FC 128
    model = models.from_config(config)
    state = train.init_state(config, model, train.make_optimizer(config.optim, 10), jax.random.key(0))
    variables = cifar.perturb_batch_norm({"params": state.params, **state.model_state}, jax.random.key(1))
    return model, variables


def test_export_permutes_the_first_fc_to_torch_flatten_order(tmp_path):
    model, variables = tiny()
    x = jnp.asarray(np.random.default_rng(0).random((4, 32, 32, 3), np.float32))
    path = tmp_path / "vgg.npz"
    cifar.export_vgg(str(path), model, variables, x, jnp.zeros(4, jnp.int32), jnp.zeros((4, 10)))
    d = np.load(path)
    feats = np.random.default_rng(1).random((3, 4, 4, 16), np.float32)  # NHWC after the 3 pools
    flax_out = feats.reshape(3, -1) @ np.asarray(variables["params"]["Dense_0"]["kernel"])
    torch_out = feats.transpose(0, 3, 1, 2).reshape(3, -1) @ d["fc0"].T  # NCHW flatten, [out, in] weight
    np.testing.assert_allclose(torch_out, flax_out, rtol=1e-5, atol=1e-5)
    assert d["conv0"].shape == (2, 3, 3, 3) and d["fc2"].shape == (10, 128)
    assert str(d["stages"]) == "2,A,4,8,A,16,16,16,A,16,16" and int(d["T"]) == 2


@pytest.mark.skipif(not os.environ.get("JSNN_PEER_PYTHON"), reason="JSNN_PEER_PYTHON (torch + spikingjelly) not set")
def test_peer_logits_match():
    out = subprocess.run(
        [sys.executable, "bench/cifar.py", f"--peer_python={os.environ['JSNN_PEER_PYTHON']}", "--width=0.03125",
         "--T=2", "--batch=4", "--steps=1", "--repeats=1", "--attacks=", "--peer_threads=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(l for l in out.stdout.splitlines() if "peer check" in l)
    assert float(line.split("max |Δ| vs jsnn ")[1].split()[0]) < 1e-5, line
