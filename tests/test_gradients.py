"""Gradient estimators and their worst-case ensemble: presets, the registry, one compiled program,
the ensemble's invariants, HART's γ search, the evaluate record and the sanity flag."""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from jsnn import attacks, models, neuron, surrogate
from jsnn.attacks import gradients
from jsnn.evaluate import report, sanity, settings, suite

KEY = jax.random.key(0)
W1 = jax.random.normal(jax.random.key(1), (6, 8)) * 0.9
W2 = jax.random.normal(jax.random.key(2), (8, 3))


class _Toy(NamedTuple):
    """One IF layer (T = 4, leak 0.9, direct coding) and a linear readout of its rates; equal by value, so
    a jitted attack compiled for one surrogate serves the next (the surrogate is a traced leaf)."""

    gradient: str

    def __call__(self, s, x, key):
        h = neuron.if_neuron(jnp.broadcast_to(x @ W1 + 0.3, (4,) + (x.shape[0], 8)), leak=0.9, surrogate=s,
                             gradient=self.gradient)
        return h.mean(0) @ W2


def make_logits_fn(s, g):
    """The toy forward with estimator (surrogate s, gradient g)."""
    return Partial(_Toy(g or "bptt"), None if s is None else surrogate.as_data(s))


def data(n=12):
    x = jax.random.uniform(jax.random.key(3), (n, 6))
    y = jnp.argmax(make_logits_fn(None, None)(x, None), -1)  # every clean point correct
    return x, y


# ----------------------------------------------------------------------------- presets and names


def test_presets_hold_the_protocols():
    tmlr = [e.name for e in gradients.expand("tmlr")]
    assert len(tmlr) == 19 and len(set(tmlr)) == 19
    assert {"triangle(0.25)", "triangle(3)", "exponential_d(2)", "exponential(0.5)", "rectangle(4)",
            "straight_through(1)", "bptr", "ann"} <= set(tmlr)
    strong = [e.name for e in gradients.expand("strong")]
    assert strong[0] == "default" and set(tmlr) <= set(strong)
    assert {e.name for e in gradients.expand("sr")} <= set(strong)
    assert {"rga(0.2)", "hart(0.5|1|2|3|4)"} <= set(strong)
    assert [e.name for e in attacks.sr_ensemble()] == ["triangle(1)", "sigmoid(4)", "atan(2)", "bptr"]


def test_parse_new_estimators_and_errors():
    assert gradients.parse("rga:0.3") == gradients.rga(0.3)
    assert gradients.parse("hart:2").grid == () and gradients.parse("hart").grid == gradients.HART_GAMMAS
    assert gradients.parse("hart:1/2").candidates() == (surrogate.triangle(1.0), surrogate.triangle(2.0))
    with pytest.raises(ValueError, match="bptr takes no width"):
        gradients.parse("bptr:2")
    with pytest.raises(ValueError, match="not a number"):
        gradients.parse("hart:a/b")
    with pytest.raises(ValueError, match="width must be a finite number > 0"):
        gradients.parse("exponential:0")
    with pytest.raises(ValueError, match="estimator gradient: 'nope'"):
        gradients.check(gradients.Estimator(None, "nope"))


def test_register_extends_the_strong_preset(monkeypatch):
    monkeypatch.setattr(gradients, "NAMED", dict(gradients.NAMED))
    monkeypatch.setattr(gradients, "PRESETS", dict(gradients.PRESETS))
    gradients.register("wide", lambda w: gradients.bptt(surrogate.triangle(w or 6.0)))
    assert gradients.expand("strong")[-1].name == "triangle(6)"
    with pytest.raises(ValueError, match="surrogate shape or a preset"):
        gradients.register("sr", lambda w: gradients.bptr())


def test_estimator_modes_registry_enters_its_context(monkeypatch):
    import contextlib
    seen = []

    @contextlib.contextmanager
    def probe(s):
        seen.append(s)
        yield

    monkeypatch.setitem(models.base.ESTIMATOR_MODES, "probe", probe)
    e = gradients.check(gradients.Estimator(None, "probe"))
    model = models.get_model("digits_mlp", hidden=(4,), T=2)
    x = jnp.full((1, 8, 8, 1), 0.5)
    v = jax.jit(model.init)(KEY, x)
    z = models.logits_fn(model, v, gradient=e.gradient)(x, None)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(models.logits_fn(model, v)(x, None)))
    assert seen == [None] and e.name == "probe"


# ----------------------------------------------------------------------------- the model's gradient modes


def test_model_modes_same_forward_finite_gradient():
    model = models.get_model("digits_mlp", hidden=(8,), T=2)
    x = jax.random.uniform(KEY, (2, 8, 8, 1))
    v = jax.jit(model.init)(KEY, x)
    z = np.asarray(models.logits_fn(model, v)(x, None))
    for gradient in ("rga", "hart", "ann"):
        f = models.logits_fn(model, v, surrogate=surrogate.triangle(1.0), gradient=gradient)
        np.testing.assert_array_equal(np.asarray(f(x, None)), z)
        g = jax.grad(lambda x: f(x, None)[:, 0].sum())(x)
        assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0, gradient


# ----------------------------------------------------------------------------- the ensemble


def test_stacked_bptt_members_are_one_program():
    """17 BPTT members of 4 shapes and 12 widths trace the attacked forward as often as one member does,
    and the compiled ensemble serves new inputs and ε (traced) without retracing."""
    x, y = data(4)
    bptt17 = [e for e in gradients.expand("tmlr") if e.gradient == "bptt"]
    assert len(bptt17) == 17
    calls = []

    def counting(s, g):
        calls.append(g)
        return make_logits_fn(s, g)

    judge = make_logits_fn(None, None)
    attacks.ensemble(attacks.pgd, bptt17[:1], counting)(judge, x, y, KEY, eps=0.1, steps=1)
    one = calls.count("bptt")
    calls.clear()
    ens = attacks.ensemble(attacks.pgd, bptt17 + [gradients.bptr()], chex.assert_max_traces(counting, n=one))
    for i in range(3):
        ens(judge, x + 0.01 * i, y, KEY, eps=0.05 * (i + 1), steps=1)
    assert calls.count("bptt") == one


def test_strong_ensemble_invariants():
    x, y = data(8)
    eps, kw = 0.3, dict(steps=2, random_start=False)
    # (members registered with a context of models.base.ESTIMATOR_MODES need a jsnn model: left out of this toy)
    members = [e for e in gradients.expand("strong") if e.gradient in neuron.GRADIENTS + (None,)]
    assert len(members) >= 24
    judge = make_logits_fn(None, None)
    x_adv, info = attacks.ensemble(attacks.pgd, members, make_logits_fn, search_examples=4)(
        judge, x, y, KEY, eps=eps, full_output=True, **kw)
    E, B = len(members), x.shape[0]
    assert info["x_adv"].shape == (E, B, 6) and info["names"] == [e.name for e in members]
    # robust only if it survives every member; never weaker than any member
    np.testing.assert_array_equal(np.asarray(info["robust"]), np.asarray(info["correct"]).all(0))
    assert float(info["accuracy"]) <= float(np.asarray(info["per_estimator"]).min()) + 1e-9
    for xa in (x_adv, info["x_adv"]):
        assert float(jnp.abs(xa - x).max()) <= eps + 1e-6
        assert float(xa.min()) >= 0 and float(xa.max()) <= 1
    # each member equals its stand-alone attack (random_start=False: the key does not matter)
    for name in ("exponential_d(0.5)", "rga(0.2)"):  # a member of the stacked BPTT group, one of its own group
        i = info["names"].index(name)
        e = members[i]
        alone = attacks.pgd(make_logits_fn(e.surrogate, e.gradient), x, y, KEY, eps=eps, **kw)
        np.testing.assert_allclose(np.asarray(info["x_adv"][i]), np.asarray(alone), atol=1e-6)
        acc = float(jnp.mean(jnp.argmax(judge(alone, None), -1) == y))
        assert float(info["accuracy"]) <= acc + 1e-9
    # the estimators really differ
    names = info["names"]
    assert float(jnp.abs(info["x_adv"][names.index("rga(0.2)")] - info["x_adv"][names.index("hart(0.5|1|2|3|4)")]).max()) > 0


def test_hart_search_picks_the_weakest_width_and_reports_its_cost():
    x, y = data()
    kw = dict(eps=0.3, steps=3, random_start=False)
    judge = make_logits_fn(None, None)
    grid = (0.25, 1.0, 4.0)
    _, info = attacks.ensemble(attacks.pgd, [gradients.hart(grid=grid)], make_logits_fn, search_examples=5)(
        judge, x, y, KEY, full_output=True, **kw)
    s = info["search"]["hart(0.25|1|4)"]
    assert s["grid"] == grid and s["attacks"] == 3 and s["examples"] == 5 and s["relative_cost"] == 3 * 5 / 12
    # the accuracy of each width on the first 5 images, recomputed stand-alone
    acc = [float(jnp.mean(jnp.argmax(judge(attacks.pgd(make_logits_fn(surrogate.triangle(g), "hart"), x[:5], y[:5],
                                                                      KEY, **kw), None), -1) == y[:5]))
           for g in grid]
    np.testing.assert_allclose(np.asarray(s["accuracy"]), acc, atol=1e-6)
    best = int(np.argmin(acc))
    assert int(s["chosen"]) == best and float(s["width"]) == grid[best]
    # then the attack with that width on the whole batch
    alone = attacks.pgd(make_logits_fn(surrogate.triangle(grid[best]), "hart"), x, y, KEY, **kw)
    np.testing.assert_allclose(np.asarray(info["x_adv"][0]), np.asarray(alone), atol=1e-6)


def test_cascade_gives_the_verdict_of_every_member_on_every_example():
    """full=k: later members attack only the still-robust examples (compacted, padded), yet an example is
    robust exactly when it survives every member attacking every example (random_start=False: deterministic)."""
    x, y = data(40)
    kw = dict(eps=0.5, steps=3, random_start=False)
    members = gradients.expand("triangle:3,rectangle:4,default,sr,exponential_d:2,exponential:2,hart:0.5/2")
    judge = make_logits_fn(None, None)
    xa_all, every = attacks.ensemble(attacks.pgd, members, make_logits_fn, search_examples=4)(
        judge, x, y, KEY, full_output=True, **kw)
    xa, casc = attacks.ensemble(attacks.pgd, members, make_logits_fn, search_examples=4, full=2)(
        judge, x, y, KEY, full_output=True, **kw)
    robust = np.asarray(every["robust"])
    assert 0 < robust.mean() < np.asarray(every["correct"])[:2].all(0).mean()  # later members break some
    np.testing.assert_array_equal(np.asarray(casc["robust"]), robust)
    assert float(casc["accuracy"]) == float(every["accuracy"])
    np.testing.assert_array_equal(np.asarray(casc["correct"]), np.asarray(every["correct"])[:2])
    assert casc["names"] == ["triangle(3)", "rectangle(4)"]
    # the log: stages of ≤ 4 stacked members of one mode, each attacking the examples robust before it
    log = casc["cascade"]
    assert [len(st["members"]) for st in log] == [1, 3, 1, 2, 1]
    assert log[1]["members"] == ["triangle(1)", "sigmoid(4)", "atan(2)"] and log[2]["members"] == ["bptr"]
    assert log[0]["attacked"] == int(np.asarray(every["correct"])[:2].all(0).sum())
    for before, after in zip(log, log[1:]):
        assert after["attacked"] == round(before["accuracy"] * 40)
    assert log[-1]["accuracy"] == pytest.approx(float(every["accuracy"]), abs=1e-6)
    # the points: in the ball and [0, 1]; a broken example's point is misclassified
    assert float(jnp.abs(xa - x).max()) <= 0.5 + 1e-6 and float(xa.min()) >= 0 and float(xa.max()) <= 1
    wrong = np.asarray(jnp.argmax(judge(xa, None), -1) != y)
    np.testing.assert_array_equal(wrong, ~robust[0])
    assert "hart(0.5|2)" in casc["search"] and casc["search"]["hart(0.5|2)"]["examples"] == 4
    with pytest.raises(ValueError, match="^ensemble full: a cascade compacts on the host"):
        jax.jit(lambda x: attacks.ensemble(attacks.pgd, members, make_logits_fn, full=5)(judge, x, y, KEY, **kw))(x)


# ----------------------------------------------------------------------------- evaluate: settings, record, flag


def test_evaluate_defaults_to_strong_and_validates():
    ev = settings.default_eval_config()
    assert ev.ensemble == "strong" and ev.sanity.estimator_gap == 0.1
    settings.resolve_eval_config(None, {"ensemble": "sr,hart:0.5/1,rga:0.1"})
    with pytest.raises(ValueError, match=r"^evaluate\.ensemble: estimator: unknown 'srr'"):
        settings.resolve_eval_config(None, {"ensemble": "srr"})
    with pytest.raises(ValueError, match=r"^evaluate\.ensemble: empty"):
        settings.resolve_eval_config(None, {"ensemble": " , "})
    ev.attacks, ev.main_eps = "ensemble", "0.1"
    rec = suite.plan(ev, stochastic=False, spiking=True)[0]
    assert rec["estimator"].startswith("worst of default, triangle(1), ") and rec["settings"]["estimators"] == ["strong"]


def test_ensemble_record_members_and_search_summary():
    ev = settings.default_eval_config()
    ev.attacks, ev.main_eps, ev.ensemble, ev.ensemble_steps, ev.batch_size = "ensemble", "0.3", "default,bptr,hart:1/2", 2, 8
    rec = suite.plan(ev, stochastic=False, spiking=True)[0]
    x, y = data(8)
    target = suite.Target(make_logits_fn(None, None), make_logits_fn)
    hits, extra = suite.run_batch(rec, target, x, y, KEY)
    out = suite.summarize(rec, {k: np.asarray(v) for k, v in extra.items()})
    assert set(out["per_estimator_accuracy"]) == {"default", "bptr", "hart(1|2)"}
    s = out["search"]["hart(1|2)"]
    assert s["grid"] == [1.0, 2.0] and s["chosen_per_batch"][0] in (1.0, 2.0)
    assert s["search_examples"] == 8 and s["relative_cost"] == 2.0
    assert hits.mean() <= min(out["per_estimator_accuracy"].values()) + 1e-9
    worst = report.worst_case({"e": dict(rec, accuracy=float(hits.mean()), accuracy_all_draws=float(hits.mean()),
                                         **out)}, 0.3)
    assert worst["member"]["accuracy"] == min(out["per_estimator_accuracy"].values())


def test_ensemble_record_cascade_and_family_columns():
    from jsnn.sweep.summary import ensemble_columns
    ev = settings.default_eval_config()
    ev.attacks, ev.main_eps, ev.ensemble_steps, ev.batch_size = "ensemble", "0.5", 2, 16
    ev.ensemble, ev.ensemble_full = "default,sr,rectangle:2,triangle:2,ann", "default,sr"
    rec = suite.plan(ev, stochastic=False, spiking=True)[0]
    assert rec["settings"]["full"] == ["default", "sr"]
    x, y = data(16)
    target = suite.Target(make_logits_fn(None, None), make_logits_fn)
    hits, extra = suite.run_batch(rec, target, x, y, KEY)
    out = suite.summarize(rec, {k: np.asarray(v) for k, v in extra.items()})
    assert list(out["per_estimator_accuracy"]) == ["default", "triangle(1)", "sigmoid(4)", "atan(2)", "bptr"]
    casc = out["cascade"]
    assert [c["members"] for c in casc] == [["default", "triangle(1)", "sigmoid(4)", "atan(2)", "bptr"],
                                            ["rectangle(2)", "triangle(2)"], ["ann"]]
    assert casc[0]["attacked"] == 16 and casc[1]["attacked"] == round(casc[0]["accuracy"] * 16)
    assert casc[-1]["accuracy"] == pytest.approx(hits.mean()) and casc[0]["accuracy"] >= casc[-1]["accuracy"]
    assert out["subset_accuracy"]["sr"] >= casc[0]["accuracy"]
    cols = ensemble_columns("e", out)
    assert list(cols) == ["e [sr]", "e [full]", "e [+bptt]", "e [+ann]"] and cols["e [+ann]"] == casc[-1]["accuracy"]
    with pytest.raises(ValueError, match=r"^evaluate\.ensemble_full: 'bptr,rga' names rga\(0\.2\) outside"):
        settings.resolve_eval_config(None, {"ensemble": "sr", "ensemble_full": "bptr,rga"})


def _records(members):
    ev = settings.default_eval_config()
    ev.attacks, ev.main_eps = "clean,ensemble", "0.1"
    plan = suite.plan(ev, stochastic=False, spiking=True)
    recs = {r["name"]: dict(r, accuracy=0.9, accuracy_all_draws=0.9) for r in plan}
    ens = [n for n in recs if n.startswith("ensemble")][0]
    recs[ens].update(accuracy=min(members.values()), per_estimator_accuracy=members)
    return recs, ev


def test_sanity_flag_estimator_beats_training_surrogate():
    recs, ev = _records({"default": 0.6, "triangle(1)": 0.55, "rga(0.2)": 0.3})
    f = sanity.checks(recs, None, ev)
    assert f["flags"]["estimator_beats_training_surrogate"]["passed"] is False
    assert "rga(0.2) 0.3000" in f["flags"]["estimator_beats_training_surrogate"]["detail"]
    assert "estimator_beats_training_surrogate" in f["failed"] and f["verdict"] == "possible gradient masking"
    recs, ev = _records({"default": 0.6, "triangle(1)": 0.55})
    assert sanity.checks(recs, None, ev)["flags"]["estimator_beats_training_surrogate"]["passed"] is True
    recs, ev = _records({"triangle(1)": 0.55, "bptr": 0.2})  # no model's own member (e.g. the SR preset)
    assert sanity.checks(recs, None, ev)["flags"]["estimator_beats_training_surrogate"]["passed"] is None


def test_sanity_flag_sees_the_cascade_members():
    """Under a cascade the later members attack only survivors: the gap is taken to the final accuracy."""
    recs, ev = _records({"default": 0.46, "triangle(1)": 0.43})
    ens = [n for n in recs if n.startswith("ensemble")][0]
    recs[ens]["cascade"] = [{"members": ["default", "triangle(1)"], "attacked": 100, "accuracy": 0.42},
                            {"members": ["triangle(0.25)", "triangle(3)"], "gradient": "default", "attacked": 42,
                             "accuracy": 0.33, "seconds": 1.0},
                            {"members": ["rga(0.5)"], "gradient": "rga", "attacked": 33, "accuracy": 0.31,
                             "seconds": 1.0}]
    flag = sanity.checks(recs, None, ev)["flags"]["estimator_beats_training_surrogate"]
    assert flag["passed"] is False and "after the cascade 0.3100" in flag["detail"]
    assert "triangle(0.25), triangle(3)" in flag["detail"] and "gap 0.1500" in flag["detail"]
    recs[ens]["cascade"][-1]["accuracy"] = recs[ens]["cascade"][-2]["accuracy"] = 0.40
    assert sanity.checks(recs, None, ev)["flags"]["estimator_beats_training_surrogate"]["passed"] is True


def test_a_stochastic_model_is_judged_on_the_chosen_point_with_fresh_draws():
    """The adversary submits one point per example (the member fooling most selection draws); it is judged on
    fresh draws. "Correct under every member's point in the same draw" picks the point after the draw."""
    x, y = data(24)
    noisy = Partial(lambda x, key: make_logits_fn(None, None)(x, key) + 0.3 * jax.random.normal(key, (x.shape[0], 3)))
    members = gradients.expand("default,triangle:1,bptr")
    key, kw = jax.random.key(5), dict(eps=0.3, steps=2, random_start=False)
    for full in (None, 1):
        xa, info = attacks.ensemble(attacks.pgd, members, make_logits_fn, draws=6, full=full)(
            noisy, x, y, key, full_output=True, **kw)
        assert np.asarray(info["robust"]).shape == (6, 24)
        if full is None:
            k_select, k_final = jax.random.split(jax.random.split(key)[1])
            expected = attacks.correct_draws(noisy, xa, y, k_final, draws=6)
            np.testing.assert_array_equal(np.asarray(info["robust"]), np.asarray(expected))
            picked = np.asarray(info["correct"]).sum(1).argmin(0)
            np.testing.assert_array_equal(np.asarray(info["worst"]), picked)
            any_member = np.asarray(info["robust_any_member"])
            np.testing.assert_array_equal(any_member, np.asarray(info["correct"]).all(0))
            assert any_member.mean() < float(info["accuracy"])  # the per-draw AND overstates the attack here
        else:
            last = len(info["cascade"])
            expected = attacks.correct_draws(noisy, xa, y, jax.random.fold_in(jax.random.fold_in(key, last), 1),
                                             draws=6)
            np.testing.assert_array_equal(np.asarray(info["robust"]), np.asarray(expected))
