"""Makes snntorch_conv.nir and snntorch_conv.npz: a small snnTorch net exported with snnTorch's own NIR export.

Run in a throwaway environment that has snnTorch (not jsnn's), e.g.:

  python3 -m venv /tmp/nirgen && /tmp/nirgen/bin/pip install torch snntorch nir nirtorch
  /tmp/nirgen/bin/python tests/data/nir/make_snntorch.py

Made with snntorch 1.0.0, nir 1.0.8, nirtorch 2.6, torch 2.13.0+cpu. The net (seed 0):
Conv2d(1→4, 3×3, padding 1) → Leaky(β=0.9) → AvgPool2d(2) → Flatten → Linear(64→10) → Leaky(β=0.8),
both Leaky with ``reset_mechanism="zero"`` (snnTorch's NIR export writes every Leaky as a LIF with
``v_reset = 0``, which is a reset to zero; its default reset by subtraction is not what the file says)
and threshold 0.5. snnTorch steps ``mem = β·mem + I`` and exports ``τ = dt/(1 − β)``, ``r = τ/dt``
with ``dt = 1e-4``; it fires at ``mem > threshold``.

The .npz holds ``x`` (8 images, NHWC in [0, 1]), ``spikes`` ``[T=6, 8, 10]`` (the output layer's
spikes at each step, the same image fed at every step) and ``hidden`` ``[6, 8, 4, 8, 8]`` (the
first Leaky's spikes, NCHW).
"""

import os

import nir
import numpy as np
import snntorch as snn
import snntorch.utils
import torch
from snntorch.export_nir import export_to_nir

HERE = os.path.dirname(os.path.abspath(__file__))
T, B = 6, 8


def main():
    torch.manual_seed(0)
    # per-neuron β and threshold: with scalars snnTorch's export writes LIF nodes of shape (), which
    # NIR's type inference cannot follow through the pooling
    full = lambda shape, v: torch.full(shape, v)
    lif1 = snn.Leaky(beta=full((4, 8, 8), 0.9), threshold=full((4, 8, 8), 0.5), init_hidden=True,
                     reset_mechanism="zero")
    lif2 = snn.Leaky(beta=full((10,), 0.8), threshold=full((10,), 0.5), init_hidden=True, reset_mechanism="zero")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), lif1, torch.nn.AvgPool2d((2, 2), stride=(2, 2)), torch.nn.Flatten(),
        torch.nn.Linear(64, 10), lif2)
    with torch.no_grad():
        net[0].weight.mul_(3.0)  # enough current that both layers spike on [0, 1] images
        net[4].weight.mul_(3.0)
    x = np.random.default_rng(0).uniform(0.0, 1.0, (B, 8, 8, 1)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    spikes, hidden = [], []
    with torch.no_grad():
        snn.utils.reset(net)
        for _ in range(T):
            h = lif1(net[0](xt))
            hidden.append(h.numpy().copy())
            spikes.append(lif2(net[4](net[3](net[2](h)))).numpy().copy())
        snn.utils.reset(net)
        graph = export_to_nir(net, xt[:1], ignore_dims=[0])  # NIR types have no batch axis
    nir.write(os.path.join(HERE, "snntorch_conv.nir"), graph)
    np.savez_compressed(os.path.join(HERE, "snntorch_conv.npz"), x=x, spikes=np.stack(spikes),
                        hidden=np.stack(hidden))
    s = np.stack(spikes)
    print("nodes:", {k: type(v).__name__ for k, v in graph.nodes.items()})
    print("output spike rate %.3f, hidden %.3f" % (s.mean(), np.stack(hidden).mean()))


if __name__ == "__main__":
    main()
