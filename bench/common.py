"""Timing helpers for the benchmarks (Spyx benchmark style).

Compile time is reported apart (``jit(f).lower(...).compile()``), then ``warmup`` calls, then the
median of ``repeats`` timed calls, each ended by ``jax.block_until_ready``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import textwrap
import time
from typing import Callable, NamedTuple, Optional, Sequence


class Timing(NamedTuple):
    """Seconds per call: median and min of ``n`` calls; ``compile_s`` is None for eager code."""

    median_s: float
    min_s: float
    n: int
    compile_s: Optional[float] = None


def _repeat(call: Callable[[], object], repeats: int, warmup: int) -> tuple[float, float]:
    import jax

    for _ in range(warmup):
        jax.block_until_ready(call())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def timed(call: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, float, float]:
    """(first call seconds, i.e. compile + one run; median seconds; min seconds) of ``call()``."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - t0
    return (first, *_repeat(call, repeats, warmup))


def time_jit(fn: Callable, *args, repeats: int = 20, warmup: int = 2) -> Timing:
    """Times ``jax.jit(fn)(*args)``: ahead-of-time compile (reported apart), warm-up, median of N."""
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    med, mn = _repeat(lambda: compiled(*args), repeats, warmup)
    return Timing(med, mn, repeats, compile_s)


def time_eager(fn: Callable, *args, repeats: int = 5, warmup: int = 1) -> Timing:
    """Times an un-jitted call (e.g. a Python loop over ``jnp`` ops); results are blocked on."""
    med, mn = _repeat(lambda: fn(*args), repeats, warmup)
    return Timing(med, mn, repeats)


def memory_of(fn: Callable, *args) -> dict:
    """XLA's static memory analysis of the compiled ``jax.jit(fn)`` (bytes)."""
    import jax

    m = jax.jit(fn).lower(*args).compile().memory_analysis()
    keys = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
            "alias_size_in_bytes", "generated_code_size_in_bytes")
    return {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}


def run_peer(peer_python: str, code: str, args: Sequence[str], timeout: float = 1800,
             env: Optional[dict] = None) -> list[dict]:
    """Runs ``code`` with the peer's interpreter (its own virtualenv); returns its JSON stdout lines.

    ``env`` adds variables (e.g. ``SJ_LIF_CUDA_IMPLEMENTATION=torch`` to pick SpikingJelly 2.0's kernel).
    """
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    out = subprocess.run([peer_python, "-c", code, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"peer benchmark failed ({peer_python}):\n{out.stderr[-4000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def fmt_ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:9.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain fixed-width table."""
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# Peer-side source (runs in the peer's interpreter, prepended to a benchmark's PEER_CODE): the default
# digits model, launch/configs/default.py's DigitsConv, in SpikingJelly 2.0 (multi-step LIFNode).
SJ_DIGITS_CONV = textwrap.dedent(r"""
    import torch.nn as nn
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif():
        return neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                              surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode='m')

    def digits_conv_net():
        net = nn.Sequential(
            layer.Conv2d(1, 32, 3, padding=1, bias=False), layer.BatchNorm2d(32), lif(),
            layer.Conv2d(32, 64, 3, padding=1, bias=False), layer.BatchNorm2d(64), lif(),
            layer.AvgPool2d(2, 2), layer.Flatten(),
            layer.Linear(64 * 4 * 4, 128, bias=False), layer.BatchNorm1d(128), lif(),
            layer.Linear(128, 10))
        functional.set_step_mode(net, 'm')
        return net
""")


# Peer-side timing (prepended to a PEER_CODE): the same protocol as ``timed`` above, with the CUDA
# stream synchronized around every timed call (torch launches asynchronously on a GPU).
SJ_TIMING = textwrap.dedent(r"""
    import statistics, time
    import torch

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def timed(fn, repeats, warmup=1):
        # (first call s, median s, min s) of fn(): first call, warm-up, median of repeats
        sync(); t0 = time.perf_counter(); fn(); sync(); first = time.perf_counter() - t0
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            sync(); t0 = time.perf_counter(); fn(); sync(); times.append(time.perf_counter() - t0)
        return first, statistics.median(times), min(times)
""")

# Peer-side spiking VGG (jsnn.models.SpikingVGG's layout in SpikingJelly 2.0; LIF as in SJ_DIGITS_CONV):
# conv3x3 (no bias) - BN - LIF per width, AvgPool2d(2) per "A", flatten (C, H, W), Linear - LIF per
# hidden width, Linear readout. ``load_vgg`` copies weights written by bench/cifar.py's export_vgg.
SJ_VGG = textwrap.dedent(r"""
    import torch.nn as nn
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif():
        return neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                              surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode='m')

    def vgg_net(stages, hidden, in_channels, hw, num_classes):
        mods, c = [], in_channels
        for s in stages:
            if s == "A":
                mods.append(layer.AvgPool2d(2, 2)); hw //= 2
            elif s == "M":
                mods.append(layer.MaxPool2d(2, 2)); hw //= 2
            else:
                mods += [layer.Conv2d(c, s, 3, padding=1, bias=False), layer.BatchNorm2d(s), lif()]; c = s
        mods.append(layer.Flatten()); f = c * hw * hw
        for h in hidden:
            mods += [layer.Linear(f, h), lif()]; f = h
        mods.append(layer.Linear(f, num_classes))
        net = nn.Sequential(*mods)
        functional.set_step_mode(net, 'm')
        return net

    def load_vgg(net, d):
        t = lambda k: torch.from_numpy(np.ascontiguousarray(d[k]))
        convs = [m for m in net if isinstance(m, layer.Conv2d)]
        bns = [m for m in net if isinstance(m, layer.BatchNorm2d)]
        fcs = [m for m in net if isinstance(m, layer.Linear)]
        with torch.no_grad():
            for i, (cv, bn) in enumerate(zip(convs, bns)):
                cv.weight.copy_(t(f"conv{i}"))
                bn.weight.copy_(t(f"bn{i}_scale")); bn.bias.copy_(t(f"bn{i}_bias"))
                bn.running_mean.copy_(t(f"bn{i}_mean")); bn.running_var.copy_(t(f"bn{i}_var"))
            for i, fc in enumerate(fcs):
                fc.weight.copy_(t(f"fc{i}")); fc.bias.copy_(t(f"fc{i}_bias"))

    class Images(nn.Module):
        # images [B, C, H, W] in [0, 1] -> time-averaged logits (direct coding, normalization inside)
        def __init__(self, net, T, mean, std):
            super().__init__(); self.net, self.T = net, T
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        def forward(self, x):
            functional.reset_net(self.net)
            x = (x - self.mean) / self.std
            return self.net(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)).mean(0)
""")
