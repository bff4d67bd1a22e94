"""Convolutions alone, layer by layer: what ``jsnn.conv`` runs against torch's ``conv2d`` (the peer's).

  python bench/conv.py --peer_python=/work/peer/bin/python [--repeats=7] [--shapes=vgg11|digits|N,H,W,Cin,Cout*k;...]

How much of a spiking network's step is its convolutions, on this machine, in both stacks: each
3×3 stride-1 "same" convolution of the model (no bias), forward, and forward + both gradients
(``jax.vjp`` with respect to input and kernel / ``torch.autograd`` on ``conv2d`` with
``requires_grad`` on both), on the merged ``[T·B, ...]`` batch the spiking layers use. jsnn: NHWC
through ``jsnn.conv.conv_general_dilated`` (its Winograd and few-channel paths where it takes them,
else XLA's); the peer: NCHW ``torch.nn.functional.conv2d`` (what SpikingJelly's multi-step
``layer.Conv2d`` calls), ``torch.set_num_threads(--threads)``. Medians of ``--repeats`` after a warm-up.

``vgg11`` is bench/cifar.py's VGG-11 at T=4, batch 32 (N = 128), each layer as often as the model has
it (``*2``); ``digits`` the default digits model's two layers at evaluation batch 128 (N = 512).
The totals are a floor for a training step's time (every layer's forward and both gradients; the
first layer's input gradient is not needed there but is small), and an attack step's
(forward + input gradient) is below the forward+backward total: a step cannot be faster than its
convolutions, so the ratio of the peer's whole step to jsnn's convolution total bounds the speed-up
any other change can bring (docs/attack_speed.md, 2026-12-08).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

import jax
import numpy as np

try:
    from bench import common
except ImportError:  # run as a script: bench/ is on sys.path
    import common

import jsnn  # noqa: F401,E402  (jsnn's XLA and malloc defaults, as in every benchmark)
from jsnn import conv  # noqa: E402

PRESETS = {
    "vgg11": "128,32,32,3,64;128,16,16,64,128;128,16,16,128,256;128,8,8,256,512;"
             "128,8,8,512,512*2;128,4,4,512,512*2",
    "digits": "512,8,8,1,32;512,8,8,32,64",
}

PEER_CODE = common.SJ_TIMING + textwrap.dedent(r"""
    import json, sys
    import torch
    shapes, repeats, threads = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    F = torch.nn.functional
    for n, h, w, ci, co in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, ci, h, w, generator=g)
        k = torch.randn(co, ci, 3, 3, generator=g) / (9 * ci) ** 0.5
        dy = torch.randn(n, co, h, w, generator=g)
        def fwd():
            with torch.no_grad():
                return F.conv2d(x, k, padding=1)
        xr, kr = x.clone().requires_grad_(True), k.clone().requires_grad_(True)
        def both():
            y = F.conv2d(xr, kr, padding=1)
            return torch.autograd.grad(y, (xr, kr), dy)
        _, f_med, _ = timed(fwd, repeats)
        _, b_med, _ = timed(both, repeats)
        print(json.dumps({"shape": [n, h, w, ci, co], "fwd_s": f_med, "fwd_bwd_s": b_med,
                          "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
""")


def parse_shapes(spec: str):
    """``[(N, H, W, Cin, Cout, count)]`` of a preset name or ``N,H,W,Cin,Cout[*count];...``."""
    spec = PRESETS.get(spec, spec)
    out = []
    for part in filter(None, spec.split(";")):
        dims, _, count = part.partition("*")
        values = [int(v) for v in dims.split(",")]
        if len(values) != 5 or min(values) < 1 or (count and int(count) < 1):
            raise SystemExit(f"--shapes: {part!r} is not N,H,W,Cin,Cout[*count] with positive integers")
        out.append((*values, int(count) if count else 1))
    return out


def jsnn_times(n, h, w, ci, co, repeats):
    """(forward s, forward + both gradients s) of ``jsnn.conv.conv_general_dilated`` (medians)."""
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (n, h, w, ci))
    k = jax.random.normal(kw, (3, 3, ci, co)) / np.sqrt(9 * ci)
    dy = jax.random.normal(kg, (n, h, w, co))
    f = lambda x, k: conv.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    both = lambda x, k, dy: jax.vjp(f, x, k)[1](dy)
    return (common.time_jit(f, x, k, repeats=repeats).median_s,
            common.time_jit(both, x, k, dy, repeats=repeats).median_s)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer_python", default=None, help="python of a venv with torch (the peer)")
    p.add_argument("--shapes", default="vgg11", help="vgg11, digits, or N,H,W,Cin,Cout[*count];...")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (the peer)")
    args = p.parse_args()
    shapes = parse_shapes(args.shapes)
    print(f"command: python bench/conv.py --shapes={args.shapes} --repeats={args.repeats}"
          + (f" --peer_python={args.peer_python}" if args.peer_python else ""))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores; load "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    peer = {}
    if args.peer_python:
        rows = common.run_peer(args.peer_python, PEER_CODE,
                               [json.dumps([s[:5] for s in shapes]), args.repeats, args.threads])
        peer = {tuple(r["shape"]): r for r in rows}
        if rows:
            print(f"peer: torch {rows[0]['torch']}, {rows[0]['threads']} threads")
    table, tot = [], np.zeros(4)
    for n, h, w, ci, co, count in shapes:
        fj, bj = jsnn_times(n, h, w, ci, co, args.repeats)
        r = peer.get((n, h, w, ci, co))
        fp, bp = (r["fwd_s"], r["fwd_bwd_s"]) if r else (float("nan"), float("nan"))
        tot += count * np.array([fj, bj, fp, bp])
        table.append([f"{n},{h},{w},{ci},{co}" + (f" *{count}" if count > 1 else ""),
                      common.fmt_ms(fj), common.fmt_ms(fp), f"{fp / fj:.2f}x",
                      common.fmt_ms(bj), common.fmt_ms(bp), f"{bp / bj:.2f}x"])
    table.append(["total (x count)", common.fmt_ms(tot[0]), common.fmt_ms(tot[2]), f"{tot[2] / tot[0]:.2f}x",
                  common.fmt_ms(tot[1]), common.fmt_ms(tot[3]), f"{tot[3] / tot[1]:.2f}x"])
    print(common.table(["N,H,W,Cin,Cout", "jsnn fwd ms", "peer fwd ms", "peer/jsnn",
                        "jsnn f+b ms", "peer f+b ms", "peer/jsnn"], table))


if __name__ == "__main__":
    sys.exit(main())
