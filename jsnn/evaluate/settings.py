"""``config.evaluate``: the section's defaults, its merge (run config ← overrides) and its validation.

The defaults live here, in :func:`default_eval_config`, and nowhere else: ``jsnn`` evaluates runs
whose ``config.json`` has no ``evaluate`` section (older runs, configs built in a notebook), and
``jsnn`` never imports ``launch/``; ``launch/configs/*`` and ``launch.evaluate``'s flags start
from this function.

Example:
    >>> from jsnn.evaluate import settings, suite
    >>> ev = settings.resolve_eval_config(None, {"eps": "2/255,8/255", "sanity.tolerance": 0.05})
    >>> suite.parse_eps(ev), ev.sanity.tolerance
    ([0.00784313725490196, 0.03137254901960784], 0.05)
    >>> settings.resolve_eval_config(None, {"draws": 0})
    Traceback (most recent call last):
    ValueError: evaluate.draws: must be an integer >= 1, got 0
"""

from __future__ import annotations

from typing import Optional

import ml_collections

from jsnn import config as cfg_lib
from jsnn.attacks import common as attack_common
from jsnn.attacks import gradients as gradients_lib
from jsnn.evaluate import events as event_kinds
from jsnn.evaluate import suite
from jsnn.evaluate.suite import parse_eps, parse_list, parse_number

EVAL_DEFAULT_SUITE = "clean,fgsm,pgd10,pgd50,apgd-ce,apgd-dlr,square,autoattack,ensemble"
AUTOATTACK_VERSIONS = ("auto", "standard", "rand")
# integer fields and their minimum
_INTS = (("num_examples", 0), ("batch_size", 1), ("pgd_restarts", 1), ("apgd_steps", 1), ("apgd_restarts", 1),
         ("square_queries", 2), ("eot", 0), ("eot_chunk", 0), ("draws", 1), ("ensemble_steps", 1),
         ("transfer_steps", 1), ("event_steps", 1), ("event_restarts", 1), ("event_random_restarts", 1))


def default_eval_config() -> ml_collections.ConfigDict:
    """Defaults of ``config.evaluate.*`` (runs whose config lacks a field get these)."""
    c = ml_collections.ConfigDict()
    c.attacks = EVAL_DEFAULT_SUITE  # comma list of attack kinds (jsnn.evaluate.suite.KINDS)
    c.norm = "linf"  # linf | l2
    c.eps = "2/255,4/255,8/255,16/255"  # ε sweep of FGSM / PGD (pixel units; fractions allowed)
    c.main_eps = "8/255"  # ε of APGD, Square, AutoAttack, the ensemble and transfer
    c.large_eps = "0.5"  # sanity: PGD accuracy at this ε must be ≈ 0 ("" to skip)
    c.num_examples = 1000  # first N images of the split (0 = all)
    c.split = "test"
    c.batch_size = 128
    c.seed = 0
    c.pgd_step_size = 0.0  # 0 = 2.5·ε/steps
    c.pgd_restarts = 1
    c.apgd_steps = 100  # APGD and AutoAttack iterations
    c.apgd_restarts = 1
    c.square_queries = 5000
    c.autoattack_version = "auto"  # auto (rand if stochastic) | standard | rand
    c.eot = 0  # EOT draws per gradient; 0 = auto (1 deterministic, 20 stochastic)
    c.eot_chunk = 0  # run EOT draws in chunks of this size (0 = all at once)
    c.draws = 10  # M fresh draws judging a stochastic model (deterministic models: 1)
    c.ensemble = "strong"  # estimators and presets (jsnn.attacks.gradients): strong | sr | tmlr | triangle:1,bptr,...
    c.ensemble_steps = 10  # PGD steps of each ensemble member
    # members (estimators, presets) that attack every image; the other members attack only the images still
    # robust (a cascade: the same verdict, less work; their per-member accuracy is not measured); "all": every member
    c.ensemble_full = "all"
    c.transfer_from = ""  # workdir of a source run for the transfer attack
    c.transfer_steps = 10
    c.event_budgets = "1,5,20"  # event data: budgets k (added/removed events) of event-l0 / event-random
    c.event_steps = 10  # reduce-generate steps of event-l0 (jsnn.attacks.event_attack)
    c.event_restarts = 1
    c.event_random_restarts = 10  # random-event draws of the baseline (the best one is kept)
    c.sanity = ml_collections.ConfigDict()
    c.sanity.large_eps_max_accuracy = 0.1
    c.sanity.tolerance = 0.02
    c.sanity.zero_grad_max_fraction = 0.1
    c.sanity.estimator_gap = 0.1  # flag: an ensemble member beats the model's own estimator by more than this
    return c


def _set(ev: ml_collections.ConfigDict, key: str, value) -> None:
    """``ev[key] = value`` for a dotted ``key``, keeping the field's type (lists join into comma strings)."""
    node, parts = ev, key.split(".")
    for i, part in enumerate(parts):
        known = [k for k, v in node.items() if (i + 1 < len(parts)) == isinstance(v, ml_collections.ConfigDict)]
        if part not in known:
            where = ".".join(["evaluate"] + parts[:i])
            raise ValueError(f"{where}.{part}: unknown field; allowed: {', '.join(sorted(known))}")
        if i + 1 < len(parts):
            node = node[part]
    default = node[parts[-1]]
    if isinstance(default, str) and isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif type(value) is not type(default):
        raise ValueError(f"evaluate.{key}: expected {type(default).__name__}, got {value!r}")
    node[parts[-1]] = value


def resolve_eval_config(run_config=None, overrides=None, num_examples: Optional[int] = None):
    """Defaults ← the run's ``config.evaluate`` ← ``overrides`` (flat dotted keys or nested) ← ``num_examples``.

    Unknown fields and bad values are ``ValueError`` naming ``evaluate.<field>``.
    """
    ev = default_eval_config()
    stored = cfg_lib.get(run_config, "evaluate") if run_config is not None else None
    for layer in (stored, overrides):
        if layer:
            layer = layer.to_dict() if hasattr(layer, "to_dict") else dict(layer)
            for key, value in cfg_lib.flatten(layer).items():
                _set(ev, key, value)
    if num_examples is not None:
        ev.num_examples = int(num_examples)
    validate_eval_config(ev)
    return ev


def validate_eval_config(ev) -> None:
    """Checks every field of ``config.evaluate`` with errors naming the field."""
    suite.check_attacks(parse_list(ev.attacks))
    cfg_lib.check_choice(ev.norm, "norm", attack_common.NORMS, where="evaluate.")
    if not parse_eps(ev):
        raise ValueError("evaluate.eps: needs at least one ε")
    parse_number(ev.main_eps, "main_eps")
    if str(ev.large_eps).strip():
        parse_number(ev.large_eps, "large_eps")
    for field, minimum in _INTS:
        cfg_lib.check_int(ev[field], field, minimum, where="evaluate.")
    cfg_lib.check_number(ev.pgd_step_size, "pgd_step_size", low=0, where="evaluate.")
    cfg_lib.check_choice(ev.autoattack_version, "autoattack_version", AUTOATTACK_VERSIONS, where="evaluate.")
    event_kinds.parse_budgets(ev)
    try:
        if not gradients_lib.expand(parse_list(ev.ensemble)):
            raise ValueError(f"empty; allowed: presets {', '.join(gradients_lib.PRESETS)} or estimators")
    except ValueError as e:
        raise ValueError(f"evaluate.ensemble: {e}") from None
    suite.ensemble_members(ev.ensemble, ev.ensemble_full)
    for field in ("large_eps_max_accuracy", "tolerance", "zero_grad_max_fraction", "estimator_gap"):
        cfg_lib.check_number(ev.sanity[field], field, low=0, high=1, where="evaluate.sanity.")
