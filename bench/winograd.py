"""Winograd F(2×2, 3×3) against XLA's convolution (``jsnn.conv``) on the VGG-11 CIFAR shapes (a lever tried).

  python bench/winograd.py [--repeats=7] [--shapes=N,H,W,Cin,Cout;...]

Lavin & Gray (2016): per 4×4 input tile d and 3×3 kernel W, ``Y = Aᵀ[(G W Gᵀ) ⊙ (Bᵀ d B)]A`` gives a
2×2 output tile with 16 instead of 36 multiplications, i.e. 16 matrix products
``[N·H/2·W/2, C_in] @ [C_in, C_out]`` (2.25× fewer FLOPs than the direct convolution) plus the input
and output transforms, which are memory-bound. Written here in plain jax (the 16 products kept as
separate dots: a stacked ``[16, T, C]`` operand made XLA CPU run the input transform as a slow
concatenate fusion, 56–70 ms for the 8×8×512 layer), backward by autodiff. Prints the largest
difference to ``lax.conv_general_dilated`` and forward / forward+backward medians of both.
jsnn does not use it (docs/attack_speed.md, 2026-12-07: 1.1–1.3× on the 8×8 and 4×4 layers of
256–512 channels, slower at 16×16, ≈10 % of a CIFAR training step in all).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jsnn  # noqa: F401  (jsnn's XLA and malloc defaults, as in every benchmark)
from jsnn.conv import conv_general_dilated

_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
DN = ("NHWC", "HWIO", "NHWC")
VGG11_SHAPES = "128,16,16,64,128;128,16,16,128,256;128,8,8,256,512;128,8,8,512,512;128,4,4,512,512;512,8,8,32,64"


def _bt(d):
    d0, d1, d2, d3 = d
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _at(m):
    m0, m1, m2, m3 = m
    return m0 + m1 + m2, m1 - m2 - m3


def _tile_parts(x, axis, n):
    """``x[2i + a]`` for i < n along ``axis`` (length 2n + 2), a = 0…3, from a pairing reshape."""
    paired = x.reshape(x.shape[:axis] + (n + 1, 2) + x.shape[axis + 1:])
    part = lambda a, start: lax.slice_in_dim(lax.index_in_dim(paired, a, axis + 1, keepdims=False),
                                             start, start + n, 1, axis)
    return part(0, 0), part(1, 0), part(0, 1), part(1, 1)


def winograd_conv(x, w):
    """SAME 3×3 stride-1 convolution of ``x [N, H, W, C]`` (H, W even) with an HWIO kernel, F(2×2, 3×3)."""
    N, H, W, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    u = [t.reshape(N * (H // 2) * (W // 2), -1) for r in _bt(_tile_parts(xp, 1, H // 2))
         for t in _bt(_tile_parts(r, 2, W // 2))]  # p = 4a + b
    g = jnp.asarray(_G, w.dtype)
    wt = jnp.einsum("ak,klio,bl->abio", g, w, g, precision=lax.Precision.HIGHEST).reshape(16, *w.shape[2:])
    m = [u[p] @ wt[p] for p in range(16)]
    cols = [_at(tuple(m[4 * a + b] for b in range(4))) for a in range(4)]
    y = [_at(tuple(cols[a][j] for a in range(4))) for j in range(2)]  # y[j][i]
    y = jnp.stack([jnp.stack([y[j][i] for j in range(2)], 1) for i in range(2)], 1)
    K = y.shape[-1]
    return y.reshape(N, H // 2, W // 2, 2, 2, K).transpose(0, 1, 3, 2, 4, 5).reshape(N, H, W, K)


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
    xla = lambda x, w: conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)
    print(f"{'N,H,W,Cin,Cout':>22}  max|Δ| vs lax  fwd xla / wino ms  ratio  fwd+bwd xla / wino ms  ratio")
    for spec in args.shapes.split(";"):
        N, H, W, ci, co = map(int, spec.split(","))
        kx, kw, kg = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(kx, (N, H, W, ci))
        w = jax.random.normal(kw, (3, 3, ci, co)) / np.sqrt(9 * ci)
        g = jax.random.normal(kg, (N, H, W, co))
        ref = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)
        err = float(jnp.max(jnp.abs(jax.jit(winograd_conv)(x, w) - ref)))
        fwd = [_median_ms(jax.jit(f), x, w, repeats=args.repeats) for f in (xla, winograd_conv)]
        both = [_median_ms(jax.jit(lambda x, w, g, f=f: jax.vjp(f, x, w)[1](g)), x, w, g, repeats=args.repeats)
                for f in (xla, winograd_conv)]
        print(f"{spec:>22}  {err:13.1e}  {fwd[0]:8.1f} / {fwd[1]:6.1f}  {fwd[0] / fwd[1]:5.2f}x  "
              f"{both[0]:11.1f} / {both[1]:6.1f}  {both[0] / both[1]:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
