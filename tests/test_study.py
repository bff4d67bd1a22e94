"""launch.study_defenses as a sweep over configs: shards, and distillation students after their teacher."""

from jsnn import sweep
from launch import study_defenses


def test_distillation_students_run_on_their_teachers_shard(tmp_path, monkeypatch):
    calls = []

    def fake_run_sweep(config, workdir, grid, seeds, *, evaluate):
        calls.append((workdir.rsplit("/", 1)[-1], list(seeds)))
        return sweep.SweepReport([], [], [], [])

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    by_shard = {}
    for i in range(2):
        calls.clear()
        study_defenses.run_study(str(tmp_path), ["vanilla", "rsc_distill"], (0, 1), overrides={}, shard=(i, 2))
        by_shard[i] = list(calls)
    teacher = [i for i, c in by_shard.items() if ("ann", [0]) in c or any(n == "ann" and 0 in s for n, s in c)]
    assert len(teacher) == 1
    order = [n for n, _ in by_shard[teacher[0]]]
    assert ("rsc_distill", [0, 1]) in by_shard[teacher[0]] and order.index("ann") < order.index("rsc_distill")
    assert all(n != "rsc_distill" for n, _ in by_shard[1 - teacher[0]])
