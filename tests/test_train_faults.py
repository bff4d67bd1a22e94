"""Training faults and bad inputs: each is one line naming the field or file, the value and what is allowed.

Covers issue 15's training side: non-finite settings, divergence (stops with one line, keeps the last
finite checkpoint), unknown fields, broken config files, unusable workdirs, damaged checkpoints and
metrics, and a kill -9 in the middle of a checkpoint write.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jsnn import checkpoint, io, train
from launch import common
from tests.test_train import REPO, read_metrics, read_results, tiny_config

# Orbax leaves un-awaited read coroutines behind when a damaged checkpoint fails to load (harmless).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ref"))
    train.train_and_evaluate(tiny_config(), workdir)
    return workdir


def _same_run(a, b):
    ra, rb = read_results(a), read_results(b)
    assert ra["clean_accuracy"] == rb["clean_accuracy"] and ra["test_loss"] == rb["test_loss"]
    assert ra["fingerprint"] == rb["fingerprint"]
    assert read_metrics(a) == read_metrics(b)


# ----------------------------------------------------------------------------- config values (Python API)


@pytest.mark.parametrize("field,value,match", [
    ("optim.learning_rate", float("inf"), r"optim.learning_rate: must be finite, got inf"),
    ("optim.learning_rate", float("nan"), r"optim.learning_rate: must be finite, got nan"),
    ("optim.momentum", float("nan"), r"optim.momentum: must be finite, got nan"),
    ("optim.momentum", -5.0, r"optim.momentum: must be a finite number >= 0 and < 1, got -5.0"),
    ("optim.momentum", 1.0, r"optim.momentum: must be a finite number >= 0 and < 1, got 1.0"),
    ("optim.weight_decay", -1e-4, r"optim.weight_decay: must be a finite number >= 0, got -0.0001"),
    ("optim.warmup_steps", -10, r"optim.warmup_steps: must be an integer >= 0, got -10"),
    ("optim.schedule", "linear", r"optim.schedule: 'linear'; allowed: cosine, constant"),
    ("train.eval_draws", 0, r"train.eval_draws: must be an integer >= 1, got 0"),
    ("train.num_steps", 0, r"train.num_steps: must be an integer >= 1 or None, got 0"),
    ("train.num_epochs", -1.0, r"train.num_epochs: must be a finite number > 0 or None, got -1.0"),
    ("train.log_every", 0, r"train.log_every: must be an integer >= 1, got 0"),
    ("model.tau", float("inf"), r"model.tau: must be finite, got inf"),
    ("model.encoder.sigma", float("nan"), r"model.encoder.sigma: must be finite, got nan"),
    ("data.batch_size", -3, r"data.batch_size: must be an integer >= 1, got -3"),
])
def test_bad_setting_is_one_line(field, value, match, tmp_path):
    with pytest.raises(ValueError, match=match) as e:
        train.train_and_evaluate(tiny_config(**{field: value}), str(tmp_path))
    assert "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "config.json")  # validated before anything is written


def test_unknown_fields_in_the_python_api(tmp_path):
    config = tiny_config()
    config.unlock()
    config.model.typo = 1
    with pytest.raises(ValueError, match=r"model.typo: unknown field; allowed: .*T.*tau"):
        train.train_and_evaluate(config, str(tmp_path))
    config = tiny_config()
    config.model.kwargs.unlock()
    config.model.kwargs.bogus = 1
    with pytest.raises(ValueError, match=r"model.kwargs.bogus: unknown field of model 'digits_conv'; "
                                         r"allowed: features, hidden"):
        train.train_and_evaluate(config, str(tmp_path))
    config = tiny_config()
    config.unlock()
    config.extra = {"a": 1}
    with pytest.raises(ValueError, match=r"config.extra: unknown field; allowed: .*data.*optim"):
        train.train_and_evaluate(config, str(tmp_path))


def test_unusable_workdirs(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=r"workdir=.*a_file: is a file, not a directory"):
        train.train_and_evaluate(tiny_config(), str(a_file))
    with pytest.raises(ValueError, match=r"workdir=.*a_file/run: a parent is a file"):
        train.train_and_evaluate(tiny_config(), str(a_file / "run"))
    with pytest.raises(ValueError, match=r"workdir=/proc/jsnn-run: cannot be created"):
        train.train_and_evaluate(tiny_config(), "/proc/jsnn-run")


# ----------------------------------------------------------------------------- divergence


def test_divergence_stops_with_one_line_and_keeps_the_last_finite_checkpoint(tmp_path):
    config = tiny_config(**{"optim.learning_rate": 1e12, "optim.schedule": "constant",
                            "train.num_steps": 40})
    with pytest.raises(train.TrainingDivergedError, match=r"training diverged at step \d+ \(.*\); "
                                                          r".*lower optim.learning_rate") as e:
        train.train_and_evaluate(config, str(tmp_path))
    assert "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "results.json")
    steps = checkpoint.manager(str(tmp_path)).all_steps()
    for s in steps:  # every checkpoint left behind is finite (evaluation can use it)
        _, variables = checkpoint.restore_variables(str(tmp_path), s)
        checkpoint.check_finite(variables, str(tmp_path))
    for row in read_metrics(str(tmp_path)):
        assert all(np.isfinite(v) for v in row.values())


def test_non_finite_parameters_are_refused():
    variables = {"params": {"Dense_0": {"kernel": np.array([1.0, np.nan])}}}
    with pytest.raises(ValueError, match=r"run: parameters are not finite \(\['params'\]\['Dense_0'\]\['kernel'\]"):
        checkpoint.check_finite(variables, "run")


# ----------------------------------------------------------------------------- damaged files


def test_damaged_newest_checkpoint_falls_back_and_resumes_identically(reference_run, tmp_path, caplog):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_run, workdir)
    os.remove(os.path.join(workdir, "results.json"))
    newest = max(checkpoint.manager(workdir).all_steps())
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", str(newest), "default", "ocdbt.process_0")):
        for f in files:
            with open(os.path.join(root, f), "r+b") as fh:
                fh.truncate(50)
    step, _ = checkpoint.restore_variables(workdir)
    assert step == newest - 4  # the previous checkpoint (checkpoint_every=4)
    train.train_and_evaluate(tiny_config(), workdir)
    _same_run(reference_run, workdir)
    assert checkpoint.load_run(workdir).step == newest  # the damaged step was recomputed


def test_no_readable_checkpoint_is_one_line(reference_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_run, workdir)
    for s in checkpoint.manager(workdir).all_steps():
        with open(os.path.join(workdir, "checkpoints", str(s), "default", "_METADATA"), "w") as f:
            f.write("{")
    with pytest.raises(ValueError, match=r"checkpoints: no readable checkpoint \(step 12: .*; step 8: .*\); "
                                         r"delete the damaged step directories"):
        checkpoint.load_run(workdir)


def test_damaged_config_json_is_named(reference_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_run, workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write('{"seed": 0, "data": ')
    with pytest.raises(io.DamagedFileError, match=r"run/config.json: damaged JSON .*; delete the workdir"):
        train.train_and_evaluate(tiny_config(), workdir)
    with pytest.raises(io.DamagedFileError, match=r"run/config.json: damaged JSON"):
        checkpoint.load_run(workdir)


def test_damaged_metrics_line_is_named(reference_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_run, workdir)
    os.remove(os.path.join(workdir, "results.json"))
    path = os.path.join(workdir, "metrics.jsonl")
    lines = open(path).read().splitlines()
    lines[1] = lines[1][:10]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(io.DamagedFileError, match=r"metrics.jsonl: line 2 is damaged JSON .*; delete it"):
        train.train_and_evaluate(tiny_config(), workdir)


def test_truncated_last_metrics_line_is_dropped_on_resume(reference_run, tmp_path):
    """A kill -9 while a metrics line is written leaves half a line (after the last checkpoint): resume drops it."""
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_run, workdir)
    os.remove(os.path.join(workdir, "results.json"))
    mngr = checkpoint.manager(workdir)
    mngr.delete(12)  # as if killed between the metrics line of step 12 and its checkpoint
    path = os.path.join(workdir, "metrics.jsonl")
    text = open(path).read()
    with open(path, "w") as f:
        f.write(text[:-20])
    train.train_and_evaluate(tiny_config(), workdir)
    _same_run(reference_run, workdir)


# ----------------------------------------------------------------------------- kill -9 during a checkpoint write

_KILL_IN_SAVE = textwrap.dedent("""
    import os, signal, sys
    from orbax.checkpoint._src.path import async_path
    real = async_path.rename
    async def rename(src, dst):
        if os.path.basename(str(dst)) == "8":  # the checkpoint of step 8 is fully written, not yet renamed
            os.kill(os.getpid(), signal.SIGKILL)
        return await real(src, dst)
    async_path.rename = rename
    sys.path.insert(0, {repo!r})
    from tests.test_train import tiny_config
    from jsnn import train
    train.train_and_evaluate(tiny_config(), sys.argv[1])
""")


@pytest.mark.slow
def test_kill_during_checkpoint_write_resumes_identically(reference_run, tmp_path):
    workdir = str(tmp_path / "run")
    proc = subprocess.run([sys.executable, "-c", _KILL_IN_SAVE.format(repo=REPO), workdir], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert max(checkpoint.manager(workdir).all_steps()) == 4  # step 8 never became a checkpoint
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    train.train_and_evaluate(tiny_config(), workdir)
    _same_run(reference_run, workdir)


# ----------------------------------------------------------------------------- the launcher's argv checks


def _fails(capsys, fn, *args):
    with pytest.raises(SystemExit) as e:
        fn(*args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_config_file_errors_are_one_line(tmp_path, capsys):
    cases = {
        "missing.py": None,
        "syntax.py": "def get_config(:\n",
        "noget.py": "x = 1\n",
        "dict.py": "def get_config():\n    return {}\n",
        "raises.py": "def get_config():\n    raise KeyError('k')\n",
        "importerr.py": "import no_such_module_jsnn\n",
    }
    expect = {
        "missing.py": r"no such config file", "syntax.py": r"syntax error at line 1",
        "noget.py": r"defines no get_config\(\)", "dict.py": r"must return an ml_collections.ConfigDict, got dict",
        "raises.py": r"get_config\(\) raised KeyError", "importerr.py": r"importing it raised ModuleNotFoundError",
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        err = _fails(capsys, common.check_config_argv, ["train", f"--config={path}", "--workdir=x"])
        assert f"--config={path}" in err
        assert __import__("re").search(expect[name], err), err


def test_unknown_override_fields_are_one_line(capsys):
    cfg = os.path.join(REPO, "launch/configs/default.py")
    err = _fails(capsys, common.check_config_argv, ["train", f"--config={cfg}", "--config.model.typo=1"])
    assert "--config.model.typo: unknown field 'typo' in model; allowed: T, decay_input" in err
    err = _fails(capsys, common.check_config_argv, ["train", f"--config={cfg}", "--config.model.kwargs.bogus=1"])
    assert "unknown field 'bogus' in model.kwargs; allowed: none (model.kwargs is empty in this config file" in err
    err = _fails(capsys, common.check_config_argv, ["train", f"--config={cfg}", "--config.modle.T=2"])
    assert "unknown field 'modle' in config; allowed: data, defense, model, optim, seed, train" in err
    common.check_config_argv(["train", f"--config={cfg}", "--config.model.T=2"])  # a known field passes


@pytest.mark.slow
def test_launcher_end_to_end_bad_inputs(tmp_path):
    """Through the real launcher: one line on stderr, exit status 2, no traceback."""
    a_file = tmp_path / "f"
    a_file.write_text("")
    base = [sys.executable, "-m", "launch.train", "--config=launch/configs/default.py"]
    cases = [
        (["--config.model.typo=1", f"--workdir={tmp_path}/a"], "--config.model.typo: unknown field"),
        (["--config.optim.learning_rate=inf", f"--workdir={tmp_path}/b"], "optim.learning_rate: must be finite"),
        ([f"--workdir={a_file}"], "is a file, not a directory"),
    ]
    for args, expected in cases:
        proc = subprocess.run(base + args, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-1500:]
        assert expected in proc.stderr and "Traceback" not in proc.stderr
