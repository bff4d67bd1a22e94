"""Checks of jsnn.attacks (part A): losses against their formulas, geometry, the APGD schedule,
analytic optima on a linear model, EOT expectations, invariants, estimator ensembles, traces."""

import importlib
import itertools
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from jsnn import attacks, models, surrogate
from jsnn.attacks import common, eot, gradients, losses

apgd_mod = importlib.import_module("jsnn.attacks.apgd")  # the module (jsnn.attacks.apgd is the function)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def linear(W, b):
    """f(x) = W·flat(x) + b, a deterministic model that ignores the key."""
    W = jnp.asarray(W, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    return lambda x, key: x.reshape(x.shape[0], -1) @ W + b


def images(key, B=3, lo=0.3, hi=0.7):
    return jax.random.uniform(key, (B, 2, 2, 1), jnp.float32, lo, hi)


KEY = jax.random.PRNGKey(0)


# ----------------------------------------------------------------------------- losses


def test_ce_and_cw_match_references(x64):
    z = np.random.default_rng(0).normal(size=(6, 5))
    y = np.array([0, 1, 2, 3, 4, 0])
    ref_ce = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(losses.ce(jnp.asarray(z), jnp.asarray(y)), ref_ce, rtol=1e-12)
    ref_cw = [max(z[b, j] for j in range(5) if j != y[b]) - z[b, y[b]] for b in range(6)]
    np.testing.assert_allclose(losses.cw_margin(jnp.asarray(z), jnp.asarray(y)), ref_cw, rtol=1e-12)
    ref_tce = [z[b, 2] - np.log(np.exp(z[b]).sum()) for b in range(6)]
    t = jnp.full((6,), 2)
    np.testing.assert_allclose(losses.ce_targeted(jnp.asarray(z), jnp.asarray(y), t), ref_tce, rtol=1e-12)


def test_dlr_equals_its_formula(x64):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(8, 6))
    y = rng.integers(0, 6, size=8)
    t = (y + 1 + rng.integers(0, 5, size=8)) % 6
    got = losses.dlr(jnp.asarray(z), jnp.asarray(y))
    got_t = losses.dlr_targeted(jnp.asarray(z), jnp.asarray(y), jnp.asarray(t))
    for b in range(8):
        s = sorted(z[b], reverse=True)  # π1 ≥ π2 ≥ ...
        other = max(z[b, j] for j in range(6) if j != y[b])
        assert got[b] == pytest.approx(-(z[b, y[b]] - other) / (s[0] - s[2] + 1e-12), rel=1e-12)
        assert got_t[b] == pytest.approx(-(z[b, y[b]] - z[b, t[b]]) / (s[0] - 0.5 * (s[2] + s[3]) + 1e-12),
                                         rel=1e-12)
    # shift and positive-scale invariance (Croce & Hein's motivation for DLR)
    np.testing.assert_allclose(losses.dlr(jnp.asarray(3.0 * z + 7.0), jnp.asarray(y)), got, rtol=1e-9)


def test_loss_errors():
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.get("hinge")
    with pytest.raises(ValueError, match="K >= 3"):
        losses.dlr(jnp.zeros((2, 2)), jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="K >= 4"):
        losses.dlr_targeted(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), jnp.ones(2, jnp.int32))


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_and_random_start_stay_feasible(norm):
    k1, k2, k3 = jax.random.split(KEY, 3)
    x = jax.random.uniform(k1, (16, 3, 3, 2))
    far = x + 3.0 * jax.random.normal(k2, x.shape)
    eps = 0.1 if norm == "linf" else 0.5
    for p in (common.project(far, x, eps, norm), common.random_init(k3, x, eps, norm)):
        d = (p - x).reshape(16, -1)
        size = jnp.abs(d).max(1) if norm == "linf" else jnp.linalg.norm(d, axis=1)
        assert float(size.max()) <= eps * (1 + 1e-5)
        assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0
        np.testing.assert_allclose(common.project(p, x, eps, norm), p, atol=1e-6)  # idempotent
    inside = jnp.clip(x + 0.01 * jnp.sign(jax.random.normal(k3, x.shape)), 0, 1)
    np.testing.assert_allclose(common.project(inside, x, 0.1 if norm == "linf" else 10.0, norm), inside, atol=1e-7)
    # L∞: the projection is the exact (coordinate-wise) nearest point of the box
    if norm == "linf":
        ref = np.clip(np.clip(np.asarray(far), np.asarray(x) - eps, np.asarray(x) + eps), 0, 1)
        np.testing.assert_allclose(common.project(far, x, eps, norm), ref, atol=1e-7)


def test_best_tracking_prefers_misclassified_then_loss():
    x = jnp.zeros((4, 1))
    best = common.init_best(x, jnp.array([1.0, 1.0, 5.0, jnp.nan]), jnp.array([False, True, True, False]))
    cand = jnp.ones((4, 1))
    new = common.update_best(best, cand, jnp.array([0.5, 9.0, 4.0, -3.0]), jnp.array([True, False, True, False]))
    # 0: fooled beats not fooled despite lower loss; 1: not fooled never beats fooled;
    # 2: same status, lower loss loses; 3: NaN best counts as -inf
    np.testing.assert_array_equal(new.x[:, 0], [1, 0, 0, 1])
    stacked = jax.tree.map(lambda *a: jnp.stack(a), best, new)
    sel = common.select_best(stacked)
    np.testing.assert_array_equal(sel.fooled, [True, True, True, False])
    np.testing.assert_allclose(sel.loss, [0.5, 1.0, 5.0, -3.0])


# ----------------------------------------------------------------------------- APGD schedule


def test_apgd_checkpoints():
    assert attacks.apgd_checkpoints(100) == (22, 41, 57, 70, 80, 87, 93, 99)
    assert attacks.apgd_checkpoints(10) == (2, 3, 4, 5, 6, 7, 8, 9, 10)
    # the paper's rule p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) in exact integer arithmetic
    p, out = [0, 22], [22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 3, 6)
        if nxt > 100:
            break
        p.append(nxt)
        out.append(nxt)
    assert tuple(out) == attacks.apgd_checkpoints(100)


def test_apgd_halves_the_step_at_every_checkpoint_when_the_loss_never_rises():
    # logits independent of x: zero gradient, the loss never rises → condition (1) at each checkpoint
    flat = lambda x, key: jnp.zeros((x.shape[0], 3)) + jnp.array([1.0, 0.0, 0.0])
    x = images(KEY)
    y = jnp.zeros(3, jnp.int32)
    orc = eot.oracle(flat, "ce", y)
    for steps in (100, 21):  # N=100: 8 checkpoints; N=21: 4, 7, 9, 10, ..., 21 (15)
        run = jax.jit(lambda x, key: apgd_mod._run(orc, x, *apgd_mod._start(key, x, 0.1, "linf", False), 0.1,
                                                   norm="linf", steps=steps, rho=0.75, return_state=True))
        state = run(x, KEY)
        n = len(attacks.apgd_checkpoints(steps))
        assert n == {100: 8, 21: 15}[steps]
        np.testing.assert_allclose(state["step"], 2 * 0.1 / 2 ** n, rtol=1e-6)
        np.testing.assert_array_equal(state["x"], x)  # zero gradient: never moves


def _reference_apgd_linf(loss_and_grad, x, eps, n_iter, rho=0.75):
    """A line-by-line NumPy transcription of auto-attack's ``APGDAttack.attack_single_run`` (L∞, no
    random start, one EOT draw), with its own counter/window bookkeeping; the first window compares
    ℓ(x¹) with ℓ(x⁰) (see jsnn.attacks.apgd)."""
    n2, nmin, sdec = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1), max(int(0.03 * n_iter), 1)
    x_adv = x.copy()
    loss, grad = loss_and_grad(x_adv)
    loss0 = loss.copy()
    x_best, grad_best, loss_best = x_adv.copy(), grad.copy(), loss.copy()
    step = 2 * eps * np.ones(x.shape[0])
    x_old = x_adv.copy()
    k, counter3 = n2, 0
    loss_best_last, reduced_last = loss_best.copy(), np.ones(x.shape[0], bool)
    loss_steps = []
    box = lambda v: np.clip(np.minimum(np.maximum(v, x - eps), x + eps), 0.0, 1.0)
    for i in range(n_iter):
        grad2 = x_adv - x_old
        x_old = x_adv.copy()
        a = 0.75 if i > 0 else 1.0
        x1 = box(x_adv + step[:, None, None, None] * np.sign(grad))
        x_adv = box(x_adv + (x1 - x_adv) * a + grad2 * (1 - a))
        loss, grad = loss_and_grad(x_adv)
        loss_steps.append(loss)
        ind = loss > loss_best
        x_best[ind], grad_best[ind], loss_best[ind] = x_adv[ind], grad[ind], loss[ind]
        counter3 += 1
        if counter3 == k:
            t = np.zeros(x.shape[0])
            for c in range(k):
                prev = loss_steps[i - c - 1] if i - c - 1 >= 0 else loss0
                t += loss_steps[i - c] > prev
            osc = t <= k * rho
            osc = osc | (~reduced_last & (loss_best_last >= loss_best))
            reduced_last, loss_best_last = osc.copy(), loss_best.copy()
            step[osc] /= 2.0
            x_adv[osc], grad[osc] = x_best[osc], grad_best[osc]
            k = max(k - sdec, nmin)
            counter3 = 0
    return x_best, loss_best, step


@pytest.mark.parametrize("rho", [0.75, 0.5])  # ρ = 0.5 makes ρ·window an integer often (≤ vs < matters)
def test_apgd_matches_a_transcription_of_the_reference_code(x64, rho):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(11), 3)
    W1 = jax.random.normal(k1, (4, 8), jnp.float64) * 3
    W2 = jax.random.normal(k2, (8, 3), jnp.float64) * 3
    f = lambda x, key: jnp.tanh(x.reshape(x.shape[0], -1) @ W1) @ W2
    x = jax.random.uniform(k3, (16, 2, 2, 1), jnp.float64)
    y = jnp.arange(16) % 3
    vg = jax.jit(jax.vmap(jax.value_and_grad(lambda xi, yi: losses.ce(f(xi[None], None), yi[None])[0])))
    ref_x, ref_loss, ref_step = _reference_apgd_linf(
        lambda v: tuple(np.array(a) for a in vg(jnp.asarray(v), y)), np.array(x), 0.3, 100, rho)
    orc = eot.oracle(f, "ce", y)
    state = jax.jit(lambda x, key: apgd_mod._run(orc, x, *apgd_mod._start(key, x, 0.3, "linf", False), 0.3, norm="linf",
                                                 steps=100, rho=rho, return_state=True))(x, KEY)
    np.testing.assert_allclose(state["step"], ref_step, rtol=1e-12)
    np.testing.assert_allclose(state["loss_best"], ref_loss, rtol=1e-10)
    np.testing.assert_allclose(state["x_best"], ref_x, atol=1e-10)
    assert len(set(np.round(np.log2(0.6 / ref_step)).tolist())) > 1  # the schedule did different things


# ----------------------------------------------------------------------------- linear model optimum


def _dominant_linear(K):
    """Linear model whose runner-up class (1) dominates every other wrong class in the ball."""
    W = jax.random.normal(jax.random.PRNGKey(3), (4, K)) * 0.5
    b = jnp.array([1.0, 0.6] + [-3.0] * (K - 2))[:K]
    return W, b


def _vertices_optimum(f, x, y, eps):
    """Brute force over the 16 vertices of the L∞ box: the CW margin is convex, so its max is at one."""
    best = None
    for signs in itertools.product([-1.0, 1.0], repeat=4):
        v = x + eps * jnp.asarray(signs).reshape(1, 2, 2, 1)
        val = losses.cw_margin(f(v, None), y)
        best = (val, v) if best is None else (jnp.maximum(best[0], val),
                                             jnp.where((val > best[0])[:, None, None, None], v, best[1]))
    return best[1]


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
@pytest.mark.parametrize("loss,K", [("cw", 4), ("ce", 2)])
def test_linf_attacks_reach_the_analytic_optimum_of_a_linear_model(attack, loss, K):
    W, b = _dominant_linear(K)
    f = linear(W, b)
    x = images(jax.random.PRNGKey(1), B=3)
    y = jnp.zeros(3, jnp.int32)
    eps = 0.1
    # x − ε·sign(w_y − w_j), j the runner-up class
    analytic = x - eps * jnp.sign(W[:, 0] - W[:, 1]).reshape(1, 2, 2, 1)
    np.testing.assert_allclose(_vertices_optimum(f, x, y, eps), analytic, atol=1e-6)
    fn = getattr(attacks, attack)
    kw = dict(steps=20, step_size=eps / 4) if attack == "pgd" else dict(steps=20)
    outs = [fn(f, x, y, jax.random.PRNGKey(s), eps=eps, loss=loss, restarts=2, **kw) for s in (0, 1)]
    for out in outs:
        np.testing.assert_allclose(out, analytic, atol=1e-6)
    np.testing.assert_array_equal(outs[0], outs[1])  # deterministic model: the same result for any key


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_l2_attacks_reach_the_analytic_optimum_of_a_linear_model(attack):
    W, b = _dominant_linear(4)
    f = linear(W, b)
    x = images(jax.random.PRNGKey(2), B=2)
    y = jnp.zeros(2, jnp.int32)
    eps = 0.2
    d = W[:, 1] - W[:, 0]
    analytic = x + eps * (d / jnp.linalg.norm(d)).reshape(1, 2, 2, 1)
    kw = dict(steps=10, step_size=eps / 3) if attack == "pgd" else dict(steps=10)
    out = getattr(attacks, attack)(f, x, y, KEY, eps=eps, norm="l2", loss="cw", random_start=False, **kw)
    np.testing.assert_allclose(out, analytic, atol=1e-6)


def test_fgsm_and_rfgsm_on_a_linear_model():
    W, b = _dominant_linear(4)
    f = linear(W, b)
    x = images(jax.random.PRNGKey(4))
    y = jnp.zeros(3, jnp.int32)
    out = attacks.fgsm(f, x, y, KEY, eps=0.05, loss="cw")
    np.testing.assert_allclose(out, x + 0.05 * jnp.sign(W[:, 1] - W[:, 0]).reshape(1, 2, 2, 1), atol=1e-6)
    r = attacks.rfgsm(f, x, y, KEY, eps=0.05, loss="cw")
    assert float(jnp.abs(r - x).max()) <= 0.05 + 1e-6
    # the gradient step (ε − α = ε/2) moves along sign(w_j − w_y) from the random point
    step = r - x
    assert bool(jnp.all(step * jnp.sign(W[:, 1] - W[:, 0]).reshape(1, 2, 2, 1) >= -0.025 - 1e-6))


def test_apgd_targeted_uses_the_runner_up_classes_and_fools_a_weak_linear_model():
    W = jax.random.normal(jax.random.PRNGKey(5), (4, 5))
    f = linear(W, jnp.zeros(5))
    x = images(jax.random.PRNGKey(6), B=4)
    z = f(x, None)
    y = jnp.argmax(z, -1)
    t = attacks.target_classes(z, 3)
    np.testing.assert_array_equal(t[0], jnp.argsort(z, -1)[:, -2])
    np.testing.assert_array_equal(t[2], jnp.argsort(z, -1)[:, -4])
    out = attacks.apgd_targeted(f, x, y, KEY, eps=0.3, steps=20, num_targets=3)
    assert float(jnp.abs(out - x).max()) <= 0.3 + 1e-6
    assert bool(jnp.all(jnp.argmax(f(out, None), -1) != y))
    with pytest.raises(ValueError, match="num_targets"):
        attacks.apgd_targeted(f, x, y, KEY, eps=0.3, steps=2, num_targets=5)



def test_apgd_targeted_compacts_between_targets_with_the_jitted_verdicts():
    """Host path (targets in sequence on the unbroken examples) = the vmapped all-targets path inside a
    jit: the same examples fooled, the same point for the others; fooled examples get a fooling point."""
    W = jax.random.normal(jax.random.PRNGKey(5), (16, 6))
    f = linear(W, jnp.zeros(6))
    x = jax.random.uniform(jax.random.PRNGKey(6), (12, 4, 4, 1), jnp.float32, 0.3, 0.7)
    y = jnp.argmax(f(x, None), -1)
    kw = dict(eps=0.12, steps=10, num_targets=4, full_output=True)  # 5 of 12 can be fooled
    host = attacks.apgd_targeted(f, x, y, KEY, **kw)
    jit = jax.jit(lambda xx: attacks.apgd_targeted(f, xx, y, KEY, **kw))(x)
    fooled = np.asarray(host.fooled)
    assert 0 < fooled.sum() < len(fooled)  # some of each
    np.testing.assert_array_equal(fooled, np.asarray(jit.fooled))
    np.testing.assert_array_equal(np.asarray(host.x)[~fooled], np.asarray(jit.x)[~fooled])
    assert np.all(np.asarray(jnp.argmax(f(host.x, None), -1) != y)[fooled])
    # an inactive example is not attacked; the active ones get the same result as in the full call
    active = np.arange(12) % 3 != 0
    part = attacks.apgd_targeted(f, x, y, KEY, active=active, **kw)
    np.testing.assert_array_equal(np.asarray(part.x)[~active], np.asarray(x)[~active])
    np.testing.assert_array_equal(np.asarray(part.fooled), fooled & active)
    np.testing.assert_array_equal(np.asarray(part.x)[active], np.asarray(host.x)[active])


def test_compacted_apgd_compiles_once_per_bucket():
    """Active sets of 3, 5 and 8 of 32 examples share the 8-row program; 20 adds 24 (a 3/4 step), 32 the batch."""
    W = jax.random.normal(jax.random.PRNGKey(5), (4, 3))
    f = linear(W, jnp.zeros(3))
    x = images(jax.random.PRNGKey(6), B=32)
    y = jnp.argmax(f(x, None), -1)
    full = attacks.apgd(f, x, y, KEY, eps=0.05, steps=3, full_output=True)
    before = apgd_mod._apgd._cache_size()
    for n in (3, 5, 8, 20, 32):
        active = np.arange(32) < n
        best = attacks.apgd(f, x, y, KEY, eps=0.05, steps=3, active=active, full_output=True)
        # random starts are drawn for the whole batch: an example's result does not depend on the others
        np.testing.assert_array_equal(np.asarray(best.x)[:n], np.asarray(full.x)[:n])
        np.testing.assert_array_equal(np.asarray(best.x)[n:], np.asarray(x)[n:])
    assert apgd_mod._apgd._cache_size() - before == 3  # buckets 8, 24 and 32
    with pytest.raises(ValueError, match="active"):
        attacks.apgd(f, x, y, KEY, eps=0.05, steps=3, active=np.ones(5, bool))


# ----------------------------------------------------------------------------- EOT and judgement


def _scaled_linear(W):
    """logits = a·W·flat(x) with a ~ U(0, 2) per draw: E[∇] = W (a known noise)."""
    def f(x, key):
        a = jax.random.uniform(key, (), minval=0.0, maxval=2.0)
        return a * (x.reshape(x.shape[0], -1) @ W)
    return f


def test_eot_averages_the_gradient_over_known_noise():
    W = jax.random.normal(jax.random.PRNGKey(7), (4, 3))
    f = _scaled_linear(W)
    x = images(KEY, B=2)
    y = jnp.zeros(2, jnp.int32)
    margin = lambda logits, y, t: logits[:, 0] - logits[:, 1]
    direction = (W[:, 0] - W[:, 1]).reshape(1, 2, 2, 1)
    K = 8
    vg = lambda fn, loss, K, chunk=None: jax.jit(eot.oracle(fn, loss, y, eot=K, eot_chunk=chunk).value_and_grad)
    _, g, _ = vg(f, margin, K)(x, KEY)
    a = jnp.stack([jax.random.uniform(k, (), minval=0.0, maxval=2.0) for k in jax.random.split(KEY, K)])
    np.testing.assert_allclose(g, jnp.broadcast_to(a.mean() * direction, x.shape), rtol=1e-5)
    # many draws: the expectation E[a]·(w_0 − w_1) = w_0 − w_1 (std of the mean ≈ 0.013)
    _, g, _ = vg(f, margin, 2000, 500)(x, KEY)
    np.testing.assert_allclose(g, jnp.broadcast_to(direction, x.shape), rtol=0.07, atol=1e-6)
    # a deterministic model: any K gives the plain gradient
    _, g1, _ = vg(linear(W, 0.0), "ce", 1)(x, KEY)
    _, g3, _ = vg(linear(W, 0.0), "ce", 3)(x, KEY)
    np.testing.assert_allclose(g1, g3, rtol=1e-5)


def test_robust_accuracy_judges_over_fresh_draws():
    W = jax.random.normal(jax.random.PRNGKey(8), (4, 3))

    def noisy(x, key):
        return (x + 0.3 * jax.random.normal(key, x.shape)).reshape(x.shape[0], -1) @ W

    x = images(KEY, B=16)
    y = jnp.argmax(noisy(x, jax.random.PRNGKey(99)), -1)
    keys = jax.random.split(KEY, 7)
    manual = np.stack([np.asarray(jnp.argmax(noisy(x, k), -1) == y) for k in keys])
    got = attacks.correct_draws(noisy, x, y, KEY, draws=7)
    np.testing.assert_array_equal(got, manual)
    mean, every = attacks.robust_accuracy(noisy, x, y, KEY, draws=7)
    assert float(mean) == pytest.approx(manual.mean())
    assert float(every) == pytest.approx(manual.all(0).mean())
    assert float(every) <= float(mean)
    with pytest.raises(ValueError, match="draws"):
        attacks.robust_accuracy(noisy, x, y, KEY, draws=0)


def test_transfer_crafts_on_the_source_and_judges_on_the_target():
    W, b = _dominant_linear(4)
    src, tgt = linear(W, b), linear(-W, b)
    x = images(KEY)
    y = jnp.zeros(3, jnp.int32)
    x_adv, info = attacks.transfer(attacks.fgsm, src)(tgt, x, y, KEY, eps=0.05, loss="cw", full_output=True)
    np.testing.assert_allclose(x_adv, attacks.fgsm(src, x, y, jax.random.split(KEY)[0], eps=0.05, loss="cw"))
    assert float(info["accuracy"]) == pytest.approx(float(jnp.mean(jnp.argmax(tgt(x_adv, None), -1) == y)))


# ----------------------------------------------------------------------------- spiking model


@pytest.fixture(scope="module")
def digits():
    """digits_conv, T=2, random init with BatchNorm scales ×5 so that every layer spikes."""
    model = models.get_model("digits_conv", T=2)
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 1))
    variables = jax.jit(model.init)({"params": jax.random.PRNGKey(1), "noise": jax.random.PRNGKey(2)}, x)
    flat = traverse_util.flatten_dict(variables["params"])
    params = traverse_util.unflatten_dict({k: v * 5.0 if k[-1] == "scale" else v for k, v in flat.items()})
    variables = {"params": params, "batch_stats": variables["batch_stats"]}
    y = jnp.argmax(jax.jit(models.logits_fn(model, variables))(x, KEY), -1)
    return model, variables, x, y


ATTACKS = {  # (R+FGSM and L2 are covered on the linear model; each entry here is one SNN compile)
    "fgsm": (attacks.fgsm, dict(eps=8 / 255)),
    "pgd_l2": (attacks.pgd, dict(eps=0.5, norm="l2", steps=3, loss="cw", restarts=2)),
    "apgd_dlr": (attacks.apgd, dict(eps=8 / 255, steps=4, loss="dlr")),
    "apgd_t": (attacks.apgd_targeted, dict(eps=8 / 255, steps=3, num_targets=2)),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_invariants_on_a_spiking_model(digits, name):
    model, variables, x, y = digits
    fn, kw = ATTACKS[name]
    out = fn(models.logits_fn(model, variables), x, y, KEY, **kw)
    assert out.shape == x.shape and out.dtype == x.dtype
    d = (out - x).reshape(x.shape[0], -1)
    size = jnp.linalg.norm(d, axis=1) if kw.get("norm") == "l2" else jnp.abs(d).max(1)
    assert float(size.max()) <= kw["eps"] * (1 + 1e-5)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(size.max()) > 0.0  # it moved: the surrogate gradient is not zero


def _calls_per_trace(attack, base, *args, **kw):
    """How often one trace of ``attack`` calls logits_fn (traced with eval_shape: nothing compiles)."""
    calls = []

    def probe(x, key):
        calls.append(1)
        return base(x, key)

    jax.eval_shape(lambda *a: attack(probe, *a, **kw), *args)
    assert calls
    return len(calls)


def test_one_trace_per_configuration_and_any_key_on_a_spiking_model(digits):
    model, variables, x, y = digits
    base = models.logits_fn(model, variables)
    kw = dict(steps=2, random_start=False)
    n = _calls_per_trace(attacks.pgd, base, x, y, KEY, eps=0.01, **kw)
    n += 1  # the boundary's label check traces the model once per function (cached): common.num_classes

    @chex.assert_max_traces(n=n)
    def lf(x, key):
        return base(x, key)

    a = attacks.pgd(lf, x, y, jax.random.PRNGKey(0), eps=8 / 255, **kw)
    b = attacks.pgd(lf, x, y, jax.random.PRNGKey(1), eps=8 / 255, **kw)
    np.testing.assert_array_equal(a, b)  # deterministic model: the key changes nothing
    attacks.pgd(lf, jnp.clip(x + 0.1, 0, 1), y, KEY, eps=0.02, **kw)  # new ε and images: no retrace
    with pytest.raises(AssertionError):  # a new configuration is a new trace (chex catches it)
        attacks.pgd(lf, x, y, KEY, eps=0.01, steps=3, random_start=False)


def test_one_trace_per_configuration_linear_attacks():
    W, b = _dominant_linear(4)
    base = linear(W, b)
    x = images(KEY)
    y = jnp.zeros(3, jnp.int32)
    for fn, kw in [(attacks.apgd, dict(steps=5)), (attacks.fgsm, {}), (attacks.rfgsm, {}),
                   (attacks.apgd_targeted, dict(steps=3, num_targets=2))]:
        chex.clear_trace_counter()
        n = _calls_per_trace(fn, base, x, y, KEY, eps=0.01, **kw) + 1  # + the cached label check

        def lf(x, key):
            return base(x, key)

        lf = chex.assert_max_traces(lf, n=n)
        for i in range(3):
            fn(lf, x + 0.01 * i, y, jax.random.PRNGKey(i), eps=0.01 * (i + 1), **kw)


def test_estimator_ensemble_runs_all_estimators_in_one_jit(digits):
    model, variables, x, y = digits

    def make(s, g):
        return models.logits_fn(model, variables, surrogate=s, gradient=g)

    ests = attacks.sr_ensemble()
    kw = dict(eps=8 / 255, steps=2, random_start=False, loss="cw")
    x_worst, res = attacks.ensemble(attacks.pgd, ests, make)(make(None, None), x, y, KEY, full_output=True, **kw)
    res = types.SimpleNamespace(**res)
    E, B = len(ests), x.shape[0]
    assert res.x_adv.shape == (E,) + x.shape and res.correct.shape == (E, 1, B)
    np.testing.assert_array_equal(res.robust, res.correct.all(0))
    assert float(res.accuracy) == pytest.approx(float(res.robust.mean()))
    assert float(res.accuracy) <= float(res.per_estimator.min()) + 1e-6
    assert float(jnp.abs(res.x_adv - x).max()) <= 8 / 255 + 1e-6
    # the stacked, vmapped surrogate path equals a stand-alone attack with that surrogate (atan(2))
    alone = attacks.pgd(make(surrogate.atan(2.0), "bptt"), x, y, KEY, **kw)
    np.testing.assert_allclose(res.x_adv[2], alone, atol=1e-6)
    # the estimators really differ
    assert float(jnp.abs(res.x_adv[0] - res.x_adv[3]).max()) > 0
    # judged with the true forward
    judge = jnp.argmax(models.logits_fn(model, variables)(res.x_adv[1], KEY), -1) == y
    np.testing.assert_array_equal(res.correct[1, 0], judge)
    # the returned point is, per example, the point of the estimator correct in the fewest draws
    np.testing.assert_array_equal(x_worst, res.x_adv[res.worst, jnp.arange(B)])
    np.testing.assert_array_equal(res.correct[res.worst, 0, jnp.arange(B)], res.correct[:, 0].min(0))


def test_estimator_parsing_and_ann_degenerate_case():
    assert gradients.parse("bptr") == gradients.bptr()
    e = gradients.parse("atan:3")
    assert e.gradient == "bptt" and e.surrogate.name == "atan" and float(e.surrogate.width) == 3.0
    assert gradients.parse("triangle").name == "triangle(1)"
    with pytest.raises(ValueError, match="unknown 'relu'"):
        gradients.parse("relu")
    W, b = _dominant_linear(4)
    f = linear(W, b)
    x = images(KEY)
    y = jnp.zeros(3, jnp.int32)
    x_adv, info = attacks.ensemble(attacks.fgsm, None, lambda s, g: f)(f, x, y, KEY, eps=0.05, loss="cw",
                                                                        full_output=True)
    assert info["x_adv"].shape == (1,) + x.shape
    np.testing.assert_array_equal(x_adv, info["x_adv"][0])


# ----------------------------------------------------------------------------- errors


def test_boundary_errors_name_the_field():
    f = linear(jnp.ones((4, 3)), jnp.zeros(3))
    x = images(KEY)
    y = jnp.zeros(3, jnp.int32)
    with pytest.raises(ValueError, match="norm: 'l1'"):
        attacks.pgd(f, x, y, KEY, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="eps: must be"):
        attacks.pgd(f, x, y, KEY, eps=-0.1)
    with pytest.raises(ValueError, match="steps: must be an integer >= 1"):
        attacks.apgd(f, x, y, KEY, eps=0.1, steps=0)
    with pytest.raises(ValueError, match="needs target classes"):
        attacks.pgd(f, x, y, KEY, eps=0.1, loss="dlr_targeted")
    with pytest.raises(ValueError, match="eot: must be an integer"):
        attacks.fgsm(f, x, y, KEY, eps=0.1, eot=0)
    with pytest.raises(ValueError, match="attack y"):
        attacks.fgsm(f, x, y[:2], KEY, eps=0.1)
    with pytest.raises(ValueError, match="alpha: must be <= eps"):
        attacks.rfgsm(f, x, y, KEY, eps=0.1, alpha=0.2)


# ----------------------------------------------------------------------------- bad inputs (issue 15)


def _bad_input_case():
    f = linear(jnp.ones((4, 3)), jnp.zeros(3))
    return f, images(KEY), jnp.zeros(3, jnp.int32)


def test_images_outside_the_unit_box_are_one_line_errors():
    f, x, y = _bad_input_case()
    x = jnp.full_like(x, 0.5).at[0, 0].set(-0.5).at[1, 1].set(1.25)
    with pytest.raises(ValueError, match=r"^attack x: pixel values in \[-0\.5, 1\.25\]; images must be in \[0, 1\]$"):
        attacks.pgd(f, x, y, KEY, eps=0.1)


def test_nan_pixels_are_one_line_errors():
    f, x, y = _bad_input_case()
    with pytest.raises(ValueError, match=r"^attack x: 2 NaN pixel\(s\) of 12; images must be finite and in \[0, 1\]$"):
        attacks.fgsm(f, x.reshape(3, -1).at[0, :2].set(jnp.nan).reshape(x.shape), y, KEY, eps=0.1)


def test_labels_outside_the_classes_are_one_line_errors():
    f, x, y = _bad_input_case()
    with pytest.raises(ValueError, match=r"^attack y: labels in \[0, 3\]; allowed: \[0, 3\)$"):
        attacks.apgd(f, x, y.at[1].set(3), KEY, eps=0.1, steps=2)
    with pytest.raises(ValueError, match=r"^attack y: labels in \[-1, 0\]; allowed: \[0, 3\)$"):
        attacks.square(lambda x, k: f(x.reshape(x.shape[0], -1), k), x.reshape(3, 2, 2, 1), y.at[0].set(-1),
                       KEY, eps=0.1, queries=4)


def test_an_integer_key_is_a_one_line_error_and_old_style_keys_work():
    f, x, y = _bad_input_case()
    with pytest.raises(ValueError, match=r"^attack key: expected a PRNG key \(jax.random.key\(seed\) or "
                                         r"jax.random.PRNGKey\(seed\)\), got int 0$"):
        attacks.pgd(f, x, y, 0, eps=0.1)
    np.testing.assert_array_equal(attacks.pgd(f, x, y, jax.random.PRNGKey(0), eps=0.1, random_start=False),
                                  attacks.pgd(f, x, y, jax.random.key(1), eps=0.1, random_start=False))


def test_an_eps_vector_of_the_wrong_length_is_a_one_line_error():
    f, x, y = _bad_input_case()
    with pytest.raises(ValueError, match=r"^attack eps: expected a number or a per-example vector of shape \(3,\), "
                                         r"got shape \(2,\)$"):
        attacks.pgd(f, x, y, KEY, eps=jnp.array([0.1, 0.2]))
    per_example = attacks.fgsm(f, x, y, KEY, eps=jnp.array([0.0, 0.1, 0.2]))  # the right length works
    assert float(jnp.abs(per_example[0] - x[0]).max()) == 0.0


def test_traced_inputs_pass_the_boundary_unchecked():
    f, x, y = _bad_input_case()
    out = jax.jit(lambda xx, yy, k: attacks.fgsm(f, xx, yy, k, eps=0.1))(x, y, KEY)
    assert out.shape == x.shape


def test_pgd_unrolled_loop_gives_the_rolled_result_bitwise():
    f, x, y = _bad_input_case()
    rolled = attacks.pgd(f, x, y, KEY, eps=0.1, steps=4, unroll=1, full_output=True)
    for unroll in (None, 2, 4):
        chex.assert_trees_all_equal(attacks.pgd(f, x, y, KEY, eps=0.1, steps=4, unroll=unroll, full_output=True),
                                    rolled)
    with pytest.raises(ValueError, match=r"^attack unroll"):
        attacks.pgd(f, x, y, KEY, eps=0.1, unroll=0)
