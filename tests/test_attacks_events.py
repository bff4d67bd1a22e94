"""Event-space attacks (jsnn/attacks/events.py): valid event frames, the budget, the greedy's optimality."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax.tree_util import Partial

from jsnn.attacks import events

SHAPE = (6, 3, 4, 4, 2)  # [B, T, H, W, 2]


def _frames(key, shape, m):
    return jax.random.randint(key, shape, 0, m + 1).astype(jnp.float32) / m


def _apply(w1, w2, noise, x, k):
    z = jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2
    return z + noise * jax.random.normal(k, z.shape)


def _conv_model(key, shape=SHAPE, classes=4, noise=0.0):
    """A small nonlinear model on [B, T, H, W, 2] frames (tanh features), noisy (stochastic) if noise > 0.
    Its weights are pytree leaves, so every model of one shape shares the compiled attacks."""
    d = int(np.prod(shape[1:]))
    k1, k2 = jax.random.split(key)
    w1 = jax.random.normal(k1, (d, 16)) / np.sqrt(d) * 4
    w2 = jax.random.normal(k2, (16, classes))
    return Partial(_apply, w1, w2, jnp.float32(noise))


def _assert_valid(x_adv, x, m, budget):
    xa = np.asarray(x_adv, np.float64)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert np.all((xa >= 0) & (xa <= 1)), "left [0, 1]"
    assert np.all(np.abs(xa * m - np.round(xa * m)) < 1e-5), "left the event lattice"
    changed = np.asarray(events.changed_events(x_adv, x, m))
    assert np.all(changed <= np.broadcast_to(budget, changed.shape)), (changed, budget)
    same = np.round(xa * m) == np.round(np.asarray(x, np.float64) * m)
    assert np.array_equal(np.asarray(x_adv)[same], np.asarray(x)[same]), "unchanged cells must keep their bits"
    return changed


@pytest.mark.parametrize("m", [1, 3])
def test_both_attacks_stay_valid_and_within_budget(m):
    x = _frames(jax.random.key(1), SHAPE, m)
    y = jnp.arange(6) % 4
    budget = jnp.array([0, 1, 2, 5, 7, 40], jnp.float32)
    fn = _conv_model(jax.random.key(2), noise=0.5)  # stochastic: EOT and restarts (restarts = 1: tests below)
    for attack, kw in [(events.event_attack, dict(steps=6)), (events.random_events, {})]:
        best = attack(fn, x, y, jax.random.key(3), budget=budget, max_count=m, eot=3, restarts=3,
                      full_output=True, **kw)
        changed = _assert_valid(best.x, x, m, budget)
        assert changed[0] == 0
        if attack is events.random_events:  # the baseline spends its budget exactly
            np.testing.assert_array_equal(changed, np.asarray(budget, int))
    x_adv = events.event_attack(fn, x, y, jax.random.key(4), budget=3, max_count=m, steps=6, per_step=2, eot=3,
                                restarts=3)
    _assert_valid(x_adv, x, m, 3)


def test_greedy_finds_the_optimum_of_a_linear_model():
    """Margin loss of a linear model: the greedy's result equals the brute-force optimum over S_k."""
    m, shape = 2, (5, 3, 1, 1, 2)  # D = 6 cells, 3^6 candidate count vectors
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 2)).astype(np.float32)
    c0 = rng.integers(0, m + 1, size=(5, 6))
    x = jnp.asarray(c0.reshape(shape) / m, jnp.float32)
    y = jnp.zeros(5, jnp.int32)
    fn = lambda x, key: x.reshape(x.shape[0], -1) @ W
    margin = lambda c: (c / m) @ (W[:, 1] - W[:, 0])
    grid = np.array(list(itertools.product(range(m + 1), repeat=6)))
    for k in (1, 2, 3, 5):
        for per_step in (None, k):  # one event per step, or all k in one water-filling step
            x_adv = events.event_attack(fn, x, y, jax.random.key(0), budget=k, max_count=m, loss="cw", steps=8,
                                        per_step=per_step)
            _assert_valid(x_adv, x, m, k)
            got = margin(np.round(np.asarray(x_adv).reshape(5, 6) * m))
            for b in range(5):
                feasible = grid[np.abs(grid - c0[b]).sum(1) <= k]
                assert got[b] == pytest.approx(margin(feasible).max(), abs=1e-5), (k, per_step, b)


def test_gradient_guided_beats_random_events():
    x = _frames(jax.random.key(5), SHAPE, 1)
    fn = _conv_model(jax.random.key(6))
    y = jnp.argmax(fn(x, jax.random.key(0)), -1)  # all correct at the start
    loss = lambda xa: np.asarray(-jax.nn.log_softmax(fn(xa, jax.random.key(0)))[jnp.arange(len(y)), y])
    g = events.event_attack(fn, x, y, jax.random.key(7), budget=4, steps=6)
    r = events.random_events(fn, x, y, jax.random.key(7), budget=4, restarts=3, eot=3)
    _assert_valid(g, x, 1, 4)
    _assert_valid(r, x, 1, 4)
    assert np.all(loss(g) >= loss(r) - 1e-6)
    assert loss(g).mean() > loss(r).mean()


def test_one_compile_serves_every_budget_and_model():
    x, y = _frames(jax.random.key(0), SHAPE, 1), jnp.arange(6) % 4
    events.event_attack(_conv_model(jax.random.key(1)), x, y, jax.random.key(0), budget=1, steps=6)
    before = events._event_attack._cache_size()
    events.event_attack(_conv_model(jax.random.key(2)), x, y, jax.random.key(0), budget=5, steps=6)
    events.event_attack(_conv_model(jax.random.key(2)), x, y, jax.random.key(0), budget=jnp.arange(6.), steps=6)
    assert events._event_attack._cache_size() == before


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=jnp.full((1, 2, 2), 0.4), budget=1, max_count=2), "off the event lattice"),
    (dict(budget=1.5), "whole number of events"),
    (dict(budget=jnp.array([1.0, 2.0, 3.0])), "budget"),
    (dict(budget=-1), "budget"),
    (dict(budget=1, max_count=0), "max_count"),
])
def test_errors(kwargs, match):
    args = dict(x=jnp.zeros((1, 2, 2)), budget=1)
    args.update(kwargs)
    x = args.pop("x")
    fn = lambda x, key: jnp.stack([x.sum((1, 2)), -x.sum((1, 2))], -1)
    for attack in (events.event_attack, events.random_events):
        with pytest.raises(ValueError, match=match):
            attack(fn, x, jnp.array([0]), jax.random.key(0), **args)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_frame_space_pgd_on_rank5_frames(norm):
    """Threat model 1 is the existing PGD: per-example norms and projection over all trailing axes, [0, 1] kept."""
    from jsnn.attacks import common, pgd

    x = _frames(jax.random.key(8), SHAPE, 2)
    fn = _conv_model(jax.random.key(9))
    y = jnp.argmax(fn(x, jax.random.key(0)), -1)
    eps = 0.5 if norm == "linf" else 2.0
    x_adv = pgd(fn, x, y, jax.random.key(1), eps=eps, norm=norm, steps=3)
    assert x_adv.shape == x.shape and bool(jnp.all((x_adv >= 0) & (x_adv <= 1)))
    d = x_adv - x
    size = jnp.max(jnp.abs(d).reshape(len(d), -1), 1) if norm == "linf" else common.flat_norm(d)
    assert bool(jnp.all(size <= eps + 1e-5)) and bool(jnp.any(size > 0))
