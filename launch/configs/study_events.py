"""The event-digits study: vanilla / SR / AT / SR+AT × 3 seeds, each evaluated under both event threat models.

A sweep config file (``get_sweep()``): named configs plus the evaluation protocol. Command::

  python -m launch.sweep --config=launch/configs/study_events.py --workdir=/tmp/jsnn/study_events

Runs land in ``WORKDIR/config=events_<name>/seed=<s>/``, the table in ``WORKDIR/summary.md``.
Training: each config for 3 epochs (66 steps) on the embedded, synthetic event digits; AT and SR+AT
at their configs' ε = 0.1 (frame units). Protocol (:data:`EVALUATE`), the same for every model, on the
first 100 test recordings:

* frame space: PGD-10 (L∞, frames kept in [0, 1]) at ε ∈ {0.05, 0.1, 0.25} in frame units (one event
  is 1/max_count) — the threat model the event-robustness papers report;
* event space: ``event-l0`` (gradient-guided, at most k added/removed events, valid event frames) and
  its ``event-random`` baseline at k ∈ {1, 5, 20}; the sanity flag ``event_gradient_le_random``
  checks that the gradient attack is the stronger one.
"""

from launch.configs import events_vanilla

STUDY = ("vanilla", "sr", "at", "sr_at")
EVALUATE = "attacks=clean,pgd10,event-l0,event-random;num_examples=100;eps=0.05,0.1,0.25;event_budgets=1,5,20"


def get_config():
    return events_vanilla.get_config()  # types the other grid axes; each run starts from its own config


def get_sweep():
    return {"grid": "config=" + ",".join(f"events_{n}" for n in STUDY), "seeds": "0,1,2", "evaluate": EVALUATE,
            "set": {"train.num_epochs": 3.0}}
