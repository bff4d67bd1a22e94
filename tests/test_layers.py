"""Tests for jsnn.layers: pooling, flax's values with a backward XLA CPU runs fast."""

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
        assert "reduce_window" not in jax.jit(ours).lower(x).as_text(), name


def test_pools_with_overlapping_windows_or_padding_are_flax_s():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    np.testing.assert_array_equal(layers.avg_pool(x, (2, 2), (1, 1)), nn.avg_pool(x, (2, 2), (1, 1)))
    pad = ((1, 1), (1, 1))
    np.testing.assert_array_equal(layers.sum_pool(x, (2, 2), None, pad),
                                  nn.pool(x, 0.0, lax.add, (2, 2), (2, 2), pad))
