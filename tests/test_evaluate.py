"""Robustness report: a small suite on a tiny trained digits model (JSON, PNG, flags, resume, CLI)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn import data as data_lib
from jsnn import checkpoint, evaluate, models, train
from jsnn import io
from launch.configs import default

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = {"attacks": "clean,fgsm,pgd2,pgd4,apgd-ce,square,ensemble", "eps": "4/255,16/255", "main_eps": "16/255",
         "large_eps": "0.5", "num_examples": 16, "batch_size": 16, "apgd_steps": 4, "square_queries": 20,
         "ensemble_steps": 2, "ensemble": "triangle:1,atan:2,bptr"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("eval"))
    config = default.get_config()
    config.train.num_steps = 30
    config.train.checkpoint_every = 30
    config.train.log_every = 10
    config.data.batch_size = 32
    config.data.test_limit = 32
    config.model.T = 2
    train.train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def report(run_dir):
    return evaluate.evaluate_workdir(run_dir, overrides=SUITE)


def test_report_fields_png_and_values(run_dir, report):
    with open(os.path.join(run_dir, "robustness.json")) as f:
        doc = json.load(f)
    assert doc["suite"] == report["suite"]
    assert os.path.getsize(os.path.join(run_dir, "robustness.png")) > 1000
    assert doc["stochastic"] is False and doc["spiking"] is True and doc["draws"] == 1
    names = doc["suite"]
    assert "clean" in names and "pgd2-linf-eps4/255" in names and "pgd4-linf-eps16/255" in names
    assert "pgd4-linf-eps0.5-large" in names and "ensemble-pgd2-linf-eps16/255" in names
    for name in names:
        r = doc["records"][name]
        for key in ("name", "attack", "function", "eps", "steps", "eot", "estimator", "accuracy",
                    "accuracy_all_draws", "settings", "seconds", "num_examples", "checkpoint_step", "fingerprint"):
            assert key in r, (name, key)
        assert 0.0 <= r["accuracy"] <= 1.0 and r["num_examples"] == 16
        assert r["settings"]["seed"] == 0 and r["settings"]["num_examples"] == 16
        assert (r["checkpoint_step"], r["fingerprint"]) == (doc["checkpoint_step"], doc["fingerprint"])
    # clean accuracy: an independent forward on the first 16 test images
    config, model, variables, step, fingerprint, _ = checkpoint.load_run(run_dir)
    assert (doc["checkpoint_step"], doc["fingerprint"]) == (step, fingerprint) == (30, checkpoint.fingerprint(variables))
    batch = next(data_lib.eval_batches(config.data, split="test", batch_size=16, limit=16))
    logits = models.logits_fn(model, variables)(jnp.asarray(batch["image"]), jax.random.PRNGKey(0))
    clean = float(np.mean(np.argmax(logits, -1) == batch["label"]))
    rec = doc["records"]
    assert rec["clean"]["accuracy"] == pytest.approx(clean)
    for name in names:
        if name != "clean":
            assert rec[name]["accuracy"] <= clean + 1e-9, name  # an attack never helps
    ens = rec["ensemble-pgd2-linf-eps16/255"]
    assert set(ens["per_estimator_accuracy"]) == {"triangle(1)", "atan(2)", "bptr"}
    assert ens["accuracy"] <= min(ens["per_estimator_accuracy"].values()) + 1e-9
    # QTE: trapezoid from ε = 0 (clean) over the ε list
    q = doc["qte"]["pgd4"]
    e, a = [0.0, 4 / 255, 16 / 255], [clean, rec["pgd4-linf-eps4/255"]["accuracy"], rec["pgd4-linf-eps16/255"]["accuracy"]]
    assert q["area"] == pytest.approx(np.trapezoid(a, e))
    assert doc["worst_case"]["accuracy"] == pytest.approx(
        min(rec[n]["accuracy"] for n in names if rec[n]["eps"] == pytest.approx(16 / 255)
            and rec[n]["purpose"] == "suite"))
    flags = doc["sanity"]["flags"]
    assert set(flags) == {"large_eps", "monotone_eps", "monotone_steps", "monotone_eot", "whitebox_le_blackbox",
                          "zero_gradients", "estimator_beats_training_surrogate"}
    assert flags["monotone_eot"]["passed"] is None  # deterministic model
    assert all(v["passed"] in (True, False, None) for v in flags.values())
    assert doc["possible_gradient_masking"] == bool(doc["sanity"]["failed"])
    assert doc["sanity"]["verdict"] == ("possible gradient masking" if doc["sanity"]["failed"]
                                        else "no sign of gradient masking")
    assert 0.0 <= doc["gradients"]["zero_gradient_examples"] <= 1.0


def _count_runs(monkeypatch):
    calls = []
    real = evaluate.runner.run_record

    def counting(rec, *args, **kwargs):
        calls.append(rec["name"])
        return real(rec, *args, **kwargs)

    monkeypatch.setattr(evaluate.runner, "run_record", counting)
    return calls


def test_rerun_skips_done_records_and_runs_only_new_ones(run_dir, report, monkeypatch):
    calls = _count_runs(monkeypatch)
    again = evaluate.evaluate_workdir(run_dir, overrides=SUITE)
    assert calls == []
    for name in report["suite"]:
        assert again["records"][name]["accuracy"] == report["records"][name]["accuracy"]
    more = dict(SUITE, attacks=SUITE["attacks"] + ",pgd1")
    evaluate.evaluate_workdir(run_dir, overrides=more)
    assert calls == ["pgd1-linf-eps4/255", "pgd1-linf-eps16/255"]


def _records(**acc):
    out = {}
    for name, (attack, eps, steps, a) in acc.items():
        k = evaluate.suite.kind(attack if attack != "pgd" else f"pgd{steps}")
        out[name] = {"name": name, "attack": attack, "eps": eps, "steps": steps, "accuracy": a,
                     "accuracy_all_draws": a, "purpose": "suite", "eps_label": str(eps), "eot": 1,
                     "family": k.family, "box": k.box}
    return out


def test_sanity_flags_detect_masking_patterns():
    ev = evaluate.default_eval_config()
    healthy = _records(clean=("clean", 0.0, None, 0.9), **{
        "pgd10-a": ("pgd", 0.1, 10, 0.5), "pgd10-b": ("pgd", 0.2, 10, 0.2),
        "pgd50-a": ("pgd", 0.1, 50, 0.45), "square": ("square", 0.2, 100, 0.3)})
    healthy["pgd10-large"] = dict(healthy["pgd10-b"], eps=0.5, accuracy=0.0, purpose="sanity: large eps")
    s = evaluate.sanity_checks(healthy, {"zero_gradient_examples": 0.0, "zero_gradient_entries": 0.0}, ev)
    assert s["failed"] == [] and s["verdict"] == "no sign of gradient masking"
    masked = _records(clean=("clean", 0.0, None, 0.9), **{
        "pgd10-a": ("pgd", 0.1, 10, 0.5), "pgd10-b": ("pgd", 0.2, 10, 0.6),  # rises with ε
        "pgd50-a": ("pgd", 0.1, 50, 0.7),  # rises with steps
        "square": ("square", 0.2, 100, 0.3)})  # black-box beats white-box
    masked["pgd10-large"] = dict(masked["pgd10-b"], eps=0.5, accuracy=0.6, purpose="sanity: large eps")
    s = evaluate.sanity_checks(masked, {"zero_gradient_examples": 0.5, "zero_gradient_entries": 0.9}, ev)
    assert set(s["failed"]) == {"large_eps", "monotone_eps", "monotone_steps", "whitebox_le_blackbox",
                                "zero_gradients"}
    assert s["verdict"] == "possible gradient masking"


def test_plan_for_stochastic_models_and_l2():
    ev = evaluate.resolve_eval_config(None, {"attacks": "clean,pgd10,autoattack,square,ensemble"})
    p = {r["name"]: r for r in evaluate.plan(ev, stochastic=True, spiking=True)}
    aa = [r for r in p.values() if r["attack"] == "autoattack"][0]
    assert aa["settings"]["version"] == "rand" and aa["settings"]["eot"] == 20
    assert p["pgd10-linf-eps8/255"]["settings"]["eot"] == 20 and p["pgd10-linf-eps8/255"]["settings"]["draws"] == 10
    assert "pgd10-linf-eps8/255-eot1" in p  # the EOT monotonicity check
    det = evaluate.plan(ev, stochastic=False, spiking=False)
    assert all(r["settings"]["draws"] == 1 for r in det)
    assert [r for r in det if r["attack"] == "ensemble"][0]["skip"]  # one estimator only
    l2 = evaluate.plan(evaluate.resolve_eval_config(None, {"norm": "l2", "attacks": "square,autoattack"}),
                       stochastic=False, spiking=True)
    assert all(r.get("skip") for r in l2 if r["attack"] in ("square", "autoattack"))


def test_config_precedence_and_errors():
    run = default.get_config()
    run.evaluate = evaluate.default_eval_config()
    run.evaluate.draws = 3
    run.evaluate.eps = "1/255"
    ev = evaluate.resolve_eval_config(run, {"eps": "2/255,4/255"}, num_examples=7)
    assert ev.draws == 3 and ev.eps == "2/255,4/255" and ev.num_examples == 7
    assert evaluate.resolve_eval_config(default.get_config()).draws == 10  # older runs: defaults
    for overrides, match in [({"nosuch": 1}, "evaluate.nosuch: unknown field"),
                             ({"attacks": "pgd,fgsm"}, "evaluate.attacks: unknown attack 'pgd'"),
                             ({"eps": "8/0"}, "evaluate.eps"), ({"norm": "l1"}, "evaluate.norm"),
                             ({"draws": 0}, "evaluate.draws"), ({"ensemble": "relu"}, "evaluate.ensemble"),
                             ({"sanity.tolerance": 2.0}, "evaluate.sanity.tolerance")]:
        with pytest.raises(ValueError, match=match):
            evaluate.resolve_eval_config(None, overrides)


@pytest.mark.parametrize("flag,match", [("--evaluate.attacks=pgdx", "evaluate.attacks: unknown attack 'pgdx'"),
                                        ("--evaluate.nosuch=1", "--evaluate.nosuch: unknown field")])
def test_launcher_bad_field_is_one_message(run_dir, flag, match):
    proc = subprocess.run([sys.executable, "-m", "launch.evaluate", f"--workdir={run_dir}", flag],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert match in proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- records bound to their model

SMALL = {"attacks": "clean,fgsm", "eps": "16/255", "large_eps": "", "num_examples": 16, "batch_size": 16}


def _copy_run(run_dir, tmp_path, name="copy"):
    import shutil

    dst = str(tmp_path / name)
    shutil.copytree(run_dir, dst)
    return dst


def _fake_checkpoint(workdir, step, transform):
    """A newer checkpoint at ``step`` with ``transform``ed parameters (as if training went on)."""
    mngr = checkpoint.manager(workdir)
    raw = mngr.restore(mngr.latest_step(), args=checkpoint.ocp.args.StandardRestore())
    raw = dict(raw, params=jax.tree_util.tree_map(lambda p: transform(np.asarray(p)), raw["params"]),
               step=np.asarray(step))
    mngr.save(step, args=checkpoint.ocp.args.StandardSave(raw))
    mngr.wait_until_finished()


def _set_finished_step(workdir, step):
    path = os.path.join(workdir, "results.json")
    io.write_json(path, dict(io.read_json(path), steps=step))


def test_stale_records_are_recomputed_when_the_model_changes(run_dir, tmp_path, monkeypatch):
    work = _copy_run(run_dir, tmp_path)
    if os.path.exists(os.path.join(work, "robustness.json")):  # another test (same worker) may have evaluated it
        os.remove(os.path.join(work, "robustness.json"))
    _fake_checkpoint(work, 40, lambda p: p * 1.5)  # training goes on: step 40 exists, results.json still says 30
    with pytest.raises(ValueError, match=r"training has not finished \(newest checkpoint: step 40\).*--step=40"):
        evaluate.evaluate_workdir(work, overrides=SMALL)
    calls = _count_runs(monkeypatch)
    early = evaluate.evaluate_workdir(work, overrides=SMALL, step=30)  # the user names a step: recorded
    assert early["checkpoint_step"] == 30 and calls == ["clean", "fgsm-linf-eps16/255"]
    assert all(early["records"][n]["checkpoint_step"] == 30 for n in early["suite"])
    _set_finished_step(work, 40)  # training finished: evaluating again must not keep step 30's numbers
    calls.clear()
    late = evaluate.evaluate_workdir(work, overrides=SMALL)
    assert calls == ["clean", "fgsm-linf-eps16/255"]
    assert late["checkpoint_step"] == 40 and late["fingerprint"] != early["fingerprint"]
    for n in late["suite"]:
        assert (late["records"][n]["checkpoint_step"], late["records"][n]["fingerprint"]) == (40, late["fingerprint"])
    assert set(late["records"]) == set(late["suite"])  # step 30's records are gone, not mixed in
    calls.clear()
    assert evaluate.evaluate_workdir(work, overrides=SMALL)["records"] == late["records"] and calls == []


def test_damaged_robustness_json_keeps_intact_records_and_recomputes_the_rest(run_dir, report, tmp_path,
                                                                             monkeypatch, caplog):
    work = _copy_run(run_dir, tmp_path)
    path = os.path.join(work, "robustness.json")
    with open(path) as f:
        text = f.read()
    start = text.index('"records"')
    with open(path, "w") as f:  # truncated in the middle of the records
        f.write(text[: start + (text.index('"sanity"', start) - start) // 2])
    calls = _count_runs(monkeypatch)
    with caplog.at_level("WARNING"):
        again = evaluate.evaluate_workdir(work, overrides=SUITE)
    assert any(path in r.getMessage() and "damaged JSON" in r.getMessage() and "intact records kept" in r.getMessage()
               for r in caplog.records)
    assert calls and len(calls) < len(report["suite"])  # intact records kept, the rest recomputed
    for name in report["suite"]:  # per-record resume: identical to the uninterrupted run
        assert again["records"][name]["accuracy"] == report["records"][name]["accuracy"], name
    assert io.read_json(path)["suite"] == report["suite"]


def test_autoattack_and_transfer_records(run_dir, tmp_path):
    work = _copy_run(run_dir, tmp_path)
    doc = evaluate.evaluate_workdir(work, output="aa.json", overrides={
        "attacks": "clean,autoattack,transfer", "autoattack_version": "rand", "main_eps": "16/255", "large_eps": "",
        "num_examples": 16, "batch_size": 16, "apgd_steps": 2, "square_queries": 10, "transfer_steps": 2, "transfer_from": run_dir})
    clean = doc["records"]["clean"]["accuracy"]
    aa = doc["records"]["autoattack-rand-linf-eps16/255"]  # rand: two stages, a cheap compile for CI
    assert list(aa["autoattack_log"]) == ["clean", "apgd-ce", "apgd-dlr"] and aa["settings"]["eot"] == 1
    assert aa["autoattack_log"]["clean"] == clean  # judged once, in the cascade
    log = list(aa["autoattack_log"].values())
    assert all(b <= a for a, b in zip(log, log[1:]))  # each stage only removes robust examples
    assert aa["accuracy"] == aa["autoattack_majority_vote_accuracy"] == log[-1]  # one draw: the same judgement
    tr = doc["records"]["transfer-pgd2-linf-eps16/255"]
    _, _, _, step, fingerprint, _ = checkpoint.load_run(run_dir)
    assert tr["source_model"] == {"workdir": os.path.abspath(run_dir), "checkpoint_step": step,
                                  "fingerprint": fingerprint}
    assert tr["accuracy"] <= clean and tr["box"] == "black"
    assert doc["sanity"]["flags"]["whitebox_le_blackbox"]["passed"] is None  # no white-box record at that ε


def test_autoattack_reuses_the_suite_records_of_its_stages(run_dir, tmp_path, monkeypatch):
    """APGD-CE and APGD-DLR run once: AutoAttack takes their outcome (stages_from), and recomputing the
    stages with those records' keys (the records reused from disk, nothing in memory) gives the same record."""
    aa_lib = sys.modules["jsnn.attacks.autoattack"]

    calls = []
    real_apgd = aa_lib.apgd
    monkeypatch.setattr(aa_lib, "apgd", lambda *a, **k: calls.append(k["loss"]) or real_apgd(*a, **k))
    work = _copy_run(run_dir, tmp_path)
    over = {"attacks": "clean,apgd-ce,apgd-dlr,autoattack", "autoattack_version": "rand", "main_eps": "16/255",
            "large_eps": "", "num_examples": 20, "batch_size": 16, "apgd_steps": 3}
    doc = evaluate.evaluate_workdir(work, output="aa.json", overrides=over)
    name = "autoattack-rand-linf-eps16/255"
    aa = doc["records"][name]
    assert aa["settings"]["stages_from"] == {"apgd-ce": "apgd-ce-linf-eps16/255", "apgd-dlr": "apgd-dlr-linf-eps16/255"}
    log = aa["autoattack_log"]
    assert log["apgd-ce"] <= doc["records"]["apgd-ce-linf-eps16/255"]["accuracy"] and log["apgd-dlr"] < log["clean"]
    assert calls == []  # AutoAttack ran neither stage itself
    path = os.path.join(work, "aa.json")
    with open(path) as f:
        saved = json.load(f)
    del saved["records"][name]
    io.write_json(path, saved)
    again = evaluate.evaluate_workdir(work, output="aa.json", overrides=over)["records"][name]
    assert again["autoattack_log"] == log and again["accuracy"] == aa["accuracy"]
    assert sorted(set(calls)) == ["ce", "dlr"]  # this time it ran them itself, with the records' keys


@pytest.mark.parametrize("case", ["unfinished", "nan"])
def test_launcher_refuses_unfinished_and_diverged_runs(run_dir, report, tmp_path, case):  # report: robustness.json exists
    work = _copy_run(run_dir, tmp_path)
    before = open(os.path.join(work, "robustness.json")).read()
    if case == "nan":
        _fake_checkpoint(work, 40, lambda p: np.full_like(p, np.nan))
        _set_finished_step(work, 40)
        match = f"{work} (checkpoint step 40): parameters are not finite"
    else:
        _fake_checkpoint(work, 40, lambda p: p)
        match = f"{work}: training has not finished (newest checkpoint: step 40)"
    proc = subprocess.run([sys.executable, "-m", "launch.evaluate", f"--workdir={work}", "--evaluate.attacks=clean",
                           "--evaluate.large_eps="], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: {match}" in proc.stderr
    assert open(os.path.join(work, "robustness.json")).read() == before  # nothing measured, nothing written
