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


def test_trades_still_runs_its_own_clean_forward():
    """TRADES keeps its own clean forward: reusing the wrapped loss's logits changed a 20-step run noticeably."""
    model = get_model("digits_mlp", **MLP)
    params, state, batch = _setup(model)
    loss_fn = defenses.trades(model, steps=1)(cross_entropy_loss_fn(model))
    assert _clean_train_forwards(model, loss_fn, params, state, batch, jax.random.key(2)) == 2


def test_vanilla_aux_carries_forward_outputs():
    model = get_model("digits_mlp", **MLP)
    params, state, batch = _setup(model)
    loss, (_, aux) = jax.jit(cross_entropy_loss_fn(model))(params, state, batch, jax.random.key(3))
    assert sorted(aux) == ["image", "intermediates", "logits", "metrics"]
    np.testing.assert_array_equal(np.asarray(aux["image"]), np.asarray(batch["image"]))
    assert float(aux["metrics"]["loss"]) == float(loss)
    assert "intermediates" not in cross_entropy_loss_fn(model, intermediates=False)(
        params, state, batch, jax.random.key(3))[1][1]
