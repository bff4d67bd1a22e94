"""Independent checks of jsnn.encoding: sample moments with tolerances from the sampling std, gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn import encoding

Z = 5.0  # tolerance in standard errors (false-failure odds ~1e-6 per check; draws are seeded anyway)


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))


# ----------------------------------------------------------------------------- direct


def test_direct_shapes_values_and_gradient():
    x = jnp.arange(2 * 3 * 3 * 1, dtype=jnp.float32).reshape(2, 3, 3, 1) / 20
    for T in (1, 4):
        s = encoding.direct(x, T)
        assert s.shape == (T, 2, 3, 3, 1) and s.dtype == x.dtype
        for t in range(T):
            np.testing.assert_array_equal(np.asarray(s[t]), np.asarray(x))
    g = jax.grad(lambda x: encoding.direct(x, 5).sum())(x)
    np.testing.assert_array_equal(np.asarray(g), np.full(x.shape, 5.0))
    np.testing.assert_array_equal(np.asarray(encoding.encode("direct", x, 3)), np.asarray(encoding.direct(x, 3)))


# ----------------------------------------------------------------------------- poisson

P = np.array([0.0, 0.02, 0.3, 0.5, 0.77, 1.0], np.float32)


def _poisson_draws(T=8, B=4000, seed=0, **kw):
    x = jnp.broadcast_to(jnp.asarray(P), (B, P.size))
    return np.asarray(encoding.poisson(x, T, jax.random.key(seed), **kw), np.float64)  # [T, B, P]


def test_poisson_mean_and_variance_per_pixel():
    T, B = 8, 4000
    s = _poisson_draws(T, B)
    assert set(np.unique(s)) <= {0.0, 1.0}
    flat = s.reshape(T * B, P.size)
    n = flat.shape[0]
    p = P.astype(np.float64)
    mean, var = flat.mean(0), flat.var(0, ddof=1)
    # mean: binomial std sqrt(p(1−p)/n)
    np.testing.assert_array_less(np.abs(mean - p), Z * np.sqrt(p * (1 - p) / n) + 1e-12)
    # variance x(1−x): for Bernoulli draws var̂ = n/(n−1)·p̂(1−p̂), and with |p̂ − p| ≤ δ = Z·sqrt(p(1−p)/n)
    # |p̂(1−p̂) − p(1−p)| ≤ |1−2p|·δ + δ² (the second-order term matters at p = 1/2).
    d = Z * np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_less(np.abs(var - p * (1 - p)), np.abs(1 - 2 * p) * d + d * d + p * (1 - p) / (n - 1) + 1e-12)
    # x=0 never fires, x=1 always fires
    assert flat[:, 0].max() == 0.0 and flat[:, -1].min() == 1.0
    # T-step rate: per-pixel std sqrt(x(1−x)/T) across examples (the smoothing view of METHODS.md)
    rate = s.mean(0)  # [B, P]
    rate_var = rate.var(0, ddof=1)
    want = p * (1 - p) / T
    # std of a sample variance of a (near-normal) statistic ≈ want·sqrt(2/(B−1)); be generous for skew
    np.testing.assert_array_less(np.abs(rate_var - want), Z * want * np.sqrt(3.0 / B) + 1e-12)


def test_poisson_independent_over_steps_and_examples():
    T, B = 8, 4000
    s = _poisson_draws(T, B, seed=1)
    j = 3  # pixel with x = 0.5
    tol = Z / np.sqrt(B)
    for t in range(T - 1):
        assert abs(_corr(s[t, :, j], s[t + 1, :, j])) < tol  # fresh per step
    assert abs(_corr(s[:, 0::2, j].ravel(), s[:, 1::2, j].ravel())) < Z / np.sqrt(T * B / 2)  # fresh per example
    # identical images in a batch do not get identical spike trains
    assert not np.array_equal(s[:, 0], s[:, 1])


def test_poisson_keys_reproduce_and_differ():
    x = jnp.full((3, 5), 0.5)
    a = encoding.poisson(x, 6, jax.random.key(7))
    b = encoding.poisson(x, 6, jax.random.key(7))
    c = encoding.poisson(x, 6, jax.random.key(8))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    np.testing.assert_array_equal(np.asarray(encoding.encode("poisson", x, 6, jax.random.key(7))), np.asarray(a))


def test_poisson_gradients():
    x = jnp.asarray([0.1, 0.5, 0.9, 0.0])
    key = jax.random.key(3)
    T = 5
    st = lambda x: encoding.poisson(x, T, key, gradient="straight_through")
    none = lambda x: encoding.poisson(x, T, key)
    # forward identical, exactly binary
    np.testing.assert_array_equal(np.asarray(st(x)), np.asarray(none(x)))
    assert set(np.unique(np.asarray(st(x)))) <= {0.0, 1.0}
    # straight-through: ∂s_t/∂x = I for every step
    J = np.asarray(jax.jacobian(st)(x))  # [T, 4, 4]
    np.testing.assert_array_equal(J, np.broadcast_to(np.eye(4), (T, 4, 4)))
    # the true gradient is zero
    np.testing.assert_array_equal(np.asarray(jax.jacobian(none)(x)), np.zeros((T, 4, 4)))
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda x: none(x).sum())(x)), np.zeros(4))


# ----------------------------------------------------------------------------- rsc


def test_rsc_I_noise_repeated_over_T_with_std_sigma():
    sigma, T, B = 0.3, 6, 2000
    x = jnp.full((B, 8), 0.4)
    out = np.asarray(encoding.rsc(x, T, jax.random.key(0), sigma=sigma), np.float64)
    assert out.shape == (T, B, 8)
    for t in range(1, T):
        np.testing.assert_array_equal(out[t], out[0])  # RSC-I: one ε for all steps
    eps = (out[0] - 0.4).ravel()
    n = eps.size
    assert abs(eps.mean()) < Z * sigma / np.sqrt(n)
    assert abs(eps.std(ddof=1) - sigma) < Z * sigma / np.sqrt(2 * n)
    # fresh per example: identical images, uncorrelated noise
    e = out[0] - 0.4
    assert abs(_corr(e[0::2].ravel(), e[1::2].ravel())) < Z / np.sqrt(n / 2)
    assert not np.array_equal(e[0], e[1])


def test_rsc_II_fresh_noise_per_step():
    sigma, T, B = 0.25, 4, 3000
    x = jnp.full((B, 4), 0.6)
    out = np.asarray(encoding.rsc(x, T, jax.random.key(1), sigma=sigma, per_step=True), np.float64)
    eps = out - 0.6  # [T, B, 4]
    n = eps[0].size
    for t in range(T):
        assert abs(eps[t].std(ddof=1) - sigma) < Z * sigma / np.sqrt(2 * n)
        assert abs(eps[t].mean()) < Z * sigma / np.sqrt(n)
        for u in range(t + 1, T):
            assert abs(_corr(eps[t].ravel(), eps[u].ravel())) < Z / np.sqrt(n)
    # the time-average noise has std σ/√T (the RSC-II radius argument)
    avg = eps.mean(0).ravel()
    assert abs(avg.std(ddof=1) - sigma / np.sqrt(T)) < Z * (sigma / np.sqrt(T)) / np.sqrt(2 * avg.size)


def test_rsc_gradient_identity_sigma0_and_clip():
    x = jnp.asarray([[0.0, 0.2, 0.5, 0.95, 1.0]])
    key = jax.random.key(4)
    for per_step in (False, True):
        J = np.asarray(jax.jacobian(lambda x: encoding.rsc(x, 3, key, sigma=0.1, per_step=per_step))(x))
        np.testing.assert_array_equal(J, np.broadcast_to(np.eye(5).reshape(1, 5, 5), (3, 5, 5)).reshape(3, 1, 5, 1, 5))
        np.testing.assert_array_equal(np.asarray(encoding.rsc(x, 3, key, sigma=0.0, per_step=per_step)),
                                      np.broadcast_to(np.asarray(x), (3, 1, 5)))
        raw = np.asarray(encoding.rsc(x, 3, key, sigma=0.8, per_step=per_step))
        clipped = np.asarray(encoding.rsc(x, 3, key, sigma=0.8, per_step=per_step, clip=True))
        assert raw.min() < 0 or raw.max() > 1  # the noise does leave [0, 1] ...
        assert clipped.min() >= 0 and clipped.max() <= 1  # ... and clip keeps it inside
        np.testing.assert_array_equal(clipped, np.clip(raw, 0, 1))
    np.testing.assert_array_equal(
        np.asarray(encoding.encode("rsc", x, 3, key, sigma=0.1, per_step=True)),
        np.asarray(encoding.rsc(x, 3, key, sigma=0.1, per_step=True)))


def test_stochastic_encoders_jit_with_traced_sigma():
    x = jnp.full((2, 3), 0.5)
    f = jax.jit(lambda x, key, sigma: encoding.rsc(x, 4, key, sigma=sigma, per_step=True))
    np.testing.assert_allclose(np.asarray(f(x, jax.random.key(0), 0.2)),
                               np.asarray(encoding.rsc(x, 4, jax.random.key(0), sigma=0.2, per_step=True)), rtol=1e-6)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("T", [0, -1, 2.0, True, None])
def test_bad_T(T):
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"T \(time steps\)"):
        encoding.direct(x, T)
    with pytest.raises(ValueError, match=r"T \(time steps\)"):
        encoding.poisson(x, T, jax.random.key(0))
    with pytest.raises(ValueError, match=r"T \(time steps\)"):
        encoding.rsc(x, T, jax.random.key(0), sigma=0.1)


def test_unknown_encoder_and_missing_key():
    with pytest.raises(ValueError, match=r"unknown name 'rate'.*direct, poisson, rsc"):
        encoding.encode("rate", jnp.zeros(3), 4)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        encoding.encode("poisson", jnp.zeros(3), 4)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        encoding.encode("rsc", jnp.zeros(3), 4, sigma=0.1)


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf")])
def test_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        encoding.rsc(jnp.zeros(3), 4, jax.random.key(0), sigma=sigma)


def test_bad_poisson_gradient():
    with pytest.raises(ValueError, match=r"gradient='bpda'.*none, straight_through"):
        encoding.poisson(jnp.zeros(3), 4, jax.random.key(0), gradient="bpda")
