"""Training steps per second of the default digits SNN: jsnn vs the same model in SpikingJelly.

  python bench/train_step.py [--peer_python=/work/peer_venv/bin/python] [--steps=50] [--batch=64]

The model is launch/configs/default.py's DigitsConv (conv32-BN-LIF, conv64-BN-LIF, avgpool2,
fc128-BN-LIF, fc10; T=4, direct coding, LIF τ=2 decay_input, hard reset 0, sigmoid(4) surrogate,
time-averaged logits, BatchNorm over merged T·B) trained with SGD momentum 0.9 + coupled L2.
jsnn: one jitted step (compile time reported apart). Peer: SpikingJelly 2.0 multi-step LIFNode
(its CPU path; 2.0 has no ``backend=`` argument) + torch.optim.SGD, run in its own virtualenv in a subprocess. Both: warm-up, then
the median of ``--repeats`` timings of ``--steps`` steps on the same random batch, 2 threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import textwrap
import time

try:
    from bench import common
except ImportError:  # run as a script: bench/ is on sys.path
    import common

PEER_CODE = common.SJ_DIGITS_CONV + textwrap.dedent(r"""
    import json, statistics, sys, time
    import torch, torch.nn as nn
    from spikingjelly.activation_based import neuron, surrogate, functional, layer
    torch.set_num_threads(2)
    T, B, steps, repeats = (int(a) for a in sys.argv[1:5])
    net = digits_conv_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(B, 1, 8, 8); y = torch.randint(0, 10, (B,))
    def step():
        functional.reset_net(net)
        out = net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)
        loss = nn.functional.cross_entropy(out, y)
        opt.zero_grad(); loss.backward(); opt.step()
    for _ in range(5): step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps): step()
        times.append((time.perf_counter() - t0) / steps)
    print(json.dumps({"sec_per_step": statistics.median(times), "torch": torch.__version__}))
""")


def bench_jsnn(config, steps: int, repeats: int, seed: int = 0):
    """(median seconds per step, first-step seconds incl. compilation, state) of ``config``'s jitted step.

    ``jsnn.train``'s own step (the configured loss is the vanilla cross-entropy, its optimizer) on one
    synthetic batch of the dataset's shape, on device before the clock starts (as the peer's tensors).
    """
    import jax
    import numpy as np

    from jsnn import losses, models, train

    model = models.from_config(config)
    info = models.dataset_info(config)
    batch = config.data.batch_size
    optimizer = train.make_optimizer(config.optim, 1000)
    state = train.init_state(config, model, optimizer, jax.random.key(seed))
    step = train.make_train_step(losses.cross_entropy_loss_fn(model), optimizer)
    rng = np.random.default_rng(0)
    batch_ = jax.device_put({"image": rng.random((batch,) + tuple(info.image_shape), np.float32),
                             "label": rng.integers(0, info.num_classes, batch).astype(np.int32)})
    keys = [jax.random.key(i) for i in range(max(steps, 5))]
    t0 = time.perf_counter()
    state, m = step(state, batch_, jax.random.key(1))
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    for i in range(5):
        state, m = step(state, batch_, keys[i])
    jax.block_until_ready(m)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            state, m = step(state, batch_, keys[i])
        jax.block_until_ready(state.params)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times), compile_s, state


def digits_config(T: int, batch: int):
    from launch.configs import default

    config = default.get_config()
    config.model.T = T
    config.data.batch_size = batch
    config.train.num_steps = 1000
    return config


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer_python", default=None, help="python of a venv with torch + spikingjelly")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    sec, compile_s, _ = bench_jsnn(digits_config(args.T, args.batch), args.steps, args.repeats)
    import jax

    print(f"jsnn  ({jax.devices()[0].platform}): {1 / sec:8.1f} steps/s  ({args.batch / sec:8.0f} img/s), "
          f"compile {compile_s:.2f}s  [T={args.T}, B={args.batch}]")
    if args.peer_python:
        peer = common.run_peer(args.peer_python, PEER_CODE, [args.T, args.batch, args.steps, args.repeats])[-1]
        print(f"SpikingJelly (torch {peer['torch']}, CPU, 2 threads): {1 / peer['sec_per_step']:8.1f} steps/s")
        print(f"ratio jsnn / SpikingJelly: {peer['sec_per_step'] / sec:.2f}x")
    else:
        print("peer not run (pass --peer_python=/path/to/venv/bin/python with torch + spikingjelly)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
