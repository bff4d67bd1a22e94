"""Training: ``train_and_evaluate(config, workdir)`` and ``restore(workdir)``.

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
import platform
import tempfile
import time
from typing import Any, Dict, Mapping, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from jsnn import data as data_lib
from jsnn import defenses as defenses_lib
from jsnn import encoding, models, parallel
from jsnn import surrogate as surrogate_lib
from jsnn.defenses import base as defense_base
from jsnn.layers import EncoderConfig, NeuronConfig, check_neuron_config

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
# Fields that may change between a run and its resumption (they do not change the trajectory).
RESUMABLE_FIELDS = ("train.log_every", "train.checkpoint_every", "train.eval_every")


class TrainState(flax.struct.PyTreeNode):
    """Everything a training step changes: step, parameters, BatchNorm statistics, optimizer state."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any


# ----------------------------------------------------------------------------- config → objects


def _get(cfg, name, default=None):
    return cfg.get(name, default) if hasattr(cfg, "get") else getattr(cfg, name, default)


def neuron_config(model_cfg) -> NeuronConfig:
    """The :class:`NeuronConfig` described by ``config.model``."""
    kind = _get(model_cfg, "neuron", "lif")
    reset = _get(model_cfg, "reset", "hard")
    if reset not in ("hard", "soft"):
        raise ValueError(f"model.reset: {reset!r}; allowed: hard, soft")
    name = _get(model_cfg, "surrogate", None)
    surrogate = None
    if name:
        try:
            surrogate = surrogate_lib.by_name(name, _get(model_cfg, "surrogate_width", None))
        except ValueError as e:
            raise ValueError(f"model.surrogate / model.surrogate_width: {e}") from None
    cfg = NeuronConfig(
        kind=kind,
        tau=float(_get(model_cfg, "tau", 2.0)),
        leak=float(_get(model_cfg, "leak", 1.0 if kind == "if" else 0.99)),
        v_threshold=float(_get(model_cfg, "v_threshold", 1.0)),
        v_reset=None if reset == "soft" else float(_get(model_cfg, "v_reset", 0.0)),
        decay_input=bool(_get(model_cfg, "decay_input", True)),
        detach_reset=bool(_get(model_cfg, "detach_reset", False)),
        surrogate=surrogate,
        gradient=_get(model_cfg, "spike_gradient", "bptt"),
        remat=bool(_get(model_cfg, "remat", False)),
    )
    return check_neuron_config(cfg)


def encoder_config(model_cfg) -> EncoderConfig:
    """The :class:`EncoderConfig` described by ``config.model.encoder``."""
    enc = _get(model_cfg, "encoder", None)
    if enc is None or isinstance(enc, str):
        enc = {"name": enc or "direct"}
    name = _get(enc, "name", "direct")
    if name not in encoding.ENCODERS:
        raise ValueError(f"model.encoder.name: unknown encoder {name!r}; allowed: {', '.join(encoding.ENCODERS)}")
    sigma = float(_get(enc, "sigma", 0.0))
    if not sigma >= 0:
        raise ValueError(f"model.encoder.sigma: must be >= 0, got {sigma!r}")
    pg = _get(enc, "poisson_gradient", "straight_through")
    if pg not in encoding.POISSON_GRADIENTS:
        raise ValueError(f"model.encoder.poisson_gradient: {pg!r}; allowed: {', '.join(encoding.POISSON_GRADIENTS)}")
    return EncoderConfig(name=name, sigma=sigma, per_step=bool(_get(enc, "per_step", False)),
                         clip=bool(_get(enc, "clip", False)), poisson_gradient=pg)


def dataset_info(config) -> data_lib.DatasetInfo:
    return data_lib.info(config.data.name, _get(config.data, "image_size", None))


def build_model(config) -> models.SpikingModel:
    """The model of ``config.model`` for the dataset of ``config.data``."""
    info = dataset_info(config)
    T = _get(config.model, "T", 4)
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"model.T: time steps must be an integer >= 1, got {T!r}")
    extra = dict(_get(config.model, "kwargs", None) or {})
    return models.get_model(
        config.model.name, num_classes=info.num_classes, T=T, neuron=neuron_config(config.model),
        encoder=encoder_config(config.model), mean=tuple(info.mean), std=tuple(info.std),
        input_channels=info.image_shape[-1], **extra)


def total_steps(config) -> int:
    """``config.train.num_steps`` if set, else ``num_epochs × steps_per_epoch``."""
    n = _get(config.train, "num_steps", None)
    if n is None:
        epochs = _get(config.train, "num_epochs", None)
        if epochs is None or not epochs > 0:
            raise ValueError(f"train.num_epochs: must be > 0 when train.num_steps is unset, got {epochs!r}")
        n = int(math.ceil(float(epochs) * max(1, data_lib.steps_per_epoch(config.data))))
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"train.num_steps: must be an integer >= 1, got {n!r}")
    return n


def make_schedule(optim_cfg, num_steps: int) -> optax.Schedule:
    name = _get(optim_cfg, "schedule", "cosine")
    lr = float(optim_cfg.learning_rate)
    if not lr > 0:
        raise ValueError(f"optim.learning_rate: must be > 0, got {lr!r}")
    warmup = int(_get(optim_cfg, "warmup_steps", 0) or 0)
    if name == "cosine":
        if warmup:
            return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(num_steps, warmup + 1), 0.0)
        return optax.cosine_decay_schedule(lr, num_steps)
    if name == "constant":
        return optax.constant_schedule(lr)
    raise ValueError(f"optim.schedule: {name!r}; allowed: {', '.join(SCHEDULES)}")


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
    name = _get(optim_cfg, "name", "sgd")
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.name: unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    schedule = make_schedule(optim_cfg, num_steps)
    wd = float(_get(optim_cfg, "weight_decay", 0.0))
    if wd < 0:
        raise ValueError(f"optim.weight_decay: must be >= 0, got {wd!r}")
    parts = [optax.add_decayed_weights(wd)] if wd else []
    if name == "sgd":
        parts.append(optax.sgd(schedule, momentum=float(_get(optim_cfg, "momentum", 0.9)) or None,
                               nesterov=bool(_get(optim_cfg, "nesterov", False))))
    else:
        parts.append(optax.adam(schedule))
    if param_transform is not None:
        parts.append(param_transform)
    return optax.chain(*parts)


# ----------------------------------------------------------------------------- loss and steps


def cross_entropy_loss_fn(model: nn.Module):
    """The vanilla loss ``loss_fn(params, model_state, batch, key) -> (loss, (model_state, metrics))``.

    Mean softmax cross-entropy of the time-averaged logits; BatchNorm in train mode.

    Example:
        >>> import jax, jax.numpy as jnp, math
        >>> from jsnn import get_model
        >>> from jsnn.train import cross_entropy_loss_fn
        >>> model, x = get_model("digits_mlp", hidden=(8,), T=2), jnp.zeros((4, 8, 8, 1))
        >>> variables = jax.jit(model.init)(jax.random.key(0), x)
        >>> params = variables.pop("params")
        >>> params = jax.tree.map(jnp.zeros_like, params)  # zero weights: uniform logits
        >>> loss, (state, metrics) = cross_entropy_loss_fn(model)(
        ...     params, variables, {"image": x, "label": jnp.arange(4)}, jax.random.key(1))
        >>> round(float(loss), 4) == round(math.log(10), 4), sorted(metrics)  # CE of uniform over 10 classes
        (True, ['accuracy', 'loss'])
    """

    def loss_fn(params, model_state, batch, key):
        logits, new_state = defense_base.train_forward(model, params, model_state, batch["image"], key)
        loss = defense_base.cross_entropy(logits, batch["label"]).mean()
        return loss, (new_state, {"loss": loss, "accuracy": defense_base.accuracy(logits, batch["label"])})

    return loss_fn


def make_train_step(loss_fn, optimizer: optax.GradientTransformation, mesh=None):
    """A jitted ``(state, batch, key) -> (state, metrics)``; state and metrics replicated over ``mesh``."""

    def train_step(state: TrainState, batch, key):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (model_state, metrics)), grads = grad_fn(state.params, state.model_state, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
        return state.replace(step=state.step + 1, params=params, model_state=model_state,
                             opt_state=opt_state), metrics

    out = None if mesh is None else parallel.replicated(mesh)
    return jax.jit(train_step, donate_argnums=(0,), out_shardings=out)


def make_eval_step(model: nn.Module):
    """A jitted ``(variables, images, labels, mask, key) -> (correct, loss_sum)`` in eval mode."""

    def eval_step(variables, images, labels, mask, key):
        logits = models.logits_fn(model, variables)(images, key)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
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


# ----------------------------------------------------------------------------- I/O helpers


def write_json_atomic(path: str, obj) -> None:
    """Writes JSON via a temporary file and ``os.replace`` (never a half-written file)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.generic, jnp.ndarray)):
        return np.asarray(o).tolist()
    return str(o)


def flatten(d, prefix: str = "") -> Dict[str, Any]:
    """Nested dicts / ConfigDicts → ``{"a.b": value}`` (None → ``{}``)."""
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, (Mapping, ml_collections.ConfigDict)):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(recorded: Mapping, config_dict: Mapping) -> str:
    """``"field: old -> new, ..."`` (first six) for fields that differ, :data:`RESUMABLE_FIELDS` aside;
    ``""`` when a run recorded with ``recorded`` can be resumed or reused under ``config_dict``."""
    old, new = flatten(recorded), flatten(config_dict)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_FIELDS)
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:6])


def config_to_dict(config) -> Dict[str, Any]:
    return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)


def environment() -> Dict[str, Any]:
    """Package versions and device kind, recorded with every result."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("jsnn", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    dev = jax.devices()[0]
    return {"versions": versions, "platform": dev.platform, "device_kind": dev.device_kind,
            "device_count": jax.device_count(), "python": platform.python_version()}


def _check_resumable(workdir: str, config_dict: Dict[str, Any]) -> None:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        details = config_differences(json.load(f), config_dict)
    if details:
        raise ValueError(f"workdir {workdir!r} holds a run with a different config ({details}); "
                         "use a new --workdir or the same config to resume")


def _truncate_metrics(path: str, last_step: int) -> None:
    """Drops metric lines logged after the restored checkpoint (they will be logged again)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [ln for ln in f if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= last_step]
    if len(kept) != len(lines):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, path)


def checkpoint_manager(workdir: str, every: int = 1) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=max(1, int(every)),
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), options=options)


# ----------------------------------------------------------------------------- main entry points


def validate_config(config) -> None:
    """Checks the fields training reads, raising ``ValueError`` naming the field."""
    for section in ("data", "model", "optim", "train"):
        if section not in config:
            raise ValueError(f"config: missing section {section!r}")
    if not isinstance(config.seed, int):
        raise ValueError(f"seed: must be an integer, got {config.seed!r}")
    data_lib.info(config.data.name)  # unknown dataset → clear error
    bs = config.data.batch_size
    if not isinstance(bs, int) or bs < 1:
        raise ValueError(f"data.batch_size: must be an integer >= 1, got {bs!r}")
    if config.model.name not in models.MODELS:
        raise ValueError(f"model.name: unknown model {config.model.name!r}; allowed: {', '.join(sorted(models.MODELS))}")
    neuron_config(config.model)
    encoder_config(config.model)
    total_steps(config)
    log_every, ckpt_every = _get(config.train, "log_every", 50), _get(config.train, "checkpoint_every", 100)
    if not (isinstance(log_every, int) and log_every >= 1 and isinstance(ckpt_every, int) and ckpt_every >= 1):
        raise ValueError(f"train.log_every / train.checkpoint_every: must be integers >= 1, got {log_every!r} / "
                         f"{ckpt_every!r}")
    if ckpt_every % log_every:
        raise ValueError(f"train.checkpoint_every: {ckpt_every} must be a multiple of train.log_every={log_every} "
                         "(a resumed run then logs the same metric windows as an uninterrupted one)")
    make_optimizer(config.optim, 1)


def init_state(config, model, optimizer, key) -> TrainState:
    info = dataset_info(config)
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

    Writes ``config.json``, ``checkpoints/``, ``metrics.jsonl`` and ``results.json``.

    Returns:
      The results dict (also in ``workdir/results.json``).

    Example:
        A tiny spiking MLP trained for 4 steps on the embedded digits, then restored:

        >>> import os, tempfile
        >>> from jsnn import train
        >>> from launch.configs import default
        >>> config = default.get_config()
        >>> config.model.name, config.model.T, config.model.kwargs.hidden = "digits_mlp", 2, (16,)
        >>> config.train.num_steps, config.train.log_every, config.train.checkpoint_every = 4, 2, 4
        >>> tmp = tempfile.TemporaryDirectory()
        >>> results = train.train_and_evaluate(config, tmp.name)
        >>> results["steps"], results["test_examples"], sorted(os.listdir(tmp.name))
        (4, 360, ['checkpoints', 'config.json', 'metrics.jsonl', 'results.json'])
        >>> config, model, variables = train.restore(tmp.name)
        >>> type(model).__name__, model.T, sorted(variables)
        ('SpikingMLP', 2, ['batch_stats', 'params'])
        >>> tmp.cleanup()
    """
    validate_config(config)
    os.makedirs(workdir, exist_ok=True)
    config_dict = config_to_dict(config)
    _check_resumable(workdir, config_dict)
    lead = jax.process_index() == 0  # on multi-host runs only process 0 writes files (Orbax coordinates itself)
    if lead:
        write_json_atomic(os.path.join(workdir, "config.json"), config_dict)

    model = build_model(config)
    num_steps = total_steps(config)
    setup = defenses_lib.from_config(config, model)
    optimizer = make_optimizer(config.optim, num_steps, setup.param_transform)
    loss_fn = setup.loss_transform(cross_entropy_loss_fn(model))
    mesh = parallel.data_mesh()
    parallel.check_divisible(config.data.batch_size, mesh)
    train_step = make_train_step(loss_fn, optimizer, mesh)

    root = jax.random.key(config.seed)
    init_key, train_key, eval_key = jax.random.split(root, 3)
    state = init_state(config, model, optimizer, init_key)

    mngr = checkpoint_manager(workdir, _get(config.train, "checkpoint_every", 100))
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    start = 0
    latest = mngr.latest_step()
    if latest is not None:
        state = mngr.restore(latest, args=ocp.args.StandardRestore(state))
        start = int(state.step)
        logging.info("Resumed from checkpoint at step %d in %s", start, workdir)
        if lead:
            _truncate_metrics(metrics_path, start)
    elif lead and os.path.exists(metrics_path):
        os.remove(metrics_path)
    state = parallel.replicate(state, mesh)

    info = dataset_info(config)
    log_every = max(1, int(_get(config.train, "log_every", 50)))
    batches = data_lib.train_batches(config.data, config.seed, start_step=start)
    t0 = time.time()
    t_last, step_last = t0, start
    window = []
    with open(metrics_path if lead else os.devnull, "a") as mf:
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
                if not all(math.isfinite(v) for v in m.values()):
                    raise FloatingPointError(f"non-finite training metrics at step {done}: {m}")
                mf.write(json.dumps(m) + "\n")
                mf.flush()
                eta = (num_steps - done) / max(rate, 1e-9)
                logging.info("step %d/%d loss %.4f acc %.3f | %.1f steps/s, %.1f img/s, ETA %.0fs", done, num_steps,
                             m["loss"], m["accuracy"], rate, rate * config.data.batch_size, eta)
            mngr.save(done, args=ocp.args.StandardSave(state))
    mngr.save(num_steps, args=ocp.args.StandardSave(state), force=True) if mngr.latest_step() != num_steps else None
    mngr.wait_until_finished()

    variables = {"params": state.params, **state.model_state}
    draws = int(_get(config.train, "eval_draws", 1)) if model.stochastic else 1
    ev = evaluate_clean(model, variables, config, eval_key, draws=draws, mesh=mesh)
    results = {
        "clean_accuracy": ev["accuracy"], "test_loss": ev["loss"], "test_examples": ev["examples"],
        "eval_draws": draws, "seed": config.seed, "steps": num_steps, "config": config_dict,
        "train_seconds_this_run": time.time() - t0, "environment": environment(),
    }
    if lead:
        write_json_atomic(os.path.join(workdir, "results.json"), results)
    logging.info("clean accuracy %.4f on %d test examples (seed %d, %d steps)", ev["accuracy"], ev["examples"],
                 config.seed, num_steps)
    return results


def restore(workdir: str) -> Tuple[ml_collections.ConfigDict, models.SpikingModel, Dict[str, Any]]:
    """Loads a trained run: ``(config, model, variables)`` from ``workdir``'s config and latest checkpoint."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"workdir {workdir!r} has no config.json: train it first with launch.train")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    model = build_model(config)
    mngr = checkpoint_manager(workdir)
    latest = mngr.latest_step()
    if latest is None:
        raise FileNotFoundError(f"workdir {workdir!r} has no checkpoint: train it first with launch.train")
    num_steps = total_steps(config)
    setup = defenses_lib.from_config(config, model)
    optimizer = make_optimizer(config.optim, num_steps, setup.param_transform)
    abstract = jax.eval_shape(lambda: init_state(config, model, optimizer, jax.random.key(0)))
    state = mngr.restore(latest, args=ocp.args.StandardRestore(abstract))
    return config, model, {"params": state.params, **state.model_state}
