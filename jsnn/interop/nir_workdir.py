"""NIR files ↔ jsnn run directories, so ``launch.evaluate`` and ``launch.certify`` run on imported graphs.

:func:`import_to_workdir` writes what training would have left: ``config.json`` (model
``"sequential"`` with the graph's layers in ``model.kwargs.layers``), an Orbax checkpoint at step 0
and ``results.json`` (finished, with the parameters' fingerprint and the clean test accuracy), so
every evaluation record names the imported model. :func:`export_workdir` writes a trained run's
newest checkpoint as a ``.nir`` file.

Example:
    >>> import os, tempfile, jax, ml_collections
    >>> from jsnn import checkpoint, models
    >>> from jsnn.interop import nir as jnir, nir_workdir
    >>> config = ml_collections.ConfigDict({"data": {"name": "digits", "eval_batch_size": 512},
    ...     "model": {"name": "digits_mlp", "T": 2, "kwargs": {"hidden": (8,)}}})
    >>> model = models.from_config(config)  # normalizes with the digits' mean and std
    >>> x = jax.numpy.zeros((1, 8, 8, 1))  # the input shape
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "mlp.nir")
    >>> jnir.write(path, jnir.export(model, model.init(jax.random.key(0), x), x))
    >>> results = nir_workdir.import_to_workdir(path, os.path.join(tmp.name, "run"), config)
    >>> run = checkpoint.load_run(os.path.join(tmp.name, "run"))
    >>> type(run.model).__name__, run.finished, run.fingerprint == results["fingerprint"]
    ('SequentialSNN', True, True)
    >>> tmp.cleanup()
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import jax
import ml_collections
import numpy as np
from absl import logging

from jsnn import checkpoint, io
from jsnn import config as cfg_lib
from jsnn.interop import nir as jnir


def import_to_workdir(path: str, workdir: str, config: ml_collections.ConfigDict,
                      dt: Optional[float] = None) -> Dict[str, Any]:
    """Imports the ``.nir`` file ``path`` into the run directory ``workdir``; returns its results dict.

    ``config`` gives the dataset (``data.name``: input shape, classes, normalization), ``model.T``,
    the encoder (``model.encoder``) and the estimator fields (``model.surrogate``...). The model
    normalizes its input only when the graph records a normalization, which must then be the
    dataset's. ``dt``: the graph's time step (default: its ``metadata["dt"]``).
    Rerunning on the same file and config finds the run done and returns its results.
    """
    from jsnn import models, train

    graph = jnir.read(path)
    config = ml_collections.ConfigDict(cfg_lib.to_dict(config))
    info = models.dataset_info(config)
    T = cfg_lib.check_int(cfg_lib.get(config.model, "T", 4), "model.T", 1)
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if "T" in meta and int(np.asarray(meta["T"])) != T:
        logging.warning("%s was exported with T=%d; importing with model.T=%d", path, int(np.asarray(meta["T"])), T)
    if "input_mean" in meta:
        gm, gs = np.ravel(meta["input_mean"]), np.ravel(meta["input_std"])
        if gm.shape != np.shape(info.mean) or not (np.allclose(gm, info.mean) and np.allclose(gs, info.std)):
            raise ValueError(f"--nir={path}: the graph expects inputs normalized with mean {gm.tolist()}, std "
                             f"{gs.tolist()}; data.name={config.data.name!r} normalizes with mean "
                             f"{list(info.mean)}, std {list(info.std)}")
    from jsnn.models.factory import encoder_config, neuron_config

    model, variables = jnir.to_jsnn(graph, input_shape=info.image_shape, dt=dt, T=T,
                                    neuron=neuron_config(config.model), encoder=encoder_config(config.model),
                                    mean=tuple(info.mean), std=tuple(info.std))
    if model.num_classes != info.num_classes:
        raise ValueError(f"--nir={path}: the graph has {model.num_classes} outputs; data.name="
                         f"{config.data.name!r} has {info.num_classes} classes")
    variables = jax.tree.map(np.asarray, variables)
    kinds = [layer["neuron"] for layer in map(dict, model.layers) if layer["kind"] == "neuron"]
    config.model.name = "sequential"
    config.model.neuron = kinds[0] if kinds else cfg_lib.get(config.model, "neuron", "lif")
    config.model.kwargs = {"layers": [dict(layer) for layer in model.layers], "normalize": model.normalize}
    config_dict = cfg_lib.to_dict(config)
    rebuilt = models.from_config(ml_collections.ConfigDict(config_dict))  # what load_run will build
    fingerprint = checkpoint.fingerprint(variables)
    results_path = os.path.join(workdir, "results.json")
    if os.path.exists(results_path):
        done = io.read_json(results_path)
        if done.get("fingerprint") == fingerprint and done.get("config") == config_dict:
            return done
        raise ValueError(f"workdir {workdir!r} already holds another run; import into a new --workdir")
    if os.path.exists(os.path.join(workdir, checkpoint.DIRECTORY)):
        raise ValueError(f"workdir {workdir!r} already holds checkpoints; import into a new --workdir")
    io.ensure_dir(workdir, "workdir")
    io.write_json(os.path.join(workdir, "config.json"), config_dict)
    mngr = checkpoint.manager(workdir)
    state = {"step": np.asarray(0), "params": variables["params"], "model_state": {}, "opt_state": ()}
    mngr.save(0, args=checkpoint.ocp.args.StandardSave(state))
    mngr.wait_until_finished()
    ev = train.evaluate_clean(rebuilt, variables, config, jax.random.key(0))
    results = {
        "clean_accuracy": ev["accuracy"], "test_loss": ev["loss"], "test_examples": ev["examples"],
        "eval_draws": 1, "seed": cfg_lib.get(config, "seed", 0), "steps": 0, "config": config_dict,
        "checkpoint_step": 0, "fingerprint": fingerprint, "imported_from": os.path.abspath(path),
        "nir_dt": float(np.asarray(meta["dt"])) if dt is None else float(dt), "environment": io.environment(),
    }
    io.write_json(results_path, results)
    return results


def export_workdir(workdir: str, path: str, *, dt: float = 1.0, step: Optional[int] = None,
                   num_samples: int = 64) -> Dict[str, Any]:
    """Writes the run in ``workdir`` (its newest checkpoint, or ``step``) as the NIR file ``path``.

    The first ``num_samples`` test images give the input shape the export traces. Returns a summary
    (nodes, checkpoint step, fingerprint).
    """
    from jsnn import data as data_lib

    run = checkpoint.load_run(workdir, step)
    checkpoint.check_finite(run.variables, f"workdir {workdir!r}")
    cfg = ml_collections.ConfigDict(cfg_lib.to_dict(run.config.data))
    cfg.eval_batch_size = num_samples
    batch = next(iter(data_lib.eval_batches(cfg, split="test")))
    graph = jnir.export(run.model, run.variables, batch["image"], dt=dt)
    graph.metadata.update(checkpoint_step=int(run.step), fingerprint=run.fingerprint)
    jnir.write(path, graph)
    return {"nodes": {k: type(n).__name__ for k, n in graph.nodes.items()}, "checkpoint_step": int(run.step),
            "fingerprint": run.fingerprint, "path": path}
