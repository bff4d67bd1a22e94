"""Defenses: each formula against an independent reference on tiny models (float64 where exact).

* SR: D against a numpy finite difference of f with ∇f itself from central differences;
  D → ‖∇f‖₁ as h → 0; the parameter gradient treats v and j* as constants.
* MPPD: the Y recursion against a Python loop; the last spiking layer is the last one called.
* RAT: an orthogonal matrix is a fixed point, singular values move by β(s − s³), the stored
  Flax layout equals the PyTorch formula, the simplex projection equals a brute force.
* AT / TRADES / noise / MFDV / distill: what reaches the wrapped loss and how terms combine.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jsnn import defenses, models
from jsnn.defenses import base
from jsnn.defenses.adversarial import craft
from jsnn.models.wrappers import ANNNet, FeatureVarianceNet, StochasticFeatures
from jsnn.defenses.feature_variance import ramp, regularizer
from jsnn.defenses.orthogonal import project_simplex, retract, retract_kernel, retract_params
from jsnn.defenses.sparse_gradient import finite_difference, strongest_wrong_class
from jsnn.defenses.stability import forward_with_current, mppd_penalty, mppd_trace
from jsnn.defenses.trades import craft_kl
from jsnn.layers import DLIF
from jsnn.losses import cross_entropy_loss_fn, kl_divergence
from jsnn.models.base import train_forward


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _batch(n=8, seed=0):
    x = jax.random.uniform(jax.random.key(seed), (n, 8, 8, 1))
    return {"image": x, "label": jnp.arange(n, dtype=jnp.int32) % 10}


@pytest.fixture(scope="module")
def tiny():
    """A tiny conv SNN (T=2) and its variables."""
    model = models.get_model("digits_conv", num_classes=10, T=2, features=(4,), hidden=8)
    batch = _batch()
    v = jax.jit(model.init)({"params": jax.random.key(1), "noise": jax.random.key(2)}, batch["image"])
    return model, v["params"], {"batch_stats": v["batch_stats"]}, batch


def _recording_loss(record):
    """A wrapped loss that records the batch it sees; loss = mean of the images."""

    def loss_fn(params, model_state, batch, key):
        record.append(batch)
        loss = jnp.mean(batch["image"]) + 0.0 * jax.tree.leaves(params)[0].sum()
        return loss, (model_state, {"metrics": {"accuracy": jnp.float32(0.5)}})

    return loss_fn


# ----------------------------------------------------------------------------- registry / chain


def test_chain_applies_first_innermost():
    order = []

    def tag(name):
        def t(loss_fn):
            def f(*a):
                order.append(name)
                return loss_fn(*a)

            return f

        return t

    loss = defenses.chain(tag("a"), tag("b"))(lambda *a: "done")
    assert loss(1, 2, 3, 4) == "done"
    assert order == ["b", "a"]  # b wraps a: b runs first, calls a


def test_from_config_errors_name_the_field(tiny):
    model = tiny[0]
    cfg = lambda **d: ml_collections.ConfigDict({"defense": d})
    with pytest.raises(ValueError, match=r"defense.name: unknown defense\(s\) \['pgd'\].*allowed: none, at"):
        defenses.from_config(cfg(name="sr+pgd"), model)
    with pytest.raises(ValueError, match="repeated"):
        defenses.from_config(cfg(name="sr+sr"), model)
    with pytest.raises(ValueError, match=r"defense.sr.lamb: unknown field; allowed: h, lam"):
        defenses.from_config(cfg(name="sr", sr={"lamb": 0.1}), model)
    with pytest.raises(ValueError, match=r"defense.srr: unknown defense settings"):
        defenses.from_config(cfg(name="none", srr={"lam": 0.1}), model)
    with pytest.raises(ValueError, match=r"defense.at.attack: 'cw'; allowed: fgsm, rfgsm, pgd"):
        defenses.from_config(cfg(name="at", at={"attack": "cw"}), model)
    with pytest.raises(ValueError, match=r"defense.at.mix: must be a finite number > 0.0 and <= 1.0, got 0"):
        defenses.from_config(cfg(name="at", at={"mix": 0}), model)
    with pytest.raises(ValueError, match="defense.mfdv: needs config.model.name='mfdv'"):
        defenses.from_config(cfg(name="mfdv"), model)
    with pytest.raises(ValueError, match="defense.distill.teacher_workdir: required"):
        defenses.from_config(cfg(name="distill"), model)
    setup = defenses.from_config(cfg(name="none", sr={"lam": 0.5}), model)  # unused settings are fine
    assert setup.param_transform is None
    setup = defenses.from_config(cfg(name="at+rat"), model)
    assert isinstance(setup.param_transform, optax.GradientTransformation)


# ----------------------------------------------------------------------------- SR


def _smooth_logits_fn(w1, w2):
    return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


def test_sr_finite_difference_matches_independent_reference(x64):
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(6, 5)), rng.normal(size=(5, 4))
    x = rng.uniform(size=(3, 6))
    y = np.array([0, 2, 3])
    h = 0.01
    d, f1, v = finite_difference(_smooth_logits_fn(jnp.asarray(w1), jnp.asarray(w2)), jnp.asarray(x),
                                 jnp.asarray(y), h)

    def logits_np(xx):
        return np.tanh(xx @ w1) @ w2

    z = logits_np(x)
    j = np.array([max((k for k in range(4) if k != y[b]), key=lambda k: z[b, k]) for b in range(3)])

    def f_np(xx):
        zz = logits_np(xx)
        m = zz[np.arange(3), y] - zz[np.arange(3), j]
        return 1.0 / (1.0 + np.exp(-m))

    grad = np.zeros_like(x)  # central differences, per coordinate
    for i in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, i] = 1e-6
        grad[:, i] = (f_np(x + e) - f_np(x - e)) / 2e-6
    v_ref = np.sign(grad)
    d_ref = (f_np(x + h * v_ref) - f_np(x)) / h
    np.testing.assert_array_equal(np.asarray(strongest_wrong_class(jnp.asarray(z), jnp.asarray(y))), j)
    np.testing.assert_allclose(np.asarray(f1), f_np(x), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(v), v_ref)
    np.testing.assert_allclose(np.asarray(d), d_ref, rtol=1e-9, atol=1e-12)
    # D is the directional derivative along sign(∇f): ‖∇f‖₁ as h → 0.
    d_small, _, _ = finite_difference(_smooth_logits_fn(jnp.asarray(w1), jnp.asarray(w2)), jnp.asarray(x),
                                      jnp.asarray(y), 1e-7)
    np.testing.assert_allclose(np.asarray(d_small), np.abs(grad).sum(1), rtol=1e-5)


def test_sr_parameter_gradient_holds_v_and_j_fixed(x64):
    rng = np.random.default_rng(1)
    w1, w2 = jnp.asarray(rng.normal(size=(6, 5))), jnp.asarray(rng.normal(size=(5, 4)))
    x, y = jnp.asarray(rng.uniform(size=(3, 6))), jnp.asarray([1, 0, 3])

    def pen(w2_):
        d, _, _ = finite_difference(_smooth_logits_fn(w1, w2_), x, y, 0.01)
        return jnp.mean(d ** 2)

    g = jax.grad(pen)(w2)
    # v and j* are piecewise constant in the parameters: a small numeric step sees them fixed.
    e = np.zeros(w2.shape)
    e[2, 1] = 1e-6
    num = (pen(w2 + e) - pen(w2 - e)) / 2e-6
    np.testing.assert_allclose(float(g[2, 1]), float(num), rtol=1e-6)


def test_sr_transform_adds_lambda_times_penalty(tiny):
    model, params, state, batch = tiny
    inner = cross_entropy_loss_fn(model)
    key = jax.random.key(5)
    lam = 0.3
    loss_fn = defenses.sparse_gradient(model, lam=lam)(inner)
    (loss, (_, aux)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, state, batch, key)
    metrics = aux["metrics"]
    k_loss, _ = jax.random.split(key)
    base_loss = jax.jit(inner)(params, state, batch, k_loss)[0]
    np.testing.assert_allclose(float(loss), float(base_loss) + lam * float(metrics["sr_penalty"]), rtol=1e-5)
    assert float(metrics["sr_penalty"]) > 0
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


# ----------------------------------------------------------------------------- RSNN / MPPD


def test_mppd_trace_matches_loop(x64):
    rng = np.random.default_rng(2)
    delta = rng.normal(size=(5, 3, 4))
    ys = np.asarray(mppd_trace(jnp.asarray(delta), 0.99))
    y = np.zeros((3, 4))
    for t in range(5):
        y = 0.99 * y + delta[t]
        np.testing.assert_allclose(ys[t], y, rtol=1e-13)
    clean, pert = jnp.asarray(rng.normal(size=(5, 3, 4))), jnp.asarray(rng.normal(size=(5, 3, 4)))
    ref = np.mean(np.asarray(mppd_trace(clean - pert, 0.9)) ** 2)
    np.testing.assert_allclose(float(mppd_penalty(clean, pert, 0.9)), ref, rtol=1e-13)
    g_clean, g_pert = jax.grad(mppd_penalty, argnums=(0, 1))(clean, pert, 0.9)
    assert not np.any(np.asarray(g_clean))  # the clean current carries no gradient
    assert np.any(np.asarray(g_pert))


def test_last_spiking_layer_is_the_last_called():
    # 11 spiking layers: by name order 'SpikingNeuron_10' < 'SpikingNeuron_2'; call order must win.
    widths = tuple(range(3, 14))
    model = models.get_model("digits_mlp", num_classes=10, T=1, hidden=widths)
    batch = _batch(4)
    v = jax.jit(model.init)({"params": jax.random.key(0)}, batch["image"])
    state = {"batch_stats": v["batch_stats"]}
    fwd = jax.jit(lambda p, s, x, k: forward_with_current(model, p, s, x, k))
    logits, _, cur = fwd(v["params"], state, batch["image"], jax.random.key(1))
    assert cur.shape == (1, 4, widths[-1])
    _, inter = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", "intermediates"]))(
        v, batch["image"])
    np.testing.assert_allclose(np.asarray(cur), np.asarray(inter["intermediates"]["SpikingNeuron_10"]["current"][0]),
                               rtol=1e-6)


def test_mppd_transform_combines_terms(tiny):
    model, params, state, batch = tiny
    model = model.clone(neuron=DLIF)
    v = jax.jit(model.init)({"params": jax.random.key(1)}, batch["image"])
    params, state = v["params"], {"batch_stats": v["batch_stats"]}
    inner = cross_entropy_loss_fn(model)
    key = jax.random.key(3)
    _, k_loss, _ = jax.random.split(key, 3)
    clean = float(jax.jit(inner)(params, state, batch, k_loss)[0])
    # w = 1, ρ = 0: exactly the wrapped clean loss.
    fn1 = defenses.membrane_stability(model, rho=0.0, clean_weight=1.0)(inner)
    np.testing.assert_allclose(float(jax.jit(fn1)(params, state, batch, key)[0]), clean, rtol=1e-6)
    for pert in ("gaussian", "rfgsm"):
        fn = defenses.membrane_stability(model, rho=2.0, perturbation=pert)(inner)
        (loss, (_, aux)), grads = jax.jit(jax.value_and_grad(fn, has_aux=True))(params, state, batch, key)
        m = aux["metrics"]
        np.testing.assert_allclose(float(loss), 0.5 * clean + 0.5 * float(m["rsnn_pert_loss"])
                                   + 2.0 * float(m["rsnn_penalty"]), rtol=1e-5)
        assert float(m["rsnn_penalty"]) > 0
    gains = [g for path, g in jax.tree_util.tree_leaves_with_path(grads) if "gain" in jax.tree_util.keystr(path)]
    assert gains and all(bool(jnp.all(jnp.isfinite(g))) for g in gains)


# ----------------------------------------------------------------------------- RAT


def test_retraction_fixed_point_and_singular_values(x64):
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    np.testing.assert_allclose(np.asarray(retract(jnp.asarray(q), 0.01)), q, atol=1e-13)
    q_rect = q[:, :4]  # orthonormal columns (stored layout (fan_in, out) of a layer with 4 outputs)
    np.testing.assert_allclose(np.asarray(retract(jnp.asarray(q_rect), 0.01)), q_rect, atol=1e-13)
    w = rng.normal(size=(5, 3)) * 0.7
    s = np.linalg.svd(w, compute_uv=False)
    s_new = np.linalg.svd(np.asarray(retract(jnp.asarray(w), 0.05)), compute_uv=False)
    np.testing.assert_allclose(np.sort(s_new), np.sort(s + 0.05 * (s - s ** 3)), rtol=1e-12)
    err = lambda m: np.linalg.norm(m.T @ m - np.eye(m.shape[1]))
    m = jnp.asarray(w)
    errs = [err(np.asarray(m))]
    for _ in range(50):
        m = retract(m, 0.05)
        errs.append(err(np.asarray(m)))
    assert all(b < a for a, b in zip(errs, errs[1:])) and errs[-1] < 0.2 * errs[0]


def test_retraction_of_flax_kernel_equals_torch_formula(x64):
    rng = np.random.default_rng(4)
    k = rng.normal(size=(3, 3, 2, 5)) * 0.3  # Flax conv kernel (kh, kw, in, out)
    w = k.reshape(-1, 5).T  # PyTorch view (out, in·kh·kw) (up to a permutation of columns)
    beta = 0.004
    w_new = (1 + beta) * w - beta * w @ w.T @ w
    np.testing.assert_allclose(np.asarray(retract_kernel(jnp.asarray(k), beta)), w_new.T.reshape(k.shape),
                               rtol=1e-12)
    # Row sampling of big dense layers: only the sampled output units change.
    d = jnp.asarray(rng.normal(size=(4, 10)) * 0.3)
    out = np.asarray(retract_kernel(d, 0.1, key=jax.random.key(0), row_fraction=0.3, row_threshold=5))
    changed = np.any(out != np.asarray(d), axis=0)
    assert changed.sum() == 3


def test_simplex_projection_matches_brute_force(x64):
    rng = np.random.default_rng(5)

    def brute(v):
        best = None
        for r in range(1, len(v) + 1):
            for support in itertools.combinations(range(len(v)), r):
                w = np.zeros_like(v)
                s = list(support)
                w[s] = v[s] - (v[s].sum() - 1) / r
                if np.all(w[s] >= 0):
                    d = np.sum((w - v) ** 2)
                    if best is None or d < best[0]:
                        best = (d, w)
        return best[1]

    for v in [rng.normal(size=n) * 2 for n in (2, 3, 4, 4, 5)] + [np.array([0.5, 0.5]), np.array([0.9, 0.4])]:
        np.testing.assert_allclose(np.asarray(project_simplex(jnp.asarray(v))), brute(v), atol=1e-12)


def test_orthogonal_optax_transform():
    params = {"Conv_0": {"kernel": jnp.ones((3, 3, 1, 2)) * 0.3},
              "Dense_0": {"kernel": jnp.eye(3, 2) * 2.0, "bias": jnp.ones(2)},
              "block": {"mix": jnp.array([0.9, 0.4])},
              "BatchNorm_0": {"scale": jnp.ones(2)}}
    updates = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)
    tx = defenses.orthogonal(0.01)
    state = tx.init(params)
    new_updates, state2 = jax.jit(tx.update)(updates, state, params)
    new = optax.apply_updates(params, new_updates)
    stepped = optax.apply_updates(params, updates)
    want = retract_params(stepped, 0.01)
    chex.assert_trees_all_close(new, want, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new["block"]["mix"]), [0.75, 0.25], atol=1e-6)
    chex.assert_trees_all_close(new["Dense_0"]["bias"], stepped["Dense_0"]["bias"])
    chex.assert_trees_all_close(new["BatchNorm_0"], stepped["BatchNorm_0"])
    assert not np.allclose(np.asarray(new["Dense_0"]["kernel"]), np.asarray(stepped["Dense_0"]["kernel"]))
    with pytest.raises(ValueError, match="needs params"):
        tx.update(updates, state)
    with pytest.raises(ValueError, match=r"defense.rat.row_fraction"):
        defenses.orthogonal(0.01, row_fraction=0.0)


# ----------------------------------------------------------------------------- AT / TRADES / noise


def test_adversarial_training_crafts_in_eval_mode_within_the_ball(tiny):
    model, params, state, batch = tiny
    eps = 0.1
    record = []
    fn = defenses.adversarial_training(model, attack="pgd", eps=eps, steps=3, step_size=0.05)(_recording_loss(record))
    key = jax.random.key(7)
    fn(params, state, batch, key)  # not jitted: the recording loss keeps the batch it sees
    x_adv = record[-1]["image"]
    assert float(jnp.max(jnp.abs(x_adv - batch["image"]))) <= eps + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    np.testing.assert_array_equal(np.asarray(record[-1]["label"]), np.asarray(batch["label"]))
    # The examples are those of jsnn.attacks.pgd against the eval-mode forward (running BN stats).
    from jsnn.attacks.pgd import pgd

    k_attack, _ = jax.random.split(key)
    fwd = lambda x, k: model.apply({"params": params, **state}, x, train=False, rngs={"noise": k})
    want = pgd(fwd, batch["image"], batch["label"], k_attack, eps=eps, steps=3, step_size=0.05)
    np.testing.assert_allclose(np.asarray(x_adv), np.asarray(want), atol=1e-6)


def test_adversarial_training_mix_and_gradient_stops_at_x_adv(tiny):
    model, params, state, batch = tiny
    inner = cross_entropy_loss_fn(model)
    key = jax.random.key(8)
    fn = defenses.adversarial_training(model, attack="fgsm", eps=0.05, mix=0.25)(inner)
    loss, (_, aux) = jax.jit(fn)(params, state, batch, key)
    m = aux["metrics"]
    np.testing.assert_allclose(float(loss), 0.75 * float(m["at_clean_loss"]) + 0.25 * float(m["at_adv_loss"]),
                               rtol=1e-6)
    fn1 = defenses.adversarial_training(model, attack="rfgsm", eps=0.05)(inner)
    k_attack, k_loss = jax.random.split(key)
    x_adv = craft(model, params, state, batch["image"], batch["label"], k_attack, attack="rfgsm", eps=0.05)
    g = jax.jit(jax.grad(lambda p: fn1(p, state, batch, key)[0]))(params)
    g_ref = jax.jit(jax.grad(lambda p: inner(p, state, base.with_image(batch, x_adv), k_loss)[0]))(params)
    chex.assert_trees_all_close(g, g_ref, atol=1e-5)


def test_trades_kl_attack_and_loss(tiny):
    rng = np.random.default_rng(7)
    w1, w2 = jnp.asarray(rng.normal(size=(64, 16))), jnp.asarray(rng.normal(size=(16, 10)))
    smooth = _smooth_logits_fn(w1, w2)
    logits_fn = lambda x, k: smooth(x)
    model, params, state, batch = tiny
    x = batch["image"]
    x_adv = craft_kl(logits_fn, x, jax.random.key(0), eps=0.1, step_size=0.03, steps=5)
    assert float(jnp.max(jnp.abs(x_adv - x))) <= 0.1 + 1e-6
    kl = lambda xa: float(kl_divergence(smooth(x), smooth(xa)).mean())
    start = jnp.clip(x + 0.001 * jax.random.normal(jax.random.split(jax.random.key(0))[0], x.shape), 0, 1)
    assert kl(x_adv) > 100 * kl(start)
    inner = cross_entropy_loss_fn(model)
    key = jax.random.key(2)
    fn = defenses.trades(model, beta=3.0, eps=0.1, step_size=0.03, steps=2)(inner)
    loss, (_, aux) = jax.jit(fn)(params, state, batch, key)
    m = aux["metrics"]
    _, k_loss, _ = jax.random.split(key, 3)
    np.testing.assert_allclose(float(loss), float(jax.jit(inner)(params, state, batch, k_loss)[0])
                               + 3.0 * float(m["trades_kl"]), rtol=1e-5)


def test_kl_divergence_reference(x64):
    rng = np.random.default_rng(6)
    p, q = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    sp = np.exp(p / 2) / np.exp(p / 2).sum(1, keepdims=True)
    sq = np.exp(q / 2) / np.exp(q / 2).sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(kl_divergence(jnp.asarray(p), jnp.asarray(q), 2.0)),
                               np.sum(sp * np.log(sp / sq), 1), rtol=1e-12)


def test_gaussian_noise_reaches_the_wrapped_loss():
    record = []
    x = jnp.full((64, 8, 8, 1), 0.5)
    fn = defenses.gaussian_noise(sigma=0.1)(_recording_loss(record))
    fn({"w": jnp.zeros(1)}, {}, {"image": x, "label": jnp.zeros(64, jnp.int32)}, jax.random.key(0))
    d = np.asarray(record[-1]["image"] - x)
    assert abs(d.std() - 0.1) < 0.005 and abs(d.mean()) < 0.005
    fn = defenses.gaussian_noise(sigma=2.0, clip=True)(_recording_loss(record))
    fn({"w": jnp.zeros(1)}, {}, {"image": x, "label": jnp.zeros(64, jnp.int32)}, jax.random.key(0))
    assert float(record[-1]["image"].min()) == 0.0 and float(record[-1]["image"].max()) == 1.0


# ----------------------------------------------------------------------------- MFDV


def test_stochastic_features_draws_per_example_noise():
    layer = StochasticFeatures(min_sigma=0.0)
    mu = jnp.zeros((4000, 3))
    s = jnp.broadcast_to(jnp.log(jnp.expm1(jnp.array([0.5, 1.0, 2.0]))), mu.shape)  # softplus⁻¹(σ)
    z = layer.apply({}, mu, s, rngs={"noise": jax.random.key(0)})
    np.testing.assert_allclose(np.asarray(z.std(0)), [0.5, 1.0, 2.0], rtol=0.05)
    assert float(jnp.abs(z[0] - z[1]).sum()) > 0  # identical inputs, independent noise
    z2 = layer.apply({}, mu, s, rngs={"noise": jax.random.key(0)})
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z2))


def test_mfdv_model_is_stochastic_at_test_time_and_unit_norm():
    model = models.get_model("mfdv", num_classes=10, T=2, backbone="digits_conv", features=6)
    assert isinstance(model, FeatureVarianceNet) and model.stochastic
    batch = _batch(4)
    v = jax.jit(model.init)({"params": jax.random.key(0), "noise": jax.random.key(1)}, batch["image"])
    assert int(v["counters"]["step"]) == 0
    apply = jax.jit(lambda k: model.apply(v, batch["image"], rngs={"noise": k}))  # eval mode
    a, b = apply(jax.random.key(2)), apply(jax.random.key(3))
    assert a.shape == (4, 10) and not np.allclose(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="model.kwargs.backbone: unknown backbone 'vgg99'"):
        models.get_model("mfdv", num_classes=10, T=2, backbone="vgg99")


def test_mfdv_regularizer_ramp_and_transform(x64):
    sigma = jnp.asarray([[0.5, 2.0], [1.0, 3.0]])
    np.testing.assert_allclose(float(regularizer(sigma, "log_var")), np.mean(np.log(np.asarray(sigma) ** 2)))
    w = np.array([[1.0, 0.0, 2.0], [0.5, 1.0, 0.0]])  # (features, classes)
    ref = np.mean([np.log(np.trace(w.T @ np.diag(s ** 2) @ w)) for s in np.asarray(sigma)])
    np.testing.assert_allclose(float(regularizer(sigma, "wca", jnp.asarray(w))), ref, rtol=1e-12)
    assert [float(ramp(0.2, jnp.asarray(t), 10)) for t in (0, 5, 10, 50)] == pytest.approx([0, 0.1, 0.2, 0.2])


def test_mfdv_transform_counts_steps():
    model = models.get_model("mfdv", num_classes=10, T=2, backbone="digits_conv", features=6)
    batch = _batch(4)
    v = jax.jit(model.init)({"params": jax.random.key(0), "noise": jax.random.key(1)}, batch["image"])
    params = v["params"]
    state = {k: x for k, x in v.items() if k != "params"}
    inner = cross_entropy_loss_fn(model)
    fn = jax.jit(defenses.feature_variance(model, lam=0.5, ramp_steps=2)(inner))
    losses = []
    for _ in range(3):
        loss, (state, aux) = fn(params, state, batch, jax.random.key(4))
        m = aux["metrics"]
        losses.append((float(loss), float(m["mfdv_lambda"]), float(m["mfdv_reg"])))
    assert int(state["counters"]["step"]) == 3
    assert [l[1] for l in losses] == pytest.approx([0.0, 0.25, 0.5])
    k_loss, _ = jax.random.split(jax.random.key(4))
    base_loss = float(inner(params, state, batch, k_loss)[0])
    for loss, lam_t, r in losses:
        assert loss == pytest.approx(base_loss - lam_t * r, rel=1e-5)


# ----------------------------------------------------------------------------- distill / ANN


def test_ann_twin_replaces_spikes_by_relu():
    ann = models.get_model("ann", num_classes=10, T=4, backbone="digits_conv")
    assert isinstance(ann, ANNNet)
    batch = _batch(4)
    v = jax.jit(ann.init)({"params": jax.random.key(0)}, batch["image"])
    snn = models.get_model("digits_conv", num_classes=10, T=1)
    # Same parameters as the T=1 SNN; the hidden activations are ReLUs, not spikes.
    _, inter = jax.jit(lambda v, x: ann.apply(v, x, capture_intermediates=True, mutable=["intermediates"]))(
        v, batch["image"])
    dense0 = inter["intermediates"]["backbone"]["Dense_0"]["__call__"][0]
    bn = inter["intermediates"]["backbone"]["BatchNorm_2"]["__call__"][0]
    out = inter["intermediates"]["backbone"]["Dense_1"]["__call__"][0]
    want = jax.nn.relu(bn) @ v["params"]["backbone"]["Dense_1"]["kernel"] + v["params"]["backbone"]["Dense_1"]["bias"]
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-5, atol=1e-5)
    assert dense0.shape == (4, 128)
    assert jax.tree.structure(jax.eval_shape(snn.init, {"params": jax.random.key(0)}, batch["image"])["params"]) \
        == jax.tree.structure(v["params"]["backbone"])
    g = jax.jit(jax.grad(lambda x: ann.apply(v, x).sum()))(batch["image"])
    assert float(jnp.abs(g).sum()) > 0


def test_distill_transform(tiny):
    model, params, state, batch = tiny
    inner = cross_entropy_loss_fn(model)
    teacher = lambda x: jnp.tile(jnp.arange(10.0), (x.shape[0], 1))
    key = jax.random.key(0)
    fn = defenses.distill(model, teacher, alpha=0.3, temperature=2.0)(inner)
    loss, (_, aux) = jax.jit(fn)(params, state, batch, key)
    m = aux["metrics"]
    k_loss, k_fwd = jax.random.split(key)
    s, _ = jax.jit(lambda: train_forward(model, params, state, batch["image"], k_fwd))()
    kl = float(kl_divergence(teacher(batch["image"]), s, 2.0).mean())
    np.testing.assert_allclose(float(m["distill_kl"]), kl, rtol=1e-5)
    np.testing.assert_allclose(float(loss), 0.7 * float(jax.jit(inner)(params, state, batch, k_loss)[0])
                               + 0.3 * 4.0 * kl, rtol=1e-5)
