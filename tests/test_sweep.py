"""Sweeps: grid parsing, run names, sharding, skip/resume, summaries, and the launcher end to end."""

import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np
import pytest

from jsnn.evaluate.suite import RECORDS_VERSION

from jsnn import sweep
from launch import commands
from launch.configs import default

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def config():
    return default.get_config()


# ----------------------------------------------------------------------------- parsing


def test_grid_values_take_the_field_types(config):
    grid = sweep.parse_grid("model.T=4,8; optim.learning_rate=0.1,1e-3;model.remat=true,False;"
                            "model.surrogate=atan,sigmoid;data.train_limit=10", config)
    assert [p for p, _ in grid] == ["model.T", "optim.learning_rate", "model.remat", "model.surrogate",
                                    "data.train_limit"]
    values = dict(grid)
    assert values["model.T"] == (4, 8) and all(type(v) is int for v in values["model.T"])
    assert values["optim.learning_rate"] == (0.1, 0.001) and all(type(v) is float for v in values["optim.learning_rate"])
    assert values["model.remat"] == (True, False)
    assert values["model.surrogate"] == ("atan", "sigmoid")
    assert values["data.train_limit"] == (10,)  # a placeholder(int) field: typed although its value is None


def test_grid_from_a_mapping(config):
    grid = sweep.parse_grid({"model.T": [4, 8], "optim.learning_rate": 1, "model.neuron": ["if"]}, config)
    assert dict(grid) == {"model.T": (4, 8), "optim.learning_rate": (1.0,), "model.neuron": ("if",)}
    assert type(dict(grid)["optim.learning_rate"][0]) is float
    with pytest.raises(ValueError, match="model.T"):
        sweep.parse_grid({"model.T": [4.5]}, config)


@pytest.mark.parametrize("spec, match", [
    ("defense.lam=0.001,0.01", r"unknown config field 'defense.lam'.*config.defense has: name"),
    ("modle.T=4", r"unknown config field 'modle.T'"),
    ("model.T=4.5", r"model.T=.*4.5.* not a valid int"),
    ("model.remat=maybe", r"model.remat=.*maybe.* not a valid bool"),
    ("seed=1,2", r"--seeds"),
    ("model.T=4;model.T=8", r"'model.T' appears twice"),
    ("model.T=4,", r"empty value"),
    ("model.T=4,4", r"repeats a value"),
    ("model.T", r"path=v1,v2"),
    ("model=1", r"config section"),
])
def test_bad_grids_are_clear_errors(config, spec, match):
    with pytest.raises(ValueError, match=match):
        sweep.parse_grid(spec, config)


def test_seeds_and_shard_parsing():
    assert sweep.parse_seeds("0,1,2") == (0, 1, 2)
    assert sweep.parse_seeds("3:6") == (3, 4, 5)
    assert sweep.parse_seeds(7) == (7,) and sweep.parse_seeds([2, 1]) == (2, 1)
    for bad in ("a,b", "", "1,1", "5:5"):
        with pytest.raises(ValueError, match="seeds"):
            sweep.parse_seeds(bad)
    assert sweep.parse_shard("1/3") == (1, 3) and sweep.parse_shard("0/1") == (0, 1)
    for bad in ("3/3", "1/0", "x", "1-3"):
        with pytest.raises(ValueError, match="shard"):
            sweep.parse_shard(bad)


def test_run_names_are_sanitized_paths(config):
    grid = sweep.parse_grid({"model.surrogate": ["a/b c"], "optim.learning_rate": [0.01]}, config)
    (run,) = sweep.expand(grid, [3])
    assert run.name == "model.surrogate=a_b_c,optim.learning_rate=0.01/seed=3"
    assert sweep.expand((), [0, 1])[1].name == "seed=1"
    with pytest.raises(ValueError, match="collide"):
        sweep.expand(sweep.parse_grid({"model.surrogate": ["a/b", "a b"]}, config), [0])


@pytest.mark.parametrize("count", [1, 2, 3, 5, 13])
def test_shards_cover_every_run_exactly_once(config, count):
    grid = sweep.parse_grid("model.T=2,4,8;optim.learning_rate=0.1,0.01", config)
    runs = sweep.expand(grid, [0, 1])
    assert len(runs) == 12 and runs == sorted(runs, key=lambda r: r.name)
    shards = [sweep.shard_runs(runs, i, count) for i in range(count)]
    flat = [r for s in shards for r in s]
    assert len(flat) == len(runs) and set(flat) == set(runs)
    assert all(abs(len(s) - len(runs) / count) < 1 for s in shards)  # balanced
    assert shards == [sweep.shard_runs(sweep.expand(grid, [0, 1]), i, count) for i in range(count)]  # deterministic


def test_run_config_sets_values_and_seed_on_a_copy(config):
    grid = sweep.parse_grid("model.T=8;model.encoder.sigma=0.25", config)
    (run,) = sweep.expand(grid, [5])
    c = sweep.run_config(config, run)
    assert (c.model.T, c.model.encoder.sigma, c.seed) == (8, 0.25, 5)
    assert (config.model.T, config.model.encoder.sigma, config.seed) == (4, 0.0, 0)


def test_train_command_reproduces_one_run(config):
    (run,) = sweep.expand(sweep.parse_grid("model.T=8;model.remat=true", config), [2])
    cmd = commands.train_command("launch/configs/default.py", "/w/x", [("train.num_steps", 5)], run)
    assert cmd[:3] == [sys.executable, "-m", "launch.train"]
    assert cmd[3:] == ["--config=launch/configs/default.py", "--workdir=/w/x", "--config.train.num_steps=5",
                       "--config.model.T=8", "--config.model.remat=true", "--config.seed=2"]
    assert commands.shell_command(cmd).startswith("python -m launch.train ")


# ----------------------------------------------------------------------------- summaries


def _write_run(workdir, run, clean, robust=None, config=None):
    d = os.path.join(workdir, run.name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump({"clean_accuracy": clean, "seed": run.seed, "config": config or {}}, f)
    if robust is not None:
        with open(os.path.join(d, "robustness.json"), "w") as f:
            json.dump(robust, f)


def _robustness(pgd, worst, stochastic=False, complete=True):
    """A robustness.json shaped like jsnn.evaluate's (records in suite order, worst case, sanity)."""
    records = {
        "clean": {"attack": "clean", "purpose": "suite", "accuracy": 0.9, "accuracy_all_draws": 0.8},
        "pgd10-linf-eps8/255": {"attack": "pgd", "purpose": "suite", "accuracy": pgd, "accuracy_all_draws": 0.0},
        "square-linf-eps8/255": {"attack": "square", "skip": "implemented for linf only"},
        "pgd10-linf-eps0.5-large": {"attack": "pgd", "purpose": "sanity: large eps", "accuracy": 0.0},
    }
    suite = list(records)
    if not complete:
        del records["pgd10-linf-eps0.5-large"]
    return {"records": records, "suite": suite, "stochastic": stochastic, "gradients": {"x": 0.0} if complete else None,
            "worst_case": {"accuracy": worst, "accuracy_all_draws": 0.0, "attack": "pgd10-linf-eps8/255"},
            "settings": {"sanity": {"large_eps_max_accuracy": 0.1}}, "qte": {}, "records_version": RECORDS_VERSION}


def test_robust_metrics_follow_the_evaluation_schema(tmp_path):
    assert sweep.robust_metrics(_robustness(0.25, 0.2)) == {
        "clean": 0.9, "pgd10-linf-eps8/255": 0.25, "worst_case": 0.2}  # suite order, no skip/sanity/settings
    stoch = sweep.robust_metrics(_robustness(0.25, 0.2, stochastic=True))
    assert list(stoch) == ["clean", "clean (all draws)", "pgd10-linf-eps8/255", "pgd10-linf-eps8/255 (all draws)",
                           "worst_case", "worst_case (all draws)"]
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps(_robustness(0.25, 0.2, complete=False)))
    assert not sweep.evaluation_complete(str(path))  # written after every attack: not done yet
    path.write_text(json.dumps(_robustness(0.25, 0.2)))
    assert sweep.evaluation_complete(str(path))
    path.write_text("{")
    assert not sweep.evaluation_complete(str(path))


def test_evaluation_overrides_are_typed(config):
    ev = config.copy_and_resolve_references()
    ev.unlock()
    ev.evaluate = dict(attacks="clean", num_examples=1000, eps="8/255")
    out = sweep.parse_overrides("attacks=clean,fgsm,pgd10; num_examples=64;eps=2/255,8/255", ev.evaluate)
    assert out == {"attacks": "clean,fgsm,pgd10", "num_examples": 64, "eps": "2/255,8/255"}
    with pytest.raises(ValueError, match=r"evaluate_overrides: unknown config field 'nope'"):
        sweep.parse_overrides("nope=1", ev.evaluate, "evaluate_overrides")
    with pytest.raises(ValueError, match=r"num_examples=.*many.* not a valid int"):
        sweep.parse_overrides("num_examples=many", ev.evaluate)


def test_summary_mean_and_sample_std(tmp_path, config):
    workdir = str(tmp_path)
    grid = sweep.parse_grid("model.T=4,8", config)
    seeds = (0, 1, 2)
    rng = np.random.default_rng(0)
    values = {}
    for run in sweep.expand(grid, seeds):
        if run.point[0][1] == 8 and run.seed > 0:
            continue  # T=8 has only seed 0 finished: std undefined
        c, p = float(rng.uniform()), float(rng.uniform())
        values[run] = (c, p)
        _write_run(workdir, run, c, _robustness(p, p / 2))
    rows = sweep.write_summary(workdir, grid, seeds)
    assert [r.point for r in rows] == [(("model.T", 4),), (("model.T", 8),)]
    t4 = [v for r, v in values.items() if r.point[0][1] == 4]
    mean, std, n = rows[0].stats["clean_accuracy"]
    assert n == 3 and mean == pytest.approx(statistics.fmean(v[0] for v in t4))
    assert std == pytest.approx(statistics.stdev(v[0] for v in t4))  # ddof=1
    pgd = "pgd10-linf-eps8/255"
    assert rows[0].stats[pgd][0] == pytest.approx(statistics.fmean(v[1] for v in t4))
    assert rows[0].stats["worst_case"][1] == pytest.approx(statistics.stdev(v[1] / 2 for v in t4))
    assert rows[1].stats["clean_accuracy"][2] == 1 and math.isnan(rows[1].stats["clean_accuracy"][1])

    with open(tmp_path / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0])[:5] == ["model.T", "n", "seeds", "clean_accuracy_mean", "clean_accuracy_std"]
    assert [t["model.T"] for t in table] == ["4", "8"] and table[0]["n"] == "3" and table[0]["seeds"] == "0 1 2"
    assert float(table[0]["clean_accuracy_mean"]) == mean and float(table[0]["clean_accuracy_std"]) == std
    assert float(table[0][f"{pgd}_mean"]) == rows[0].stats[pgd][0]
    assert table[1]["clean_accuracy_std"] == ""
    md = (tmp_path / "summary.md").read_text()
    assert "ddof=1" in md and f"| model.T | n | clean_accuracy | clean | {pgd} | worst_case |" in md
    assert f"{mean:.4f} ± {std:.4f}" in md and "± –" in md
    assert "Unfinished runs (2)" in md and "model.T=8/seed=1" in md
    for m in ("clean_accuracy", "pgd10-linf-eps8_255", "worst_case"):
        assert (tmp_path / "plots" / f"{m}.png").stat().st_size > 1000


def test_finished_run_with_another_config_is_refused(tmp_path, config):
    from jsnn import config as cfg_lib

    (run,) = sweep.expand((), [0])
    other = sweep.run_config(config, run)
    other.model.T = 9
    _write_run(str(tmp_path), run, 0.5, config=cfg_lib.to_dict(other))
    with pytest.raises(ValueError, match=r"different config \(model.T: 9 -> 4\)"):
        sweep.run_sweep(config, str(tmp_path), (), [0], train_fn=lambda c, d: None)
    # the evaluate section does not change what was trained: a new protocol (or a field a newer jsnn added) is fine
    other.model.T = config.model.T
    recorded = cfg_lib.to_dict(other)
    recorded["evaluate"] = {"attacks": "clean"}  # another protocol, and no field the current code added
    _write_run(str(tmp_path), run, 0.5, config=recorded)
    report = sweep.run_sweep(config, str(tmp_path), (), [0], train_fn=lambda c, d: None)
    assert report.skipped == [run.name]


# ----------------------------------------------------------------------------- execution (fake training)


def _fake_train(log, fail_seed=None):
    from jsnn import config as cfg_lib, io

    def train_fn(config, run_dir):
        log.append((run_dir, config.seed))
        if config.seed == fail_seed:
            raise FloatingPointError("diverged")
        io.write_json(os.path.join(run_dir, "results.json"), {
            "clean_accuracy": 0.1 * config.model.T + 0.01 * config.seed, "seed": config.seed,
            "config": cfg_lib.to_dict(config)})

    return train_fn


def test_run_sweep_skips_finished_and_records_failures(tmp_path, config):
    workdir = str(tmp_path)
    grid = sweep.parse_grid("model.T=2,4", config)
    log = []
    report = sweep.run_sweep(config, workdir, grid, [0, 1], train_fn=_fake_train(log, fail_seed=1))
    assert len(log) == 4 and len(report.trained) == 2 and len(report.failed) == 2 and not report.skipped
    assert "FloatingPointError: diverged" in (tmp_path / "model.T=2" / "seed=1" / "error.txt").read_text()
    log.clear()
    report = sweep.run_sweep(config, workdir, grid, [0, 1], train_fn=_fake_train(log))
    assert sorted(s for _, s in log) == [1, 1] and len(report.skipped) == 2 and not report.failed
    assert not (tmp_path / "model.T=2" / "seed=1" / "error.txt").exists()
    with pytest.raises(FloatingPointError):
        sweep.run_sweep(config, str(tmp_path / "b"), grid, [1], train_fn=_fake_train([], 1), keep_going=False)


def test_run_sweep_validates_every_config_first(tmp_path, config):
    log = []
    with pytest.raises(ValueError, match=r"model.T=0/seed=0: model.T"):
        sweep.run_sweep(config, str(tmp_path), sweep.parse_grid("model.T=0,4", config), [0],
                        train_fn=_fake_train(log))
    assert not log


def test_evaluation_runs_once_per_trained_run(tmp_path, config):
    workdir = str(tmp_path)
    evaluated = []

    def evaluate(run_dir, cfg):
        evaluated.append(cfg.seed)
        with open(os.path.join(run_dir, "robustness.json"), "w") as f:
            json.dump(_robustness(0.25, 0.25), f)

    sweep.run_sweep(config, workdir, (), [0, 1], train_fn=_fake_train([]))  # trained, not evaluated
    log = []
    report = sweep.run_sweep(config, workdir, (), [0, 1], evaluate=evaluate, train_fn=_fake_train(log))
    assert not log and sorted(evaluated) == [0, 1] and len(report.evaluated) == 2  # results kept, eval only
    report = sweep.run_sweep(config, workdir, (), [0, 1], evaluate=evaluate, train_fn=_fake_train(log))
    assert len(report.skipped) == 2 and len(evaluated) == 2
    (tmp_path / "seed=1" / "robustness.json").write_text(json.dumps(_robustness(0.25, 0.25, complete=False)))
    report = sweep.run_sweep(config, workdir, (), [0, 1], evaluate=evaluate, train_fn=_fake_train(log))
    assert report.evaluated == ["seed=1"] and evaluated[-1] == 1 and not log  # interrupted evaluation resumes
    rows = sweep.write_summary(workdir, (), [0, 1], plots=False)
    assert rows[0].stats["pgd10-linf-eps8/255"] == (0.25, 0.0, 2)


def test_runs_finished_under_a_smaller_suite_are_evaluated_again(tmp_path, config):
    """A run the sweep would skip (complete under an earlier, smaller suite) is evaluated again by run_sweep
    itself, inside its error handling; a run complete under the settings asked for now is skipped.
    (Moved from tests/test_configs_defenses.py: the study now relies on run_sweep for this.)"""
    workdir = str(tmp_path)
    sweep.run_sweep(config, workdir, (), [0, 1, 2], train_fn=_fake_train([]))
    small, large = {"attacks": "clean"}, {"attacks": "clean,pgd20"}
    for s in (0, 1, 2):
        (tmp_path / f"seed={s}" / "robustness.json").write_text(json.dumps(dict(_robustness(0.2, 0.2), settings=small)))
    (tmp_path / "seed=1" / "robustness.json").write_text(json.dumps(dict(_robustness(0.2, 0.2), settings=large)))
    calls = []

    def evaluate(run_dir, cfg):
        calls.append(run_dir)
        if cfg.seed == 2:
            raise RuntimeError("evaluation broke")

    evaluate.settings = lambda cfg: large
    report = sweep.run_sweep(config, workdir, (), [0, 1, 2], evaluate=evaluate, train_fn=_fake_train([]))
    assert calls == [os.path.join(workdir, "seed=0"), os.path.join(workdir, "seed=2")]
    assert report.skipped == ["seed=1"] and report.evaluated == ["seed=0"] and report.failed == ["seed=2"]
    assert "evaluation broke" in (tmp_path / "seed=2" / "error.txt").read_text()
    # complete under those settings but made by older record code (another records_version): evaluated again
    doc = dict(_robustness(0.2, 0.2), settings=large)
    doc.pop("records_version")
    (tmp_path / "seed=1" / "robustness.json").write_text(json.dumps(doc))
    assert not sweep.evaluation_complete(str(tmp_path / "seed=1" / "robustness.json"), large)
    assert sweep.evaluation_complete(str(tmp_path / "seed=1" / "robustness.json"))  # (the summary's check)


def test_a_damaged_results_file_is_rebuilt_not_fatal(tmp_path, config):
    """Issue 15: one damaged results.json does not stop the sweep; it is moved aside and the run redone."""
    workdir = str(tmp_path)
    sweep.run_sweep(config, workdir, (), [0, 1], train_fn=_fake_train([]))
    (tmp_path / "seed=0" / "results.json").write_text('{"clean_accuracy": 0.4,')
    log = []
    report = sweep.run_sweep(config, workdir, (), [0, 1], train_fn=_fake_train(log))
    assert [s for _, s in log] == [0] and report.trained == ["seed=0"] and report.skipped == ["seed=1"]
    assert (tmp_path / "seed=0" / "results.json.damaged").exists()
    (tmp_path / "seed=1" / "results.json").write_text("{")
    with pytest.raises(ValueError, match=r"seed=1/results.json: damaged JSON.*rerun the sweep"):
        sweep.run_metrics(str(tmp_path / "seed=1"))


def test_isolated_runs_execute_their_command(tmp_path, config):
    script = ("import json, os, sys; d = sys.argv[1]; os.makedirs(d, exist_ok=True); "
              "json.dump({'clean_accuracy': 0.5, 'seed': int(sys.argv[2])}, open(os.path.join(d, 'results.json'), 'w'))")
    report = sweep.run_sweep(config, str(tmp_path), (), [0, 3],
                             command_fn=lambda run, d: [sys.executable, "-c", script, d, str(run.seed)])
    assert sorted(report.trained) == ["seed=0", "seed=3"]
    assert json.loads((tmp_path / "seed=3" / "results.json").read_text())["seed"] == 3


# ----------------------------------------------------------------------------- the launcher, really training

TINY = ["--config=launch/configs/default.py", "--seeds=0,1", "--grid=data.train_limit=64,96",
        "--config.model.T=2", "--config.data.batch_size=16", "--config.data.test_limit=32",
        "--config.train.num_steps=4", "--config.train.checkpoint_every=2", "--config.train.log_every=2"]


def _sweep(workdir, cache, *extra):
    proc = subprocess.run([sys.executable, "-m", "launch.sweep", f"--workdir={workdir}",
                           f"--compilation_cache={cache}", *TINY, *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    return proc


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def _results(workdir):
    out = {}
    for root, _, files in os.walk(workdir):
        if "results.json" in files:
            r = json.load(open(os.path.join(root, "results.json")))
            out[os.path.relpath(root, workdir)] = (r["clean_accuracy"], r["test_loss"])
    return out


@pytest.mark.slow
def test_sweep_end_to_end_skip_shard_and_resume(tmp_path):
    cache = str(tmp_path / "jax_cache")  # shared: later runs load the compiled programs
    full, part = tmp_path / "full", tmp_path / "part"
    names = ["data.train_limit=64/seed=0", "data.train_limit=64/seed=1",
             "data.train_limit=96/seed=0", "data.train_limit=96/seed=1"]
    evaluate = ["--evaluate", "--evaluate_overrides=attacks=clean,fgsm;eps=8/255;large_eps=;num_examples=16"]

    # 1. The whole sweep with evaluation: one directory per run, summary, plots, rerun commands.
    assert "4 trained, 4 evaluated" in _ok(_sweep(full, cache, *evaluate))
    assert sorted(_results(full)) == names
    r = json.load(open(full / names[1] / "results.json"))
    assert r["seed"] == 1 and r["config"]["data"]["train_limit"] == 64 and r["environment"]["versions"]["jax"]
    assert r["environment"]["device_kind"]
    record = json.load(open(full / "sweep.json"))
    assert [x["name"] for x in record["runs"]] == names
    assert "--config.data.train_limit=64 --config.seed=1" in record["runs"][1]["command"]
    assert "--evaluate.attacks=clean,fgsm" in record["runs"][1]["evaluate_command"]
    table = list(csv.DictReader(open(full / "summary.csv")))
    assert [t["data.train_limit"] for t in table] == ["64", "96"] and {t["n"] for t in table} == {"2"}
    for m in ("clean_accuracy", "clean", "fgsm-linf-eps8/255", "worst_case"):
        assert f"{m}_mean" in table[0] and 0 <= float(table[0][f"{m}_mean"]) <= 1
    assert (full / "summary.md").exists() and (full / "plots" / "fgsm-linf-eps8_255.png").exists()

    # 2. Rerunning skips every finished run.
    mtimes = {n: os.path.getmtime(full / n / "robustness.json") for n in names}
    assert "0 trained, 0 evaluated, 4 already finished" in _ok(_sweep(full, cache, *evaluate))
    assert mtimes == {n: os.path.getmtime(full / n / "robustness.json") for n in names}

    # 3. One of two shards: exactly its round-robin share of the sorted runs.
    assert "2 trained, 2 evaluated" in _ok(_sweep(part, cache, "--shard=1/2", *evaluate))
    assert sorted(_results(part)) == names[1::2]

    # 4. Interrupt one of them mid-training (results and last checkpoint gone), then finish the sweep.
    victim = part / names[1]
    os.remove(victim / "results.json")
    os.remove(victim / "robustness.json")
    steps = sorted(int(s) for s in os.listdir(victim / "checkpoints") if s.isdigit())
    assert steps == [2, 4]
    shutil.rmtree(victim / "checkpoints" / "4")
    assert "3 trained, 3 evaluated, 1 already finished" in _ok(_sweep(part, cache, *evaluate))
    assert _results(part) == _results(full)  # same seed, same platform → identical metrics
    assert (part / "summary.csv").read_text() == (full / "summary.csv").read_text()
    assert (part / "summary.md").read_text() == (full / "summary.md").read_text()

    # 5. --summarize_only rewrites the tables from the results alone; a bad grid is a clear error.
    os.remove(part / "summary.csv")
    out = _ok(_sweep(part, cache, "--summarize_only"))
    assert "trained" not in out and (part / "summary.csv").read_text() == (full / "summary.csv").read_text()
    bad = _sweep(part, cache, "--grid=defense.lam=0.1")
    assert bad.returncode == 2 and "unknown config field 'defense.lam'" in bad.stderr


@pytest.mark.parametrize("flag, parts", [
    ("--config.model.typo=1", ["--config.model.typo", "'typo'", "allowed: T,"]),
    ("--config.model.kwargs.bogus=1", ["--config.model.kwargs.bogus", "'bogus'", "model.kwargs"]),
    ("--grid=model.kwargs.bogus=1,2", ["unknown config field 'model.kwargs.bogus'"]),
])
def test_unknown_fields_through_the_sweep_are_one_line(tmp_path, flag, parts):
    proc = subprocess.run([sys.executable, "-m", "launch.sweep", "--config=launch/configs/default.py",
                           f"--workdir={tmp_path}", flag], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert all(p in line for p in parts), line
    assert not os.listdir(tmp_path)  # nothing started
