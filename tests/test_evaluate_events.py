"""The event kinds of the suite (jsnn/evaluate/events.py): plan, one run per kind, summaries, sanity flags."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from jsnn.evaluate import events, runner, sanity, settings, suite

INFO = {"frames": 3, "max_count": 2}


def _apply(w, x, key):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ w) * 4


def _ev(**kw):
    ev = settings.resolve_eval_config(None, dict(dict(attacks="clean,pgd3,event-l0,event-random", eps="0.5",
                                                      event_budgets="1,4", event_steps=4, event_random_restarts=3,
                                                      large_eps="", num_examples=8, batch_size=8), **kw))
    return ev


def test_plan_marks_inputs_and_skips_on_images():
    recs = suite.plan(_ev(), stochastic=False, spiking=True, events=INFO)
    assert [(r["name"], r["input"]) for r in recs] == [
        ("clean", "frames"), ("pgd3-linf-eps0.5", "frames"), ("event-l0-k1", "events"), ("event-l0-k4", "events"),
        ("event-random-k1", "events"), ("event-random-k4", "events")]
    assert all(r["settings"]["max_count"] == 2 for r in recs if r["input"] == "events")
    assert recs[2]["eps_label"] == "1 events" and recs[2]["box"] is None and recs[2]["family"] == "events"
    images = suite.plan(_ev(), stochastic=False, spiking=True)
    assert [r.get("skip") for r in images][2:] == [events.NOT_EVENTS] * 4
    assert all("input" not in r for r in images)  # image records are unchanged


@pytest.mark.parametrize("bad, match", [("1,x", "not a whole number"), ("-1", ">= 0"), ("", "at least one")])
def test_budget_errors(bad, match):
    with pytest.raises(ValueError, match=f"evaluate.event_budgets: .*{match}"):
        _ev(event_budgets=bad)


def test_records_run_and_sanity_flags():
    x = jax.random.randint(jax.random.key(0), (8, 3, 4, 4, 2), 0, 3).astype(jnp.float32) / 2
    w = jax.random.normal(jax.random.key(1), (96, 3)) / 4
    fn = Partial(_apply, w)
    y = np.asarray(jnp.argmax(fn(x, None), -1))  # all correct: clean accuracy 1
    target = suite.Target(fn)
    done = {}
    for rec in suite.plan(_ev(), stochastic=False, spiking=True, events=INFO):
        out = runner.run_record(rec, target, np.asarray(x), y)
        done[out["name"]] = out
        if rec["input"] == "events":
            assert out["events_changed_max"] <= rec["settings"]["budget"]
            assert 0 <= out["events_changed_mean"] <= out["events_changed_max"]
    assert done["clean"]["accuracy"] == 1.0
    for k in (1, 4):
        assert done[f"event-l0-k{k}"]["accuracy"] <= done[f"event-random-k{k}"]["accuracy"]
    assert done["event-l0-k4"]["accuracy"] < 1.0
    s = sanity.checks(done, None, _ev())
    assert s["flags"]["event_gradient_le_random"]["passed"] is True
    assert s["flags"]["monotone_budget"]["passed"] is True
    # A masked model (the gradient-guided attack weaker than random) is flagged.
    done["event-l0-k4"] = dict(done["event-l0-k4"], accuracy=1.0)
    done["event-random-k4"] = dict(done["event-random-k4"], accuracy=0.5)
    s = sanity.checks(done, None, _ev())
    assert "event_gradient_le_random" in s["failed"] and s["verdict"] == "possible gradient masking"
    assert "event_gradient_le_random" not in sanity.checks({"clean": done["clean"]}, None, _ev())["flags"]
