"""launch/study_events.py: its configs load and its protocol is a valid evaluation on event data."""

import pytest

from jsnn import models
from jsnn.evaluate import events, settings, suite
from launch import study_events


def test_configs_and_protocol():
    for name in study_events.CONFIGS:
        config = study_events.study_config(name, num_epochs=1)
        assert config.train.num_epochs == 1.0 and config.train.num_steps is None
        ev = settings.resolve_eval_config(config, study_events.eval_overrides(num_examples=10))
        info = events.info_of(models.dataset_info(config))
        assert info is not None, name
        recs = suite.plan(ev, stochastic=False, spiking=True, events=info)
        assert {r["input"] for r in recs} == {"frames", "events"} and not any(r.get("skip") for r in recs)
        assert [r["name"] for r in recs if r["kind"] == "event-l0"] == ["event-l0-k1", "event-l0-k5", "event-l0-k20"]
    for name in ("at", "sr_at"):
        at = study_events.study_config(name, at_eps=0.1).defense.at
        assert at.eps == 0.1 and at.step_size == pytest.approx(2.5 * 0.1 / at.steps)
    assert study_events.study_config("vanilla", at_eps=0.1).defense.name == "none"
    with pytest.raises(ValueError, match="no launch/configs/events_nope.py"):
        study_events.study_config("nope")


def test_events_table_orders_columns(tmp_path):
    from jsnn import io

    stats = {"clean": [0.9, 0.01, 2], "event-l0-k20": [0.4, 0.1, 2], "event-l0-k5": [0.7, 0.0, 2],
             "pgd10-linf-eps0.25": [0.0, 0.0, 2], "pgd10-linf-eps0.1": [0.3, 0.05, 2], "event-random-k5": [0.8, 0.0, 2]}
    eps = {"pgd10-linf-eps0.25": 0.25, "pgd10-linf-eps0.1": 0.1, "event-l0-k20": 20.0, "event-l0-k5": 5.0,
           "event-random-k5": 5.0}
    io.write_json(str(tmp_path / "study.json"), {"summary": {"vanilla": {
        "seeds": [0, 1], "eps": eps, "possible_gradient_masking": [], "stats": stats}}})
    head, _, row = study_events.events_table(str(tmp_path)).splitlines()
    assert head == ("| config | seeds | clean | PGD ε=0.1 | PGD ε=0.25 | event-l0 k=5 | event-l0 k=20 | random k=5 "
                    "| sanity |")
    assert row == "| vanilla | 2 | 90.0 ± 1.0 | 30.0 ± 5.0 | 0.0 ± 0.0 | 70.0 ± 0.0 | 40.0 ± 10.0 | 80.0 ± 0.0 | ok |"
