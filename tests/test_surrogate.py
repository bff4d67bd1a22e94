"""Independent checks of jsnn.surrogate against METHODS.md formulas (numpy float64 references)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jsnn import surrogate


@pytest.fixture
def x64():
    """float64 for the duration of one test only (other test files are unaffected)."""
    with jax.enable_x64(True):
        yield


# --------------------------------------------------------------- numpy references (float64)
# g(u), u = H - V_th, exactly as written in METHODS.md, evaluated independently of jsnn.


def ref_sigmoid(u, a):
    return a * special.expit(a * u) * special.expit(-a * u)


def ref_atan(u, a):
    return (a / 2) / (1 + (np.pi * a * u / 2) ** 2)


def ref_triangle(u, g):
    return np.maximum(0.0, 1 - np.abs(u) / g) / g


def ref_rectangle(u, w):
    return (np.abs(u) < w / 2).astype(np.float64) / w


def ref_fast_sigmoid(u, k):
    return 1 / (1 + k * np.abs(u)) ** 2


def ref_straight_through(u, _):
    return np.ones_like(u)


def ref_exponential(u, g):  # TMLR 2024 "EXP": α·exp(−γ|u|), α = 1 (IGITUGraz/RobustSNNConversion ExpSpike)
    return np.exp(-g * np.abs(u))


def ref_exponential_d(u, g):  # TMLR 2024 "EXP-D": the same with α = 0.3
    return 0.3 * np.exp(-g * np.abs(u))


def ref_pcw(u, g):  # TMLR 2024 / HART "PCW" / ZIF as written there: (1/γ)·(1/γ)·max(0, γ − |u|)
    return (1 / g) * (1 / g) * np.maximum(0.0, g - np.abs(u))


REFS = {
    "sigmoid": ref_sigmoid,
    "atan": ref_atan,
    "triangle": ref_triangle,
    "rectangle": ref_rectangle,
    "fast_sigmoid": ref_fast_sigmoid,
    "straight_through": ref_straight_through,
    "exponential": ref_exponential,
    "exponential_d": ref_exponential_d,
}
FACTORIES = {
    "sigmoid": surrogate.sigmoid,
    "atan": surrogate.atan,
    "triangle": surrogate.triangle,
    "rectangle": surrogate.rectangle,
    "fast_sigmoid": surrogate.fast_sigmoid,
    "exponential": surrogate.exponential,
    "exponential_d": surrogate.exponential_d,
}

# (name, width): the METHODS.md defaults and non-default widths.
CASES = [
    ("sigmoid", 4.0), ("sigmoid", 1.0), ("sigmoid", 10.0),
    ("atan", 2.0), ("atan", 0.5), ("atan", 5.0),
    ("triangle", 1.0), ("triangle", 0.5), ("triangle", 2.0),
    ("rectangle", 1.0), ("rectangle", 0.5), ("rectangle", 3.0),
    ("fast_sigmoid", 25.0), ("fast_sigmoid", 1.0), ("fast_sigmoid", 100.0),
    ("straight_through", 1.0),
    ("exponential", 0.5), ("exponential", 1.0), ("exponential", 2.0),
    ("exponential_d", 0.5), ("exponential_d", 1.0), ("exponential_d", 2.0),
]


def points(width):
    """Many points incl. 0, the ±w/2 and ±w boundaries, and large |u|."""
    dense = np.linspace(-3.0, 3.0, 601)
    special_pts = np.array([0.0, width / 2, -width / 2, width, -width, 1e-12, -1e-12,
                            50.0, -50.0, 1e3, -1e3, 1e4, -1e4])
    return np.concatenate([dense, special_pts])


def make(name, width):
    if name == "straight_through":
        return surrogate.straight_through()
    return FACTORIES[name](width)


def grad_of_spike(u, s):
    """Elementwise d spike / d u via the custom VJP (what training and attacks see)."""
    return jax.vmap(jax.grad(lambda v: surrogate.spike(v, s)))(u)


# --------------------------------------------------------------- formulas


@pytest.mark.parametrize("name,width", CASES)
def test_derivative_matches_methods_formula(x64, name, width):
    u = points(width)
    want = REFS[name](u, width)
    s = make(name, width)
    got_grad = np.asarray(grad_of_spike(jnp.asarray(u, jnp.float64), s))
    got_der = np.asarray(surrogate.derivative(jnp.asarray(u, jnp.float64), s))
    assert got_grad.dtype == np.float64
    np.testing.assert_allclose(got_grad, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_der, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name,width", CASES)
def test_by_name_equals_factory(x64, name, width):
    u = jnp.asarray(points(width))
    a = surrogate.derivative(u, surrogate.by_name(name, None if name == "straight_through" else width))
    b = surrogate.derivative(u, make(name, width))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_default_widths_are_methods_defaults(x64):
    # METHODS.md: sigmoid α=4, atan α=2, triangle γ=1, rectangle w=1, fast-sigmoid k=25.
    u = jnp.asarray(points(1.0))
    for name, width in [("sigmoid", 4.0), ("atan", 2.0), ("triangle", 1.0),
                        ("rectangle", 1.0), ("fast_sigmoid", 25.0)]:
        np.testing.assert_allclose(np.asarray(surrogate.derivative(u, surrogate.by_name(name))),
                                   REFS[name](np.asarray(u), width), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(surrogate.derivative(u, FACTORIES[name]())),
                                   REFS[name](np.asarray(u), width), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.0, 2.0, 3.0])
def test_triangle_is_the_tmlr_pcw(x64, gamma):
    u = points(gamma)
    np.testing.assert_allclose(np.asarray(surrogate.derivative(jnp.asarray(u), surrogate.triangle(gamma))),
                               ref_pcw(u, gamma), rtol=1e-12, atol=1e-15)


def test_exponential_kinds_vmap_with_the_others(x64):
    bank = surrogate.stack([surrogate.triangle(1.0), surrogate.exponential(2.0), surrogate.exponential_d(0.5)])
    u = jnp.asarray([0.0, 0.3, -1.0])
    g = jax.vmap(lambda s: surrogate.derivative(u, s))(bank)
    np.testing.assert_allclose(np.asarray(g), [ref_triangle(np.asarray(u), 1.0), ref_exponential(np.asarray(u), 2.0),
                                               ref_exponential_d(np.asarray(u), 0.5)], rtol=1e-12)


def test_hand_values(x64):
    # A few values worked out by hand.
    u = jnp.asarray([0.0, 0.5, -0.25, 1.0])
    np.testing.assert_allclose(grad_of_spike(u, surrogate.triangle(1.0)), [1.0, 0.5, 0.75, 0.0])
    np.testing.assert_allclose(grad_of_spike(u, surrogate.rectangle(1.0)), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(grad_of_spike(u, surrogate.sigmoid(4.0)),
                               [1.0, 4 * special.expit(2) * special.expit(-2), 4 * special.expit(-1) * special.expit(1),
                                4 * special.expit(4) * special.expit(-4)], rtol=1e-12)
    np.testing.assert_allclose(grad_of_spike(u, surrogate.atan(2.0)),
                               [1.0, 1 / (1 + (np.pi / 2) ** 2), 1 / (1 + (np.pi / 4) ** 2), 1 / (1 + np.pi ** 2)],
                               rtol=1e-12)
    np.testing.assert_allclose(grad_of_spike(u, surrogate.fast_sigmoid(25.0)),
                               [1.0, 1 / 13.5 ** 2, 1 / 7.25 ** 2, 1 / 26.0 ** 2], rtol=1e-12)
    # Each surrogate peaks at u=0 with the value above; sigmoid(4) and atan(2) peak at 1.


def test_gradient_is_chain_ruled_with_cotangent(x64):
    s = surrogate.triangle(1.0)
    u = jnp.asarray([0.2, -0.6, 3.0])
    c = jnp.asarray([2.0, -3.0, 5.0])
    _, vjp = jax.vjp(lambda v: surrogate.spike(v, s), u)
    (g,) = vjp(c)
    np.testing.assert_allclose(g, np.asarray(c) * ref_triangle(np.asarray(u), 1.0), rtol=1e-12)


# --------------------------------------------------------------- forward


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_forward_heaviside_theta0_is_1(dtype):
    with jax.enable_x64(dtype == jnp.float64):
        tiny = float(jnp.finfo(dtype).tiny)
        u = jnp.asarray([-1e30, -1.0, -tiny, -0.0, 0.0, tiny, 1.0, 1e30], dtype)
        for name, width in CASES:
            out = surrogate.spike(u, make(name, width))
            assert out.dtype == dtype
            np.testing.assert_array_equal(np.asarray(out), [0, 0, 0, 1, 1, 1, 1, 1])


# --------------------------------------------------------------- stability


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name,width", CASES)
def test_finite_for_huge_inputs(dtype, name, width):
    with jax.enable_x64(dtype == jnp.float64):
        mags = np.array([0.0, 1.0, 1e2, 1e4, 1e8, 1e20, 1e30])
        u = jnp.asarray(np.concatenate([mags, -mags]), dtype)
        s = make(name, width)
        val = surrogate.spike(u, s)
        g = grad_of_spike(u, s)
        assert g.dtype == dtype
        assert np.all(np.isfinite(np.asarray(val)))
        assert np.all(np.isfinite(np.asarray(g))), (name, width, np.asarray(g))
        assert np.all(np.asarray(g) >= 0)
        # Far from threshold every bounded-support or decaying surrogate is (close to) 0.
        if name != "straight_through":
            far = np.abs(np.asarray(u)) >= 1e4
            assert np.all(np.asarray(g)[far] < 1e-6)


# --------------------------------------------------------------- vmap over surrogates


def _bank():
    return [surrogate.sigmoid(4.0), surrogate.atan(2.0), surrogate.triangle(1.0), surrogate.triangle(0.3),
            surrogate.rectangle(0.7), surrogate.fast_sigmoid(25.0), surrogate.sigmoid(1.5),
            surrogate.straight_through()]


def test_vmap_over_stacked_shapes_and_widths_in_one_jit(x64):
    bank = _bank()
    stacked = surrogate.stack(bank)
    assert stacked.kind.shape == (len(bank),) and stacked.width.shape == (len(bank),)
    u = jnp.linspace(-2.0, 2.0, 41)

    def loss_grad(s, u):
        return jax.grad(lambda v: jnp.sum(jnp.tanh(v) * surrogate.spike(v, s)))(u)

    together = jax.jit(jax.vmap(loss_grad, in_axes=(0, None)))(stacked, u)
    fwd = jax.jit(jax.vmap(lambda s, u: surrogate.spike(u, s), in_axes=(0, None)))(stacked, u)
    for i, s in enumerate(bank):
        np.testing.assert_allclose(np.asarray(together[i]), np.asarray(loss_grad(s, u)), rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(np.asarray(fwd[i]), np.asarray(surrogate.spike(u, s)))
        # and against the independent reference: d/du [tanh(u)·Θ(u)] with Θ' := g
        uu = np.asarray(u)
        name, width = s.name, float(s.width)
        want = (1 - np.tanh(uu) ** 2) * (uu >= 0) + np.tanh(uu) * REFS[name](uu, width)
        np.testing.assert_allclose(np.asarray(together[i]), want, rtol=1e-12, atol=1e-15)


def test_vmap_over_widths_does_not_retrace():
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def grads(s, u):
        return jax.vmap(lambda s_: jax.grad(lambda v: jnp.sum(surrogate.spike(v, s_)))(u))(s)

    u = jnp.linspace(-1.0, 1.0, 9)
    for widths in ([0.5, 1.0, 2.0], [0.25, 0.75, 4.0], [1.0, 1.0, 1.0]):
        s = surrogate.stack([surrogate.triangle(w) for w in widths])
        g = grads(s, u)
        for i, w in enumerate(widths):
            np.testing.assert_allclose(np.asarray(g[i]), ref_triangle(np.asarray(u, np.float64), w),
                                       rtol=1e-6, atol=1e-7)
    # Other shapes with the same stacked structure reuse the same compiled function too.
    g = grads(surrogate.stack([surrogate.sigmoid(4.0), surrogate.atan(2.0), surrogate.rectangle(1.0)]), u)
    np.testing.assert_allclose(np.asarray(g[1]), ref_atan(np.asarray(u, np.float64), 2.0), rtol=1e-6)
    # A scalar surrogate passed into jit is also traced once across widths.
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def one(s, u):
        return jax.grad(lambda v: jnp.sum(surrogate.spike(v, s)))(u)

    for w in (0.5, 1.0, 2.0, 3.0):
        np.testing.assert_allclose(np.asarray(one(surrogate.triangle(w), u)),
                                   ref_triangle(np.asarray(u, np.float64), w), rtol=1e-6, atol=1e-7)


def test_retrace_guard_fires():
    """The assert_max_traces guard really catches a retrace (so the test above can fail)."""
    chex.clear_trace_counter()

    @chex.assert_max_traces(n=1)
    def f(x):
        return x + 1

    jf = jax.jit(f)
    jf(jnp.zeros(3))
    with pytest.raises(AssertionError):
        jf(jnp.zeros(4))  # new shape → second trace


# --------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["sigmod", "", "Sigmoid", "heaviside"])
def test_unknown_name(name):
    with pytest.raises(ValueError, match="unknown name") as e:
        surrogate.by_name(name)
    assert "sigmoid" in str(e.value) and "straight_through" in str(e.value)  # lists allowed names


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("factory", list(FACTORIES.values()))
def test_bad_width(factory, bad):
    with pytest.raises(ValueError, match="width"):
        factory(bad)


@pytest.mark.parametrize("bad", [0.0, -2.0])
def test_bad_width_by_name(bad):
    with pytest.raises(ValueError, match=r"width.*> 0"):
        surrogate.by_name("triangle", bad)


def test_name_roundtrip():
    for name in surrogate.SHAPES:
        assert surrogate.by_name(name).name == name
