"""Robustness report of a trained run: the attack suite, sanity checks, JSON + plot.

``evaluate_workdir(workdir)`` (``python -m launch.evaluate --workdir=DIR``) restores the run of
``launch.train``, runs the configured suite on the first ``num_examples`` images and writes

* ``DIR/robustness.json`` — the model it measured (``checkpoint_step``, ``fingerprint``), and one
  record per attack under ``records[name]`` (name, attack, norm, ε, steps, EOT, estimator,
  ``accuracy`` = mean over M judgement draws, ``accuracy_all_draws`` = fraction correct in every
  draw, seconds, the ``settings`` needed to rerun it, and its own ``checkpoint_step`` and
  ``fingerprint``), the sanity checks, QTE and the worst case;
* ``DIR/robustness.png`` — accuracy vs ε per attack.

Modules: :mod:`~jsnn.evaluate.settings` (``config.evaluate`` and its defaults),
:mod:`~jsnn.evaluate.suite` (the registry of attack kinds and the plan),
:mod:`~jsnn.evaluate.runner` (batches, keys, per-record resume), :mod:`~jsnn.evaluate.sanity`
(gradient-masking checks), :mod:`~jsnn.evaluate.report` (QTE, worst case, plot).

Only a finished run is evaluated, unless ``step`` names a checkpoint (then recorded); a model
with non-finite parameters is refused. Resume: the JSON is rewritten atomically after every
record; a rerun keeps the records whose attack, settings and model (step and fingerprint) are
unchanged and recomputes the others. A damaged ``robustness.json`` is one warning naming it; its
intact records are kept.

Example:
    >>> from jsnn import evaluate
    >>> ev = evaluate.resolve_eval_config(None, {"attacks": "clean,fgsm,square", "eps": "0.1"})
    >>> [r["name"] for r in evaluate.plan(ev, stochastic=False, spiking=True)]
    ['clean', 'fgsm-linf-eps0.1', 'square-linf-eps8/255', 'pgd10-linf-eps0.5-large']
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

import jax.numpy as jnp
from absl import logging

from jsnn import checkpoint, io, models, parallel, tensorboard
from jsnn import data as data_lib
from jsnn.evaluate import events as event_kinds
from jsnn.evaluate import report, runner, sanity, settings, suite
from jsnn.evaluate.report import qte
from jsnn.evaluate.runner import is_stochastic
from jsnn.evaluate.sanity import checks as sanity_checks
from jsnn.evaluate.settings import EVAL_DEFAULT_SUITE, default_eval_config, resolve_eval_config
from jsnn.evaluate.suite import KINDS, plan
from jsnn.models import estimator_factory

ROBUSTNESS = "robustness.json"


def _load(workdir: str, step: Optional[int]):
    run = checkpoint.load_run(workdir, step)
    if step is None and not run.finished:
        raise ValueError(f"{workdir}: training has not finished (newest checkpoint: step {run.step}); evaluating it "
                         f"now would measure a model that is still changing: wait for training to end, or name the "
                         f"checkpoint with --step={run.step} (recorded in {ROBUSTNESS})")
    checkpoint.check_finite(run.variables, f"{workdir} (checkpoint step {run.step})")
    return run


def _source(workdir: str):
    """The transfer source: its forward and its stamp (which checkpoint crafted the examples)."""
    src = checkpoint.load_run(workdir)
    checkpoint.check_finite(src.variables, f"evaluate.transfer_from={workdir} (checkpoint step {src.step})")
    if not src.finished:
        logging.warning("evaluate.transfer_from=%s: training has not finished; crafting on step %d", workdir, src.step)
    return models.logits_fn(src.model, src.variables), {"workdir": os.path.abspath(workdir),
                                                        "checkpoint_step": src.step, "fingerprint": src.fingerprint}


def evaluate_workdir(workdir: str, overrides=None, num_examples: Optional[int] = None, output: str = ROBUSTNESS,
                     step: Optional[int] = None) -> Dict[str, Any]:
    """Runs the robustness suite on a trained run and writes ``robustness.json`` / ``.png``; resumable.

    Args:
      workdir: directory of a ``launch.train`` run.
      overrides: ``config.evaluate`` fields to change (flat dotted keys or nested dict).
      num_examples: overrides ``evaluate.num_examples``.
      output: JSON file name inside ``workdir`` (the PNG takes the same stem).
      step: checkpoint to evaluate; required while training has not finished (default: the last one).

    Returns:
      The dict written to ``workdir/output`` (``tests/test_evaluate.py`` runs it on a trained run).
    """
    run = _load(workdir, step)
    ev = resolve_eval_config(run.config, overrides, num_examples)
    mesh = parallel.data_mesh()  # attack batches are split over every device, parameters replicated
    parallel.check_divisible(ev.batch_size, mesh, "evaluate.batch_size")
    variables = parallel.replicate(run.variables, mesh)
    images, labels = data_lib.eval_arrays(run.config.data, ev.split, ev.batch_size, ev.num_examples or None,
                                          field="evaluate.split")
    target = suite.Target(models.logits_fn(run.model, variables), estimator_factory(run.model, variables))
    stochastic = is_stochastic(run.model, target.fn, jnp.asarray(images[: min(len(images), 16)]))
    spiking = isinstance(run.model, models.SpikingModel)
    records_plan = plan(ev, stochastic=stochastic, spiking=spiking,
                        events=event_kinds.info_of(models.dataset_info(run.config)))
    stamp = {"checkpoint_step": run.step, "fingerprint": run.fingerprint}
    path = os.path.join(workdir, output)
    records = {k: r for k, r in report.read_previous(path).items()  # another model's records are stale
               if all(r.get(f) == v for f, v in stamp.items())}
    t_start, grad_stats = time.time(), sanity.gradient_stats(target.fn, images, labels, ev)
    logging.info("input gradients: %.4f of examples all-zero, %.4f of entries zero",
                 grad_stats["zero_gradient_examples"], grad_stats["zero_gradient_entries"])

    def document():
        current = {r["name"]: records[r["name"]] for r in records_plan if r["name"] in records}
        doc = dict(stamp, workdir=os.path.abspath(workdir), stochastic=stochastic, spiking=spiking,
                   records_version=suite.RECORDS_VERSION,
                   model={"name": run.config.model.name, "T": int(getattr(run.model, "T", 0)),
                          "encoder": getattr(getattr(run.model, "encoder", None), "_asdict", dict)(),
                          "neuron": getattr(getattr(run.model, "neuron", None), "kind", None)},
                   draws=ev.draws if stochastic else 1, eot=ev.eot or (20 if stochastic else 1),
                   num_examples=int(len(labels)), settings=ev.to_dict(), keys=runner.KEYS, records=records,
                   suite=[r["name"] for r in records_plan], gradients=grad_stats, qte=qte(current),
                   worst_case=report.worst_case(current, suite.parse_number(ev.main_eps, "main_eps")),
                   sanity=sanity_checks(current, grad_stats, ev), environment=io.environment())
        doc["possible_gradient_masking"] = bool(doc["sanity"]["failed"])
        return doc

    memo, sources = {}, runner.stage_sources(records_plan)  # outcomes AutoAttack's stages reuse (this process)
    for i, rec in enumerate(records_plan, 1):
        name, rec_stamp = rec["name"], dict(stamp)
        if rec.get("skip"):
            logging.info("[%d/%d] %s: skipped (%s)", i, len(records_plan), name, rec["skip"])
            records[name] = dict(rec, **stamp)
            continue
        if rec["kind"] == "transfer":
            source_fn, rec_stamp["source_model"] = _source(rec["settings"]["source"])
            target = target._replace(source_fn=source_fn)
        if runner.reusable(records.get(name), rec, rec_stamp):
            logging.info("[%d/%d] %s: done already on this model (accuracy %.4f), skipping", i, len(records_plan),
                         name, records[name]["accuracy"])
            continue
        logging.info("[%d/%d] %s: running on %d examples", i, len(records_plan), name, len(labels))
        records[name] = dict(runner.run_record(rec, target, images, labels, mesh=mesh, index=i,
                                               total=len(records_plan), memo=memo, keep=name in sources),
                             **rec_stamp)
        logging.info("[%d/%d] %s: accuracy %.4f (all draws %.4f) in %.1fs", i, len(records_plan), name,
                     records[name]["accuracy"], records[name]["accuracy_all_draws"], records[name]["seconds"])
        if records[name].get("per_estimator_accuracy"):  # which estimator broke the model
            logging.info("[%d/%d] %s: members %s", i, len(records_plan), name, report.member_summary(records[name]))
        io.write_json(path, document())

    doc = document()
    io.write_json(path, doc)
    report.plot({n: records[n] for n in doc["suite"]}, os.path.splitext(path)[0] + ".png",
                title=f"{run.config.model.name} T={getattr(run.model, 'T', '?')} step {run.step} "
                      f"({ev.norm}, {len(labels)} examples)")
    if tensorboard.enabled(run.config):  # tb/evaluate: this file's records and accuracy-vs-ε curves
        tensorboard.write_robustness(tensorboard.result_logdir(workdir, output, ROBUSTNESS, "evaluate"), doc,
                                     report.curves({n: records[n] for n in doc["suite"]}))
    for k, v in doc["sanity"]["flags"].items():
        logging.info("sanity %-22s %-6s %s", k, report.status_line(v["passed"]), v["detail"])
    logging.info("verdict: %s (%.0fs)", doc["sanity"]["verdict"], time.time() - t_start)
    return doc


__all__ = ["EVAL_DEFAULT_SUITE", "KINDS", "ROBUSTNESS", "default_eval_config", "estimator_factory",
           "evaluate_workdir", "is_stochastic", "plan", "qte", "report", "resolve_eval_config", "runner",
           "sanity", "sanity_checks", "settings", "suite"]
