"""The defense study is a sweep over named configs plus an evaluation protocol (launch/configs/study_digits.py)."""

import json
import os
import subprocess
import sys

import ml_collections
import pytest

from jsnn import sweep
from launch import common
from launch.configs import study_digits, study_events

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(defense):
    return ml_collections.ConfigDict({"seed": 0, "data": {"name": "digits", "batch_size": 64},
                                      "model": {"name": "digits_mlp", "T": 4, "kwargs": {"hidden": (16,)}},
                                      "optim": {"learning_rate": 0.1}, "train": {"num_steps": 4},
                                      "defense": {"name": defense}})


def test_config_axis_runs_start_from_their_named_config(tmp_path):
    seen = {}

    def fake_train(config, run_dir):
        seen[os.path.relpath(run_dir, tmp_path)] = (config.defense.name, config.model.T, config.seed)
        with open(os.path.join(run_dir, "results.json"), "w") as f:
            json.dump({"clean_accuracy": 0.9 if config.defense.name == "none" else 0.8}, f)

    configs = {"plain": _config("none"), "noisy": _config("noise")}
    grid = sweep.parse_grid("config=plain,noisy;model.T=2", configs["plain"])
    report = sweep.run_sweep(configs["plain"], str(tmp_path), grid, (0, 1), train_fn=fake_train, configs=configs)
    assert sorted(report.trained) == sorted(seen) == ["config=noisy,model.T=2/seed=0", "config=noisy,model.T=2/seed=1",
                                                      "config=plain,model.T=2/seed=0", "config=plain,model.T=2/seed=1"]
    assert seen["config=noisy,model.T=2/seed=1"] == ("noise", 2, 1) and seen["config=plain,model.T=2/seed=0"][0] == "none"
    assert configs["plain"].model.T == 4  # the named configs are copied, not changed
    rows = sweep.write_summary(str(tmp_path), grid, (0, 1), plots=False)
    assert [(r.point[0][1], round(r.stats["clean_accuracy"][0], 3)) for r in rows] == [("plain", 0.9), ("noisy", 0.8)]
    with pytest.raises(ValueError, match=r"grid: config='noisy' is not a loaded experiment config"):
        sweep.run_sweep(configs["plain"], str(tmp_path), grid, (0,), train_fn=fake_train)
    with pytest.raises(ValueError, match=r"grid: the 'config' axis must come first"):
        sweep.parse_grid("model.T=2;config=plain", configs["plain"])


def test_study_spec_loads_every_config_with_its_protocol(tmp_path):
    spec = study_digits.get_sweep()
    base = study_digits.get_config()
    grid = sweep.parse_grid(spec["grid"] + ",digits_ann,digits_rsc_distill", base)
    names = sweep.config_names(grid)
    assert len(names) == 13 and names[0] == "digits_vanilla"
    configs, commands = common.named_configs("launch/configs/study_digits.py", names, [("train.log_every", 7)], spec,
                                             str(tmp_path))
    for name, c in configs.items():
        assert (c.train.num_epochs, c.train.num_steps, c.train.log_every) == (5.0, None, 7), name
    assert configs["digits_sr_at"].defense.name == "sr+at" and configs["digits_rsc"].model.encoder.name == "rsc"
    teacher = os.path.join(str(tmp_path), "config=digits_ann", "seed=0")
    assert configs["digits_rsc_distill"].defense.distill.teacher_workdir == teacher
    path, pairs = commands["digits_rsc_distill"]
    assert path == "launch/configs/digits_rsc_distill.py" and pairs[-1] == ("train.log_every", 7)  # flags last
    evaluate = sweep.parse_overrides(spec["evaluate"], base.evaluate)
    assert evaluate["num_examples"] == 100 and evaluate["attacks"] == "clean,pgd20,autoattack,ensemble,sapgd"
    assert evaluate["ensemble_full"] == "default,sr" and evaluate["eot_chunk"] == 4
    with pytest.raises(ValueError, match=r"get_sweep\(\) overrides: \['digits_nope'\] name no config file"):
        common.named_configs("launch/configs/study_digits.py", names, [], {"overrides": {"digits_nope": {}}}, "/w")


@pytest.mark.slow
def test_study_through_the_sweep_launcher(tmp_path):
    """Two configs of the study, one seed, a few steps: run dirs per config, the protocol's records, the table."""
    workdir = tmp_path / "study"
    cmd = [sys.executable, "-m", "launch.sweep", "--config=launch/configs/study_digits.py", f"--workdir={workdir}",
           "--grid=config=digits_vanilla,digits_noise", "--seeds=0", "--compilation_cache=",
           "--config.train.num_steps=2", "--config.train.checkpoint_every=2", "--config.train.log_every=2",
           "--config.model.T=2", "--config.data.test_limit=16",
           "--evaluate_overrides=attacks=clean,fgsm;num_examples=8;eps=0.1;large_eps="]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 trained, 2 evaluated" in proc.stdout
    rob = json.load(open(workdir / "config=digits_noise" / "seed=0" / "robustness.json"))
    assert "fgsm-linf-eps0.1" in rob["records"]
    record = json.load(open(workdir / "sweep.json"))
    assert sorted(record["configs"]) == ["digits_noise", "digits_vanilla"]
    noise = [r for r in record["runs"] if r["name"].startswith("config=digits_noise")][0]["command"]
    assert "--config=launch/configs/digits_noise.py" in noise and "--config.train.num_epochs=5.0" in noise
    assert "--config.model.T=2" in noise and "--config.seed=0" in noise
    table = (workdir / "summary.md").read_text()
    assert "| digits_vanilla | 1 |" in table and "| digits_noise | 1 |" in table


def test_study_summary_from_run_files(tmp_path):
    """The study's table is the sweep's: mean ± sample std over seeds per column, stochastic/masking tags, plots."""
    import numpy as np

    def write(name, seed, clean, pgd, stochastic=False, masking=False):
        d = tmp_path / f"config={name}" / f"seed={seed}"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"clean_accuracy": clean}))
        records = {"clean": {"accuracy": clean, "eps": 0.0},
                   "pgd20-linf-eps0.15": {"accuracy": pgd, "eps": 0.15},
                   "pgd20-linf-eps51/255": {"accuracy": pgd / 2, "eps": 0.2},
                   "square-linf-eps0.15": {"skip": "linf only", "eps": 0.15},
                   "ensemble-pgd20-linf-eps0.15": {"accuracy": pgd - 0.1, "eps": 0.15, "subset_accuracy": {"sr": pgd},
                                                   "cascade": [{"accuracy": pgd - 0.05},
                                                               {"gradient": "bptt", "accuracy": pgd - 0.1}]}}
        (d / "robustness.json").write_text(json.dumps({
            "records": records, "suite": sorted(records), "gradients": {"zero_gradient_examples": 0.0},
            "stochastic": stochastic, "possible_gradient_masking": masking,
            "worst_case": {"eps": 0.15, "accuracy": pgd}}))

    write("vanilla", 0, 0.98, 0.30)
    write("vanilla", 1, 1.00, 0.40)
    write("rsc", 0, 0.96, 0.60, stochastic=True, masking=True)
    write("at", 0, 0.97, 0.60)  # still being evaluated by another shard: its suite is not complete
    doc = json.loads((tmp_path / "config=at" / "seed=0" / "robustness.json").read_text())
    (tmp_path / "config=at" / "seed=0" / "robustness.json").write_text(
        json.dumps(dict(doc, suite=doc["suite"] + ["ensemble"])))
    grid = sweep.parse_grid("config=vanilla,rsc,at", ml_collections.ConfigDict({"seed": 0}))
    rows = {r.point[0][1]: r for r in sweep.write_summary(str(tmp_path), grid, [0, 1])}
    m, s, n = rows["vanilla"].stats["pgd20-linf-eps0.15"]
    assert (n, m) == (2, pytest.approx(0.35)) and s == pytest.approx(np.std([0.3, 0.4], ddof=1))
    assert "pgd20-linf-eps0.15" not in rows["at"].stats  # only its clean accuracy (training's) counts yet
    table = (tmp_path / "summary.md").read_text()
    assert "| vanilla | 2 | 0.9900 ± 0.0141 |" in table and "pgd20-linf-eps51/255" in table
    assert "| rsc (stoch.) ⚠ | 1 | 0.9600 ± – |" in table
    assert (tmp_path / "plots" / "tradeoff.png").exists() and (tmp_path / "plots" / "accuracy_vs_eps.png").exists()
    m, _, _ = rows["vanilla"].stats["ensemble-pgd20-linf-eps0.15 [sr]"]  # a column per estimator family
    assert m == pytest.approx(0.35) and rows["vanilla"].stats["ensemble-pgd20-linf-eps0.15 [+bptt]"][0] == pytest.approx(0.25)
    assert "ensemble-pgd20-linf-eps0.15 [full]" in table
    assert (tmp_path / "plots" / "ensemble_families.png").stat().st_size > 1000


def test_event_study_configs_and_protocol(tmp_path):
    """launch/configs/study_events.py: every config loads for event data and plans both threat models."""
    from jsnn import models
    from jsnn.evaluate import events, settings, suite

    spec, base = study_events.get_sweep(), study_events.get_config()
    names = sweep.config_names(sweep.parse_grid(spec["grid"], base))
    configs, _ = common.named_configs("launch/configs/study_events.py", names, [], spec, str(tmp_path))
    for name, config in configs.items():
        assert config.train.num_epochs == 3.0 and config.train.num_steps is None
        ev = settings.resolve_eval_config(config, sweep.parse_overrides(spec["evaluate"], base.evaluate))
        info = events.info_of(models.dataset_info(config))
        assert info is not None, name
        recs = suite.plan(ev, stochastic=False, spiking=True, events=info)
        assert {r["input"] for r in recs} == {"frames", "events"} and not any(r.get("skip") for r in recs)
        assert [r["name"] for r in recs if r["kind"] == "event-l0"] == ["event-l0-k1", "event-l0-k5", "event-l0-k20"]
    for name in ("events_at", "events_sr_at"):
        at = configs[name].defense.at
        assert at.eps == 0.1 and at.step_size == pytest.approx(2.5 * 0.1 / at.steps)
    assert configs["events_vanilla"].defense.name == "none"
