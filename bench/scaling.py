"""Data-parallel scaling of training steps/s over 1, 2, 4, 8 devices (jsnn.parallel's Mesh).

  python bench/scaling.py                                   # default digits model, 1/2/4/8 forced CPU devices
  python bench/scaling.py --config=cifar10_vgg11 --devices=all --batch=128   # a GPU/TPU host: its real devices

Each device count runs in its own subprocess (JAX fixes the device count at start-up); on CPU the
devices are forced with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` and all share the
same cores, so the table shows the mechanism (the sharded program, its collectives and their
overhead), not a speed-up. The step is ``jsnn.train``'s own: the configured loss and optimizer,
state replicated and the global batch split with ``NamedSharding(mesh, P('data'))``. Strong
scaling: the global batch (``--batch``, default the config's) is fixed and must divide by every
device count. Synthetic images of the dataset's shape are used (no data files needed; input
pipeline excluded). Compile time is reported apart; then warm-up steps and the median of
``--repeats`` timings of ``--steps`` steps, each ended by ``block_until_ready``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(config_name: str, batch: int, steps: int, repeats: int, warmup: int) -> dict:
    import importlib

    import jax
    import numpy as np

    from jsnn import defenses, losses, models, parallel, train

    config = importlib.import_module(f"launch.configs.{config_name}").get_config()
    if batch:
        config.data.batch_size = batch
    config.train.num_steps = 10_000
    info = models.dataset_info(config)
    model = models.from_config(config)
    setup = defenses.from_config(config, model)
    optimizer = train.make_optimizer(config.optim, config.train.num_steps, setup.param_transform)
    loss_fn = setup.loss_transform(losses.cross_entropy_loss_fn(model))
    mesh = parallel.data_mesh()
    parallel.check_divisible(config.data.batch_size, mesh)
    step = train.make_train_step(loss_fn, optimizer, mesh)
    state = parallel.replicate(train.init_state(config, model, optimizer, jax.random.key(0)), mesh)
    rng = np.random.default_rng(0)
    b = config.data.batch_size
    host_batch = {"image": rng.random((b,) + tuple(info.image_shape), np.float32),
                  "label": rng.integers(0, info.num_classes, b).astype(np.int32)}
    batch_ = parallel.shard_batch(host_batch, mesh)
    keys = [jax.random.fold_in(jax.random.key(1), i) for i in range(max(steps, warmup))]

    t0 = time.perf_counter()
    compiled = step.lower(state, batch_, keys[0]).compile()
    compile_s = time.perf_counter() - t0
    for i in range(warmup):
        state, metrics = compiled(state, batch_, keys[i])
    jax.block_until_ready((state, metrics))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            state, metrics = compiled(state, batch_, keys[i])
        jax.block_until_ready((state, metrics))
        times.append((time.perf_counter() - t0) / steps)
    dev = jax.devices()[0]
    return {"devices": jax.device_count(), "platform": dev.platform, "device_kind": dev.device_kind,
            "batch": b, "sec_per_step": statistics.median(times), "min_sec_per_step": min(times),
            "compile_s": compile_s, "loss": float(metrics["loss"]), "model": config.model.name,
            "T": config.model.T, "image_shape": list(info.image_shape)}


def run_child(devices, args) -> dict:
    env = dict(os.environ)
    if devices != "all":
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
        env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, os.path.abspath(__file__), "--child", f"--config={args.config}", f"--batch={args.batch}",
           f"--steps={args.steps}", f"--repeats={args.repeats}", f"--warmup={args.warmup}"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{devices} devices failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="default", help="launch/configs/<name>.py (default: digits DigitsConv)")
    p.add_argument("--devices", default="1,2,4,8", help="forced CPU device counts, or 'all' (the real devices)")
    p.add_argument("--batch", type=int, default=0, help="global batch (0: the config's)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.config, args.batch, args.steps, args.repeats, args.warmup)))
        return
    print("command:", " ".join(["python"] + sys.argv))
    counts = ["all"] if args.devices == "all" else [int(n) for n in args.devices.split(",")]
    rows = [run_child(n, args) for n in counts]
    r0 = rows[0]
    print(f"model {r0['model']} T={r0['T']} input {tuple(r0['image_shape'])}, global batch {r0['batch']}, "
          f"{r0['platform']} ({r0['device_kind']}), {os.cpu_count()} host cores")
    print(f"{'devices':>7} {'steps/s':>9} {'img/s':>9} {'vs 1st':>7} {'compile s':>9} {'final loss':>10}")
    for r in rows:
        sps = 1 / r["sec_per_step"]
        print(f"{r['devices']:>7} {sps:9.1f} {sps * r['batch']:9.0f} {rows[0]['sec_per_step'] / r['sec_per_step']:6.2f}x"
              f" {r['compile_s']:9.2f} {r['loss']:10.4f}")


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    main()
