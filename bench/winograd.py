"""Winograd F(2×2, 3×3) against XLA's convolution (``jsnn.conv``) on the VGG-11 CIFAR shapes.

  python bench/winograd.py [--repeats=7] [--shapes=N,H,W,Cin,Cout;...]

``jsnn.conv.winograd_conv`` (Lavin & Gray 2016: 16 matrix products ``[N·H/2·W/2, C_in] @ [C_in, C_out]``,
2.25× fewer FLOPs than the direct convolution, plus memory-bound input and output transforms) against
XLA's convolution as ``jsnn.conv`` runs it with the Winograd path off, on every shape given (whether
or not ``jsnn.conv`` would take the Winograd path there). Prints the largest difference to
``lax.conv_general_dilated`` and forward / forward+backward medians of both; the shapes where it
wins set ``jsnn.conv.WINOGRAD_MIN_CHANNELS`` and ``WINOGRAD_MAX_PIXELS`` (docs/attack_speed.md,
2026-12-07 and 2026-12-07/08).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jsnn  # noqa: F401  (jsnn's XLA and malloc defaults, as in every benchmark)
from jsnn import conv

DN = ("NHWC", "HWIO", "NHWC")
VGG11_SHAPES = "128,16,16,64,128;128,16,16,128,256;128,8,8,256,512;128,8,8,512,512;128,4,4,512,512;512,8,8,32,64"


def xla_conv(x, w):
    """``jsnn.conv.conv_general_dilated`` with the Winograd path off: XLA's convolution (jsnn's backward)."""
    saved, conv.WINOGRAD_MIN_CHANNELS = conv.WINOGRAD_MIN_CHANNELS, sys.maxsize  # read when traced
    try:
        return conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)
    finally:
        conv.WINOGRAD_MIN_CHANNELS = saved


def _median_ms(f, *args, repeats):
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--shapes", default=VGG11_SHAPES, help="N,H,W,Cin,Cout;... (H, W even)")
    args = p.parse_args()
    print(f"command: python bench/winograd.py --repeats={args.repeats} --shapes='{args.shapes}'")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    print(f"{'N,H,W,Cin,Cout':>22}  max|Δ| vs lax  fwd xla / wino ms  ratio  fwd+bwd xla / wino ms  ratio")
    for spec in args.shapes.split(";"):
        N, H, W, ci, co = map(int, spec.split(","))
        kx, kw, kg = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(kx, (N, H, W, ci))
        w = jax.random.normal(kw, (3, 3, ci, co)) / np.sqrt(9 * ci)
        g = jax.random.normal(kg, (N, H, W, co))
        ref = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)
        err = float(jnp.max(jnp.abs(jax.jit(conv.winograd_conv)(x, w) - ref)))
        fwd = [_median_ms(jax.jit(f), x, w, repeats=args.repeats) for f in (xla_conv, conv.winograd_conv)]
        both = [_median_ms(jax.jit(lambda x, w, g, f=f: jax.vjp(f, x, w)[1](g)), x, w, g, repeats=args.repeats)
                for f in (xla_conv, conv.winograd_conv)]
        print(f"{spec:>22}  {err:13.1e}  {fwd[0]:8.1f} / {fwd[1]:6.1f}  {fwd[0] / fwd[1]:5.2f}x  "
              f"{both[0]:11.1f} / {both[1]:6.1f}  {both[0] / both[1]:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
