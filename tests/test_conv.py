"""Tests for jsnn.conv (and the jsnn.layers.Conv module): convolutions XLA CPU runs fast, lax's values."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jsnn import conv, layers, models
from jsnn.data import digits
from jsnn.models import small

# (lhs shape, rhs shape, conv keyword arguments): strides, dilations, explicit and string
# padding, other dimension orders, 1-D, and a grouped convolution (taken by lax as is).
CASES = {
    "nhwc_same": ((2, 6, 6, 4), (3, 3, 4, 4), dict(window_strides=(1, 1), padding="SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "strided_dilated_valid": ((2, 9, 8, 3), (3, 2, 3, 5), dict(window_strides=(2, 1), padding="VALID",
                                                               rhs_dilation=(2, 1),
                                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "explicit_pad_lhs_dilation": ((1, 5, 5, 2), (3, 3, 2, 3), dict(window_strides=(1, 1),
                                                                   padding=[(1, 2), (0, 1)], lhs_dilation=(2, 1),
                                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "nchw_oihw": ((2, 3, 7, 7), (4, 3, 3, 3), dict(window_strides=(2, 2), padding="SAME",
                                                   dimension_numbers=("NCHW", "OIHW", "NCHW"))),
    "conv1d": ((2, 10, 3), (5, 3, 2), dict(window_strides=(1,), padding="SAME",
                                           dimension_numbers=("NWC", "WIO", "NWC"))),
    # few input channels (C_in · window <= conv.FEW_CHANNELS_MAX_K): the few-channel path
    "patch_nchw_explicit_pad": ((2, 1, 7, 6), (4, 1, 3, 2), dict(window_strides=(1, 1), padding=[(2, 0), (1, -1)],
                                                               dimension_numbers=("NCHW", "OIHW", "NCHW"))),
    "patch_1x1_valid": ((3, 5, 5, 2), (1, 1, 2, 3), dict(window_strides=(1, 1), padding="VALID",
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "patch_grey_same": ((2, 6, 5, 1), (3, 3, 1, 4), dict(window_strides=(1, 1), padding="SAME",
                                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "grouped": ((2, 6, 6, 4), (3, 3, 2, 6), dict(window_strides=(1, 1), padding="SAME", feature_group_count=2,
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    # wide 3×3 (C_in, C_out >= conv.WINOGRAD_MIN_CHANNELS, even H and W): Winograd F(2×2, 3×3)
    "winograd_same": ((2, 4, 6, 256), (3, 3, 256, 256), dict(window_strides=(1, 1), padding="SAME",
                                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "winograd_explicit_pad": ((1, 2, 2, 256), (3, 3, 256, 320), dict(window_strides=(1, 1), padding=[(1, 1), (1, 1)],
                                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "wide_odd_width": ((1, 4, 5, 256), (3, 3, 256, 256), dict(window_strides=(1, 1), padding="SAME",
                                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "wide_large_map": ((1, 10, 8, 256), (3, 3, 256, 256), dict(window_strides=(1, 1), padding="SAME",
                                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))),
}


def _convolutions_in(case) -> int:
    """How many convolutions the lowered program of ``CASES[case]`` holds."""
    lhs_shape, rhs_shape, kw = CASES[case]
    f = lambda l, r: conv.conv_general_dilated(l, r, **kw)
    return jax.jit(f).lower(jnp.ones(lhs_shape), jnp.ones(rhs_shape)).as_text().count("convolution")


def test_few_channel_and_winograd_paths_are_taken_where_they_apply_only():
    """The cases above cover every path: the stride-1 convolutions with C_in · window <= 9 run as
    K multiply-adds, the wide 3×3 ones on small maps with even H, W as Winograd products (no
    convolution in the program for either), the others as XLA convolutions."""
    patch = {c for c in CASES if _convolutions_in(c) == 0}
    assert patch == {"patch_nchw_explicit_pad", "patch_1x1_valid", "patch_grey_same", "winograd_same",
                     "winograd_explicit_pad"}, patch


def test_hand_written_paths_are_taken_on_the_cpu_backend_only(monkeypatch):
    """On a GPU or TPU backend every convolution stays the backend's own (cuDNN has its own Winograd)."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert all(_convolutions_in(c) > 0 for c in ("patch_grey_same", "winograd_same")), "a hand-written path on gpu"


@pytest.mark.parametrize("case", sorted(CASES))
def test_conv_values_and_gradients_are_lax(case):
    """Forward, input and kernel gradients equal lax.conv_general_dilated's (float64)."""
    jax.config.update("jax_enable_x64", True)
    try:
        lhs_shape, rhs_shape, kw = CASES[case]
        k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
        lhs = jax.random.normal(k1, lhs_shape, jnp.float64)
        rhs = jax.random.normal(k2, rhs_shape, jnp.float64)
        if case.startswith(("winograd", "wide")):  # 1/√fan-in: unit-scale outputs, where tanh is not saturated
            rhs = rhs / np.sqrt(rhs.size / rhs_shape[-1])
        out_shape = lax.conv_general_dilated(lhs, rhs, **kw).shape
        probe = jax.random.normal(k3, out_shape, jnp.float64)  # a generic cotangent

        def loss(conv):
            return lambda l, r: jnp.sum(jnp.tanh(conv(l, r, **kw)) * probe)

        ours = jax.value_and_grad(loss(conv.conv_general_dilated), argnums=(0, 1))(lhs, rhs)
        ref = jax.value_and_grad(loss(lax.conv_general_dilated), argnums=(0, 1))(lhs, rhs)
        np.testing.assert_allclose(ours[0], ref[0], rtol=1e-13)
        for a, b in zip(ours[1], ref[1]):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        # second order (SR's input-gradient penalty differentiates the input gradient)
        gx = lambda conv: lambda r: jnp.sum(jax.grad(loss(conv))(lhs, r) ** 2)
        np.testing.assert_allclose(jax.grad(gx(conv.conv_general_dilated))(rhs),
                                   jax.grad(gx(lax.conv_general_dilated))(rhs), rtol=1e-11, atol=1e-11)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_conv_module_is_flax_conv_with_the_same_parameters():
    x = jnp.ones((2, 5, 5, 3))
    ours, ref = layers.Conv(4, (3, 3), use_bias=False), nn.Conv(4, (3, 3), use_bias=False)
    assert isinstance(ours, nn.Conv)  # NIR export and parameter paths see a flax Conv
    v = ref.init(jax.random.key(0), x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(v)
    np.testing.assert_array_equal(ours.apply(v, x), ref.apply(v, x))


def _kernel_labels(hlo: str) -> set:
    return set(re.findall(r"convolution\(.*?dim_labels=\w+?_(\w+)->", hlo))


def test_input_gradient_inside_a_loop_compiles_to_canonical_convolutions(monkeypatch):
    """APGD-style loop of input gradients on the digits model: every convolution XLA CPU runs has
    Eigen's canonical kernel labels (``01io``); with flax's own conv the loop body keeps ``01oi``
    convolutions (XLA canonicalizes top-level convolutions only), the ~3.5× slower generic kernel."""
    x, y = map(jnp.asarray, digits.load("test"))
    x, y = x[:4], y[:4]
    model = models.get_model("digits_conv", T=2)
    variables = model.init(jax.random.key(0), x)

    def loop_hlo():
        fn = models.logits_fn(model, variables)

        def step(i, xx):
            g = jax.grad(lambda z: -jnp.take_along_axis(jax.nn.log_softmax(fn(z, None)), y[:, None], 1).sum())(xx)
            return jnp.clip(xx + 0.01 * jnp.sign(g), 0.0, 1.0)

        return jax.jit(lambda xx: lax.fori_loop(0, 3, step, xx)).lower(x).compile().as_text()

    ours = _kernel_labels(loop_hlo())
    assert ours == {"01io"}, ours
    monkeypatch.setattr(small, "Conv", nn.Conv)  # flax's own (lax.conv_general_dilated)
    plain = _kernel_labels(loop_hlo())
    assert plain - {"01io"}, f"XLA now canonicalizes convolutions inside loops ({plain}): layers.Conv may go"


# ----------------------------------------------------------------------------- dense


def _dense_path_taken(lhs_shape, rhs_shape, dims=None) -> bool:
    """Whether ``dense_dot_general`` lowers with its barrier (its hand-written backward)."""
    dims = dims or (((len(lhs_shape) - 1,), (0,)), ((), ()))
    f = lambda x, w, g: jax.vjp(lambda x, w: conv.dense_dot_general(x, w, dims), x, w)[1](g)
    out = jax.eval_shape(lambda x, w: lax.dot_general(x, w, dims), jnp.ones(lhs_shape), jnp.ones(rhs_shape))
    text = jax.jit(f).lower(jnp.ones(lhs_shape), jnp.ones(rhs_shape), jnp.ones(out.shape)).as_text()
    return "optimization_barrier" in text


def test_dense_path_is_taken_for_large_kernels_on_the_cpu_only(monkeypatch):
    big = (conv.DENSE_MIN_WEIGHTS // 256, 256)
    assert _dense_path_taken((4, big[0]), big)
    assert _dense_path_taken((2, 3, big[0]), big)  # leading batch axes
    assert not _dense_path_taken((4, 64), (64, 32))  # small kernel: lax's product
    assert not _dense_path_taken((big[1], 4), big, (((0,), (1,)), ((), ())))  # other dimension numbers
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert not _dense_path_taken((4, big[0]), big)


@pytest.mark.parametrize("lhs_shape", [(5, 1024), (2, 3, 1024)])
def test_dense_values_gradients_and_second_order_are_lax(lhs_shape, monkeypatch):
    """Forward, input and kernel gradients and the gradient of the input gradient's norm (SR's double
    backward) equal lax.dot_general's (float64), with the hand-written backward taken."""
    monkeypatch.setattr(conv, "DENSE_MIN_WEIGHTS", 1024 * 48)
    jax.config.update("jax_enable_x64", True)
    try:
        k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
        x = jax.random.normal(k1, lhs_shape, jnp.float64)
        w = jax.random.normal(k2, (1024, 48), jnp.float64) / 32
        probe = jax.random.normal(k3, lhs_shape[:-1] + (48,), jnp.float64)
        dims = (((len(lhs_shape) - 1,), (0,)), ((), ()))
        assert _dense_path_taken(lhs_shape, w.shape)

        def loss(dot):
            return lambda x, w: jnp.sum(jnp.tanh(dot(x, w, dims)) * probe)

        def penalty(dot):  # ‖∇ₓ loss‖² as a function of w
            return lambda w: jnp.sum(jax.grad(loss(dot))(x, w) ** 2)

        ours = jax.value_and_grad(loss(conv.dense_dot_general), argnums=(0, 1))(x, w)
        ref = jax.value_and_grad(loss(lax.dot_general), argnums=(0, 1))(x, w)
        np.testing.assert_allclose(ours[0], ref[0], rtol=1e-13)
        for a, b in zip(ours[1], ref[1]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        second = jax.grad(penalty(conv.dense_dot_general))(w), jax.grad(penalty(lax.dot_general))(w)
        np.testing.assert_allclose(*second, rtol=1e-11, atol=1e-13)
        assert float(jnp.abs(second[0]).max()) > 0
    finally:
        jax.config.update("jax_enable_x64", False)


def test_models_run_the_dense_layer():
    """Every model's dense layer is jsnn.layers.Dense (flax's, same parameter names) with the dense product."""
    model = small.DigitsConv(T=2)
    x = jnp.zeros((2, 8, 8, 1))
    v = jax.eval_shape(model.init, jax.random.key(0), x)
    assert {"Dense_0", "Dense_1"} <= set(v["params"])
    assert layers.Dense.func is nn.Dense and layers.Dense.keywords == {"dot_general": conv.dense_dot_general}
    import inspect
    from jsnn.models import resnet, sequential, vgg, wrappers
    for module in (small, vgg, resnet, sequential, wrappers):
        assert "nn.Dense(" not in inspect.getsource(module), module.__name__
