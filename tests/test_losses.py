"""The loss contract carries the forward's outputs: each regularizing defense runs the clean train forward once."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn import DLIF, defenses, get_model
from jsnn.losses import cross_entropy_loss_fn


def _clean_train_forwards(model, loss_fn, params, state, batch, key):
    """How many training-mode forwards of ``model`` on the clean images tracing ``value_and_grad(loss_fn)`` runs."""
    calls, seen = [], {}

    def interceptor(next_fun, args, kwargs, context):
        if type(context.module) is type(model) and context.method_name == "__call__" and kwargs.get("train"):
            calls.append(args[0])
        return next_fun(*args, **kwargs)

    def traced(params, state, x, key):
        seen["x"] = x
        with nn.intercept_methods(interceptor):
            return jax.value_and_grad(loss_fn, has_aux=True)(params, state, {**batch, "image": x}, key)

    jax.make_jaxpr(traced)(params, state, batch["image"], key)
    return sum(a is seen["x"] for a in calls)


def _setup(model, extra=()):
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    v = jax.jit(model.init)(jax.random.key(1), x)
    state = {k: v[k] for k in ("batch_stats",) + tuple(extra)}
    return v["params"], state, {"image": x, "label": jnp.arange(4, dtype=jnp.int32)}


MLP = dict(hidden=(8,), T=2)


def _teacher(x):
    return jnp.zeros((x.shape[0], 10))


CASES = {
    "vanilla": (lambda: get_model("digits_mlp", **MLP), lambda m: (lambda f: f), ()),
    "distill": (lambda: get_model("digits_mlp", **MLP), lambda m: defenses.distill(m, _teacher), ()),
    "mfdv": (lambda: get_model("mfdv", backbone="digits_mlp", features=4, **MLP),
             lambda m: defenses.feature_variance(m), ("counters",)),
    "rsnn": (lambda: get_model("digits_mlp", neuron=DLIF, **MLP), lambda m: defenses.membrane_stability(m), ()),
    "trades": (lambda: get_model("digits_mlp", **MLP), lambda m: defenses.trades(m, steps=1), ()),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_clean_train_forward_runs_once(name):
    make_model, make_defense, extra = CASES[name]
    model = make_model()
    params, state, batch = _setup(model, extra)
    loss_fn = make_defense(model)(cross_entropy_loss_fn(model))
    assert _clean_train_forwards(model, loss_fn, params, state, batch, jax.random.key(2)) == 1


def test_changed_images_fall_back_to_own_clean_forward():
    """noise+distill: the wrapped loss saw noisy images, so distill runs its own clean forward (as before)."""
    model = get_model("digits_mlp", **MLP)
    params, state, batch = _setup(model)
    inner = defenses.gaussian_noise(sigma=0.1)(cross_entropy_loss_fn(model))
    loss_fn = defenses.distill(model, _teacher)(inner)
    assert _clean_train_forwards(model, loss_fn, params, state, batch, jax.random.key(2)) == 1
    _, (_, aux) = jax.jit(loss_fn)(params, state, batch, jax.random.key(2))
    assert float(aux["metrics"]["distill_kl"]) >= 0 and aux["logits"].shape == (4, 10)


def test_trades_reusing_the_clean_logits_keeps_loss_and_gradient():
    """TRADES on the wrapped loss's logits = TRADES with its own clean forward (same loss bits, gradient to float noise)."""
    from jsnn import losses
    from jsnn.defenses import base
    from jsnn.defenses.trades import craft_kl
    from jsnn.models.base import train_forward

    model = get_model("digits_mlp", **MLP)
    params, state, batch = _setup(model)
    ce = cross_entropy_loss_fn(model)

    def two_forwards(params, state, batch, key):  # the pre-reuse formulation
        k_attack, k_loss, k_fwd = jax.random.split(key, 3)
        x = batch["image"]
        x_adv = craft_kl(base.eval_logits_fn(model, params, state), x, k_attack, eps=0.031, step_size=0.007, steps=2)
        loss, _ = ce(params, state, batch, k_loss)
        z_clean, _ = train_forward(model, params, state, x, k_fwd)
        z_adv, _ = train_forward(model, params, state, x_adv, k_fwd)
        return loss + 6.0 * losses.kl_divergence(z_clean, z_adv).mean()

    key = jax.random.key(2)
    want, g_want = jax.jit(jax.value_and_grad(two_forwards))(params, state, batch, key)
    (got, _), g_got = jax.jit(jax.value_and_grad(defenses.trades(model, steps=2)(ce), has_aux=True))(
        params, state, batch, key)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_want), jax.tree.leaves(g_got)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-7)


def test_vanilla_aux_carries_forward_outputs():
    model = get_model("digits_mlp", **MLP)
    params, state, batch = _setup(model)
    loss, (_, aux) = jax.jit(cross_entropy_loss_fn(model))(params, state, batch, jax.random.key(3))
    assert sorted(aux) == ["image", "intermediates", "logits", "metrics"]
    np.testing.assert_array_equal(np.asarray(aux["image"]), np.asarray(batch["image"]))
    assert float(aux["metrics"]["loss"]) == float(loss)
    assert "intermediates" not in cross_entropy_loss_fn(model, intermediates=False)(
        params, state, batch, jax.random.key(3))[1][1]
