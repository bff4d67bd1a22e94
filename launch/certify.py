"""Certifies a trained model with randomized smoothing (Cohen et al. 2019) on the test set.

  python -m launch.certify --workdir=/tmp/jsnn/default --sigma=0.25 --num_images=100 [--n=100000 ...]

Writes ``WORKDIR/certify.json`` (settings; per image: index, label, prediction, radius,
correct, p_lower, count; summary: certified accuracy at radii 0, 0.25, 0.5, 0.75, 1.0 and
the average certified radius) and ``WORKDIR/certify.png`` (certified accuracy vs radius).

Noise (``--noise``): ``auto`` uses the model's own RSC encoder when it has one
(``noise="model"``, σ = the encoder's σ, ``steps = T`` for RSC-II), else adds
N(0, σ²I) to the input (``--sigma`` required).

Resume: the JSON is rewritten atomically after every group of images. Rerunning the same
command skips the images already in it; image i always uses the key
``fold_in(key(seed), i)``, so a resumed run gives the same numbers as an uninterrupted one.
If the file was made with other settings (σ, noise, steps, n0, n, α, seed, split) the run
refuses; pass ``--output=other.json`` to keep both.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import numpy as np
from absl import app, flags, logging

from launch import common

NOISE_CHOICES = ("auto", "input", "model")
SETTING_KEYS = ("sigma", "noise", "steps", "n0", "n", "alpha", "seed", "split")

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Trained run (config.json + checkpoints/); certify.json is written there.")
flags.DEFINE_float("sigma", None, "Gaussian noise std σ. Default: the model's RSC encoder σ; required otherwise.")
flags.DEFINE_enum("noise", "auto", NOISE_CHOICES, "Where the noise comes from: the input (added here), the "
                  "model's RSC encoder, or auto (the model's encoder if it is RSC).")
flags.DEFINE_integer("n0", 100, "Selection samples per image.", lower_bound=1)
flags.DEFINE_integer("n", 100_000, "Estimation samples per image.", lower_bound=1)
flags.DEFINE_float("alpha", 0.001, "Failure probability α of the certificate.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("batch_size", 1000, "Forward passes per chunk (bounds memory; results do not depend on it).",
                     lower_bound=1)
flags.DEFINE_integer("num_images", 100, "Certify the first NUM_IMAGES images of the split (0 = all).", lower_bound=0)
flags.DEFINE_string("split", "test", "Dataset split.")
flags.DEFINE_integer("seed", 0, "Seed of the sampling keys.")
flags.DEFINE_integer("images_per_call", 0, "Images per jitted call and per save (0 = auto).", lower_bound=0)
flags.DEFINE_string("output", "certify.json", "Result file name inside --workdir (the PNG takes the same stem).")


def resolve_smoothing(model, *, sigma: float | None, noise: str) -> tuple[str, float, int]:
    """``(noise, sigma, steps)`` from the flags and the model's encoder."""
    from jsnn import certify

    if noise not in NOISE_CHOICES:
        raise ValueError(f"--noise={noise!r}; allowed: {', '.join(NOISE_CHOICES)}")
    own = certify.model_smoothing(model)
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
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"--sigma must be a finite float > 0, got {sigma}")
    return "input", float(sigma), 1


def summarize(records) -> dict:
    """Certified accuracy at the standard radii, ACR, and the abstention rate."""
    from jsnn import certify

    radius = np.asarray([r["radius"] for r in records], np.float64)
    correct = np.asarray([r["correct"] for r in records], bool)
    acc = certify.certified_accuracy(radius, correct, certify.RADII)
    return {
        "num_images": len(records),
        "certified_accuracy": {str(float(r)): float(a) for r, a in zip(certify.RADII, acc)},
        "average_certified_radius": certify.average_certified_radius(radius, correct),
        "abstain_rate": float(np.mean([r["prediction"] == certify.ABSTAIN for r in records])) if records else 0.0,
    }


def _load_previous(path: str, settings: dict) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        previous = json.load(f)
    old = previous.get("settings", {})
    diff = {k: (old.get(k), settings[k]) for k in SETTING_KEYS if old.get(k) != settings[k]}
    if diff:
        what = ", ".join(f"{k}: {a!r} in the file vs {b!r} now" for k, (a, b) in diff.items())
        raise ValueError(f"{path} was made with other settings ({what}); delete it or pass --output=<other>.json")
    return {int(r["index"]): r for r in previous.get("images", [])}


def run(workdir: str, *, sigma: float | None = None, noise: str = "auto", n0: int = 100, n: int = 100_000,
        alpha: float = 0.001, batch_size: int = 1000, num_images: int = 100, split: str = "test", seed: int = 0,
        images_per_call: int = 0, output: str = "certify.json", log_every_s: float = 10.0) -> dict:
    """Certifies the first ``num_images`` images of ``split`` for the run in ``workdir``; resumable.

    Returns:
      The dict written to ``workdir/output``.
    """
    from jsnn import certify, checkpoint, data, io, models

    config, model, variables, *_ = checkpoint.load_run(workdir)
    noise, sigma, steps = resolve_smoothing(model, sigma=sigma, noise=noise)
    settings = dict(sigma=sigma, noise=noise, steps=steps, n0=int(n0), n=int(n), alpha=float(alpha),
                    seed=int(seed), split=split)
    certify.certify_from_counts([1, 0], [1, 0], sigma=sigma, alpha=alpha, steps=steps)  # validates early
    path = os.path.join(workdir, output)
    done = _load_previous(path, settings)

    images, labels = data.eval_arrays(config.data, split, limit=num_images or None, field="--split")
    todo = [i for i in range(len(labels)) if i not in done]
    fn = models.logits_fn(model, variables)
    base = jax.random.key(seed)
    group = images_per_call or max(1, (16 * batch_size) // (n0 + n))
    group = max(1, min(group, 64, len(todo) or 1))
    previous_seconds = 0.0
    if os.path.exists(path):
        with open(path) as f:
            previous_seconds = float(json.load(f).get("seconds", 0.0))
    logging.info("certifying %d images of %s (%d already done): noise=%s sigma=%g steps=%d n0=%d n=%d alpha=%g, "
                 "%d images per call", len(todo), split, len(labels) - len(todo), noise, sigma, steps, n0, n, alpha,
                 group)

    def write(seconds):
        records = [done[i] for i in sorted(done)]
        result = {"settings": settings, "workdir": os.path.abspath(workdir),
                  "model": {"name": config.model.name, "T": int(model.T), "encoder": model.encoder._asdict()},
                  "batch_size": int(batch_size), "seconds": seconds, "images": records,
                  "summary": summarize(records)}
        io.write_json(path, result)
        return result

    t0 = t_log = time.time()
    result = None
    for start in range(0, len(todo), group):
        idx = todo[start:start + group]
        padded = idx + [idx[-1]] * (group - len(idx))  # one compile: every call has `group` images
        keys = jax.vmap(jax.random.fold_in, (None, 0))(base, np.asarray(padded))
        cert = certify.certify(fn, images[padded], keys, sigma=sigma, n0=n0, n=n, alpha=alpha,
                               batch_size=batch_size, steps=steps, noise=noise, return_certificate=True)
        for j, i in enumerate(idx):
            pred = int(cert.prediction[j])
            done[i] = {"index": i, "label": int(labels[i]), "prediction": pred, "radius": float(cert.radius[j]),
                       "correct": bool(pred == int(labels[i])), "p_lower": float(cert.p_lower[j]),
                       "count": int(cert.count[j])}
        finished = start + len(idx)
        result = write(previous_seconds + time.time() - t0)
        now = time.time()
        if now - t_log >= log_every_s or finished == len(todo):
            t_log = now
            rate = finished / max(now - t0, 1e-9)
            fwd = rate * (n0 + n)
            acc0 = np.mean([done[i]["correct"] for i in done])
            logging.info("certified %d/%d images | %.2f img/s, %.0f forwards/s | ETA %.0fs | certified acc@0 %.3f",
                         finished, len(todo), rate, fwd, (len(todo) - finished) / max(rate, 1e-9), acc0)
    if result is None:
        result = write(previous_seconds)
    records = result["images"]
    stem = os.path.splitext(path)[0]
    certify.plot_certified_accuracy([r["radius"] for r in records], [r["correct"] for r in records],
                                    stem + ".png", title=f"{config.model.name}, σ={sigma:g}, n={n}")
    s = result["summary"]
    logging.info("certified accuracy %s | ACR %.4f | abstain %.3f (%d images) → %s", s["certified_accuracy"],
                 s["average_certified_radius"], s["abstain_rate"], s["num_images"], path)
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with common.clean_errors():
        if not FLAGS.workdir:
            raise ValueError("--workdir is required")
        if not 0.0 < FLAGS.alpha < 1.0:
            raise ValueError(f"--alpha must lie in (0, 1), got {FLAGS.alpha}")
        result = run(FLAGS.workdir, sigma=FLAGS.sigma, noise=FLAGS.noise, n0=FLAGS.n0, n=FLAGS.n,
                     alpha=FLAGS.alpha, batch_size=FLAGS.batch_size, num_images=FLAGS.num_images,
                     split=FLAGS.split, seed=FLAGS.seed, images_per_call=FLAGS.images_per_call,
                     output=FLAGS.output)
        s = result["summary"]
        acc = "  ".join(f"r={k}: {v:.3f}" for k, v in s["certified_accuracy"].items())
        print(f"certified accuracy {acc}  ACR {s['average_certified_radius']:.4f}  "
              f"({s['num_images']} images, {os.path.join(FLAGS.workdir, FLAGS.output)})")


if __name__ == "__main__":
    app.run(main)
