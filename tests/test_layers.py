"""Tests for jsnn.layers: pooling and BatchNorm, flax's values with backwards XLA CPU runs fast."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jsnn import layers

# (input shape, window): NHWC tiling and non-tiling sizes (VALID drops the remainder), a 3-D lead.
POOL_CASES = [((8, 8, 8, 4), (2, 2)), ((3, 7, 5, 2), (2, 2)), ((2, 3, 4, 6, 5), (2, 3)), ((4, 9, 3), (3,))]


@pytest.mark.parametrize("shape,window", POOL_CASES)
def test_pools_equal_flax_bit_for_bit_values_and_gradients(shape, window):
    x = jax.random.normal(jax.random.key(0), shape) * 3.0
    pairs = {"avg": (lambda a: layers.avg_pool(a, window), lambda a: nn.avg_pool(a, window, window)),
             "sum": (lambda a: layers.sum_pool(a, window), lambda a: nn.pool(a, 0.0, lax.add, window, window, "VALID"))}
    for name, (ours, ref) in pairs.items():
        y, y_ref = jax.jit(ours)(x), jax.jit(ref)(x)
        np.testing.assert_array_equal(y, y_ref, err_msg=name)
        g = jax.random.normal(jax.random.key(1), y.shape)
        vjp = lambda f: jax.jit(lambda a, c: jax.vjp(f, a)[1](c)[0])
        np.testing.assert_array_equal(vjp(ours)(x, g), vjp(ref)(x, g), err_msg=name)
        backward = lambda f: str(jax.make_jaxpr(jax.vjp(f, x)[1])(g))  # the transpose alone
        assert "reduce_window" not in backward(ours) and "reduce_window" in backward(ref), name


def test_pools_with_overlapping_windows_or_padding_are_flax_s():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    np.testing.assert_array_equal(layers.avg_pool(x, (2, 2), (1, 1)), nn.avg_pool(x, (2, 2), (1, 1)))
    pad = ((1, 1), (1, 1))  # strides=None means the window, as for tiling pools
    np.testing.assert_array_equal(layers.sum_pool(x, (2, 2), None, pad),
                                  nn.pool(x, 0.0, lax.add, (2, 2), (2, 2), pad))
    np.testing.assert_array_equal(layers.avg_pool(x, (2, 2), None, pad), nn.avg_pool(x, (2, 2), (2, 2), pad))


def _bn_pair(train: bool, **kw):
    cfg = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5, **kw)
    return layers.BatchNorm(**cfg), nn.BatchNorm(**cfg)


def _bn_variables(ref, x):
    """flax's initial variables, moved off γ=1, β=0, μ=0, σ²=1 so every term counts."""
    v = ref.init(jax.random.key(0), x)
    key = jax.random.key(3)
    params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(key, a.shape, a.dtype), v["params"])
    stats = jax.tree.map(lambda a: 1.5 * a + 0.1, v["batch_stats"])
    return {"params": params, "batch_stats": stats}


@pytest.mark.parametrize("shape", [(16, 6, 6, 8), (64, 5, 3), (32, 7)])
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_forward_and_statistics_are_flax_bit_for_bit(shape, train):
    ours, ref = _bn_pair(train)
    assert isinstance(ours, nn.BatchNorm)  # NIR export folds it as flax's
    x = 2.0 * jax.random.normal(jax.random.key(1), shape) + 0.5
    v = _bn_variables(ref, x)
    assert jax.tree.structure(ours.init(jax.random.key(0), x)) == jax.tree.structure(v)
    (y, s), (y_ref, s_ref) = (jax.jit(lambda v, x, m=m: m.apply(v, x, mutable=["batch_stats"]))(v, x)
                              for m in (ours, ref))
    np.testing.assert_array_equal(y, y_ref)
    for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(s_ref)):
        np.testing.assert_array_equal(a, b)


def test_normalize_backward_is_autodiff_s_in_float64():
    """The hand-written backward of (x − μ)·m + β (sums as dots) against autodiff of the formula."""
    jax.config.update("jax_enable_x64", True)
    try:
        k = jax.random.split(jax.random.key(0), 5)
        x = jax.random.normal(k[0], (20, 6), jnp.float64)
        mean, mul, bias = (jax.random.normal(k[i], (6,), jnp.float64) for i in (1, 2, 3))
        c = jax.random.normal(k[4], x.shape, jnp.float64)
        plain = lambda x, mean, mul, bias: (x - mean) * mul + bias
        loss = lambda f: (lambda *a: (jnp.tanh(f(*a)) * c).sum())
        args = (x, mean, mul, bias)
        np.testing.assert_array_equal(layers._normalize_channels(*args), plain(*args))
        got = jax.grad(loss(layers._normalize_channels), argnums=(0, 1, 2, 3))(*args)
        want = jax.grad(loss(plain), argnums=(0, 1, 2, 3))(*args)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        # second order (SR's input-gradient penalty differentiates a gradient)
        pen = lambda f: (lambda *a: (jax.grad(loss(f))(*a) ** 2).sum())
        got2 = jax.grad(pen(layers._normalize_channels), argnums=(0, 1, 2, 3))(*args)
        want2 = jax.grad(pen(plain), argnums=(0, 1, 2, 3))(*args)
        for a, b in zip(got2, want2):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_gradients_are_flax_s_to_float_rounding(train):
    ours, ref = _bn_pair(train)
    x = 2.0 * jax.random.normal(jax.random.key(1), (16, 4, 4, 8)) + 0.5
    v = _bn_variables(ref, x)
    loss = lambda m: (lambda v, x: (m.apply(v, x, mutable=["batch_stats"])[0] ** 3).sum())
    got = jax.grad(loss(ours), argnums=(0, 1))(v, x)
    want = jax.grad(loss(ref), argnums=(0, 1))(v, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))
    # the training backward sums over N as dot products (none in flax's)
    grad_hlo = lambda m: jax.jit(jax.grad(loss(m), argnums=1)).lower(v, x).as_text()
    if train:
        assert grad_hlo(ours).count("dot_general") >= 2 and grad_hlo(ref).count("dot_general") == 0


def test_batch_norm_other_settings_are_flax_s():
    x = jax.random.normal(jax.random.key(1), (8, 3))
    for kw in (dict(use_scale=False), dict(use_bias=False), dict(use_fast_variance=False)):
        ours, ref = _bn_pair(True, **kw)
        v = ref.init(jax.random.key(0), x)
        np.testing.assert_array_equal(ours.apply(v, x, mutable=["batch_stats"])[0],
                                      ref.apply(v, x, mutable=["batch_stats"])[0])
    mask = jnp.arange(8)[:, None] < 5
    ours, ref = _bn_pair(True)
    v = ref.init(jax.random.key(0), x)
    np.testing.assert_array_equal(ours.apply(v, x, mask=mask, mutable=["batch_stats"])[0],
                                  ref.apply(v, x, mask=mask, mutable=["batch_stats"])[0])
