"""Turns a NIR graph into a jsnn run directory that launch.evaluate and launch.certify take as is.

  python -m launch.import_nir --nir=model.nir --workdir=/tmp/jsnn/imported \
      [--config.data.name=digits --config.model.T=4 --config.model.encoder.name=direct] [--dt=1e-4]
  python -m launch.evaluate --workdir=/tmp/jsnn/imported --num_examples=100
  python -m launch.certify --workdir=/tmp/jsnn/imported --sigma=0.25 --num_images=20 --n=1000

The dataset (``config.data.name``) gives the input shape, the classes and the normalization;
``config.model.T`` the time steps and ``config.model.encoder`` the input coding (NIR has none);
``--dt`` the graph's time step (default: its ``metadata["dt"]``, which jsnn's export writes;
snnTorch's export uses 1e-4 without recording it). See docs/nir.md.

Export (the reverse): ``python -m launch.import_nir --export --workdir=RUN --nir=model.nir [--dt=1.0]``.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from launch import common

if __name__ == "__main__":  # before the config flag parses argv (a bad file or field would raise a traceback)
    if not any(a == "--config" or a.startswith("--config=") for a in sys.argv[1:]):
        sys.argv.insert(1, "--config=launch/configs/default.py")
    common.check_config_argv(sys.argv)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "launch/configs/default.py", "Base config (data, model.T, encoder, "
                                "estimator fields); the model itself comes from the graph.", lock_config=True)
flags.DEFINE_string("nir", None, "The .nir file to import (or, with --export, to write).")
flags.DEFINE_string("workdir", None, "Run directory to create (or, with --export, the trained run to export).")
flags.DEFINE_float("dt", None, "Time step of one jsnn step in the graph's units (default: the graph's "
                   "metadata['dt']; export default 1.0).")
flags.DEFINE_bool("export", False, "Export the run in --workdir to --nir instead of importing.")
flags.DEFINE_integer("step", None, "With --export: the checkpoint step (default: the newest).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jsnn.interop import nir_workdir

    with common.clean_errors():
        if not FLAGS.nir or not FLAGS.workdir:
            raise ValueError("--nir and --workdir are required")
        if FLAGS.export:
            out = nir_workdir.export_workdir(FLAGS.workdir, FLAGS.nir, dt=1.0 if FLAGS.dt is None else FLAGS.dt,
                                             step=FLAGS.step)
            print(f"wrote {out['path']}: {len(out['nodes'])} nodes ({', '.join(out['nodes'].values())}); "
                  f"checkpoint step {out['checkpoint_step']}, fingerprint {out['fingerprint']}")
            return
        results = nir_workdir.import_to_workdir(FLAGS.nir, FLAGS.workdir, FLAGS.config, dt=FLAGS.dt)
        print(f"clean_accuracy {results['clean_accuracy']:.4f} on {results['test_examples']} test images; "
              f"fingerprint {results['fingerprint']}  ({FLAGS.workdir}/results.json)")


if __name__ == "__main__":
    app.run(main)
