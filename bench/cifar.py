"""CIFAR shapes: spiking VGG-11 training step, PGD-10 and APGD-CE, jsnn vs SpikingJelly + torchattacks.

  python bench/cifar.py --peer_python=/work/peer/bin/python            # T=4, batch 32 (issue 16)
  python bench/cifar.py --peer_python=python3 --T=8 --batch=128 --peer_device=cuda   # bench/gpu.sh

The model is jsnn's registered ``vgg11`` (the robustness papers' VGG-11: conv 64-A-128-256-A-512-512-
512-A-512-512, BN over merged T·B, FC 8192-4096-4096-10) at 32×32×3 with CIFAR-10's normalization
inside, direct coding, LIF τ=2 (decay_input, V_th 1, hard reset 0, sigmoid(4) surrogate; the peer's
``LIFNode`` default), on synthetic data. ``--width`` scales every conv and FC width (``--width=0.0625``
is a tiny VGG-11 for CPU smoke runs). The SAME weights (jsnn's initialisation, BatchNorm statistics
and shifts
perturbed so their copy is checked and every layer spikes) are copied into SpikingJelly 2.0 (``layer.*`` multi-step
wrappers, ``LIFNode(step_mode='m')``; on CUDA ``SJ_LIF_CUDA_IMPLEMENTATION=--peer_impl`` picks its
kernel: torch, triton or auto), and the peer's eval logits are compared with jsnn's before anything
is timed (``--logit_tol``; a spike flipped by float rounding shows as a large but rare difference,
so the fraction of differing logits is printed too).

Timed, both sides on the same batch, warm-up, then the median of ``--repeats`` (compile time and the
peer's first call reported apart; torch synchronized around each call on CUDA):

* training step: forward + backward + SGD (momentum 0.9, weight decay 5e-4), BatchNorm in train mode;
  jsnn: ``jsnn.train``'s jitted step (``bench/train_step.py``'s ``bench_jsnn``);
* PGD-10, L∞ ε=8/255, α=2/255, random start: ``jsnn.attacks.pgd`` vs ``torchattacks.PGD``;
* APGD-CE, ``--apgd_steps`` iterations, 1 restart: ``jsnn.attacks.apgd`` vs ``torchattacks.APGD``
  (``--attacks`` picks which attacks run).

Every ratio is peer seconds / jsnn seconds (> 1: jsnn faster), measured in this run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap

try:
    from bench import common
    from bench.train_step import bench_jsnn
except ImportError:  # run as a script: bench/ is on sys.path
    import common
    from train_step import bench_jsnn

VGG11_STAGES = (64, "A", 128, 256, "A", 512, 512, 512, "A", 512, 512)
VGG11_HIDDEN = (4096, 4096)

PEER_CODE = common.SJ_TIMING + common.SJ_VGG + textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import torch
    path, repeats, steps, threads, device, attacks, apgd_steps = sys.argv[1:8]
    repeats, steps, apgd_steps = int(repeats), int(steps), int(apgd_steps)
    attacks = [a for a in attacks.split(",") if a]
    torch.set_num_threads(int(threads))
    import torchattacks
    d = np.load(path, allow_pickle=False)
    stages = [s if s in ("A", "M") else int(s) for s in str(d["stages"]).split(",")]
    hidden = [int(h) for h in str(d["hidden"]).split(",") if h]
    T = int(d["T"])
    net = vgg_net(stages, hidden, 3, 32, int(d["num_classes"]))
    load_vgg(net, d)
    model = Images(net, T, d["mean"].tolist(), d["std"].tolist()).to(device)
    x = torch.from_numpy(d["x"]).permute(0, 3, 1, 2).contiguous().to(device)
    y = torch.from_numpy(d["y"]).long().to(device)
    model.eval()
    with torch.no_grad():
        logits = model(x).cpu().numpy()
    diff = np.abs(logits - d["logits"])
    row = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(x.device),
           "cuda_name": torch.cuda.get_device_name(0) if x.is_cuda else None,
           "logit_max_abs_diff": float(diff.max()), "logit_frac_diff_1e-3": float((diff > 1e-3).mean()),
           "lif_impl": __import__("os").environ.get("SJ_LIF_CUDA_IMPLEMENTATION", "auto")}

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    def train_step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
    def steps_of(fn):  # `steps` calls per timing, as the jsnn side
        def run():
            for _ in range(steps):
                fn()
        return run
    first, med, mn = timed(steps_of(train_step), repeats, warmup=1)
    row.update(train_first_s=first, train_s=med / steps, train_min_s=mn / steps)

    model.eval()
    eps = 8 / 255
    made = {"pgd10": lambda: torchattacks.PGD(model, eps=eps, alpha=2 / 255, steps=10, random_start=True),
            "apgd-ce": lambda: torchattacks.APGD(model, norm="Linf", eps=eps, steps=apgd_steps, n_restarts=1,
                                                  loss="ce", seed=0)}
    for name in attacks:
        atk = made[name]()
        torch.manual_seed(0)
        first, med, mn = timed(lambda: atk(x, y), repeats, warmup=1)
        xa = atk(x, y)
        with torch.no_grad():
            acc = float((model(xa).argmax(-1) == y).float().mean())
        row.update({f"{name}_first_s": first, f"{name}_s": med, f"{name}_min_s": mn, f"{name}_acc": acc})
    print(json.dumps(row))
""")


def scaled(widths, width: float) -> tuple:
    return tuple(w if isinstance(w, str) else max(1, int(round(w * width))) for w in widths)


def make_config(T: int, batch: int, width: float = 1.0):
    """The CIFAR-10 VGG-11 config of this benchmark (LIF, direct coding, SGD momentum 0.9, wd 5e-4)."""
    from launch.configs import default

    config = default.get_config()
    config.data.name = "cifar10"
    config.data.batch_size = batch
    config.model.name = "vgg11"
    config.model.T = T
    config.model.kwargs.stages = scaled(VGG11_STAGES, width)
    config.model.kwargs.hidden = scaled(VGG11_HIDDEN, width)
    config.optim.weight_decay = 5e-4
    config.train.num_steps = 1000
    return config


def export_vgg(path, model, variables, x, y, logits):
    """Writes jsnn SpikingVGG weights in torch layouts (OIHW convs, [out, in] dense), data and logits.

    flax flattens NHWC as (h, w, c), torch NCHW as (c, h, w): the first FC's input rows are permuted.
    """
    import numpy as np

    p, s = variables["params"], variables["batch_stats"]
    convs = [w for w in model.stages if not isinstance(w, str)]
    out = {}
    for i in range(len(convs)):
        out[f"conv{i}"] = np.asarray(p[f"Conv_{i}"]["kernel"]).transpose(3, 2, 0, 1)  # HWIO -> OIHW
        bn, st = p[f"BatchNorm_{i}"], s[f"BatchNorm_{i}"]
        out.update({f"bn{i}_scale": bn["scale"], f"bn{i}_bias": bn["bias"], f"bn{i}_mean": st["mean"],
                    f"bn{i}_var": st["var"]})
    hw = x.shape[1] // 2 ** sum(1 for w in model.stages if isinstance(w, str))
    for i in range(len(model.hidden) + 1):
        k = np.asarray(p[f"Dense_{i}"]["kernel"])
        if i == 0:
            k = k.reshape(hw, hw, convs[-1], -1).transpose(2, 0, 1, 3).reshape(k.shape[0], -1)
        out[f"fc{i}"], out[f"fc{i}_bias"] = k.T, p[f"Dense_{i}"]["bias"]
    out = {k: np.asarray(v, np.float32) for k, v in out.items()}
    out.update(x=np.asarray(x, np.float32), y=np.asarray(y, np.int64), logits=np.asarray(logits, np.float32),
               T=np.asarray(model.T), num_classes=np.asarray(model.num_classes),
               mean=np.asarray(model.mean, np.float32), std=np.asarray(model.std, np.float32),
               stages=np.asarray(",".join(map(str, model.stages))), hidden=np.asarray(",".join(map(str, model.hidden))))
    np.savez(path, **out)


def perturb_batch_norm(variables, key):
    """Random BatchNorm statistics (mean ~ N(0, 0.1²), var ~ U(0.5, 1.5)), shifts β ~ U(0, 3), hidden FC biases ~ U(0, 4).

    So that the copy of every BatchNorm field is checked, and the untrained net spikes in every
    layer (with jsnn's init, β=0 and zero biases, an untrained VGG's deep layers hardly fire: the
    logits would be constant and the check empty).
    """
    import jax

    params, stats = dict(variables["params"]), {}
    for i, name in enumerate(sorted(variables["batch_stats"])):
        k1, k2, k3 = jax.random.split(jax.random.fold_in(key, i), 3)
        st = variables["batch_stats"][name]
        stats[name] = {"mean": 0.1 * jax.random.normal(k1, st["mean"].shape),
                       "var": jax.random.uniform(k2, st["var"].shape, minval=0.5, maxval=1.5)}
        params[name] = dict(params[name], bias=jax.random.uniform(k3, params[name]["bias"].shape, maxval=3.0))
    hidden = sorted(n for n in params if n.startswith("Dense_"))[:-1]
    for i, name in enumerate(hidden):
        k = jax.random.fold_in(key, 1000 + i)
        params[name] = dict(params[name], bias=jax.random.uniform(k, params[name]["bias"].shape, maxval=4.0))
    return dict(variables, params=params, batch_stats=stats)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer_python", default=None, help="python with torch, spikingjelly 2.0, torchattacks")
    p.add_argument("--peer_device", default="cpu", help="torch device of the peer: cpu or cuda")
    p.add_argument("--peer_impl", default="auto", help="SJ_LIF_CUDA_IMPLEMENTATION on CUDA: auto|cuda|triton|torch")
    p.add_argument("--peer_threads", type=int, default=os.cpu_count())
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=float, default=1.0, help="scale of every conv/FC width (1 = VGG-11)")
    p.add_argument("--steps", type=int, default=5, help="training steps per timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--attacks", default="pgd10,apgd-ce", help="subset of pgd10,apgd-ce (empty: none)")
    p.add_argument("--apgd_steps", type=int, default=100)
    p.add_argument("--logit_tol", type=float, default=1e-4, help="max |Δ logit| allowed before timing")
    args = p.parse_args(argv)
    print("command:", " ".join(["python", "bench/cifar.py"] + (sys.argv[1:] if argv is None else argv)), flush=True)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jsnn import models
    from jsnn.attacks.apgd import apgd
    from jsnn.attacks.pgd import pgd

    attacks = [a for a in args.attacks.split(",") if a]
    for a in attacks:
        if a not in ("pgd10", "apgd-ce"):
            raise ValueError(f"--attacks: unknown attack {a!r}; allowed: pgd10, apgd-ce")
    dev = jax.devices()[0]
    config = make_config(args.T, args.batch, args.width)
    model = models.from_config(config)
    print(f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}); VGG-11 x{args.width} "
          f"{model.stages} FC {model.hidden}, T={args.T}, batch {args.batch}, 32x32x3 synthetic", flush=True)

    # ---- jsnn training step (also gives the initialised weights)
    train_s, train_compile_s, state = bench_jsnn(config, args.steps, args.repeats)
    res = {"train": (train_s, train_compile_s)}
    print(f"  jsnn train step: {1e3 * train_s:9.2f} ms  (first step incl. compile {train_compile_s:.2f} s)", flush=True)

    # ---- same weights for both: a fresh init (the timed training moved its copy), perturbed BN stats
    from jsnn import train

    fresh = train.init_state(config, model, train.make_optimizer(config.optim, 1000), jax.random.key(0))
    variables = perturb_batch_norm({"params": fresh.params, **fresh.model_state}, jax.random.key(7))
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.random((args.batch, 32, 32, 3), np.float32))
    y = jnp.asarray(rng.integers(0, 10, args.batch).astype(np.int32))
    fn = models.logits_fn(model, variables)
    key = jax.random.key(0)
    logits = jax.jit(fn)(x, key)
    print(f"  same-weights model: logits std {float(logits.std()):.3f}, clean acc vs random labels "
          f"{float(jnp.mean(jnp.argmax(logits, -1) == y)):.3f}", flush=True)

    eps = 8 / 255
    made = {"pgd10": lambda xx, yy: pgd(fn, xx, yy, key, eps=eps, steps=10, step_size=2 / 255, random_start=True),
            "apgd-ce": lambda xx, yy: apgd(fn, xx, yy, key, eps=eps, steps=args.apgd_steps, loss="ce")}
    for name in attacks:
        first, med, _ = common.timed(lambda: made[name](x, y), args.repeats)
        acc = float(jnp.mean(jnp.argmax(jax.jit(fn)(made[name](x, y), key), -1) == y))
        res[name] = (med, first)
        print(f"  jsnn {name:8s}: {1e3 * med:9.2f} ms  (first call incl. compile {first:.2f} s), "
              f"robust acc {acc:.3f} (untrained model)", flush=True)

    if not args.peer_python:
        print("peer not run (pass --peer_python=/path/to/python with torch, spikingjelly 2.0, torchattacks)")
        return res
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vgg.npz")
        export_vgg(path, model, variables, x, y, logits)
        peer = common.run_peer(args.peer_python, PEER_CODE,
                               [path, args.repeats, args.steps, args.peer_threads, args.peer_device,
                                ",".join(attacks), args.apgd_steps],
                               env={"SJ_LIF_CUDA_IMPLEMENTATION": args.peer_impl})[-1]
    print(f"peer: SpikingJelly 2.0 + torchattacks, torch {peer['torch']} on {peer['device']} "
          f"({peer['cuda_name'] or str(peer['threads']) + ' threads'}), LIF implementation {peer['lif_impl']}")
    print(f"  peer check: eval logits max |Δ| vs jsnn {peer['logit_max_abs_diff']:.2e} "
          f"({100 * peer['logit_frac_diff_1e-3']:.2f}% of logits differ by > 1e-3)")
    if peer["logit_max_abs_diff"] > args.logit_tol:
        print(f"  WARNING: logits differ by more than --logit_tol={args.logit_tol:g} (spikes flipped by float "
              f"rounding, or a port error if most logits differ)")
    rows = [["train step", common.fmt_ms(train_s), common.fmt_ms(peer["train_s"]),
             f"{peer['train_s'] / train_s:.2f}x", f"{train_compile_s:.1f}", f"{peer['train_first_s'] / args.steps:.2f}"]]
    for name in attacks:
        med, first = res[name]
        rows.append([name, common.fmt_ms(med), common.fmt_ms(peer[f"{name}_s"]), f"{peer[f'{name}_s'] / med:.2f}x",
                     f"{first:.1f}", f"{peer[f'{name}_first_s']:.2f}"])
    print("\nmilliseconds per call (median of {}); ratio = peer / jsnn (> 1: jsnn faster)".format(args.repeats))
    print(common.table(["what", "jsnn ms", "peer ms", "ratio", "jsnn first s", "peer first s"], rows))
    res["peer"] = peer
    return res


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
