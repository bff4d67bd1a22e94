"""Tests of jsnn.certify: Cohen et al.'s PREDICT / CERTIFY against closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jsnn import certify
from jsnn.layers import EncoderConfig
from jsnn.models import DigitsMLP, logits_fn as model_logits_fn

SIGMA = 0.5
W = np.array([0.6, -0.8, 0.0], np.float32)  # ‖w‖ = 1
B = 0.1


def linear(x, key):
    """Two-class linear base classifier: logits [w·x + b, 0]."""
    del key
    z = x @ jnp.asarray(W) + B
    return jnp.stack([z, jnp.zeros_like(z)], -1)


def linear_rsc_ii(T):
    """The linear classifier behind an RSC-II encoder: T fresh draws x + ε_t, logits averaged over t."""

    def fn(x, key):
        eps = SIGMA * jax.random.normal(key, (T,) + x.shape, x.dtype)
        z = (x[None] + eps) @ jnp.asarray(W) + B
        return jnp.stack([z, jnp.zeros_like(z)], -1).mean(0)

    return fn


def margin(x):
    return float(np.asarray(x, np.float64) @ W.astype(np.float64) + B)


def band(p_true, n, alpha, sigma, steps=1, tail=1e-7):
    """Radii CERTIFY can return when n_A ~ Binom(n, p) lies in its central 1 − 2·tail interval."""
    lo, hi = stats.binom.ppf(tail, n, p_true), stats.binom.isf(tail, n, p_true)
    return [float(certify.certified_radius(certify.clopper_pearson_lower(k, n, alpha), sigma, steps))
            for k in (lo, hi)]


# --------------------------------------------------------------------------- Clopper–Pearson


def _cp_lower_bisection(k, n, alpha):
    """Independent: the p with P(Binom(n, p) ≥ k) = α, by bisection on the binomial tail."""
    if k == 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if stats.binom.sf(k - 1, n, mid) < alpha:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@pytest.mark.parametrize("k,n,alpha", [(0, 10, 0.05), (1, 10, 0.05), (7, 10, 0.001), (10, 10, 0.001),
                                       (50, 100, 0.01), (9_950, 10_000, 0.001), (99_990, 100_000, 0.001)])
def test_clopper_pearson_matches_binomial_tail(k, n, alpha):
    got = float(certify.clopper_pearson_lower(k, n, alpha))
    np.testing.assert_allclose(got, _cp_lower_bisection(k, n, alpha), rtol=1e-9, atol=1e-12)


def test_clopper_pearson_closed_forms():
    # k = n: P(all n successes) = p^n = α  →  p = α^(1/n).
    for n in (1, 5, 100, 100_000):
        np.testing.assert_allclose(certify.clopper_pearson_lower(n, n, 0.001), 0.001 ** (1 / n), rtol=1e-10)
    # Vectorized and monotone in k.
    lows = certify.clopper_pearson_lower(np.arange(101), 100, 0.01)
    assert lows[0] == 0.0 and np.all(np.diff(lows) > 0)
    with pytest.raises(ValueError, match="count"):
        certify.clopper_pearson_lower(11, 10, 0.01)


# ------------------------------------------------------------------ linear classifier, closed form


@pytest.mark.parametrize("x", [[0.3, -0.2, 5.0], [-0.5, 0.1, 0.0], [0.0, -0.2, 1.0]])
def test_linear_radius_within_binomial_band(x):
    # Smoothed p_A = Φ(|m| / (σ‖w‖)) with margin m = w·x + b; σ·Φ⁻¹(p_A) = |m| (the exact distance).
    n, alpha = 20_000, 0.001
    x = np.asarray(x, np.float32)
    m = margin(x)
    p_true = stats.norm.cdf(abs(m) / SIGMA)
    cert = certify.certify(linear, jnp.asarray(x), jax.random.key(1), sigma=SIGMA, n0=100, n=n, alpha=alpha,
                           batch_size=4096, image_ndim=1, return_certificate=True)
    assert cert.prediction == (0 if m > 0 else 1)
    lo, hi = band(p_true, n, alpha, SIGMA)
    assert lo <= cert.radius <= hi
    assert cert.radius <= abs(m) + 1e-6  # sound: never beyond the true distance to the boundary
    assert abs(cert.count / n - p_true) < 5 * math.sqrt(p_true * (1 - p_true) / n) + 1e-9
    expected = SIGMA * stats.norm.ppf(stats.beta.ppf(alpha, cert.count, n - cert.count + 1))
    np.testing.assert_allclose(cert.radius, expected, rtol=1e-12)


def test_abstains_on_the_decision_boundary():
    x = jnp.asarray([0.0, 0.125, 0.3])  # w·x + b = 0 → p_A = 1/2
    assert abs(margin(x)) < 1e-7
    pred, radius = certify.certify(linear, x, jax.random.key(2), sigma=SIGMA, n0=100, n=4_000, image_ndim=1)
    assert pred == certify.ABSTAIN and radius == 0.0
    assert certify.predict(linear, x, jax.random.key(3), sigma=SIGMA, n=4_000, image_ndim=1) == certify.ABSTAIN
    # Far from it, PREDICT answers.
    far = jnp.asarray([3.0, 0.0, 0.0])
    assert certify.predict(linear, far, jax.random.key(3), sigma=SIGMA, n=1_000, image_ndim=1) == 0


def test_predict_binomial_test():
    counts = np.array([[60, 40, 0], [0, 70, 30], [55, 0, 45], [100, 0, 0]])
    pvalues = [stats.binomtest(a, a + b).pvalue for a, b in [(60, 40), (70, 30), (55, 45), (100, 0)]]
    np.testing.assert_allclose(pvalues[:2], [0.0569, 7.85e-5], rtol=2e-3)
    assert certify.predict_from_counts(counts, alpha=0.001).tolist() == [-1, 1, -1, 0]
    assert certify.predict_from_counts(counts, alpha=0.1).tolist() == [0, 1, -1, 0]


def test_no_radius_when_lower_bound_below_half():
    rng = np.random.default_rng(0)
    n = 200
    n_a = rng.integers(0, n + 1, 500)
    counts = np.stack([n_a, n - n_a], -1)
    select = np.tile([[5, 1]], (500, 1))  # ĉ_A = class 0
    cert = certify.certify_from_counts(select, counts, sigma=0.25, alpha=0.001)
    below = cert.p_lower < 0.5
    assert below.any() and (~below).any()
    assert np.all(cert.prediction[below] == certify.ABSTAIN) and np.all(cert.radius[below] == 0)
    assert np.all(cert.prediction[~below] == 0) and np.all(cert.radius[~below] >= 0)
    np.testing.assert_allclose(cert.radius[~below], 0.25 * stats.norm.ppf(cert.p_lower[~below]))
    # Selection picks a class the estimation does not confirm → abstain.
    c = certify.certify_from_counts([0, 10], [190, 10], sigma=0.25)
    assert c.prediction == -1 and c.radius == 0 and c.top == 1


# ----------------------------------------------------------------------------------- RSC-II


def test_rsc_ii_radius_carries_sqrt_T():
    T, n, alpha = 4, 20_000, 0.001
    x = jnp.asarray([0.25, 0.0, 0.0])
    m = margin(x)  # 0.6·0.25 + 0.1 = 0.25
    fn = linear_rsc_ii(T)
    kw = dict(sigma=SIGMA, n0=100, n=n, alpha=alpha, noise="model", image_ndim=1, return_certificate=True)
    c_t = certify.certify(fn, x, jax.random.key(4), steps=T, **kw)
    c_1 = certify.certify(fn, x, jax.random.key(4), steps=1, **kw)
    assert c_t.prediction == 0 and c_t.count == c_1.count
    np.testing.assert_allclose(c_t.radius, c_1.radius / math.sqrt(T), rtol=1e-12)
    # The time average of T draws is one draw of std σ/√T: p_A = Φ(√T·m/σ).
    p_true = stats.norm.cdf(math.sqrt(T) * m / SIGMA)
    lo, hi = band(p_true, n, alpha, SIGMA, steps=T)
    assert lo <= c_t.radius <= hi
    assert c_t.radius <= m + 1e-6 < c_1.radius  # √T keeps it sound; steps=1 would overclaim
    with pytest.raises(ValueError, match="steps"):
        certify.certify(linear, x, jax.random.key(0), sigma=SIGMA, n=10, steps=T, image_ndim=1)


# ----------------------------------------------------------------------- sampling mechanics


def test_batch_equals_per_image_and_chunking_invariance():
    xs = jnp.asarray([[0.3, 0.0, 0.0], [-0.5, 0.1, 0.0], [-B, 0.0, 0.0], [0.0, -1.0, 2.0]])
    key = jax.random.key(5)
    kw = dict(sigma=SIGMA, n0=50, n=333, image_ndim=1, return_certificate=True)
    batch = certify.certify(linear, xs, key, batch_size=64, **kw)
    for i in range(xs.shape[0]):
        single = certify.certify(linear, xs[i], jax.random.fold_in(key, i), batch_size=7, **kw)
        assert (single.prediction, single.radius, single.count) == (
            batch.prediction[i], batch.radius[i], batch.count[i])
    per_image_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(4))
    again = certify.certify(linear, xs, per_image_keys, batch_size=1000, **kw)
    np.testing.assert_array_equal(again.count, batch.count)
    for bs in (1, 10, 333, 5000):  # n not divisible by the chunk: the last chunk is masked
        counts = certify.sample_counts(linear, xs, key, num=333, sigma=SIGMA, batch_size=bs, image_ndim=1)
        assert counts.shape == (4, 2) and np.all(np.asarray(counts).sum(-1) == 333)
        if bs == 1:
            first = np.asarray(counts)
        np.testing.assert_array_equal(counts, first)


def test_one_compile_per_configuration():
    xs = jnp.zeros((2, 3))
    certify.sample_counts(linear, xs, jax.random.key(0), num=17, sigma=0.3, batch_size=8, image_ndim=1)
    size = certify.smoothing._sample_counts._cache_size()
    for s in (0.3, 0.7):  # σ is traced, keys and images are arguments
        certify.sample_counts(linear, xs + 1, jax.random.key(9), num=17, sigma=s, batch_size=8, image_ndim=1)
    assert certify.smoothing._sample_counts._cache_size() == size


def test_model_noise_is_not_added_again():
    # A deterministic (direct-coded) SNN under noise="model": every sample gives the same class.
    model = DigitsMLP(num_classes=3, T=2, hidden=(8,))
    x = jax.random.uniform(jax.random.key(0), (2, 4, 4, 1))
    variables = model.init(jax.random.key(1), x)
    fn = model_logits_fn(model, variables)
    counts = certify.sample_counts(fn, x, jax.random.key(2), num=40, sigma=0.5, noise="model", batch_size=16)
    assert np.all(np.asarray(counts).max(-1) == 40)
    noisy = certify.sample_counts(fn, x, jax.random.key(2), num=40, sigma=5.0, noise="input", batch_size=16)
    assert np.asarray(noisy).max() < 40  # input noise of σ = 5 changes some decisions
    # An RSC-coded SNN smooths itself.
    rsc = model.clone(encoder=EncoderConfig(name="rsc", sigma=0.25, per_step=True))
    assert certify.model_smoothing(rsc) == ("model", 0.25, 2)
    assert certify.model_smoothing(rsc.clone(encoder=EncoderConfig(name="rsc", sigma=0.25))) == ("model", 0.25, 1)
    assert certify.model_smoothing(model) is None
    frames = EncoderConfig(name="frames_rsc", sigma=0.5, per_step=True)  # fresh noise on every frame coordinate
    assert certify.model_smoothing(model.clone(encoder=frames)) == ("model", 0.5, 1)
    assert certify.model_smoothing(model.clone(encoder=frames._replace(per_step=False))) is None
    pred, radius = certify.certify(model_logits_fn(rsc, variables), x, jax.random.key(3), sigma=0.25, n0=20,
                                   n=60, batch_size=32, steps=2, noise="model")
    assert pred.shape == (2,) and radius.shape == (2,) and np.all(radius >= 0)


def test_validation_errors_name_the_field():
    x = jnp.zeros(3)
    k = jax.random.key(0)
    kw = dict(image_ndim=1)
    cases = [(dict(sigma=0.0), "sigma"), (dict(sigma=float("nan")), "sigma"), (dict(sigma=0.1, n0=0), "n0"),
             (dict(sigma=0.1, n=0), "n"), (dict(sigma=0.1, alpha=1.0), "alpha"),
             (dict(sigma=0.1, batch_size=0), "batch_size"), (dict(sigma=0.1, noise="both"), "noise"),
             (dict(sigma=0.1, steps=0), "steps"), (dict(sigma=0.1, n=2.5), "n")]
    for extra, field in cases:
        with pytest.raises(ValueError, match=field):
            certify.certify(linear, x, k, **kw, **extra)
    with pytest.raises(ValueError, match="rank"):
        certify.certify(linear, jnp.zeros((1, 1, 3)), k, sigma=0.1, n=10, **kw)
    with pytest.raises(ValueError, match="key"):
        certify.certify(linear, jnp.zeros((3, 3)), jax.random.split(k, 2), sigma=0.1, n=10, **kw)
    with pytest.raises(ValueError, match="K >= 2"):
        certify.certify(lambda x, key: x[:, :1], x, k, sigma=0.1, n=10, **kw)


# ---------------------------------------------------------------------------------- summary


def test_certified_accuracy_and_acr(tmp_path):
    radius = np.array([0.0, 0.3, 0.6, 1.2, 0.8])
    correct = np.array([True, True, True, True, False])
    np.testing.assert_allclose(certify.certified_accuracy(radius, correct), [0.8, 0.6, 0.4, 0.2, 0.2])
    assert certify.average_certified_radius(radius, correct) == pytest.approx((0.3 + 0.6 + 1.2) / 5)
    path = tmp_path / "c.png"
    certify.plot_certified_accuracy(radius, correct, path, title="t")
    assert path.stat().st_size > 1000
