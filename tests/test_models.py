"""Tests for jsnn.models: every registered architecture at tiny batch and T, plus block semantics.

Each full-size model is initialised, run in eval mode, and differentiated in train mode inside one
jit (one compile per model, at XLA CPU backend optimisation level 0: compiling dominates these
tiny runs) and the results are cached for the module.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jsnn import models
from jsnn.layers import DLIF, IF, LIF, EncoderConfig
from jsnn.models import resnet, small, vgg

B, T, K = 2, 2, 10
FAST_COMPILE = {"xla_backend_optimization_level": 0}

# name → (factory, input shape, neuron preset, encoder). Presets and encoders are spread over
# the models so every preset and encoder meets a conv and a residual architecture.
CASES = {
    "digits_conv": (small.DigitsConv, (B, 8, 8, 1), LIF, EncoderConfig()),
    "digits_mlp": (small.DigitsMLP, (B, 8, 8, 1), DLIF, EncoderConfig()),
    "vgg5": (vgg.VGG5, (B, 32, 32, 3), LIF, EncoderConfig("poisson")),
    "vgg11": (vgg.VGG11, (B, 32, 32, 3), IF, EncoderConfig()),
    "wrn16_4": (resnet.WRN16_4, (B, 32, 32, 3), DLIF, EncoderConfig()),
    "resnet19": (resnet.ResNet19, (B, 32, 32, 3), DLIF, EncoderConfig("rsc", sigma=0.1, per_step=True)),
    "sew_resnet18": (resnet.SEWResNet18, (B, 32, 32, 3), IF, EncoderConfig()),
}
NAMES = list(CASES)
NEW_NAMES = ("vgg5", "vgg11", "wrn16_4", "resnet19", "sew_resnet18")


def build(name):
    factory, shape, preset, enc = CASES[name]
    return factory(num_classes=K, T=T, neuron=preset, encoder=enc, input_channels=shape[-1]), shape


_CACHE = {}


def fast(fn, *args):
    """``jax.jit(fn)(*args)`` compiled with :data:`FAST_COMPILE` (eager flax is slower here)."""
    return jax.jit(fn).lower(*args).compile(FAST_COMPILE)(*args)


def run(name):
    """(variables, eval logits, train logits, new batch_stats, d loss / d x, x) for model ``name``."""
    if name not in _CACHE:
        model, shape = build(name)
        x = jax.random.uniform(jax.random.PRNGKey(0), shape)
        y = jnp.arange(B) % K

        def go(x, key):
            k_init, k_noise = jax.random.split(key)
            variables = model.init({"params": k_init, "noise": k_noise}, x)
            eval_logits = model.apply(variables, x, train=False, rngs={"noise": k_noise})

            def loss(x):
                logits, state = model.apply(variables, x, train=True, rngs={"noise": k_noise},
                                            mutable=["batch_stats"])
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits, state)

            (_, (logits, state)), g = jax.value_and_grad(loss, has_aux=True)(x)
            return variables, eval_logits, logits, state["batch_stats"], g

        _CACHE[name] = fast(go, x, jax.random.PRNGKey(1)) + (x,)
    return _CACHE[name]


def leaves_named(tree, key):
    """All leaves whose path ends in ``key``."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if getattr(path[-1], "key", None) == key:
            out.append(leaf)
    return out


# ----------------------------------------------------------------------------- every model


@pytest.mark.parametrize("name", NAMES)
def test_eval_logits_shape_and_collections(name):
    variables, eval_logits, _, _, _, _ = run(name)
    assert set(variables) == {"params", "batch_stats"}
    assert jax.tree_util.tree_leaves(variables["batch_stats"])
    assert eval_logits.shape == (B, K)
    assert bool(jnp.all(jnp.isfinite(eval_logits)))


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_updates_batch_stats(name):
    variables, _, logits, new_stats, _, _ = run(name)
    assert logits.shape == (B, K) and bool(jnp.all(jnp.isfinite(logits)))
    old = variables["batch_stats"]
    assert jax.tree_util.tree_structure(new_stats) == jax.tree_util.tree_structure(old)
    changed = [not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(old),
                                                       jax.tree_util.tree_leaves(new_stats))]
    assert any(changed)
    # every BatchNorm saw data: its running mean or variance moved
    for bn_old, bn_new in zip(leaves_named(old, "var"), leaves_named(new_stats, "var")):
        assert not np.allclose(bn_old, bn_new)


@pytest.mark.parametrize("name", NAMES)
def test_input_gradient_finite_and_nonzero(name):
    _, _, _, _, g, x = run(name)
    assert g.shape == x.shape
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.max(jnp.abs(g))) > 0


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n][2].kind == "dlif"])
def test_dlif_gain_params(name):
    variables = run(name)[0]
    gains = leaves_named(variables["params"], "gain")
    assert gains
    for g in gains:
        assert g.shape == (T,)
        np.testing.assert_array_equal(g, np.ones(T))


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_rank_and_channels(name):
    model, shape = build(name)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="rank 4"):
        model.init(key, jnp.zeros(shape[1:]))
    wrong = shape[:-1] + (shape[-1] + 1,)
    with pytest.raises(ValueError, match="channels"):
        model.init(key, jnp.zeros(wrong))


def test_new_models_registered():
    missing = [n for n in NEW_NAMES if n not in models.MODELS]
    assert not missing, f"add the registrations of {missing} to jsnn/models/__init__.py"
    model = models.get_model("wrn16_4", num_classes=7, T=3)
    assert isinstance(model, resnet.WideResNet) and model.num_classes == 7 and model.T == 3


# ----------------------------------------------------------------------------- VGG


def test_vgg11_fc_input_is_8192_at_32x32():
    params = run("vgg11")[0]["params"]
    assert params["Dense_0"]["kernel"].shape == (8192, 4096)
    assert params["Dense_1"]["kernel"].shape == (4096, 4096)
    assert params["Dense_2"]["kernel"].shape == (4096, K)
    convs = [params[f"Conv_{i}"]["kernel"].shape[-1] for i in range(8)]
    assert convs == [64, 128, 256, 512, 512, 512, 512, 512]


def test_vgg11_fc_input_follows_resolution():
    model = vgg.VGG11(num_classes=K, T=1)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 48, 3)))
    assert shapes["params"]["Dense_0"]["kernel"].shape == (512 * 8 * 6, 4096)


def test_vgg_rejects_bad_stages_and_tiny_inputs():
    x = jnp.zeros((1, 8, 8, 1))
    with pytest.raises(ValueError, match="model.stages"):
        vgg.SpikingVGG(stages=(4, "P"), hidden=(), T=1).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="model.dropout"):
        vgg.SpikingVGG(stages=(4,), hidden=(), T=1, dropout=1.0).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="pooling"):
        vgg.SpikingVGG(stages=(4, "A", "A", "A", "A"), hidden=(), T=1).init(jax.random.PRNGKey(0), x)


def test_vgg_dropout_only_in_training():
    model = vgg.SpikingVGG(stages=(4, "A"), hidden=(64,), dropout=0.5, T=T, num_classes=3, neuron=IF,
                           fc_batch_norm=True)
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 1))

    def go(x):
        variables = model.init(jax.random.PRNGKey(1), x)

        def train(key):
            return model.apply(variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])[0]

        # eval mode needs no dropout rng
        evals = model.apply(variables, x, train=False), model.apply(variables, x, train=False)
        return (train(jax.random.PRNGKey(2)), train(jax.random.PRNGKey(2)), train(jax.random.PRNGKey(3))), evals

    (a, b, c), (e1, e2) = fast(go, x)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(e1, e2)


# ----------------------------------------------------------------------------- WRN


def test_wrn16_4_structure_and_mixing_init():
    params = run("wrn16_4")[0]["params"]
    mixes = leaves_named(params, "mix")
    assert len(mixes) == 6  # 3 groups × (16 − 4) / 6 blocks
    for m in mixes:
        np.testing.assert_array_equal(m, np.array([0.5, 0.5], np.float32))
    assert params["stem"]["kernel"].shape == (3, 3, 3, 16)
    widths = [params[f"group{g}_block0"]["Conv_0"]["kernel"].shape[-1] for g in (1, 2, 3)]
    assert widths == [64, 128, 256]
    assert params["Dense_0"]["kernel"].shape == (256, K)


def test_wide_block_is_convex_mix_of_shortcut_and_residual():
    block = resnet.WideBlock(features=4, strides=1, T=T, neuron=LIF)
    x = jax.random.normal(jax.random.PRNGKey(0), (T * 2, 6, 6, 4))

    def go(x):
        variables = block.init(jax.random.PRNGKey(1), x)

        def out(a0, a1):
            p = {**variables["params"], "mix": jnp.array([a0, a1], jnp.float32)}
            return block.apply({**variables, "params": p}, x, train=True, mutable=["batch_stats"])[0]

        return out(1.0, 0.0), out(0.0, 1.0), out(0.3, 0.7)

    shortcut, residual, mixed = fast(go, x)
    np.testing.assert_array_equal(shortcut, x)  # identity shortcut
    assert float(jnp.max(jnp.abs(residual))) > 0
    np.testing.assert_allclose(mixed, 0.3 * x + 0.7 * residual, rtol=1e-5, atol=1e-6)


def test_wrn_rejects_bad_depth():
    with pytest.raises(ValueError, match="model.depth"):
        resnet.WideResNet(depth=15, T=1).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


# ----------------------------------------------------------------------------- ResNet-19 (tdBN)


def test_resnet19_structure():
    params = run("resnet19")[0]["params"]
    blocks = sorted(k for k in params if k.startswith("layer"))
    assert len(blocks) == 8  # 3 + 3 + 2 basic blocks → 16 convs + stem + 2 FC = 19 layers
    assert params["stem"]["kernel"].shape == (3, 3, 3, 128)
    assert params["layer2_block0"]["Conv_2"]["kernel"].shape == (1, 1, 128, 256)  # projection shortcut
    assert params["layer3_block1"]["Conv_1"]["kernel"].shape == (3, 3, 512, 512)
    assert params["Dense_0"]["kernel"].shape == (512, 256)
    assert params["Dense_1"]["kernel"].shape == (256, K)


@pytest.mark.parametrize("tdbn", [True, False])
def test_tdbn_scales_alpha_vth(tdbn):
    vth = 0.5
    neuron = LIF._replace(v_threshold=vth, v_reset=0.0)
    model = resnet.SpikingResNet(stem_features=4, stages=((4, 1, 1), (8, 1, 2)), hidden=(8,), tdbn=tdbn,
                                 T=T, num_classes=3, neuron=neuron)
    params = fast(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))["params"]
    a1, a2 = (vth, vth / math.sqrt(2.0)) if tdbn else (1.0, 1.0)
    np.testing.assert_allclose(params["stem_bn"]["scale"], a1)
    for name in ("layer1_block0", "layer2_block0"):
        np.testing.assert_allclose(params[name]["BatchNorm_0"]["scale"], a1, rtol=1e-6)
        np.testing.assert_allclose(params[name]["BatchNorm_1"]["scale"], a2, rtol=1e-6)
    np.testing.assert_allclose(params["layer2_block0"]["BatchNorm_2"]["scale"], a2, rtol=1e-6)  # shortcut
    assert "BatchNorm_2" not in params["layer1_block0"]  # identity shortcut


def test_td_basic_block_emits_binary_spikes():
    block = resnet.TdBasicBlock(features=4, strides=2, T=T, neuron=IF)
    x = jax.random.normal(jax.random.PRNGKey(0), (T * 2, 8, 8, 3))
    out = fast(lambda k, x: block.init_with_output(k, x, True)[0], jax.random.PRNGKey(1), x)
    assert out.shape == (T * 2, 4, 4, 4)
    assert set(np.unique(np.asarray(out)).tolist()) <= {0.0, 1.0}


# ----------------------------------------------------------------------------- SEW-ResNet


def test_sew_connect_truth_tables():
    a, s = np.meshgrid([0.0, 1.0], [0.0, 1.0])
    ab, sb = a.astype(bool), s.astype(bool)
    np.testing.assert_array_equal(resnet.sew_connect(a, s, "add"), a + s)
    np.testing.assert_array_equal(resnet.sew_connect(a, s, "and"), (ab & sb).astype(float))
    np.testing.assert_array_equal(resnet.sew_connect(a, s, "iand"), (~ab & sb).astype(float))
    with pytest.raises(ValueError, match="model.connect"):
        resnet.sew_connect(a, s, "or")


def test_sew_add_block_adds_spikes_to_identity():
    block = resnet.SEWBlock(features=4, strides=1, T=T, neuron=IF, connect="add")
    x = (jax.random.uniform(jax.random.PRNGKey(0), (T * 2, 6, 6, 4)) < 0.5).astype(jnp.float32)
    out = fast(lambda k, x: block.init_with_output(k, x, True)[0], jax.random.PRNGKey(1), x)
    assert set(np.unique(np.asarray(out - x)).tolist()) <= {0.0, 1.0}


def test_sew_resnet18_structure_and_stems():
    params = run("sew_resnet18")[0]["params"]
    assert params["stem"]["kernel"].shape == (3, 3, 3, 64)  # CIFAR stem at 32×32
    assert len([k for k in params if k.startswith("layer")]) == 8
    assert params["Dense_0"]["kernel"].shape == (512, K)
    tiny = dict(blocks=(1, 1), widths=(4, 8), T=1, num_classes=3)
    big = jax.eval_shape(resnet.SEWResNet(**tiny).init, jax.random.PRNGKey(0), jnp.zeros((1, 72, 72, 3)))
    assert big["params"]["stem"]["kernel"].shape == (7, 7, 3, 4)  # ImageNet stem above 64×64
    forced = jax.eval_shape(resnet.SEWResNet(stem="imagenet", **tiny).init, jax.random.PRNGKey(0),
                            jnp.zeros((1, 32, 32, 3)))
    assert forced["params"]["stem"]["kernel"].shape == (7, 7, 3, 4)
    with pytest.raises(ValueError, match="model.stem"):
        resnet.SEWResNet(stem="tiny", **tiny).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


def test_sew_imagenet_stem_downsamples_by_4():
    model = resnet.SEWResNet(blocks=(1,), widths=(4,), T=1, num_classes=3, stem="imagenet")
    x = jnp.zeros((1, 72, 72, 3))
    _, state = fast(lambda k, x: model.apply(model.init(k, x), x, mutable=["intermediates"]),
                    jax.random.PRNGKey(0), x)
    membrane = state["intermediates"]["stem_sn"]["membrane"][0]
    assert membrane.shape == (1, 1, 36, 36, 4)  # conv7×7/2 (PyTorch padding 3): 72 → 36
    block_in = state["intermediates"]["layer1_block0"]["SpikingNeuron_0"]["membrane"][0]
    assert block_in.shape == (1, 1, 18, 18, 4)  # maxpool 3×3/2 pad 1: 36 → 18


# ----------------------------------------------------------------------------- logits_fn: one compile


def _tiny(seed=0, **kw):
    from jsnn import get_model
    model = get_model("digits_mlp", hidden=(4,), T=2, **kw)
    x = jnp.full((2, 8, 8, 1), 0.5) + 0.1 * jax.random.uniform(jax.random.key(9), (2, 8, 8, 1))
    return model, jax.jit(model.init)(jax.random.key(seed), x), x


def test_models_from_one_config_compare_and_hash_equal():
    import ml_collections
    config = ml_collections.ConfigDict({"data": {"name": "digits"},
                                        "model": {"name": "digits_conv", "T": 2, "surrogate": "atan",
                                                  "surrogate_width": 3.0}})
    a, b = models.from_config(config), models.from_config(config)
    assert a == b and hash(a) == hash(b) and a is not b
    assert models.with_estimator(a, gradient="bptr") == models.with_estimator(b, gradient="bptr")


def test_second_logits_fn_does_not_retrace_pgd():
    """Issue 11: a jitted attack compiled for one run serves every run (new variables) and every
    estimator (other surrogate widths and shapes, passed as data)."""
    import chex
    from jsnn import attacks, surrogate
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def attack(fn, x, y, key):
        return attacks.pgd(fn, x, y, key, eps=0.1, steps=2)

    y = jnp.array([0, 1])
    outs = []
    for seed, s in [(0, surrogate.atan(2.0)), (1, surrogate.atan(3.0)), (2, surrogate.triangle(1.0)),
                    (3, surrogate.sigmoid(4.0))]:
        model, v, x = _tiny(seed)  # a new model object each time: equal by value
        outs.append(attack(models.logits_fn(model, v, surrogate=s), x, y, jax.random.key(0)))
    import sys
    pgd_lib = sys.modules["jsnn.attacks.pgd"]  # the module (jsnn.attacks.pgd is the function)
    before = pgd_lib._pgd._cache_size()  # the un-wrapped jitted PGD, called directly
    model, v, x = _tiny(5)
    attacks.pgd(models.logits_fn(model, v, surrogate=surrogate.atan(0.5)), x, y, jax.random.key(0), eps=0.1, steps=2)
    attacks.pgd(models.logits_fn(_tiny(6)[0], v, surrogate=surrogate.rectangle(2.0)), x, y, jax.random.key(0),
                eps=0.1, steps=2)
    assert pgd_lib._pgd._cache_size() - before <= 1  # one program for both runs and surrogates
    # the model's own surrogate (None): also one program across runs
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def attack_own(fn, x, y, key):
        return attacks.pgd(fn, x, y, key, eps=0.1, steps=2)

    for seed in (0, 1):
        model, v, x = _tiny(seed)
        attack_own(models.logits_fn(model, v), x, y, jax.random.key(0))


def test_logits_fn_surrogate_data_is_the_estimator():
    """A traced surrogate gives the same input gradient as a model whose own spec is that surrogate."""
    from jsnn import surrogate
    model, v, x = _tiny()

    def grad(fn):
        return jax.jit(jax.grad(lambda x, fn: fn(x, None)[:, 0].sum()))(x, fn)

    s = surrogate.atan(3.0)
    g_data = grad(models.logits_fn(model, v, surrogate=s))
    g_spec = grad(models.logits_fn(models.with_estimator(model, surrogate=s), v))
    g_own = grad(models.logits_fn(model, v))
    np.testing.assert_allclose(np.asarray(g_data), np.asarray(g_spec), rtol=1e-5, atol=1e-7)
    assert not np.allclose(np.asarray(g_data), np.asarray(g_own))
    # an ensemble over stacked shapes in one vmap equals one estimator at a time
    bank = [surrogate.triangle(1.0), surrogate.sigmoid(4.0), surrogate.atan(2.0)]
    make = models.estimator_factory(model, v)
    together = jax.jit(jax.vmap(lambda s: jax.grad(lambda x: make(s, "bptt")(x, None)[:, 0].sum())(x)))(
        surrogate.stack(bank))
    for i, s in enumerate(bank):
        np.testing.assert_allclose(np.asarray(together[i]), np.asarray(grad(models.logits_fn(model, v, surrogate=s))),
                                   rtol=1e-5, atol=1e-7)


def test_logits_fn_key_none():
    model, v, x = _tiny()
    z = models.logits_fn(model, v)(x, None)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(model.apply(v, x)))
    with pytest.raises(ValueError, match=r"^logits_fn: this model is stochastic \(encoder poisson\); pass a PRNG key$"):
        models.logits_fn(model.clone(encoder=EncoderConfig("poisson")), v)(x, None)


def test_model_surrogate_must_be_a_concrete_spec():
    from jsnn import surrogate
    model, _, _ = _tiny()
    with pytest.raises(ValueError, match=r"model surrogate: must be one concrete surrogate"):
        models.with_estimator(model, surrogate=surrogate.stack([surrogate.atan(2.0), surrogate.atan(3.0)]))
    m = models.with_estimator(model, surrogate=surrogate.Surrogate(jnp.asarray(1), jnp.asarray(3.0)))
    assert m.neuron.surrogate == surrogate.atan(3.0) and isinstance(m.neuron.surrogate.width, float)
    hash(m)


# ----------------------------------------------------------------------------- first layer once over T


@pytest.mark.parametrize("factory", [small.DigitsConv, small.DigitsMLP,
                                     lambda **kw: vgg.SpikingVGG(stages=("A", 8, "M", 8), hidden=(16,), **kw)])
def test_direct_coding_computes_the_first_layer_once_with_bitwise_identical_outputs(factory, monkeypatch):
    """models.stem: the first layer on [B] repeated over T = on the repeated [B·T] input (forward bit for bit,
    BatchNorm statistics too); input gradients agree to float rounding (the sum over T moves)."""
    from jsnn.models import stem

    model = factory(num_classes=K, T=3, neuron=LIF, input_channels=1)
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 1))
    y = jnp.arange(4) % K
    variables = model.init(jax.random.PRNGKey(1), x)

    def outputs(once):
        monkeypatch.setattr(stem, "FIRST_LAYER_ONCE", once)

        def go(x):  # a new function: traced with the flag as it is now
            def loss(x):
                logits, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits, state)
            (_, aux), g = jax.value_and_grad(loss, has_aux=True)(x)
            return model.apply(variables, x), aux, g
        return fast(go, x)

    (ev1, (tr1, st1), g1), (ev0, (tr0, st0), g0) = outputs(True), outputs(False)
    np.testing.assert_array_equal(ev1, ev0)
    np.testing.assert_array_equal(tr1, tr0)
    jax.tree.map(np.testing.assert_array_equal, st1, st0)
    np.testing.assert_allclose(g1, g0, rtol=1e-5, atol=1e-6 * float(jnp.abs(g0).max()))
