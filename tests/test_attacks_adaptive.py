"""Checks of jsnn.attacks.adaptive (PDSG, ASSG) and jsnn.attacks.sapgd (SA-PGD): backward passes against
their formulas (float64, tiny layers), the ASSG update over attack iterations, SA-PGD against a transcription
of the public code, its invariants, PDSG as an ensemble member, and the evaluate kind."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn import attacks, get_model, models, neuron
from jsnn.attacks import adaptive
from jsnn.layers import SpikingNeuron, merge_time

sapgd_mod = importlib.import_module("jsnn.attacks.sapgd")  # the module (jsnn.attacks.sapgd is the function)
KEY = jax.random.PRNGKey(0)
LIF_D = neuron.LIF  # τ = 2, decay_input, hard reset to 0, V_th = 1


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def layer_fn(cfg, T):
    """logits_fn(x, key) of one spiking layer: currents x [T, B, C] → merged spikes [B·T, C]."""
    return lambda x, key: SpikingNeuron(T=T, config=cfg).apply({}, merge_time(x))


def reference_bptt(cfg, x, slope):
    """Spikes, H and the input gradient of Σ w·S (w = 1 + t + c/10) by hand: BPTT through charge and hard
    reset, with ``slope(t, u_t)`` the surrogate derivative at step t. IF: H = λV + X; LIF: H = V + (X − V)/τ."""
    T = x.shape[0]
    a, b = (1 / cfg.tau, 1 - 1 / cfg.tau) if cfg.kind == "lif" else (1.0, cfg.leak)
    vth, vr = cfg.v_threshold, cfg.v_reset
    v, hs, ss = np.zeros(x.shape[1:]), [], []
    for t in range(T):
        h = b * v + a * x[t]
        s = (h - vth >= 0).astype(float)
        v = s * vr + (1 - s) * h
        hs.append(h)
        ss.append(s)
    w = 1 + np.arange(T)[:, None, None] + np.arange(x.shape[2])[None, None, :] / 10
    dx, dv = np.zeros_like(x), np.zeros(x.shape[1:])
    for t in reversed(range(T)):
        ds = w[t] + dv * (vr - hs[t])
        dh = ds * slope(t, hs[t] - vth) + dv * (1 - ss[t])
        dx[t] = dh * a
        dv = dh * b
    return np.stack(ss), np.stack(hs), dx, w


def weighted(fn, w, T):
    """Σ w·S of a merged-spike forward (w [T, 1, C] broadcast over the batch)."""
    return lambda x: (fn(x).reshape(x.shape[1], T, -1).swapaxes(0, 1) * w).sum()


# ----------------------------------------------------------------------------- PDSG


@pytest.mark.parametrize("cfg", [neuron.IF, LIF_D], ids=["if", "lif"])
@pytest.mark.parametrize("window", ["causal", "all"])
def test_pdsg_backward_equals_its_formula(x64, cfg, window):
    T, B, C = 4, 3, 2
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (T, B, C), jnp.float64, 0.0, 2.4 if cfg.kind == "lif"
                                      else 1.2))
    H = reference_bptt(cfg, x, lambda t, u: np.ones_like(u))[1]  # the potentials do not depend on the surrogate

    def sigma(t):
        block = H[: t + 1] if window == "causal" else H
        s = block.reshape(-1, C).std(axis=0, ddof=1)
        return np.where(s > 0, s, 1.0)

    def gauss(t, u):
        s = sigma(t)
        return np.exp(-(u - s / 2) ** 2 / (2 * s ** 2)) / (math.sqrt(2 * math.pi) * s)

    spikes, _, dx, w = reference_bptt(cfg, x, gauss)
    fn = adaptive.pdsg(layer_fn(cfg, T), adaptive.PDSG(window=window))
    out = fn(jnp.asarray(x), None)
    np.testing.assert_array_equal(np.asarray(out).reshape(B, T, C).swapaxes(0, 1), spikes)  # exact forward
    assert 0 < spikes.mean() < 1
    g = jax.grad(weighted(lambda xx: fn(xx, None), w, T))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(g), dx, rtol=1e-10, atol=1e-12)


def test_pdsg_sigma_is_per_channel_over_time_batch_and_space():
    h = jax.random.normal(KEY, (3, 2, 4, 4, 5)) * jnp.arange(1, 6)  # [T, B, H, W, C]: channel c has std ≈ c + 1
    s = adaptive.pdsg_sigma(h)
    assert s.shape == (3, 1, 1, 1, 5)
    np.testing.assert_allclose(s[2].ravel(), np.asarray(h).reshape(-1, 5).std(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(s[0].ravel(), np.asarray(h[0]).reshape(-1, 5).std(0, ddof=1), rtol=1e-5)
    # a constant channel and a window of one value have no spread: σ = 1
    assert adaptive.pdsg_sigma(jnp.zeros((2, 3, 1))).ravel().tolist() == [1.0, 1.0]
    assert adaptive.pdsg_sigma(jnp.array([[[0.3]], [[0.7]]])).ravel().tolist()[0] == 1.0


# ----------------------------------------------------------------------------- ASSG


def test_assg_widths_follow_the_update_rule_across_iterations(x64):
    T, B, C, cfg, spec = 3, 2, 2, neuron.IF, adaptive.ASSG()
    fn = adaptive.assg(layer_fn(neuron.IF, T))
    a = 2 * math.tan(math.pi * 0.425) / math.pi
    M, D, state = np.ones((T, B, C)), np.zeros((T, B, C)), None
    for k in range(3):
        x = np.asarray(jax.random.uniform(jax.random.PRNGKey(k), (T, B, C), jnp.float64, 0.0, 1.3))
        H = reference_bptt(cfg, x, lambda t, u: np.ones_like(u))[1]
        U = np.abs(H - 1.0)
        M = 0.9 * M + 0.1 * U
        D = 0.9 * D + 0.1 * np.abs(U - M)
        alpha = a / (M + 1.5 * D + 1e-4)
        atan = lambda t, u: (alpha[t] / 2) / (1 + (math.pi * alpha[t] * u / 2) ** 2)
        _, _, dx, w = reference_bptt(cfg, x, atan)
        g = jax.grad(weighted(lambda xx: fn(xx, None, state)[0], w, T))(jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(g), dx, rtol=1e-10, atol=1e-12)
        _, state = fn(jnp.asarray(x), None, state)
        assert list(state) == [""]  # the layer's path (applied at the top level)
        np.testing.assert_allclose(np.asarray(state[""].m), M, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(state[""].d), D, rtol=1e-12)
    assert not np.allclose(alpha, a / (1 + 1e-4))  # the widths moved away from the first ones


def test_assg_state_per_layer_of_a_model_and_errors():
    model = get_model("digits_mlp", hidden=(6, 5), T=2)
    x = jax.random.uniform(KEY, (3, 8, 8, 1))
    v = jax.jit(model.init)(KEY, x)
    fn = adaptive.assg(models.logits_fn(model, v))
    z, state = fn(x, None, None)
    assert sorted(state) == ["SpikingNeuron_0", "SpikingNeuron_1"]
    assert state["SpikingNeuron_1"].m.shape == (2, 3, 5)
    np.testing.assert_array_equal(z, models.logits_fn(model, v)(x, None))
    with pytest.raises(ValueError, match="carries ASSG state"):
        fn(x, None)
    with pytest.raises(ValueError, match="no state for layer 'SpikingNeuron_1'"):
        fn(x, None, {"SpikingNeuron_0": state["SpikingNeuron_0"]})
    with pytest.raises(ValueError, match=r"assg.degree: must be a finite number > 0 and < 0.5"):
        adaptive.assg(fn, adaptive.ASSG(degree=0.5))
    with pytest.raises(ValueError, match="pdsg.window: 'future'; allowed: causal, all"):
        adaptive.pdsg(fn, adaptive.PDSG(window="future"))


# ----------------------------------------------------------------------------- SA-PGD


def linear(W, b=None):
    W = jnp.asarray(W)
    b = jnp.zeros(W.shape[1], W.dtype) if b is None else jnp.asarray(b)
    return lambda x, key: x.reshape(x.shape[0], -1) @ W + b


def reference_sapgd(W, x, y, eps, steps):
    """The public code's SA-PGD loop (CE, L∞, no random start) in numpy on a linear model."""
    def grad(xa):
        z = xa @ W
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return (p - np.eye(W.shape[1])[y]) @ W.T

    steps_2, steps_min, size_decr = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    xa, g = x.copy(), grad(x)
    step = eps * np.ones((x.shape[0], 1))
    counter3, k = 0, steps_2
    for i in range(steps):
        gm = g / np.mean(np.abs(g), 1, keepdims=True)
        g2 = g ** 2 / np.mean(np.abs(g ** 2), 1, keepdims=True)
        m = 0.5 * m + gm if i > 0 else gm
        v = 0.8 * v + g2 if i > 0 else g2
        t = np.clip(m / (v ** 0.5 + 1e-12) * step, -step, step)
        xa = np.clip(np.minimum(np.maximum(xa + t, x - eps), x + eps), 0, 1)
        g = grad(xa)
        counter3 += 1
        if counter3 == k:
            step = step / 2
            counter3 = 0
            k = max(k - size_decr, steps_min)
    return xa, step.ravel()


def test_sapgd_matches_a_transcription_of_the_public_code(x64):
    rng = np.random.default_rng(0)
    W, x = rng.normal(size=(6, 4)), rng.uniform(0.2, 0.8, size=(3, 6))
    y, eps, steps = np.array([0, 1, 2]), 0.1, 12
    vg = sapgd_mod._oracle(linear(W), "ce", jnp.asarray(y), None, eot=1, eot_chunk=None, stateful=False)
    carry = sapgd_mod._run(vg, jnp.asarray(x), KEY, eps, norm="linf", steps=steps, random_start=False,
                           schedule="always", rho=0.75, beta1=0.5, beta2=0.8, init_step=1.0, stateful=False,
                           return_state=True)
    x_ref, step_ref = reference_sapgd(W, x, y, eps, steps)
    np.testing.assert_allclose(np.asarray(carry["x"]), x_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(carry["step"]), step_ref, rtol=1e-12)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_sapgd_stays_in_the_ball_and_box_and_is_deterministic(norm):
    W = jnp.array([[1., -1.], [-1., 1.], [2., 0.]])
    noisy = lambda x, key: linear(W)(x, key) + 0.1 * jax.random.normal(key, (x.shape[0], 2))
    x, y = jnp.array([[0.05, 0.98, 0.5], [0.2, 0.7, 0.4]]), jnp.array([0, 1])  # the box binds
    kw = dict(eps=0.3, norm=norm, steps=8, restarts=2, eot=2)
    a = attacks.sapgd(noisy, x, y, KEY, **kw)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert bool(jnp.all((a >= 0) & (a <= 1)))
    dist = jnp.abs(a - x).max(1) if norm == "linf" else jnp.sqrt(jnp.sum(jnp.square(a - x), 1))
    assert bool(jnp.all(dist <= 0.3 + 1e-6))
    np.testing.assert_array_equal(a, attacks.sapgd(noisy, x, y, KEY, **kw))


def test_sapgd_reaches_the_l2_optimum_of_a_linear_model():
    W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])
    x, y = jnp.array([[0.5, 0.5, 0.5, 0.5]]), jnp.array([0])
    best = attacks.sapgd(linear(W), x, y, KEY, eps=0.2, norm="l2", steps=20, loss="cw", full_output=True)
    # CW margin z₁ − z₀ = (w₁ − w₀)·x, maximised on the sphere along w₁ − w₀ = (−1, 1, −1, 1): + 0.2·2
    assert float(best.loss[0]) == pytest.approx(0.4, abs=0.01)


def test_sapgd_stall_schedule_keeps_the_step_while_the_loss_rises():
    W = jnp.array([[1., 0.], [0., 1.]])
    x, y = jnp.array([[0.5, 0.5]]), jnp.array([0])
    vg = sapgd_mod._oracle(linear(W), "cw", y, None, eot=1, eot_chunk=None, stateful=False)
    kw = dict(norm="linf", steps=10, random_start=False, rho=0.75, beta1=0.5, beta2=0.8, init_step=0.01,
              stateful=False, return_state=True)
    always = sapgd_mod._run(vg, x, KEY, 0.4, schedule="always", **kw)
    stall = sapgd_mod._run(vg, x, KEY, 0.4, schedule="stall", **kw)
    n = len(attacks.apgd_checkpoints(10))
    np.testing.assert_allclose(np.asarray(always["step"]), 0.4 * 0.01 / 2 ** n, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(stall["step"]), 0.4 * 0.01, rtol=1e-6)  # loss rose at every step


def test_sapgd_validates_its_arguments():
    f, x, y = linear(jnp.eye(2)), jnp.full((1, 2), 0.5), jnp.array([0])
    with pytest.raises(ValueError, match="sapgd schedule: 'never'; allowed: always, stall"):
        attacks.sapgd(f, x, y, KEY, eps=0.1, schedule="never")
    with pytest.raises(ValueError, match="sapgd beta1"):
        attacks.sapgd(f, x, y, KEY, eps=0.1, beta1=1.0)
    with pytest.raises(ValueError, match="attack y: labels"):
        attacks.sapgd(f, x, jnp.array([5]), KEY, eps=0.1)


@pytest.fixture(scope="module")
def tiny():
    model = get_model("digits_mlp", hidden=(8,), T=2)
    x = jax.random.uniform(jax.random.PRNGKey(3), (4, 8, 8, 1))
    v = jax.jit(model.init)(KEY, x)
    y = jnp.argmax(models.logits_fn(model, v)(x, None), -1)  # the model's own predictions: clean accuracy 1
    return model, v, x, y


def test_assg_sapgd_carries_the_state_and_keeps_the_invariants(tiny):
    model, v, x, y = tiny
    fn = adaptive.assg(models.logits_fn(model, v))
    a = attacks.sapgd(fn, x, y, KEY, eps=0.1, steps=5)
    assert bool(jnp.all(jnp.abs(a - x) <= 0.1 + 1e-6)) and bool(jnp.all((a >= 0) & (a <= 1)))
    compiled = sapgd_mod._sapgd._cache_size()
    other = jax.jit(model.init)(jax.random.PRNGKey(9), x)  # another run of the same architecture: no recompile
    attacks.sapgd(adaptive.assg(models.logits_fn(model, other)), x, y, KEY, eps=0.05, steps=5)
    assert sapgd_mod._sapgd._cache_size() == compiled
    vg = sapgd_mod._oracle(fn, "ce", y, None, eot=1, eot_chunk=None, stateful=True)
    carry = sapgd_mod._run(vg, x, KEY, 0.1, norm="linf", steps=3, random_start=True, schedule="always", rho=0.75,
                           beta1=0.5, beta2=0.8, init_step=1.0, stateful=True, return_state=True)
    m = carry["state"]["SpikingNeuron_0"].m
    assert m.shape == (2, 4, 8) and not bool(jnp.allclose(m, 1.0))  # four updates moved the moments


def test_pdsg_as_an_ensemble_member_never_weaker_than_any_member(tiny):
    model, v, x, y = tiny
    ens = attacks.ensemble(attacks.pgd, ["pdsg", "triangle:1"], models.estimator_factory(model, v))
    x_adv, info = ens(models.logits_fn(model, v), x, y, KEY, eps=0.3, steps=3, full_output=True)
    assert [attacks.gradients.parse(e).name for e in ("pdsg", "triangle:1")] == ["pdsg", "triangle(1)"]
    correct = np.asarray(info["correct"])  # [E, M, B]
    np.testing.assert_array_equal(np.asarray(info["robust"]), correct.all(0))  # robust only if it survives all
    assert float(info["accuracy"]) <= float(np.min(np.asarray(info["per_estimator"]))) + 1e-9
    assert bool(jnp.all(jnp.abs(x_adv - x) <= 0.3 + 1e-6)) and bool(jnp.all((x_adv >= 0) & (x_adv <= 1)))
    assert "pdsg" in attacks.gradients.PRESETS["strong"]


def test_evaluate_kind_sapgd_runs_one_batch(tiny):
    from jsnn.evaluate import settings, suite

    model, v, x, y = tiny
    ev = settings.default_eval_config()
    ev.attacks, ev.apgd_steps, ev.large_eps = "sapgd", 3, ""
    (rec,) = suite.plan(ev, stochastic=False, spiking=True)
    assert rec["name"] == "sapgd3-assg-linf-eps8/255" and rec["estimator"] == "assg" and rec["box"] == "white"
    hits, _ = suite.run_batch(rec, suite.Target(models.logits_fn(model, v)), x, y, KEY)
    assert hits.shape == (4,) and set(np.asarray(hits).tolist()) <= {0, 1}
