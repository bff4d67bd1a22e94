"""Training: ``TrainState``, the step factories and ``train_and_evaluate(config, workdir)``.

The loop is the flax-examples one: a jitted train step over a :class:`TrainState`,
Orbax checkpoints every ``config.train.checkpoint_every`` steps (atomic: Orbax
writes to a temporary directory and renames), ``metrics.jsonl`` appended, and a
final ``results.json``. Rerunning the same command resumes from the latest
checkpoint and, because batches and PRNG keys are functions of ``(seed, step)``,
reaches the same final metrics as an uninterrupted run.

Optimizers follow the robustness papers' recipe (METHODS.md): SGD with momentum
0.9, cosine schedule to 0, and *coupled* L2 weight decay (``g ← g + λ·w`` before
momentum), or Adam.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from jsnn import checkpoint
from jsnn import config as cfg_lib
from jsnn import data as data_lib
from jsnn import defenses as defenses_lib
from jsnn import io, losses, models, parallel, tensorboard



class TrainState(flax.struct.PyTreeNode):
    """Everything a training step changes: step, parameters, BatchNorm statistics, optimizer state."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any


# ----------------------------------------------------------------------------- config → objects


def total_steps(config) -> int:
    """``config.train.num_steps`` if set, else ``ceil(num_epochs × steps_per_epoch)``."""
    t = cfg_lib.read_train(config.train)
    if t.num_steps is not None:
        return t.num_steps
    return int(math.ceil(t.num_epochs * max(1, data_lib.steps_per_epoch(config.data))))


def make_schedule(optim: cfg_lib.OptimConfig, num_steps: int) -> optax.Schedule:
    """Cosine decay to 0 over ``num_steps`` (after ``warmup_steps`` of linear warm-up), or constant."""
    lr, warmup = optim.learning_rate, optim.warmup_steps
    if optim.schedule == "cosine":
        if warmup:
            return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(num_steps, warmup + 1), 0.0)
        return optax.cosine_decay_schedule(lr, num_steps)
    return optax.constant_schedule(lr)


def make_optimizer(optim_cfg, num_steps: int,
                   param_transform: Optional[optax.GradientTransformation] = None) -> optax.GradientTransformation:
    """SGD+momentum or Adam with coupled L2 weight decay ``g + λw``, then a defense's parameter transform.

    Example:
        Coupled decay enters the momentum: the first SGD step is ``−lr·(g + λw)``.

        >>> import jax.numpy as jnp, ml_collections
        >>> from jsnn.train import make_optimizer
        >>> cfg = ml_collections.ConfigDict({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9,
        ...                                  "weight_decay": 0.5, "schedule": "constant"})
        >>> opt = make_optimizer(cfg, num_steps=10)
        >>> w, g = jnp.array([2.0]), jnp.array([1.0])
        >>> updates, _ = opt.update(g, opt.init(w), w)
        >>> round(float(updates[0]), 4)  # −0.1·(1 + 0.5·2)
        -0.2
    """
    optim = cfg_lib.read_optim(optim_cfg)
    schedule = make_schedule(optim, num_steps)
    parts = [optax.add_decayed_weights(optim.weight_decay)] if optim.weight_decay else []
    if optim.name == "sgd":
        parts.append(optax.sgd(schedule, momentum=optim.momentum or None, nesterov=optim.nesterov))
    else:
        parts.append(optax.adam(schedule))
    if param_transform is not None:
        parts.append(param_transform)
    return optax.chain(*parts)


# ----------------------------------------------------------------------------- loss and steps


def make_train_step(loss_fn, optimizer: optax.GradientTransformation, mesh=None):
    """A jitted ``(state, batch, key) -> (state, metrics)``; state and metrics replicated over ``mesh``."""

    def train_step(state: TrainState, batch, key):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (model_state, aux)), grads = grad_fn(state.params, state.model_state, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(aux["metrics"], loss=loss, grad_norm=optax.tree.norm(grads))
        return state.replace(step=state.step + 1, params=params, model_state=model_state,
                             opt_state=opt_state), metrics

    out = None if mesh is None else parallel.replicated(mesh)
    return jax.jit(train_step, donate_argnums=(0,), out_shardings=out)


def make_eval_step(model: nn.Module):
    """A jitted ``(variables, images, labels, mask, key) -> (correct, loss_sum)`` in eval mode."""

    def eval_step(variables, images, labels, mask, key):
        logits = models.logits_fn(model, variables)(images, key)
        loss = losses.cross_entropy(logits, labels)
        return jnp.sum((jnp.argmax(logits, -1) == labels) & mask), jnp.sum(jnp.where(mask, loss, 0.0))

    return jax.jit(eval_step)


def evaluate_clean(model, variables, config, key, *, split: str = "test", draws: int = 1,
                   mesh=None) -> Dict[str, float]:
    """Clean accuracy and loss on ``split``, sharded over devices.

    Stochastic models average over ``draws`` independent noise draws.
    """
    mesh = parallel.data_mesh() if mesh is None else mesh
    variables = parallel.replicate(variables, mesh)
    eval_step = make_eval_step(model)
    correct = loss = n = 0.0
    for i, batch in enumerate(data_lib.eval_batches(config.data, split=split)):
        padded, mask = parallel.pad_batch(batch, mesh.devices.size)
        padded = parallel.shard_batch(dict(padded, mask=mask), mesh)
        for d in range(draws):
            c, l = eval_step(variables, padded["image"], padded["label"], padded["mask"],
                             jax.random.fold_in(key, i * draws + d))
            correct += float(c)
            loss += float(l)
        n += len(batch["label"]) * draws
    return {"accuracy": correct / max(n, 1), "loss": loss / max(n, 1), "examples": int(n // max(draws, 1))}


def _check_resumable(workdir: str, config_dict: Dict[str, Any]) -> None:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    recorded = io.read_json(path, hint="delete the workdir (or that file) and train again")
    details = cfg_lib.differences(recorded, config_dict)
    if details:
        raise ValueError(f"workdir {workdir!r} holds a run with a different config ({details}); "
                         "use a new --workdir or the same config to resume")


def _truncate_metrics(path: str, last_step: int) -> None:
    """Drops metric lines logged after the restored checkpoint (they will be logged again).

    A damaged *last* line (a kill while it was written) is dropped too: a metrics line is written before
    its step's checkpoint, so it belongs to a step after ``last_step``. A damaged earlier line is an error.
    """
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [ln for ln in f.read().split("\n") if ln.strip()]
    hint = "delete it; the run's checkpoints are intact and training resumes"
    try:
        json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        logging.warning("%s: dropping a half-written last line (the run was killed while logging)", path)
        lines = lines[:-1]
    io.write_text(path, "".join(ln + "\n" for ln in lines))
    rows = io.read_jsonl(path, hint=hint)
    kept = [r for r in rows if r.get("step", 0) <= last_step]
    if len(kept) != len(rows):
        io.write_jsonl(path, kept)


# ----------------------------------------------------------------------------- main entry points


def validate_config(config) -> None:
    """Checks every field training reads, raising one ``ValueError`` line naming the field."""
    cfg_lib.check_top_level(config)
    cfg_lib.check_finite(config)
    data_lib.read_config(config.data)
    models.from_config(config)
    cfg_lib.read_train(config.train)
    total_steps(config)
    make_optimizer(config.optim, 1)


class TrainingDivergedError(ValueError):
    """Training met a non-finite loss, gradient or parameter; the last finite checkpoint is kept."""


@jax.jit
def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
                              if jnp.issubdtype(x.dtype, jnp.floating)]))


def _finite(tree) -> bool:
    return bool(_all_finite(tree))


def init_state(config, model, optimizer, key) -> TrainState:
    info = models.dataset_info(config)
    dummy = jnp.zeros((1,) + tuple(info.image_shape), jnp.float32)
    params_key, noise_key = jax.random.split(key)
    variables = jax.jit(lambda: model.init({"params": params_key, "noise": noise_key, "dropout": noise_key},
                                           dummy, train=False))()
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    return TrainState(step=jnp.asarray(0, jnp.int32), params=params, model_state=model_state,
                      opt_state=optimizer.init(params))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
    """Trains ``config`` into ``workdir`` (resuming if a checkpoint exists) and evaluates clean accuracy.

    Writes ``config.json``, ``checkpoints/``, ``metrics.jsonl``, ``results.json`` and, unless
    ``train.tensorboard=False``, TensorBoard event files of the same metrics in ``tb/train``
    (:mod:`jsnn.tensorboard`).

    Returns:
      The results dict (also in ``workdir/results.json``).

    Example:
        A tiny spiking MLP trained for 4 steps on the embedded digits, then restored:

        >>> import os, tempfile, ml_collections
        >>> from jsnn import checkpoint, train
        >>> config = ml_collections.ConfigDict({  # fields left out take their defaults
        ...     "seed": 0, "data": {"name": "digits", "batch_size": 64},
        ...     "model": {"name": "digits_mlp", "T": 2, "kwargs": {"hidden": (16,)}},
        ...     "optim": {"learning_rate": 0.1}, "train": {"num_steps": 4, "log_every": 2, "checkpoint_every": 4}})
        >>> tmp = tempfile.TemporaryDirectory()
        >>> results = train.train_and_evaluate(config, tmp.name)
        >>> results["steps"], results["test_examples"], sorted(os.listdir(tmp.name))
        (4, 360, ['checkpoints', 'config.json', 'metrics.jsonl', 'results.json', 'tb'])
        >>> run = checkpoint.load_run(tmp.name)
        >>> type(run.model).__name__, run.model.T, sorted(run.variables), run.step
        ('SpikingMLP', 2, ['batch_stats', 'params'], 4)
        >>> tmp.cleanup()
    """
    validate_config(config)
    io.ensure_dir(workdir, "workdir")
    tcfg = cfg_lib.read_train(config.train)
    model = models.from_config(config)
    setup = defenses_lib.from_config(config, model)
    config_dict = cfg_lib.to_dict(config)
    _check_resumable(workdir, config_dict)
    lead = jax.process_index() == 0  # on multi-host runs only process 0 writes files (Orbax coordinates itself)
    if lead:
        io.write_json(os.path.join(workdir, "config.json"), config_dict)

    num_steps = total_steps(config)
    optimizer = make_optimizer(config.optim, num_steps, setup.param_transform)
    loss_fn = setup.loss_transform(losses.cross_entropy_loss_fn(model))
    mesh = parallel.data_mesh()
    batch_size = data_lib.read_config(config.data).batch_size
    parallel.check_divisible(batch_size, mesh)
    train_step = make_train_step(loss_fn, optimizer, mesh)

    root = jax.random.key(config.seed)
    init_key, train_key, eval_key = jax.random.split(root, 3)
    state = init_state(config, model, optimizer, init_key)

    mngr = checkpoint.manager(workdir, tcfg.checkpoint_every)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    start = 0
    if mngr.all_steps():
        restored, state = checkpoint.restore_state(workdir, state, mngr)
        for damaged in [s for s in mngr.all_steps() if s > restored]:  # unreadable: recomputed from `restored`
            mngr.delete(damaged)
        start = int(state.step)
        logging.info("Resumed from checkpoint at step %d in %s", start, workdir)
        if lead:
            _truncate_metrics(metrics_path, start)
    elif lead and os.path.exists(metrics_path):
        os.remove(metrics_path)
    state = parallel.replicate(state, mesh)

    info = models.dataset_info(config)
    log_every = tcfg.log_every
    batches = data_lib.train_batches(config.data, config.seed, start_step=start)
    tb_dir, tb_on = tensorboard.logdir(workdir, "train"), lead and tcfg.tensorboard
    schedule = make_schedule(cfg_lib.read_optim(config.optim), num_steps)
    t0 = time.time()
    t_last, step_last = t0, start
    window = []
    with open(metrics_path if lead else os.devnull, "a") as mf, \
            tensorboard.Writer(tb_dir, purge_step=start + 1, enabled=tb_on) as tb:  # drops steps > start logged before
        for step in range(start, num_steps):
            batch = next(batches)
            data_lib.check_batch(batch["image"], batch["label"], info.num_classes, info.image_shape)
            state, metrics = train_step(state, parallel.shard_batch(batch, mesh), jax.random.fold_in(train_key, step))
            window.append(metrics)
            done = step + 1
            if done % log_every == 0 or done == num_steps:
                m = {k: float(np.mean([float(w[k]) for w in window])) for k in window[0]}
                window = []
                now = time.time()
                rate = (done - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, done
                m.update(step=done, steps_per_sec=rate, elapsed_sec=now - t0)
                if not all(math.isfinite(v) for v in m.values()) or not _finite(state.params):
                    bad = ", ".join(f"{k}={v}" for k, v in m.items() if not math.isfinite(v)) or "parameters NaN/inf"
                    last = mngr.latest_step()
                    kept = f"the last finite checkpoint is step {last}" if last is not None else "no checkpoint kept"
                    raise TrainingDivergedError(
                        f"training diverged at step {done} ({bad}); {kept} in {workdir}; "
                        "lower optim.learning_rate (or check the data) and train into a new --workdir")
                mf.write(json.dumps(m) + "\n")
                mf.flush()
                tb.scalars(done, tensorboard.train_scalars(m, learning_rate=schedule(done - 1), batch_size=batch_size))
                eta = (num_steps - done) / max(rate, 1e-9)
                logging.info("step %d/%d loss %.4f acc %.3f | %.1f steps/s, %.1f img/s, ETA %.0fs", done, num_steps,
                             m["loss"], m["accuracy"], rate, rate * batch_size, eta)
            mngr.save(done, args=checkpoint.ocp.args.StandardSave(state))  # only at checkpoint_every (a log step: checked)
    if mngr.latest_step() != num_steps:
        mngr.save(num_steps, args=checkpoint.ocp.args.StandardSave(state), force=True)
    mngr.wait_until_finished()

    variables = {"params": state.params, **state.model_state}
    draws = tcfg.eval_draws if model.stochastic else 1
    ev = evaluate_clean(model, variables, config, eval_key, draws=draws, mesh=mesh)
    results = {
        "clean_accuracy": ev["accuracy"], "test_loss": ev["loss"], "test_examples": ev["examples"],
        "eval_draws": draws, "seed": config.seed, "steps": num_steps, "config": config_dict,
        "checkpoint_step": num_steps, "fingerprint": checkpoint.fingerprint(variables),
        "train_seconds_this_run": time.time() - t0, "environment": io.environment(),
    }
    if lead:
        io.write_json(os.path.join(workdir, "results.json"), results)
    with tensorboard.Writer(tb_dir, kind="test", replace=True, enabled=tb_on) as tb:
        tb.scalars(num_steps, {"test/accuracy": ev["accuracy"], "test/loss": ev["loss"]})
    logging.info("clean accuracy %.4f on %d test examples (seed %d, %d steps)", ev["accuracy"], ev["examples"],
                 config.seed, num_steps)
    return results
