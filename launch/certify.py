"""Certifies a trained model with randomized smoothing (Cohen et al. 2019) on the test set.

  python -m launch.certify --workdir=/tmp/jsnn/default --sigma=0.25 --num_images=100 [--n=100000 --step=N ...]

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
refuses; pass ``--output=other.json`` to keep both. Every image record names the checkpoint step and
parameter fingerprint it measured; images certified on another model are recomputed. A run whose
training has not finished is refused unless ``--step=N`` names the checkpoint (recorded).
The logic lives in :func:`jsnn.certify.certify_workdir`.
"""

from __future__ import annotations

import os

from absl import app, flags

from launch import common

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Trained run (config.json + checkpoints/); certify.json is written there.")
flags.DEFINE_float("sigma", None, "Gaussian noise std σ. Default: the model's RSC encoder σ; required otherwise.")
flags.DEFINE_enum("noise", "auto", ("auto", "input", "model"), "Where the noise comes from: the input (added "
                  "here), the model's RSC encoder, or auto (the model's encoder if it is RSC).")
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
flags.DEFINE_integer("step", None, "Checkpoint step to certify (default: the newest, which must end training).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with common.clean_errors():
        from jsnn import certify

        if not 0.0 < FLAGS.alpha < 1.0:
            raise ValueError(f"--alpha must lie in (0, 1), got {FLAGS.alpha}")
        result = certify.certify_workdir(FLAGS.workdir, sigma=FLAGS.sigma, noise=FLAGS.noise, n0=FLAGS.n0,
                                         n=FLAGS.n, alpha=FLAGS.alpha, batch_size=FLAGS.batch_size,
                                         num_images=FLAGS.num_images, split=FLAGS.split, seed=FLAGS.seed,
                                         images_per_call=FLAGS.images_per_call, output=FLAGS.output,
                                         step=FLAGS.step)
        s = result["summary"]
        acc = "  ".join(f"r={k}: {v:.3f}" for k, v in s["certified_accuracy"].items())
        print(f"certified accuracy {acc}  ACR {s['average_certified_radius']:.4f}  "
              f"({s['num_images']} images, step {result['model']['checkpoint_step']}, "
              f"{os.path.join(FLAGS.workdir, FLAGS.output)})")


if __name__ == "__main__":
    app.run(main)
