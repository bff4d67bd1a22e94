"""The certification driver: certify a trained run's test images, resumably, into ``certify.json``.

:func:`certify_workdir` is what ``python -m launch.certify`` runs. It loads the run's checkpoint
(:func:`jsnn.checkpoint.load_run`), picks the smoothing noise (:func:`resolve_smoothing`), and
certifies image ``i`` with the key ``fold_in(key(seed), i)``, rewriting the JSON atomically after
every group of images, so an interrupted run resumed later gives the same numbers.

Every image record names the model it measured (``checkpoint_step``, ``fingerprint`` of the
parameters); a record made by another model is recomputed. A run whose training has not finished
is refused unless a ``step`` is named. Other settings (σ, noise, steps, n0, n, α, seed, split) in an
existing file are refused (pass another ``output``).

Example:
    >>> from jsnn import certify
    >>> certify.min_samples(0.001)  # with fewer samples no image can be certified at α = 0.001
    10
    >>> certify.summarize([{"radius": 0.5, "correct": True, "prediction": 1},
    ...                    {"radius": 0.0, "correct": False, "prediction": -1}])["average_certified_radius"]
    0.25
"""

from __future__ import annotations

import math
import os
import time
from typing import Optional

import jax
import numpy as np
from absl import logging

from jsnn import config as cfg
from jsnn.certify import smoothing

NOISE_CHOICES = ("auto", "input", "model")
SETTING_KEYS = ("sigma", "noise", "steps", "n0", "n", "alpha", "seed", "split")


def resolve_smoothing(model, *, sigma: Optional[float], noise: str) -> tuple[str, float, int]:
    """``(noise, sigma, steps)`` from the requested noise and σ and the model's encoder."""
    cfg.check_choice(noise, "--noise", NOISE_CHOICES)
    own = smoothing.model_smoothing(model)
    if noise == "model" and own is None:
        raise ValueError(f"--noise=model: the model's encoder ({model.encoder.name!r}, sigma={model.encoder.sigma}) "
                         "draws no Gaussian noise; use --noise=input with --sigma")
    if noise in ("auto", "model") and own is not None:
        if sigma is not None and not math.isclose(sigma, own[1], rel_tol=1e-6):
            raise ValueError(f"--sigma={sigma} differs from the model's RSC encoder sigma={own[1]}; with the "
                             "model's own noise the radius must use its sigma (omit --sigma, or use --noise=input "
                             "to add noise on top)")
        return own
    if sigma is None:
        raise ValueError("--sigma is required: the model has no RSC encoder to take it from")
    return "input", cfg.check_number(sigma, "--sigma", low=0.0, low_open=True), 1


def min_samples(alpha: float) -> int:
    """The smallest n for which CERTIFY can certify at all: ``α^(1/n) ≥ 1/2`` (all n samples agreeing).

    The one-sided Clopper–Pearson lower bound of n successes in n is ``α^(1/n)``; below 1/2 CERTIFY abstains.
    """
    n = max(1, math.ceil(math.log(alpha) / math.log(0.5)))
    while smoothing.clopper_pearson_lower(n, n, alpha) < 0.5:
        n += 1
    return n


def summarize(records) -> dict:
    """Certified accuracy at the standard radii, ACR, and the abstention rate."""
    radius = np.asarray([r["radius"] for r in records], np.float64)
    correct = np.asarray([r["correct"] for r in records], bool)
    acc = smoothing.certified_accuracy(radius, correct, smoothing.RADII)
    return {
        "num_images": len(records),
        "certified_accuracy": {str(float(r)): float(a) for r, a in zip(smoothing.RADII, acc)},
        "average_certified_radius": smoothing.average_certified_radius(radius, correct),
        "abstain_rate": float(np.mean([r["prediction"] == smoothing.ABSTAIN for r in records])) if records else 0.0,
    }


def _load_previous(path: str, settings: dict, step: int, fp: str) -> tuple[dict, float]:
    """Records of ``path`` made with ``settings`` by this model (step, fingerprint), and its seconds."""
    from jsnn import io

    if not os.path.exists(path):
        return {}, 0.0
    previous = io.read_json(path, hint="delete it (or pass --output=<other>.json) and rerun; images are recomputed")
    old = previous.get("settings", {})
    diff = {k: (old.get(k), settings[k]) for k in SETTING_KEYS if old.get(k) != settings[k]}
    if diff:
        what = ", ".join(f"{k}: {a!r} in the file vs {b!r} now" for k, (a, b) in diff.items())
        raise ValueError(f"{path} was made with other settings ({what}); delete it or pass --output=<other>.json")
    done = {}
    for r in previous.get("images", []):
        if r.get("fingerprint") == fp and r.get("checkpoint_step") == step:
            done[int(r["index"])] = r
    stale = len(previous.get("images", [])) - len(done)
    if stale:
        logging.warning("%s: %d images were certified on another model (checkpoint step or parameters differ); "
                        "recomputing them for step %d (fingerprint %s)", path, stale, step, fp)
    return done, float(previous.get("seconds", 0.0)) if not stale else 0.0


def certify_workdir(workdir: str, *, sigma: Optional[float] = None, noise: str = "auto", n0: int = 100,
                    n: int = 100_000, alpha: float = 0.001, batch_size: int = 1000, num_images: int = 100,
                    split: str = "test", seed: int = 0, images_per_call: int = 0, output: str = "certify.json",
                    step: Optional[int] = None, log_every_s: float = 10.0) -> dict:
    """Certifies the first ``num_images`` images of ``split`` for the run in ``workdir``; resumable.

    Args:
      workdir: a ``launch.train`` run directory; the result is written to ``workdir/output``.
      sigma, noise: the smoothing noise (see :func:`resolve_smoothing`).
      n0, n, alpha, batch_size: CERTIFY's settings (:func:`jsnn.certify.certify`).
      num_images: images certified (0 = the whole split).
      split, seed: the dataset split and the seed of the per-image keys.
      images_per_call: images per jitted call and per save (0 = auto).
      output: the JSON file name (the PNG takes the same stem).
      step: the checkpoint step to certify; None = the newest, which must be the end of training.

    Returns:
      The dict written to ``workdir/output``.
    """
    from jsnn import checkpoint, data, io, models, parallel, tensorboard

    cfg.check_int(n0, "--n0")
    cfg.check_int(n, "--n")
    cfg.check_int(batch_size, "--batch_size")
    cfg.check_int(num_images, "--num_images", 0)
    cfg.check_int(images_per_call, "--images_per_call", 0)
    cfg.check_number(alpha, "--alpha", low=0.0, high=1.0, low_open=True, high_open=True)
    cfg.check_int(step, "--step", 0, allow_none=True)
    run = checkpoint.load_run(workdir, step)
    if step is None and not run.finished:
        raise ValueError(f"{workdir}: training has not finished (newest checkpoint is step {run.step}); finish it "
                         f"with launch.train, or certify that checkpoint on purpose with --step={run.step}")
    checkpoint.check_finite(run.variables, workdir)
    config, model = run.config, run.model
    noise, sigma, steps = resolve_smoothing(model, sigma=sigma, noise=noise)
    if n < min_samples(alpha):
        logging.warning("--n=%d: no image can be certified at alpha=%g (even all %d samples agreeing give "
                        "p_lower < 0.5); use --n >= %d", n, alpha, n, min_samples(alpha))
    settings = dict(sigma=sigma, noise=noise, steps=steps, n0=int(n0), n=int(n), alpha=float(alpha),
                    seed=int(seed), split=split)
    smoothing.certify_from_counts([1, 0], [1, 0], sigma=sigma, alpha=alpha, steps=steps)  # validates early
    path = os.path.join(workdir, output)
    done, previous_seconds = _load_previous(path, settings, run.step, run.fingerprint)

    images, labels = data.eval_arrays(config.data, split, limit=num_images or None, field="--split")
    todo = [i for i in range(len(labels)) if i not in done]
    fn = models.logits_fn(model, run.variables)
    base = jax.random.key(seed)
    group = images_per_call or max(1, (16 * batch_size) // (n0 + n))
    group = max(1, min(group, 64, len(todo) or 1))
    logging.info("certifying %d images of %s (%d already done) at checkpoint step %d (%s): noise=%s sigma=%g "
                 "steps=%d n0=%d n=%d alpha=%g, %d images per call", len(todo), split, len(labels) - len(todo),
                 run.step, run.fingerprint, noise, sigma, steps, n0, n, alpha, group)
    model_record = {"name": config.model.name, "T": int(model.T), "encoder": model.encoder._asdict(),
                    "checkpoint_step": int(run.step), "fingerprint": run.fingerprint}

    def write(seconds):
        records = [done[i] for i in sorted(done)]
        result = {"settings": settings, "workdir": os.path.abspath(workdir), "model": model_record,
                  "batch_size": int(batch_size), "seconds": seconds, "images": records,
                  "summary": summarize(records)}
        io.write_json(path, result)
        return result

    t0 = t_log = time.time()
    result = None
    for start in range(0, len(todo), group):
        idx = todo[start:start + group]
        padded, _ = parallel.pad_batch(np.asarray(idx), group)  # one compile: every call has `group` images
        keys = jax.vmap(jax.random.fold_in, (None, 0))(base, padded)
        cert = smoothing.certify(fn, images[padded], keys, sigma=sigma, n0=n0, n=n, alpha=alpha,
                                 batch_size=batch_size, steps=steps, noise=noise, return_certificate=True,
                                 image_ndim=images.ndim - 1)  # HWC images, or event frames [T, H, W, 2]
        for j, i in enumerate(idx):
            pred = int(cert.prediction[j])
            done[i] = {"index": i, "label": int(labels[i]), "prediction": pred, "radius": float(cert.radius[j]),
                       "correct": bool(pred == int(labels[i])), "p_lower": float(cert.p_lower[j]),
                       "count": int(cert.count[j]), "checkpoint_step": int(run.step), "fingerprint": run.fingerprint}
        finished = start + len(idx)
        result = write(previous_seconds + time.time() - t0)
        now = time.time()
        if now - t_log >= log_every_s or finished == len(todo):
            t_log = now
            rate = finished / max(now - t0, 1e-9)
            acc0 = np.mean([done[i]["correct"] for i in done])
            logging.info("certified %d/%d images | %.2f img/s, %.0f forwards/s | ETA %.0fs | certified acc@0 %.3f",
                         finished, len(todo), rate, rate * (n0 + n), (len(todo) - finished) / max(rate, 1e-9), acc0)
    if result is None:
        result = write(previous_seconds)
    records = result["images"]
    smoothing.plot_certified_accuracy([r["radius"] for r in records], [r["correct"] for r in records],
                                      os.path.splitext(path)[0] + ".png",
                                      title=f"{config.model.name}, σ={sigma:g}, n={n}")
    if tensorboard.enabled(config):  # tb/certify: the curve and summary of this file
        tensorboard.write_certification(tensorboard.result_logdir(workdir, output, "certify.json", "certify"), result,
                                        *smoothing.certified_curve([r["radius"] for r in records],
                                                                   [r["correct"] for r in records]))
    s = result["summary"]
    logging.info("certified accuracy %s | ACR %.4f | abstain %.3f (%d images) → %s", s["certified_accuracy"],
                 s["average_certified_radius"], s["abstain_rate"], s["num_images"], path)
    return result
