"""Tests of jsnn.attacks.square, jsnn.attacks.fab and jsnn.attacks.autoattack."""

import functools
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog
from sklearn.datasets import load_digits

from jsnn import models
from jsnn.attacks.eot import correct_draws
from jsnn.attacks.apgd import apgd, apgd_targeted
from jsnn.attacks.autoattack import Stage, autoattack, summary
from jsnn.attacks.fab import fab_t, projection_linf
from jsnn.attacks.square import margin, p_selection, square, square_sizes
from jsnn.layers import EncoderConfig

KEY = jax.random.PRNGKey(0)


# ----------------------------------------------------------------------------- fixtures


def linear_problem(ratios, eps=0.05, n=64, classes=2):
    """Linear classifier z = (−s, s, ...) with s = w·x − w·½; example i has |s_i| = ratios[i]·ε‖w‖₁.

    For L∞ radius ε (and x ± ε inside [0, 1]) an example can be fooled iff |s| < ε‖w‖₁, i.e.
    ratio < 1; its minimal L∞ adversarial distance is |s| / ‖w‖₁ = ratio·ε.
    """
    w = jax.random.normal(jax.random.PRNGKey(1), (n,))
    ratios = jnp.asarray(ratios, jnp.float32)
    B = ratios.shape[0]
    sgn = jnp.where(jnp.arange(B) % 2 == 0, 1.0, -1.0)
    v = jnp.sign(w) * jax.random.uniform(jax.random.PRNGKey(2), (B, n), minval=0.2, maxval=1.0)
    c = ratios * eps * jnp.abs(w).sum() * sgn / (v @ w)
    x = (0.5 + c[:, None] * v).reshape(B, 8, n // 8, 1)

    def logits_fn(x, key):
        del key
        s = x.reshape(x.shape[0], -1) @ w - 0.5 * w.sum()
        extra = [-jnp.abs(s) - 1.0 - k for k in range(classes - 2)]  # never the top class
        return jnp.stack([-s, s] + extra, -1)

    y = jnp.argmax(logits_fn(x, None), -1)
    assert float(jnp.max(jnp.abs(x - 0.5))) + eps < 0.5  # the box never binds
    return logits_fn, x, y, w


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return jnp.asarray(d.images[:12, :, :, None] / 16.0, jnp.float32), jnp.asarray(d.target[:12], jnp.int32)


def _spiking_model(x, encoder=EncoderConfig()):
    """Random-init DigitsConv with weights ×3 so that spikes reach the readout."""
    m = models.get_model("digits_conv", num_classes=10, T=2, encoder=encoder)
    init = jax.jit(functools.partial(m.init, train=False))
    v = init({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, x)
    v = {"params": jax.tree.map(lambda p: 3.0 * p, v["params"]), "batch_stats": v["batch_stats"]}
    return jax.jit(models.logits_fn(m, v))


@pytest.fixture(scope="module")
def conv(digits):
    x, _ = digits
    fn = _spiking_model(x)
    y_pred = jnp.argmax(fn(x, KEY), -1)
    return fn, x, y_pred


def in_ball(x_adv, x, eps, tol=1e-6):
    x_adv, x = np.asarray(x_adv), np.asarray(x)
    return (np.abs(x_adv - x).max() <= eps + tol) and x_adv.min() >= 0.0 and x_adv.max() <= 1.0


# ----------------------------------------------------------------------------- Square


def test_p_schedule_matches_reference():
    # Reference p_selection: it = int(i / n_queries * 10000); p_init halved after 10, 50, ...
    assert p_selection(10, 10000) == 0.8 and p_selection(11, 10000) == 0.4
    assert p_selection(50, 10000) == 0.4 and p_selection(51, 10000) == 0.2
    assert p_selection(5, 5000) == 0.8 and p_selection(6, 5000) == 0.4  # rescaled: 6/5000·1e4 = 12
    assert p_selection(9999, 10000) == pytest.approx(0.8 / 512)
    sizes = square_sizes(5000, 0.8, 8, 8)
    assert sizes.shape == (4998,)
    assert sizes[0] == 7  # round(√(0.8·64)) = 7
    assert sizes[-1] == 1  # max(round(√(0.8/512·64)), 1)
    assert np.all(np.diff(sizes) <= 0)


def test_square_linear_model_analytic():
    ratios = np.tile([0.3, 0.6, 0.9, 0.97, 1.03, 1.1, 1.5, 3.0], 4)
    fn, x, y, _ = linear_problem(ratios)
    x_adv, info = square(fn, x, y, KEY, eps=0.05, queries=2000, full_output=True)
    fooled = np.asarray(jnp.argmax(fn(x_adv, None), -1) != y)
    np.testing.assert_array_equal(fooled, ratios < 1.0)  # accuracy = the analytic value
    assert in_ball(x_adv, x, 0.05)
    q = np.asarray(info["queries"])
    assert q.max() <= 2000 and np.all(q[ratios > 1] == 2000) and np.all(q[ratios < 1] < 2000)
    assert np.all(np.asarray(info["margin"]) <= np.asarray(margin(fn(x, None), y)))


def test_square_on_spiking_model_invariants(conv, digits):
    fn, x, _ = conv
    y = digits[1]  # true labels: some examples are misclassified from the start
    m_clean = np.asarray(margin(fn(x, KEY), y))
    x_adv, info = square(fn, x, y, KEY, eps=0.1, queries=100, full_output=True)
    assert in_ball(x_adv, x, 0.1)
    m_adv = np.asarray(margin(fn(x_adv, KEY), y))
    assert np.all(m_adv <= m_clean + 1e-6)  # never worse than the clean point
    np.testing.assert_allclose(m_adv, np.asarray(info["margin"]), atol=1e-5)
    q = np.asarray(info["queries"])
    assert np.all(q <= 100) and np.all(q[m_clean <= 0] == 1)  # misclassified: clean query only
    np.testing.assert_array_equal(np.asarray(x_adv)[m_clean <= 0], np.asarray(x)[m_clean <= 0])
    again = square(fn, x, y, KEY, eps=0.1, queries=100)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(x_adv))  # deterministic for a fixed key


def test_square_stochastic_eot():
    fn0, x, y, w = linear_problem(np.tile([0.3, 2.0], 4))

    def noisy(x, key):
        return fn0(x, None) + 0.1 * jax.random.normal(key, (x.shape[0], 2))

    a, info = square(noisy, x, y, KEY, eps=0.05, queries=500, eot=4, full_output=True)
    b = square(noisy, x, y, KEY, eps=0.05, queries=500, eot=4)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # deterministic for a fixed key
    assert in_ball(a, x, 0.05)
    # The search stops once the EOT score (mean of 4 draws) is <= 0: the true margin is then
    # near 0 (noise std of the score ≈ 0.07), far below the clean margin (≈ 1.7).
    score, clean, true = (np.asarray(v) for v in (info["margin"], margin(fn0(x, None), y), margin(fn0(a, None), y)))
    assert np.all(score[::2] <= 0) and np.all(true[::2] < 0.1 * clean[::2])
    assert np.all(score[1::2] > 0) and np.all(true[1::2] > 0)


@pytest.mark.parametrize("kwargs,field", [(dict(eps=-0.1), "eps"), (dict(eps=0.1, queries=1), "queries"),
                                          (dict(eps=0.1, p_init=1.5), "p_init"), (dict(eps=0.1, eot=0), "eot")])
def test_square_errors(kwargs, field):
    fn, x, y, _ = linear_problem([0.5, 2.0])
    with pytest.raises(ValueError, match=field):
        square(fn, x, y, KEY, **kwargs)


# ----------------------------------------------------------------------------- FAB-T


def test_projection_linf_matches_linear_program():
    rng = np.random.default_rng(0)
    N, n = 24, 6
    t = rng.uniform(0, 1, (N, n))
    w = rng.normal(size=(N, n))
    w[0, :3] = 0.0
    b = np.sum(w * rng.uniform(0, 1, (N, n)), 1)  # hyperplanes through the box: feasible
    b[1] = w[1] @ t[1]  # already on the plane
    b[-4:] += 3.0 * np.abs(w[-4:]).sum(1) * np.sign(rng.normal(size=4))  # out of the box
    with jax.enable_x64(True):
        d = np.asarray(projection_linf(jnp.asarray(t), jnp.asarray(w), jnp.asarray(b)))
    assert np.all(t + d >= -1e-12) and np.all(t + d <= 1 + 1e-12)
    for i in range(N):
        r = b[i] - w[i] @ t[i]
        A_ub = np.r_[np.c_[np.eye(n), -np.ones(n)], np.c_[-np.eye(n), -np.ones(n)]]
        bounds = [(-t[i, j], 1 - t[i, j]) for j in range(n)] + [(0, None)]
        lp = linprog(np.r_[np.zeros(n), 1.0], A_ub=A_ub, b_ub=np.zeros(2 * n), A_eq=np.r_[w[i], 0.0][None],
                     b_eq=[r], bounds=bounds)
        if i < N - 4:
            assert lp.status == 0
            assert np.abs(d[i]).max() == pytest.approx(lp.fun, abs=1e-10)
            assert w[i] @ d[i] == pytest.approx(r, abs=1e-10)
        else:  # infeasible: the box corner that gets closest, as the reference does
            assert lp.status == 2
            corner = np.where(np.sign(r) * w[i] > 0, 1.0, 0.0)
            np.testing.assert_allclose(t[i] + d[i], np.where(w[i] != 0, corner, t[i]), atol=1e-12)


def test_fab_t_linear_model_minimal_distance():
    ratios = np.tile([0.3, 0.6, 0.9, 0.98, 1.02, 1.1, 2.0, 0.1], 2)
    fn, x, y, _ = linear_problem(ratios, classes=3)
    x_adv, info = fab_t(fn, x, y, KEY, eps=0.05, steps=50, num_targets=2, full_output=True)
    dist = np.asarray(info["distance"]) / 0.05
    # FAB approaches the boundary from outside: never closer than the minimum, and within 1 %.
    assert np.all(dist >= ratios * (1 - 1e-5)) and np.all(dist <= ratios * 1.01)
    fooled = np.asarray(jnp.argmax(fn(x_adv, None), -1) != y)
    np.testing.assert_array_equal(fooled, ratios < 1.0)
    assert in_ball(x_adv, x, 0.05)
    np.testing.assert_array_equal(np.asarray(x_adv)[~fooled], np.asarray(x)[~fooled])
    # a second, randomly started restart per target keeps every invariant
    x_r, info_r = fab_t(fn, x, y, KEY, eps=0.05, steps=50, num_targets=1, restarts=2, full_output=True)
    assert np.all(np.asarray(info_r["distance"]) / 0.05 >= ratios * (1 - 1e-5))
    np.testing.assert_array_equal(np.asarray(jnp.argmax(fn(x_r, None), -1) != y), ratios < 1.0)
    assert in_ball(x_r, x, 0.05)


def _fab_textbook_run(fn, x, y, target, eps, steps, alpha_max=0.1, eta=1.05, beta=0.9):
    """FAB-T's loop as written in the paper / reference: linearise, project, step, check, pull back."""
    from jsnn.attacks.fab import _linf

    B, x0 = x.shape[0], x.reshape(x.shape[0], -1)
    f = lambda xx: (jnp.take_along_axis(fn(xx, None), target[:, None], -1)
                    - jnp.take_along_axis(fn(xx, None), y[:, None], -1))[:, 0]
    x1, adv, res = x, x, jnp.full((B,), jnp.inf)
    for _ in range(steps):
        df, vjp = jax.vjp(f, x1)
        w = vjp(jnp.ones_like(df))[0].reshape(B, -1)
        xf = x1.reshape(B, -1)
        b = -df + jnp.sum(w * xf, axis=1)
        d1, d2 = projection_linf(xf, w, b), projection_linf(x0, w, b)
        a1 = jnp.maximum(jnp.max(jnp.abs(d1), axis=1), 1e-8)
        a2 = jnp.maximum(jnp.max(jnp.abs(d2), axis=1), 1e-8)
        alpha = jnp.clip(a1 / (a1 + a2), 0.0, alpha_max)[:, None]
        x1 = jnp.clip((xf + eta * d1) * (1 - alpha) + (x0 + eta * d2) * alpha, 0.0, 1.0).reshape(x.shape)
        is_adv = jnp.argmax(fn(x1, None), -1) != y
        dist = _linf(x1 - x)
        closer = is_adv & (dist < res)
        adv = jnp.where(closer[:, None, None, None], x1, adv)
        res = jnp.where(closer, dist, res)
        x1 = jnp.where(is_adv[:, None, None, None], x + (x1 - x) * beta, x1)
    return adv, res


def test_fab_t_run_is_the_textbook_loop(conv):
    """The jitted run (both projections in one call, masks, fori_loop) gives the iterates of the loop as written."""
    from jsnn.attacks.fab import _one_run

    fn, x, y = conv
    target = jnp.argsort(fn(x, None), -1)[:, -2]
    for eps in (0.05, 0.3):  # few / many misclassified iterates (the pull-back path)
        adv, res = jax.jit(lambda xx: _one_run(fn, xx, y, eps, target, KEY, False, None, steps=12, alpha_max=0.1,
                                               eta=1.05, beta=0.9))(x)
        ref_adv, ref_res = _fab_textbook_run(fn, x, y, target, eps, 12)
        np.testing.assert_allclose(np.asarray(adv), np.asarray(ref_adv), atol=1e-5)
        np.testing.assert_allclose(np.asarray(res), np.asarray(ref_res), rtol=1e-5, atol=1e-6)
        assert np.isfinite(np.asarray(res)).any()  # some iterate was misclassified


def test_fab_t_on_spiking_model_invariants(conv, digits):
    fn, x, _ = conv
    y = digits[1]
    x_adv, info = fab_t(fn, x, y, KEY, eps=0.1, steps=5, num_targets=3, full_output=True)
    assert in_ball(x_adv, x, 0.1)
    clean_wrong = np.asarray(jnp.argmax(fn(x, KEY), -1) != y)
    changed = np.any(np.asarray(x_adv) != np.asarray(x), axis=(1, 2, 3))
    adv_wrong = np.asarray(jnp.argmax(fn(x_adv, KEY), -1) != y)
    assert np.all(adv_wrong[changed]) and not np.any(changed & clean_wrong)
    assert np.all(np.asarray(info["distance"])[clean_wrong] == 0)
    with pytest.raises(ValueError, match="num_targets"):
        fab_t(fn, x, y, KEY, eps=0.1, steps=2, num_targets=10)


# ----------------------------------------------------------------------------- AutoAttack

SMALL = dict(steps=5, queries=100, num_targets=3)


def run_autoattack(fn, x, y, key, *, eps, stages=None, **kwargs):
    """The combinator called once, its info as the 0.1 result's fields."""
    x_adv, info = autoattack(**kwargs)(fn, x, y, key, eps=eps, full_output=True, stages=stages)
    return types.SimpleNamespace(x_adv=np.asarray(x_adv), robust=np.asarray(info["robust"]), log=summary(info),
                                 draw_accuracy=float(np.mean(info["draw_accuracy"])),
                                 all_draws_accuracy=float(np.mean(info["all_draws"])), info=info)


def test_autoattack_standard(conv):
    fn, x, y = conv
    eps = 0.05
    res = run_autoattack(fn, x, y, KEY, eps=eps, **SMALL)
    assert list(res.log) == ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    accs = list(res.log.values())
    assert accs[0] == 1.0 and all(a >= b for a, b in zip(accs, accs[1:]))
    assert accs[-1] < 1.0
    assert in_ball(res.x_adv, x, eps)
    wrong = np.asarray(jnp.argmax(fn(jnp.asarray(res.x_adv), KEY), -1) != y)
    np.testing.assert_array_equal(wrong, ~res.robust)
    np.testing.assert_array_equal(res.x_adv[res.robust], np.asarray(x)[res.robust])
    assert res.draw_accuracy == pytest.approx(accs[-1]) and res.all_draws_accuracy == pytest.approx(accs[-1])
    # robust accuracy ≤ each component alone
    alone = {
        "apgd-ce": apgd(fn, x, y, KEY, eps=eps, steps=5),
        "apgd-t": apgd_targeted(fn, x, y, KEY, eps=eps, steps=5, num_targets=3),
        "fab-t": fab_t(fn, x, y, KEY, eps=eps, steps=5, num_targets=3),
        "square": square(fn, x, y, KEY, eps=eps, queries=100),
    }
    for name, xa in alone.items():
        acc = float(jnp.mean(jnp.argmax(fn(xa, KEY), -1) == y))
        assert res.log["square"] <= acc, name
    again = run_autoattack(fn, x, y, KEY, eps=eps, **SMALL)
    np.testing.assert_array_equal(again.x_adv, res.x_adv)
    assert again.log == res.log


def test_autoattack_rand_stochastic_model(digits):
    x, _ = digits
    fn = _spiking_model(x, EncoderConfig(name="rsc", sigma=0.05))
    y = jnp.argmax(jnp.mean(jnp.stack([fn(x, k) for k in jax.random.split(KEY, 8)]), 0), -1)
    eps, draws = 0.05, 5
    res = run_autoattack(fn, x, y, KEY, eps=eps, version="rand", eot=2, steps=5, draws=draws)
    assert list(res.log) == ["clean", "apgd-ce", "apgd-dlr"]
    accs = list(res.log.values())
    assert all(a >= b for a, b in zip(accs, accs[1:]))
    assert in_ball(res.x_adv, x, eps)
    for loss in ("ce", "dlr"):
        xa = apgd(fn, x, y, KEY, eps=eps, steps=5, loss=loss, eot=2)
        frac = correct_draws(fn, xa, y, jax.random.PRNGKey(5), draws=draws).mean(0)
        assert res.log["apgd-dlr"] <= float(jnp.mean(frac > 0.5)), loss
    assert 0.0 <= res.all_draws_accuracy <= res.draw_accuracy <= 1.0


def test_autoattack_chunks_linear_model():
    ratios = np.array([0.3, 3.0, 0.5, 2.0, 0.3, 3.0, 0.4, 5.0])
    fn, x, y, _ = linear_problem(ratios, classes=4)
    res = run_autoattack(fn, x, y, KEY, eps=0.05, batch_size=3, **SMALL)  # chunks of 3, the last padded
    np.testing.assert_array_equal(res.robust, ratios > 1)
    assert res.log["clean"] == 1.0 and res.log["square"] == 0.5
    assert in_ball(res.x_adv, x, 0.05)
    assert np.all(np.asarray(jnp.argmax(fn(jnp.asarray(res.x_adv), None), -1) != y) == (ratios < 1))
    assert set(res.info["seconds"]) == {"clean", "apgd-ce", "apgd-t", "fab-t", "square"}
    # the one-jit cascade (no host batching) reaches the same verdicts on this separable problem
    whole = run_autoattack(fn, x, y, KEY, eps=0.05, **SMALL)
    np.testing.assert_array_equal(whole.robust, ratios > 1)
    assert whole.log == res.log


def test_autoattack_is_a_plain_attack_under_jit():
    fn, x, y, _ = linear_problem(np.array([0.3, 3.0, 0.5, 2.0]), classes=4)
    aa = autoattack(**SMALL)
    x_adv, info = jax.jit(lambda xx, yy, k: aa(fn, xx, yy, k, eps=0.05, full_output=True))(x, y, KEY)
    np.testing.assert_array_equal(np.asarray(info["robust"]), [False, True, False, True])
    np.testing.assert_array_equal(np.asarray(x_adv), aa(fn, x, y, KEY, eps=0.05))
    # the host cascade (stages and targets compacted) reaches the one-jit cascade's verdicts, stage by stage
    _, host = aa(fn, x, y, KEY, eps=0.05, full_output=True)
    for name, robust in info["stages"].items():
        np.testing.assert_array_equal(np.asarray(robust), host["stages"][name], err_msg=name)


def test_square_and_fab_attack_only_the_active_examples_with_their_own_draws():
    """``active``: inactive examples come back clean; an active one gets the result of the full call
    (every random draw made for the whole batch and gathered, so it does not depend on the others)."""
    ratios = np.array([0.3, 3.0, 0.5, 2.0, 0.9, 0.6, 0.4, 5.0, 0.2, 0.8])
    fn, x, y, _ = linear_problem(ratios, classes=4)
    active = np.array([True, True, False, True, True, False, True, True, True, False])
    for attack, kw in ((square, dict(queries=60)), (fab_t, dict(steps=10, num_targets=2))):
        full, info = attack(fn, x, y, KEY, eps=0.05, full_output=True, **kw)
        part, info_p = attack(fn, x, y, KEY, eps=0.05, active=active, full_output=True, **kw)
        np.testing.assert_array_equal(np.asarray(part)[~active], np.asarray(x)[~active])
        np.testing.assert_allclose(np.asarray(part)[active], np.asarray(full)[active], atol=1e-6)
        for k in info:
            np.testing.assert_allclose(np.asarray(info_p[k])[active], np.asarray(info[k])[active], rtol=1e-5)
    # FAB-T on the host (targets compacted) and inside a jit (masked) agree
    x_jit, info_jit = jax.jit(lambda xx: fab_t(fn, xx, y, KEY, eps=0.05, steps=10, num_targets=2,
                                               full_output=True))(x)
    x_host, info_host = fab_t(fn, x, y, KEY, eps=0.05, steps=10, num_targets=2, full_output=True)
    np.testing.assert_allclose(np.asarray(x_host), np.asarray(x_jit), atol=1e-6)
    np.testing.assert_allclose(np.asarray(info_host["distance"]), np.asarray(info_jit["distance"]), rtol=1e-5)


def test_autoattack_given_stages_are_the_stages_run_with_their_keys(conv):
    """A stage given as (key, outcome on every example) gives the verdicts of running it with that key on
    the still-robust examples: the suite's standalone APGD-CE and Square records stand in for the stages."""
    fn, x, y = conv
    eps, k_ce, k_sq = 0.05, jax.random.key(11), jax.random.key(12)

    def outcome(attack, k):
        k_attack, k_judge = jax.random.split(k)
        xa = attack(k_attack)
        return np.asarray(xa), np.asarray(correct_draws(fn, xa, y, k_judge, draws=1).mean(0) <= 0.5)

    x_ce, f_ce = outcome(lambda k: apgd(fn, x, y, k, eps=eps, steps=5), k_ce)
    x_sq, f_sq = outcome(lambda k: square(fn, x, y, k, eps=eps, queries=100), k_sq)
    aa = autoattack(**SMALL)
    run = lambda stages: aa(fn, x, y, KEY, eps=eps, full_output=True, stages=stages)
    _, by_key = run({"apgd-ce": Stage(k_ce), "square": Stage(k_sq)})
    x_given, given = run({"apgd-ce": Stage(k_ce, x_ce, f_ce), "square": Stage(k_sq, x_sq, f_sq)})
    for name in given["stages"]:
        np.testing.assert_array_equal(given["stages"][name], by_key["stages"][name], err_msg=name)
    np.testing.assert_array_equal(given["stages"]["apgd-ce"], np.asarray(given["clean"]) & ~f_ce)
    assert summary(given)["apgd-ce"] < 1.0  # the given stage fooled some examples
    assert in_ball(np.asarray(x_given), x, eps)
    np.testing.assert_array_equal(given["robust"], ~np.asarray(jnp.argmax(fn(x_given, KEY), -1) != y))
    with pytest.raises(ValueError, match="not a stage"):
        aa(fn, x, y, KEY, eps=eps, stages={"fab": Stage(k_ce)})
    with pytest.raises(ValueError, match="both x_adv and fooled"):
        aa(fn, x, y, KEY, eps=eps, stages={"square": Stage(k_sq, x_sq)})
    with pytest.raises(ValueError, match="expected x_adv"):
        aa(fn, x, y, KEY, eps=eps, stages={"square": Stage(k_sq, x_sq[:2], f_sq[:2])})
    with pytest.raises(ValueError, match="concrete inputs"):
        jax.jit(lambda xx: aa(fn, xx, y, KEY, eps=eps, stages={"square": Stage(k_sq, x_sq, f_sq)}))(x)


@pytest.mark.parametrize("kwargs,field", [(dict(version="plus"), "version"), (dict(norm="l2"), "norm"),
                                          (dict(batch_size=0), "batch_size"), (dict(eot=0), "eot")])
def test_autoattack_errors(kwargs, field):
    fn, x, y, _ = linear_problem([0.5, 2.0], classes=4)
    with pytest.raises(ValueError, match=field):
        autoattack(**kwargs)(fn, x, y, KEY, eps=0.1)


def test_square_host_mode_compacts_the_unfooled_and_matches_the_jitted_search(monkeypatch):
    """Concrete inputs: every ``COMPACT_EVERY`` iterations the search goes on with the not-yet-fooled
    examples only (smaller batches), with the per-example result of the one-loop jitted search."""
    monkeypatch.setattr(sys.modules["jsnn.attacks.square"], "COMPACT_EVERY", 40)  # the package re-exports the function
    ratios = np.tile([0.3, 0.5, 0.8, 0.95, 1.2, 2.0, 0.4, 0.6], 4)
    _, x, y, w = linear_problem(ratios)
    shapes = []

    def fn(x, key):  # row by row (no matrix product whose rounding could depend on the batch)
        shapes.append(x.shape[0])
        s = jnp.sum(x.reshape(x.shape[0], -1) * w, axis=1) - 0.5 * w.sum()
        return jnp.stack([-s, s], -1)

    jitted, info_j = jax.jit(lambda xx: square(fn, xx, y, KEY, eps=0.05, queries=300, full_output=True))(x)
    assert set(shapes) == {1, 32}  # 1: the argument check's probe of the number of classes
    shapes.clear()
    host, info_h = square(fn, x, y, KEY, eps=0.05, queries=300, full_output=True)
    assert 32 in shapes and min(set(shapes) - {1}) < 32  # later segments ran on the still-robust examples only
    np.testing.assert_array_equal(np.asarray(host), np.asarray(jitted))
    np.testing.assert_array_equal(np.asarray(info_h["queries"]), np.asarray(info_j["queries"]))
    np.testing.assert_array_equal(np.asarray(info_h["margin"]), np.asarray(info_j["margin"]))
    fooled = np.asarray(info_h["margin"]) <= 0
    assert fooled.any() and not fooled.all()
    assert np.all(np.asarray(info_h["queries"])[~fooled] == 300)
