"""Convolutions and dense products as XLA CPU runs them fast, with lax's values and gradients.

:func:`conv_general_dilated` is ``lax.conv_general_dilated`` with three changes: the backward (the
input gradient stays a canonical convolution inside loops), the few-input-channel forward (a
1×3×3 grey stem as multiply-adds) and wide 3×3 convolutions as Winograd F(2×2, 3×3) products
(:func:`winograd_conv`). ``jsnn.layers.Conv`` (every model's conv) runs it.
:func:`dense_dot_general` is a dense layer's ``lax.dot_general`` whose input gradient is an untransposed
product (``jsnn.layers.Dense``, every model's dense layer, runs it).
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["DENSE_MIN_WEIGHTS", "FEW_CHANNELS_MAX_K", "WINOGRAD_MAX_PIXELS", "WINOGRAD_MIN_CHANNELS",
           "conv_general_dilated", "dense_dot_general", "winograd_conv"]


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None):
    """``lax.conv_general_dilated`` whose input gradient is a canonical convolution, in loops too.

    The input gradient of ``y = conv(x, W)`` is ``conv(g, rev(W))`` with W's in/out feature axes
    swapped (``01oi`` kernel labels). XLA CPU rewrites such convolutions into Eigen's canonical
    ``01io`` form only in the entry computation (``xla/service/cpu/conv_canonicalization.h``: "all
    top-level convolutions"); inside a ``while`` body (APGD's ``fori_loop``, ``lax.map`` chunks,
    TRADES' inner attack) it ran as a generic loop, ~3.5× slower (docs/attack_speed.md). Here the
    backward swaps W's feature axes itself, ``Wᵀ = swapaxes(W, i, o)``, and differentiates
    ``conv(x, Wᵀ)`` under the swapped labels: the same function, whose transpose is canonical.
    Values and gradients equal ``lax.conv_general_dilated``'s (grouped convolutions take it as is).

    Few input channels (stride 1, no dilation, ``C_in · window ≤`` :data:`FEW_CHANNELS_MAX_K` = 9:
    a 1×3×3 grey-image stem) run without an XLA convolution: the forward is K multiply-adds
    of shifted input copies in a fixed order, the input gradient the transpose of the same sum as
    one matrix product, the kernel gradient lax's. Digits stem ``[512, 8, 8, 1] → 32``: forward
    1.7–2.2 → 0.4–0.6 ms, input gradient 1.7–2.1 → 0.4–0.5 ms; a 10-step input-gradient loop on the
    digits model 26.1 → 24.2 ms per step (idle 2-core AMD EPYC; ``docs/attack_speed.md``). The same sum
    in another order: values agree to float rounding, not bit for bit.
    Wide 3×3 convolutions on small maps (NHWC/HWIO, stride 1, padding 1, even H and W, H·W ≤
    :data:`WINOGRAD_MAX_PIXELS` = 64, ``C_in`` and ``C_out ≥`` :data:`WINOGRAD_MIN_CHANNELS` = 256:
    VGG-11's 8×8 and 4×4 layers) run as Winograd F(2×2, 3×3),
    16 matrix products instead of the 36 multiplications per 2×2 output tile
    (:func:`winograd_conv`; values agree to float rounding, ~4e-6 in float32 on unit-scale data).
    The few-channel and Winograd paths are taken on the CPU backend only (``jax.default_backend()``
    when traced): they were measured against XLA CPU's kernels, and a GPU's convolution libraries
    have their own. Reverse mode only: ``jax.jvp`` through it raises (jsnn uses no forward mode).

    Args and returns: as ``lax.conv_general_dilated``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jax import lax
        >>> from jsnn.conv import conv_general_dilated
        >>> x, w = jnp.ones((1, 4, 4, 2)), jnp.arange(36.).reshape(3, 3, 2, 2)
        >>> dn = ("NHWC", "HWIO", "NHWC")
        >>> ours = jax.grad(lambda x: conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn).sum())(x)
        >>> ref = jax.grad(lambda x: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn).sum())(x)
        >>> bool(jnp.all(ours == ref))
        True
    """
    conv = functools.partial(lax.conv_general_dilated, window_strides=window_strides,
                             padding=padding if isinstance(padding, str) else tuple(map(tuple, padding)),
                             lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                             feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                             precision=precision, preferred_element_type=preferred_element_type)
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if feature_group_count != 1 or batch_group_count != 1:
        return conv(lhs, rhs, dimension_numbers=dn)
    if jax.default_backend() != "cpu":  # GPU/TPU: the backend's own convolutions (cuDNN has its Winograd)
        return _conv_canonical_transpose(conv, dn, lhs, rhs)
    if _few_channels_applies(lhs, rhs, dn, window_strides, lhs_dilation, rhs_dilation, precision,
                             preferred_element_type):
        return _few_channels_conv(conv, _explicit_pads(lhs, rhs, dn, padding), dn, lhs, rhs)
    if _winograd_applies(lhs, rhs, dn, window_strides, padding, lhs_dilation, rhs_dilation, precision,
                         preferred_element_type):
        return winograd_conv(lhs, rhs)
    return _conv_canonical_transpose(conv, dn, lhs, rhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _conv_canonical_transpose(conv, dn, lhs, rhs):
    return conv(lhs, rhs, dimension_numbers=dn)


def _conv_fwd(conv, dn, lhs, rhs):
    return conv(lhs, rhs, dimension_numbers=dn), (lhs, rhs)


def _conv_bwd(conv, dn, residuals, g):
    lhs, rhs = residuals
    out_axis, in_axis = dn.rhs_spec[:2]
    swapped = dn._replace(rhs_spec=(in_axis, out_axis) + tuple(dn.rhs_spec[2:]))
    rhs_t = jnp.swapaxes(rhs, in_axis, out_axis)
    (d_lhs,) = jax.vjp(lambda x: conv(x, rhs_t, dimension_numbers=swapped), lhs)[1](g)
    (d_rhs,) = jax.vjp(lambda w: conv(lhs, w, dimension_numbers=dn), rhs)[1](g)
    return d_lhs, d_rhs


_conv_canonical_transpose.defvjp(_conv_fwd, _conv_bwd)


FEW_CHANNELS_MAX_K = 9  # C_in · window size up to which a stride-1 convolution takes the few-channel path
# (27, the RGB 3×3 stem, made CIFAR PGD-10 slower: 25.6 → 32.1 s; docs/attack_speed.md)


def _plain(strides, lhs_dilation, rhs_dilation, precision, preferred) -> bool:
    """Stride 1, no dilation, default precision and output type: what the hand-written paths cover."""
    ones = lambda d: d is None or all(int(v) == 1 for v in d)
    return ones(strides) and ones(lhs_dilation) and ones(rhs_dilation) and precision is None and preferred is None


def _few_channels_applies(lhs, rhs, dn, strides, lhs_dilation, rhs_dilation, precision, preferred) -> bool:
    """A grey-image stem (1×3×3 inputs per output): XLA CPU's convolution kernels are slow there."""
    k = rhs.shape[dn.rhs_spec[1]] * math.prod(rhs.shape[a] for a in dn.rhs_spec[2:])
    return k <= FEW_CHANNELS_MAX_K and _plain(strides, lhs_dilation, rhs_dilation, precision, preferred)


def _explicit_pads(lhs, rhs, dn, padding):
    if not isinstance(padding, str):
        return tuple((int(lo), int(hi)) for lo, hi in padding)
    spatial = [lhs.shape[a] for a in dn.lhs_spec[2:]]
    window = [rhs.shape[a] for a in dn.rhs_spec[2:]]
    return tuple(lax.padtype_to_pads(spatial, window, (1,) * len(window), padding))


def _window_shifts(pads, lhs, rhs, dn):
    """The padded input shifted by each window offset, ``[N, *out, C_in]`` each, and W as ``[K, C_out]``
    (rows in the same offset-major, channel-minor order)."""
    nsp = len(dn.lhs_spec) - 2
    x = jnp.transpose(lhs, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1]))  # [N, *spatial, C_in]
    w = jnp.transpose(rhs, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))  # [*window, C_in, C_out]
    window = w.shape[:nsp]
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)))
    out = [x.shape[1 + d] - window[d] + 1 for d in range(nsp)]
    shifted = [lax.slice(x, (0, *offset, 0), (x.shape[0], *(o + n for o, n in zip(offset, out)), x.shape[-1]))
               for offset in itertools.product(*(range(k) for k in window))]
    return shifted, w.reshape(-1, w.shape[-1])


def _to_out_spec(y, dn):
    """``[N, *out, C_out]`` → the output dimension order ``dn.out_spec``."""
    nsp = y.ndim - 2
    perm = [0] * y.ndim
    perm[dn.out_spec[0]], perm[dn.out_spec[1]] = 0, nsp + 1
    for d in range(nsp):
        perm[dn.out_spec[2 + d]] = 1 + d
    return jnp.transpose(y, perm)


def _few_channels_sum(pads, lhs, rhs, dn):
    """``y[n, p, o] = Σ_{δ, i} x_pad[n, p + δ, i] · W[δ, i, o]`` as K multiply-adds in a fixed order.

    One elementwise loop for XLA: faster than its convolution for small K and each output computed
    the same way whatever the batch (``models.stem``'s first layer once over T stays bit for bit).
    """
    shifted, w = _window_shifts(pads, lhs, rhs, dn)
    terms = (s[..., i:i + 1] * w[k * s.shape[-1] + i] for k, s in enumerate(shifted) for i in range(s.shape[-1]))
    return _to_out_spec(functools.reduce(jnp.add, terms), dn)


def _few_channels_matmul(pads, lhs, rhs, dn):
    """The same sum as one matrix product, ``[shifted copies stacked on features] @ W[K, C_out]``:
    its transpose w.r.t. the input (a sum of shifted slices) is what XLA runs fast."""
    shifted, w = _window_shifts(pads, lhs, rhs, dn)
    return _to_out_spec(jnp.concatenate(shifted, axis=-1) @ w, dn)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _few_channels_conv(conv, pads, dn, lhs, rhs):
    return _few_channels_sum(pads, lhs, rhs, dn)


def _few_fwd(conv, pads, dn, lhs, rhs):
    return _few_channels_sum(pads, lhs, rhs, dn), (lhs, rhs)


def _few_bwd(conv, pads, dn, residuals, g):
    """Input gradient through the matrix-product form (autodiff of the elementwise form sums K padded
    copies of the input: 395 ms vs 5 ms at 3×3×3), kernel gradient by lax's convolution."""
    lhs, rhs = residuals
    (d_lhs,) = jax.vjp(lambda x: _few_channels_matmul(pads, x, rhs, dn), lhs)[1](g)
    (d_rhs,) = jax.vjp(lambda w: conv(lhs, w, dimension_numbers=dn), rhs)[1](g)
    return d_lhs, d_rhs


_few_channels_conv.defvjp(_few_fwd, _few_bwd)


# --------------------------------------------------------------------------- Winograd F(2×2, 3×3)

WINOGRAD_MIN_CHANNELS = 256  # C_in and C_out from which a 3×3 convolution runs as Winograd F(2×2, 3×3) ...
WINOGRAD_MAX_PIXELS = 64  # ... on feature maps of at most 8×8 pixels: where it was measured to win
# (bench/winograd.py, docs/attack_speed.md: forward+backward 1.3–1.4× at 8×8 and 4×4 with 256–512
# channels; slower at 16×16 with 64–128 input channels; 1.3× isolated at 16×16 with 256, but no gain
# in ResNet-19's training step, with 3 s more compilation)

# Lavin & Gray (2016): Y = Aᵀ[(G W Gᵀ) ⊙ (Bᵀ d B)]A per 4×4 input tile d → 2×2 output tile.
_WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_NHWC_HWIO = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def _winograd_applies(lhs, rhs, dn, strides, padding, lhs_dilation, rhs_dilation, precision, preferred) -> bool:
    """A wide SAME 3×3 convolution on a small NHWC map with even sides (:data:`WINOGRAD_MIN_CHANNELS`, ...)."""
    if tuple(dn) != tuple(_NHWC_HWIO) or lhs.ndim != 4 or tuple(rhs.shape[:2]) != (3, 3):
        return False
    pads = padding == "SAME" if isinstance(padding, str) else (
        tuple(tuple(int(v) for v in p) for p in padding) == ((1, 1), (1, 1)))
    return (pads and _plain(strides, lhs_dilation, rhs_dilation, precision, preferred)
            and lhs.shape[1] % 2 == 0 and lhs.shape[2] % 2 == 0
            and lhs.shape[1] * lhs.shape[2] <= WINOGRAD_MAX_PIXELS
            and min(rhs.shape[2], rhs.shape[3]) >= WINOGRAD_MIN_CHANNELS)


def _bt(d):
    """``Bᵀ`` applied along a tile axis split into its four parts ``d0…d3``."""
    d0, d1, d2, d3 = d
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _at(m):
    """``Aᵀ`` applied along a transformed tile axis (four parts): the two output parts."""
    m0, m1, m2, m3 = m
    return m0 + m1 + m2, m1 - m2 - m3


def _tile_parts(x, axis: int, n: int):
    """``x[2i + a]`` for ``i < n`` along ``axis`` (length 2n + 2), a = 0…3: four contiguous slices of a
    pairing reshape (strided slices, and a stacked ``[16, …]`` operand, ran several times slower in XLA CPU)."""
    paired = x.reshape(x.shape[:axis] + (n + 1, 2) + x.shape[axis + 1:])
    part = lambda a, start: lax.slice_in_dim(lax.index_in_dim(paired, a, axis + 1, keepdims=False),
                                             start, start + n, 1, axis)
    return part(0, 0), part(1, 0), part(0, 1), part(1, 1)


def winograd_conv(x, w):
    """SAME 3×3 stride-1 convolution ``[N, H, W, C_in] * [3, 3, C_in, C_out]`` (H, W even) as Winograd F(2×2, 3×3).

    Per 4×4 input tile ``d`` (stride 2) and output tile ``Y`` (2×2), ``Y = Aᵀ[(G W Gᵀ) ⊙ (Bᵀ d B)]A``
    (Lavin & Gray, "Fast algorithms for convolutional neural networks", CVPR 2016): 16 matrix
    products ``[N·H/2·W/2, C_in] @ [C_in, C_out]``, 2.25× fewer multiplications than the direct
    convolution, plus memory-bound input and output transforms. Plain jax (autodiff for the gradients).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jax import lax
        >>> from jsnn.conv import winograd_conv
        >>> x, w = jax.random.normal(jax.random.key(0), (2, 4, 6, 3)), jax.random.normal(jax.random.key(1), (3, 3, 3, 5))
        >>> ref = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        >>> bool(jnp.allclose(winograd_conv(x, w), ref, atol=1e-5))
        True
    """
    N, H, W, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    u = [t.reshape(N * (H // 2) * (W // 2), -1) for r in _bt(_tile_parts(xp, 1, H // 2))
         for t in _bt(_tile_parts(r, 2, W // 2))]  # index 4a + b: tile row a, column b
    g = jnp.asarray(_WINOGRAD_G, w.dtype)
    wt = jnp.einsum("ak,klio,bl->abio", g, w, g, precision=lax.Precision.HIGHEST).reshape(16, *w.shape[2:])
    m = [u[p] @ wt[p] for p in range(16)]  # 16 separate products (one batched dot was slower here)
    cols = [_at(tuple(m[4 * a + b] for b in range(4))) for a in range(4)]  # Aᵀ over the columns b
    y = [_at(tuple(cols[a][j] for a in range(4))) for j in range(2)]  # then over the rows a: y[j][i]
    y = jnp.stack([jnp.stack([y[j][i] for j in range(2)], 1) for i in range(2)], 1)  # [T, 2 (i), 2 (j), C_out]
    return y.reshape(N, H // 2, W // 2, 2, 2, -1).transpose(0, 1, 3, 2, 4, 5).reshape(N, H, W, -1)


DENSE_MIN_WEIGHTS = 1 << 20  # kernels from this many weights up take dense_dot_general's CPU backward


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """``lax.dot_general`` for a dense layer, ``y = x·W``, whose input gradient is ``(W·gᵀ)ᵀ``, not ``g·Wᵀ``.

    XLA CPU's (Eigen) product with a transposed right operand, ``g·Wᵀ`` (W ``[in, out]`` contracted
    on its minor axis), ran 4–5× slower than the same product untransposed when W is large and the
    batch small: ``[128, 4096]·[8192, 4096]ᵀ`` 273 ms against 56 ms for ``W·gᵀ`` (``[8192, 128]``)
    and its small transpose (idle 2-core AMD EPYC, 2026-12-08); VGG-11's classifier (8192 → 4096 → 4096) is where a CIFAR training step
    and attack spend it. XLA folds ``transpose(W·gᵀ)`` back into ``g·Wᵀ``, so the product is
    materialized first (``optimization_barrier``). Taken on the CPU backend for a 2-D kernel of at
    least :data:`DENSE_MIN_WEIGHTS` weights contracted with the last axis of ``x`` (``flax.linen.Dense``'s
    dimension numbers), default output type; otherwise ``lax.dot_general`` as is. The forward and the
    kernel gradient ``xᵀ·g`` are lax's; the input gradient is the same sums, in another order
    (float rounding). Reverse mode only (as :func:`conv_general_dilated`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jax import lax
        >>> from jsnn.conv import dense_dot_general
        >>> x, w = jnp.ones((3, 4)), jnp.arange(8.0).reshape(4, 2)
        >>> dn = (((1,), (0,)), ((), ()))
        >>> f = lambda dot: jax.grad(lambda x, w: dot(x, w, dn).sum(), (0, 1))(x, w)
        >>> all(bool(jnp.all(a == b)) for a, b in zip(f(dense_dot_general), f(lax.dot_general)))
        True
    """
    (lc, rc), (lb, rb) = dimension_numbers
    dense = (tuple(lc), tuple(rc), tuple(lb), tuple(rb)) == ((lhs.ndim - 1,), (0,), (), ())
    if (jax.default_backend() != "cpu" or rhs.ndim != 2 or not dense or preferred_element_type is not None
            or math.prod(rhs.shape) < DENSE_MIN_WEIGHTS):
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
    return _dense(precision, lhs, rhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _dense(precision, lhs, rhs):
    return lax.dot_general(lhs, rhs, (((lhs.ndim - 1,), (0,)), ((), ())), precision=precision)


def _dense_fwd(precision, lhs, rhs):
    return _dense(precision, lhs, rhs), (lhs, rhs)


def _dense_bwd(precision, residuals, g):
    lhs, rhs = residuals
    x2, g2 = lhs.reshape(-1, lhs.shape[-1]), g.reshape(-1, g.shape[-1])
    d_x = lax.optimization_barrier(lax.dot_general(rhs, g2, (((1,), (1,)), ((), ())), precision=precision))
    d_w = lax.dot_general(x2, g2, (((0,), (0,)), ((), ())), precision=precision)
    return d_x.T.reshape(lhs.shape), d_w


_dense.defvjp(_dense_fwd, _dense_bwd)
