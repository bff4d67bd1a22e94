"""jsnn.bptt: the hand-written BPTT against autodiff of the same scan (float64)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn import bptt, neuron
from jsnn import surrogate as surrogate_lib


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


CASES = {
    "lif": neuron.LIF,
    "lif-soft": neuron.LIF._replace(v_reset=None, tau=3.0),
    "lif-no-decay-input": neuron.LIF._replace(decay_input=False, tau=1.5),
    "lif-detach": neuron.LIF._replace(detach_reset=True, v_reset=-0.3),
    "if": neuron.IF,
    "if-soft-detach": neuron.IF._replace(v_reset=None, detach_reset=True, leak=0.9),
    "dlif": neuron.DLIF,
}
SURROGATES = [None, surrogate_lib.atan(2.0), surrogate_lib.triangle(0.5), surrogate_lib.rectangle(1.0)]


def _inputs(shape, seed=0):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float64) * 0.8 + 0.6


def _loss(cfg, x, w, surrogate=None, gain=None, time_axis=0):
    """Uses every output of the trace (spikes, H, V) so each cotangent path is checked."""
    tr = neuron.run(cfg, x, gain=gain, surrogate=surrogate, return_trace=True, time_axis=time_axis)
    return jnp.sum(w[0] * tr.spikes) + jnp.sum(w[1] * tr.h ** 2) + jnp.sum(w[2] * jnp.sin(tr.v))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("si", range(len(SURROGATES)))
def test_fused_matches_autodiff(name, si):
    cfg, surrogate = CASES[name]._replace(unroll=False), SURROGATES[si]
    T, shape = 11, (11, 3, 4)
    x = _inputs(shape, si)
    w = [jax.random.normal(jax.random.key(10 + i), shape, jnp.float64) for i in range(3)]
    gain = jnp.linspace(0.8, 1.2, T) if cfg.kind == "dlif" else None
    f_fused = lambda x, g: _loss(cfg._replace(fused=True), x, w, surrogate, g)
    f_auto = lambda x, g: _loss(cfg._replace(fused=False), x, w, surrogate, g)
    v1, g1 = jax.value_and_grad(f_fused, argnums=(0, 1) if gain is not None else 0)(x, gain)
    v2, g2 = jax.value_and_grad(f_auto, argnums=(0, 1) if gain is not None else 0)(x, gain)
    assert float(v1) == float(v2)  # the same forward
    chex.assert_trees_all_close(g1, g2, rtol=1e-12, atol=1e-12)
    assert float(jnp.abs(jax.tree.leaves(g1)[0]).max()) > 0  # the surrogate path is exercised


def test_default_config_uses_it_for_rolled_loops_and_time_major_input(monkeypatch):
    calls = []
    real = bptt.scan
    monkeypatch.setattr(bptt, "scan", lambda *a: calls.append(1) or real(*a))
    T = neuron.UNROLL_MAX_T
    neuron.run(neuron.LIF, jnp.ones((2, T)), time_axis=1)
    assert not calls  # batch-major (model layers), short: autodiff of the written-out steps
    neuron.run(neuron.LIF._replace(unroll=True), jnp.ones((T, 2)))
    assert not calls  # unrolled on request
    neuron.run(neuron.LIF, jnp.ones((T, 2)))
    assert calls == [1]  # time-major: the reverse scan needs no transpose, so at every T
    neuron.run(neuron.LIF, jnp.ones((2, T + 1)), time_axis=1)
    assert calls == [1, 1]  # rolled
    for gradient in ("bptr", "hart", "rga", "ann"):
        neuron.run(neuron.LIF._replace(gradient=gradient), jnp.ones((12, 2)))
    assert calls == [1, 1]  # only bptt


def test_batch_major_time_axis_and_v0_cotangent():
    cfg = neuron.LIF._replace(unroll=False)
    x = _inputs((3, 13, 5), 1)  # [B, T, N]
    w = [jax.random.normal(jax.random.key(i), x.shape, jnp.float64) for i in range(3)]
    g1 = jax.grad(lambda x: _loss(cfg, x, w, time_axis=1))(x)
    g2 = jax.grad(lambda x: _loss(cfg._replace(fused=False), x, w, time_axis=1))(x)
    chex.assert_trees_all_close(g1, g2, rtol=1e-12, atol=1e-12)
    # the initial state's cotangent, directly on bptt.scan (run() starts from the constant V_reset)
    lin, surrogate = neuron._linear_charge(cfg), surrogate_lib.sigmoid(4.0)
    charge = lambda v, x: neuron.lif_charge(v, x, tau=2.0, v_reset=0.0, decay_input=True)
    fire = lambda h: neuron.fire_and_reset(h, v_threshold=1.0, v_reset=0.0, detach_reset=False, surrogate=surrogate)
    step = neuron.make_step(charge, fire)
    xt, v0 = _inputs((9, 4), 2), (_inputs((4,), 3) - 0.6).at[0].set(1.3)  # one start above the threshold
    for ours, ref in zip(bptt.scan(charge, fire, lin, xt, v0, surrogate), jax.lax.scan(step, v0, xt)[1]):
        assert bool((ours == ref).all())  # the same forward floats (S, H, V)
    f1 = lambda x, v: bptt.scan(charge, fire, lin, x, v, surrogate)[0].sum()
    f2 = lambda x, v: jax.lax.scan(step, v, x)[1].spikes.sum()
    chex.assert_trees_all_close(jax.grad(f1, (0, 1))(xt, v0), jax.grad(f2, (0, 1))(xt, v0), rtol=1e-12, atol=1e-12)


def test_second_order_matches_autodiff():
    """SR-style double backward: the gradient of the input gradient's squared norm w.r.t. a weight."""
    cfg = neuron.IF._replace(unroll=False)
    x = _inputs((12, 2, 3), 4)
    W = jax.random.normal(jax.random.key(5), (3, 3), jnp.float64)

    def penalty(W, fused):
        c = cfg._replace(fused=fused)
        loss = lambda x: jnp.sum(jnp.sin(neuron.run(c, x @ W).sum(0)) * jnp.arange(3.0))
        return jnp.sum(jax.grad(loss)(x) ** 2)

    g1, g2 = jax.grad(penalty)(W, True), jax.grad(penalty)(W, False)
    chex.assert_trees_all_close(g1, g2, rtol=1e-10, atol=1e-12)
    assert float(jnp.abs(g1).max()) > 0


def test_vmap_over_stacked_surrogates():
    """An attack's estimator ensemble: surrogates stacked as traced data, one compiled program."""
    cfg = neuron.LIF._replace(unroll=False)
    x = _inputs((10, 2, 3), 6)
    stacked = surrogate_lib.stack([surrogate_lib.sigmoid(4.0), surrogate_lib.atan(2.0), surrogate_lib.triangle(1.0)])

    def grad_with(s, fused):
        return jax.grad(lambda x: neuron.run(cfg._replace(fused=fused), x, surrogate=s).sum())(x)

    g1 = jax.jit(jax.vmap(lambda s: grad_with(s, True)))(stacked)
    g2 = jax.vmap(lambda s: grad_with(s, False))(stacked)
    chex.assert_trees_all_close(g1, g2, rtol=1e-12, atol=1e-12)
    assert not np.allclose(g1[0], g1[1])  # the members differ


def test_traced_threshold_falls_back_to_autodiff():
    """A traced neuron parameter cannot be a static constant of the backward: autodiff runs instead."""
    x = _inputs((10, 3), 7)

    def grads(vth):
        cfg = neuron.LIF._replace(unroll=False, v_threshold=vth)
        return jax.grad(lambda x: neuron.run(cfg, x).sum())(x)

    chex.assert_trees_all_close(jax.jit(grads)(1.0), grads(1.0), rtol=1e-12, atol=1e-12)
