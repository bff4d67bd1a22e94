"""The digits defense study: 11 digits_* configs × 3 seeds, trained alike and evaluated with one protocol.

A sweep config file (``get_sweep()``): a sweep over named configs plus the evaluation protocol.
Command (two shards, one per core, then the summary)::

  for i in 0 1; do
    python -m launch.sweep --config=launch/configs/study_digits.py --workdir=/tmp/jsnn/study --shard=$i/2 &
  done; wait
  python -m launch.sweep --config=launch/configs/study_digits.py --workdir=/tmp/jsnn/study --summarize_only

Runs land in ``WORKDIR/config=digits_<name>/seed=<s>/``; the table is ``WORKDIR/summary.md`` /
``summary.csv`` (mean ± sample std over seeds), the plots ``WORKDIR/plots/tradeoff.png`` and
``plots/accuracy_vs_eps.png``. Protocol (:data:`EVALUATE`): the first 100 test images, PGD-20 over
ε ∈ {0.05, 0.1, 0.15, 0.2}, and at ε = 0.15 AutoAttack-rand (APGD-CE + APGD-DLR, 50 iterations),
ASSG + SA-PGD (50 iterations) and the worst case over the ``strong`` gradient-estimator ensemble (25
members, PGD-20 each) as a cascade: the model's own estimator and the SR four attack every image
(``ensemble_full``), the other 20 members only the images still robust; stochastic models with
EOT 8 (run 4 draws at a time: all 8 at once took ~12 GB per shard on a Poisson model, and two shards
ran out of the 24 GB; the chunking changes no result), judged over 5 draws. The study before the strong estimators used the SR four alone,
``--evaluate_overrides`` with ``attacks=clean,pgd20,autoattack,ensemble`` and ``ensemble=sr``; the
``[sr]`` column of the strong record is that worst case, measured in the same run.
Add ``digits_rsc_distill`` with ``--grid='config=digits_ann,digits_rsc_distill'`` (its teacher is the
sweep's own ``digits_ann`` seed-0 run: train that one first, or rerun the sweep).
"""

from launch.configs import digits_vanilla

STUDY = ("vanilla", "at", "trades", "noise", "sr", "sr_at", "rsnn", "rat", "rsc", "poisson", "mfdv")
EVALUATE = ("attacks=clean,pgd20,autoattack,ensemble,sapgd;num_examples=100;autoattack_version=rand;apgd_steps=50;"
            "eot=8;draws=5;ensemble_steps=20;ensemble_full=default,sr;eot_chunk=4")


def get_config():
    return digits_vanilla.get_config()  # types the other grid axes; each run starts from its own config


def get_sweep():
    return {
        "grid": "config=" + ",".join(f"digits_{n}" for n in STUDY),
        "seeds": "0,1,2",
        "evaluate": EVALUATE,
        "set": {"train.num_epochs": 5.0},  # the study's training length (no digits config sets num_steps)
        "overrides": {"digits_rsc_distill": {"defense.distill.teacher_workdir": "{workdir}/config=digits_ann/seed=0"}},
    }
