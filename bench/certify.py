"""Benchmark of randomized-smoothing certification on the default digits model.

  python bench/certify.py                      # freshly initialised default model
  python bench/certify.py --workdir=/tmp/jsnn/default --n=100000 --batch_size=1000

Reports, on the current JAX device (warm-up first, compile time apart, median of --repeats):
* forward passes per second of the certification sampler (noisy copies → argmax counts),
  next to a plain jitted batched forward of the same model on the same batch size
  (the sampler's per-sample keys and vmap cost the difference);
* seconds to certify one image with n0=100 and ``--n`` estimation samples (Cohen et al. use
  n = 100,000), with and without compilation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def load_model(workdir):
    """``(model, variables, what)``: the trained run in ``workdir`` or a fresh default model."""
    from jsnn import checkpoint, models
    from launch.configs import default

    if workdir:
        _, model, variables, *_ = checkpoint.load_run(workdir)
        return model, variables, f"trained ({workdir})"
    config = default.get_config()
    model = models.from_config(config)
    info_shape = (1, 8, 8, model.input_channels or 1)
    variables = model.init(jax.random.key(0), jnp.zeros(info_shape))
    return model, variables, "freshly initialised (untrained weights; speed does not depend on training)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None, help="trained run to load (default: fresh default model)")
    p.add_argument("--n", type=int, default=100_000, help="estimation samples for the one-image timing")
    p.add_argument("--n_rate", type=int, default=20_000, help="samples for the forwards/s measurement")
    p.add_argument("--batch_size", type=int, default=1000, help="forward passes per chunk")
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    from jsnn import certify, models

    print("command:", " ".join([sys.executable, "bench/certify.py"] + (sys.argv[1:] if argv is None else argv)))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    model, variables, what = load_model(args.workdir)
    print(f"model: {type(model).__name__} T={model.T} encoder={model.encoder.name}, {what}")
    fn = models.logits_fn(model, variables)
    x = jnp.full((8, 8, model.input_channels or 1), 0.5, jnp.float32)
    key = jax.random.key(0)
    bs = args.batch_size

    # Plain batched forward of the same model (the ceiling for the sampler).
    xb = jnp.broadcast_to(x, (bs,) + x.shape)
    plain = jax.jit(lambda xb, k: jnp.argmax(fn(xb, k), -1))
    t = time.perf_counter()
    jax.block_until_ready(plain(xb, key))
    plain_compile = time.perf_counter() - t

    # Certification sampler: counts over n_rate noisy samples of one image.
    def sample():
        return certify.sample_counts(fn, x, key, num=args.n_rate, sigma=args.sigma, batch_size=bs)

    t = time.perf_counter()
    jax.block_until_ready(sample())
    first = time.perf_counter() - t
    # Interleaved, so that load from other processes hits both alike.
    plain_t, sample_t = [], []
    for _ in range(args.repeats):
        plain_t.append(_median_time(lambda: plain(xb, key), 1))
        sample_t.append(_median_time(sample, 1))
    plain_rate = bs / statistics.median(plain_t)
    rate = args.n_rate / statistics.median(sample_t)

    # One image, Cohen's CERTIFY with n0 = 100 and n = args.n.
    def one():
        return certify.certify(fn, x, key, sigma=args.sigma, n0=100, n=args.n, batch_size=bs)

    t = time.perf_counter()
    pred, radius = one()
    cold = time.perf_counter() - t
    t = time.perf_counter()
    one()
    warm = time.perf_counter() - t

    print(f"plain batched forward   : {plain_rate:10.0f} forwards/s (batch {bs}, median of {args.repeats}; "
          f"compile {plain_compile:.1f}s)")
    print(f"certification sampler   : {rate:10.0f} forwards/s (n={args.n_rate}, chunks of {bs}, median of "
          f"{args.repeats}; first call incl. compile {first:.1f}s)  ratio to plain {rate / plain_rate:.2f}")
    print(f"certify one image n0=100 n={args.n}: {warm:.1f}s warm, {cold:.1f}s with compilation "
          f"(prediction {pred}, radius {radius:.3f})")
    return dict(plain_rate=plain_rate, rate=rate, warm=warm, cold=cold)


if __name__ == "__main__":
    main()
