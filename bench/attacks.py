"""Attack throughput on the default digits SNN: jsnn vs SpikingJelly + torchattacks.

  python bench/attacks.py [--peer_python=/work/peer/bin/python] [--workdir=/tmp/jsnn_bench_attacks]
                          [--batch=128] [--repeats=5] [--eps=0.1] [--aa_images=360]
                          [--components=apgd-ce,apgd-t,fab-t,square] [--component_images=128]
                          [--ensembles=sr,strong] [--ensemble_images=128]

The model is launch/configs/default.py's DigitsConv (conv32-BN-LIF, conv64-BN-LIF, avgpool2,
fc128-BN-LIF, fc10; T=4, direct coding, LIF τ=2 decay_input, hard reset 0, sigmoid(4) surrogate,
time-averaged logits), trained here with ``jsnn.train.train_and_evaluate`` (resumed if
``--workdir`` already holds the run). Its trained weights are copied into the same architecture
in SpikingJelly 2.0 (multi-step LIFNode, torch backend), run by ``--peer_python`` in a
subprocess; the peer's clean logits are checked against jsnn's before anything is timed.

Timed (images/s = batch / median seconds of ``--repeats`` calls after a warm-up; the first
call, i.e. compilation + one run, is reported apart):

* PGD-10, L∞ ε = ``--eps``, α = ε/4, random start: ``jsnn.attacks.pgd`` (keeps each example's
  best iterate: one extra forward) vs ``torchattacks.PGD`` (returns the last iterate);
* APGD-CE, 100 iterations (jsnn only);
* AutoAttack's components at fra31's "standard" settings (APGD-CE 100 it., APGD-T 100 it. × 9 targets,
  FAB-T 100 it. × 9 targets, Square 5,000 queries; 1 restart each) on ``--component_images`` test images,
  one warm call each, vs ``torchattacks.APGD / APGDT / FAB(multi_targeted) / Square`` on the same model;
* AutoAttack "rand" (APGD-CE + APGD-DLR, 100 iterations, EOT 20, judged on 10 draws) over the
  digits test split (360 images), wall time including compilation. The default model is
  deterministic: its forward ignores the key, so ``vmap`` over the 20 EOT keys does not batch
  it and EOT 20 costs about as much as EOT 1 here;
* hence also APGD-CE-100 with EOT 20 on the same weights with RSC coding (σ = 0.05, a genuinely
  stochastic forward), on ``--stochastic_images`` images, and the AutoAttack-rand time of the
  full split on such a model extrapolated from it (printed as an extrapolation).

* the estimator ensembles of ``--ensembles`` (``jsnn.attacks.ensemble`` with PGD-10, presets of
  ``jsnn.attacks.gradients``: ``sr`` = 4 members, ``strong`` = the 19 TMLR variants + SR + RGA + HART
  + registered ones) on ``--ensemble_images`` images: images·estimators/s = images × members /
  median seconds, beside PGD-10's images/s above (one member): the ratio is what stacking the
  members into one vmapped program buys over running them one after another (1.0 = no gain).

Robust accuracies of both PGD-10 runs on the whole test split are printed as a cross-check.
``--aa_images=0`` skips AutoAttack-rand.
The machine may be shared: timings are noisy, repeat the run before quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

try:
    from bench import common
except ImportError:  # run as a script: bench/ is on sys.path
    import common

PEER_CODE = common.SJ_DIGITS_CONV + common.SJ_TIMING + textwrap.dedent(r"""
    import importlib.util, json, os, statistics, sys, time, types
    import numpy as np
    import torch, torch.nn as nn
    from spikingjelly.activation_based import functional, layer, neuron, surrogate
    torch.set_num_threads(int(sys.argv[5]))
    path, B, repeats, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    note = ""
    try:
        from torchattacks import PGD
    except ModuleNotFoundError as e:  # torchattacks' __init__ imports scipy for attacks we do not use
        root = os.path.dirname(importlib.util.find_spec("torchattacks").origin)
        for name, sub in (("torchattacks", root), ("torchattacks.attacks", os.path.join(root, "attacks"))):
            mod = types.ModuleType(name); mod.__path__ = [sub]; sys.modules[name] = mod
        from torchattacks.attacks.pgd import PGD
        from torchattacks.attacks.apgd import APGD
        from torchattacks.attacks.apgdt import APGDT
        from torchattacks.attacks.fab import FAB
        from torchattacks.attacks.square import Square
        torchattacks = types.SimpleNamespace(APGD=APGD, APGDT=APGDT, FAB=FAB, Square=Square, __version__="3.5.1?")
        note = f"torchattacks package __init__ failed ({e}); loaded torchattacks/attacks/*.py directly"
    else:
        import torchattacks
    d = np.load(path)
    T = int(d["T"])
    net = digits_conv_net()
    t = lambda k: torch.from_numpy(np.ascontiguousarray(d[k]))
    with torch.no_grad():
        net[0].weight.copy_(t("conv0")); net[3].weight.copy_(t("conv1"))
        for i, bn in enumerate((net[1], net[4], net[9])):
            bn.weight.copy_(t(f"bn{i}_scale")); bn.bias.copy_(t(f"bn{i}_bias"))
            bn.running_mean.copy_(t(f"bn{i}_mean")); bn.running_var.copy_(t(f"bn{i}_var"))
        net[8].weight.copy_(t("fc0")); net[11].weight.copy_(t("fc1")); net[11].bias.copy_(t("fc1_bias"))

    class Model(nn.Module):  # images [B, 1, 8, 8] in [0, 1] -> time-averaged logits
        def __init__(self):
            super().__init__(); self.net = net
        def forward(self, x):
            functional.reset_net(self.net)
            x = (x - float(d["mean"])) / float(d["std"])
            return self.net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)

    model = Model().eval()
    x = torch.from_numpy(d["x"]).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(d["y"]).long()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + B]) for i in range(0, len(x), B)]).numpy()
    eps = float(d["eps"])
    atk = PGD(model, eps=eps, alpha=eps / 4, steps=steps, random_start=True)
    torch.manual_seed(0)
    xb, yb = x[:B], y[:B]
    t0 = time.perf_counter(); atk(xb, yb); first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); atk(xb, yb); times.append(time.perf_counter() - t0)
    correct = 0
    for i in range(0, len(x), B):
        xa = atk(x[i:i + B], y[i:i + B])
        with torch.no_grad():
            correct += int((model(xa).argmax(-1) == y[i:i + B]).sum())
    # AutoAttack's components at fra31 settings (100 iterations, 9 target classes, Square's queries)
    comps = [c for c in sys.argv[6].split(",") if c]
    n_aa, c_steps, queries = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
    made = {"apgd-ce": lambda: torchattacks.APGD(model, norm="Linf", eps=eps, steps=c_steps, n_restarts=1, loss="ce", seed=0),
            "apgd-t": lambda: torchattacks.APGDT(model, norm="Linf", eps=eps, steps=c_steps, n_restarts=1, seed=0, n_classes=10),
            "fab-t": lambda: torchattacks.FAB(model, norm="Linf", eps=eps, steps=c_steps, n_restarts=1, multi_targeted=True,
                                              n_classes=10, seed=0),
            "square": lambda: torchattacks.Square(model, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=0)}
    xc, yc = x[:n_aa], y[:n_aa]
    components = {}
    for c in comps:
        atk = made[c]()
        first, med, _ = timed(lambda: atk(xc, yc), 1, warmup=0)
        xa = atk(xc, yc)
        with torch.no_grad():
            components[c] = {"first_s": first, "s": med, "acc": float((model(xa).argmax(-1) == yc).float().mean())}
    print(json.dumps({
        "components": components,
        "torch": torch.__version__, "torchattacks": torchattacks.__version__ if hasattr(torchattacks, "__version__") else "3.5.1?",
        "threads": torch.get_num_threads(), "note": note,
        "logit_max_abs_diff": float(np.abs(logits - d["logits"]).max()),
        "clean_accuracy": float((logits.argmax(-1) == d["y"]).mean()),
        "pgd_sec": statistics.median(times), "pgd_min_sec": min(times), "pgd_first_sec": first,
        "pgd_robust_accuracy": correct / len(x)}))
""")


def export_for_peer(path, variables, model, x, y, logits, eps):
    """Writes the trained weights (torch layouts), the test split and jsnn's clean logits."""
    import numpy as np

    p = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in variables["params"].items()}
    s = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in variables["batch_stats"].items()}
    out = {
        "conv0": p["Conv_0"]["kernel"].transpose(3, 2, 0, 1),  # HWIO -> OIHW
        "conv1": p["Conv_1"]["kernel"].transpose(3, 2, 0, 1),
        # flax flattens NHWC [4, 4, 64] as (h, w, c); torch flattens NCHW as (c, h, w)
        "fc0": p["Dense_0"]["kernel"].reshape(4, 4, 64, 128).transpose(3, 2, 0, 1).reshape(128, 1024),
        "fc1": p["Dense_1"]["kernel"].T, "fc1_bias": p["Dense_1"]["bias"],
        "x": np.asarray(x), "y": np.asarray(y).astype(np.int64), "logits": np.asarray(logits),
        "T": model.T, "mean": model.mean[0], "std": model.std[0], "eps": eps,
    }
    for i in range(3):
        out.update({f"bn{i}_scale": p[f"BatchNorm_{i}"]["scale"], f"bn{i}_bias": p[f"BatchNorm_{i}"]["bias"],
                    f"bn{i}_mean": s[f"BatchNorm_{i}"]["mean"], f"bn{i}_var": s[f"BatchNorm_{i}"]["var"]})
    np.savez(path, **{k: np.asarray(v, np.float32) if k not in ("y", "T") else np.asarray(v) for k, v in out.items()})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer_python", default=None, help="python of a venv with torch, spikingjelly, torchattacks")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "jsnn_bench_attacks"))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--aa_images", type=int, default=360, help="AutoAttack-rand on this many test images "
                   "(< 360: the full-split time is extrapolated, and printed as such)")
    p.add_argument("--stochastic_images", type=int, default=32,
                   help="images for the EOT-20 timing on the RSC-coded model (0: skip)")
    p.add_argument("--peer_threads", type=int, default=os.cpu_count())
    p.add_argument("--components", default="apgd-ce,apgd-t,fab-t,square",
                   help="AutoAttack components timed against torchattacks' (empty: none)")
    p.add_argument("--component_images", type=int, default=128, help="test images for the component timings")
    p.add_argument("--component_steps", type=int, default=100, help="APGD / FAB iterations (fra31: 100)")
    p.add_argument("--square_queries", type=int, default=5000, help="Square's queries (fra31: 5000)")
    p.add_argument("--ensembles", default="sr,strong", help="estimator presets timed as PGD-10 ensembles (empty: none)")
    p.add_argument("--ensemble_images", type=int, default=128, help="test images of the ensemble timings")
    args = p.parse_args()
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))

    import jax
    import jax.numpy as jnp
    import numpy as np
    from absl import logging

    from jsnn import checkpoint, models, train
    from jsnn.attacks.apgd import apgd, apgd_targeted
    from jsnn.attacks.fab import fab_t
    from jsnn.attacks.square import square
    from jsnn.attacks.autoattack import autoattack, summary
    from jsnn.attacks.pgd import pgd
    from jsnn.data import digits
    from launch.configs import default

    logging.set_verbosity(logging.WARNING)
    dev = jax.devices()[0]
    print(f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}), {os.cpu_count()} CPU cores")

    # ---- model: train (or resume) the default digits run
    t0 = time.perf_counter()
    config = default.get_config()
    results = train.train_and_evaluate(config, args.workdir)
    _, model, variables, *_ = checkpoint.load_run(args.workdir)
    print(f"model: default digits DigitsConv, clean test accuracy {results['clean_accuracy']:.4f} "
          f"({time.perf_counter() - t0:.0f}s incl. training, workdir {args.workdir})")
    fn = models.logits_fn(model, variables)
    x_all, y_all = (jnp.asarray(a) for a in digits.load("test"))
    key = jax.random.key(0)
    logits = jax.jit(fn)(x_all, key)
    B = min(args.batch, x_all.shape[0])
    xb, yb = x_all[:B], y_all[:B]
    eps = args.eps

    # ---- jsnn PGD-10 and APGD-100
    pgd10 = lambda xx, yy: pgd(fn, xx, yy, key, eps=eps, steps=10, step_size=eps / 4, random_start=True)
    first, med, mn = common.timed(lambda: pgd10(xb, yb), args.repeats)
    rows = {"pgd": (first, med, mn)}
    first_a, med_a, mn_a = common.timed(lambda: apgd(fn, xb, yb, key, eps=eps, steps=100, loss="ce"),
                                 max(1, args.repeats // 2))
    rows["apgd"] = (first_a, med_a, mn_a)
    robust = []
    for i in range(0, x_all.shape[0], B):
        xs, ys = x_all[i:i + B], y_all[i:i + B]
        if xs.shape[0] < B:  # pad to the compiled shape
            pad = np.resize(np.arange(xs.shape[0]), B)
            xa = pgd10(xs[pad], ys[pad])[:xs.shape[0]]
        else:
            xa = pgd10(xs, ys)
        robust.append(np.asarray(jnp.argmax(jax.jit(fn)(xa, key), -1) == ys))
    pgd_acc = float(np.concatenate(robust).mean())

    print(f"\nL∞ ε={eps}, batch {B}, median of {args.repeats} (APGD: {max(1, args.repeats // 2)}); "
          f"first call = compile + 1 run")
    print(f"  jsnn PGD-10   : {B / med:9.1f} images/s  (median {med * 1e3:8.1f} ms, min {mn * 1e3:8.1f} ms, "
          f"first {first:6.2f} s)  robust acc {pgd_acc:.4f}")
    print(f"  jsnn APGD-100 : {B / med_a:9.1f} images/s  (median {med_a * 1e3:8.1f} ms, first {first_a:6.2f} s)")

    # ---- AutoAttack's components at fra31 settings (one call each: first = compile + run, then one warm run)
    comps = [c for c in args.components.split(",") if c]
    made = {"apgd-ce": lambda xx, yy: apgd(fn, xx, yy, key, eps=eps, steps=args.component_steps, loss="ce"),
            "apgd-t": lambda xx, yy: apgd_targeted(fn, xx, yy, key, eps=eps, steps=args.component_steps, num_targets=9),
            "fab-t": lambda xx, yy: fab_t(fn, xx, yy, key, eps=eps, steps=args.component_steps, num_targets=9),
            "square": lambda xx, yy: square(fn, xx, yy, key, eps=eps, queries=args.square_queries)}
    for c in comps:
        if c not in made:
            raise ValueError(f"--components: unknown component {c!r}; allowed: {', '.join(made)}")
    nc = min(args.component_images, x_all.shape[0])
    xc, yc = x_all[:nc], y_all[:nc]
    components = {}
    for c in comps:
        first_c, med_c, _ = common.timed(lambda: made[c](xc, yc), 1, warmup=0)
        acc_c = float(jnp.mean(jnp.argmax(jax.jit(fn)(made[c](xc, yc), key), -1) == yc))
        components[c] = {"first_s": first_c, "s": med_c, "acc": acc_c}

    # ---- estimator ensembles: members stacked into one vmapped PGD-10 program
    from jsnn.attacks import ensemble, gradients
    from jsnn.evaluate.suite import ENSEMBLE_UNROLLED

    ne = min(args.ensemble_images, x_all.shape[0])
    xe, ye = x_all[:ne], y_all[:ne]
    make = models.estimator_factory(model, variables)
    ensembles = {}
    for preset in [e for e in args.ensembles.split(",") if e]:
        members = gradients.expand(preset)
        ens = ensemble(pgd, members, make)
        unroll = None if len(members) <= ENSEMBLE_UNROLLED else 1  # as jsnn.evaluate runs them
        run = lambda: ens(fn, xe, ye, key, eps=eps, steps=10, step_size=eps / 4, unroll=unroll, full_output=True)
        first_e, med_e, _ = common.timed(lambda: run()[0], max(1, args.repeats // 2))
        info = run()[1]
        ensembles[preset] = {"members": len(members), "first_s": first_e, "s": med_e, "acc": float(info["accuracy"]),
                             "strongest": min(zip(info["per_estimator"].tolist(), info["names"]))}
    if ensembles:
        print(f"\nPGD-10 estimator ensembles (jsnn.attacks.ensemble), {ne} test images, ε={eps}, median of "
              f"{max(1, args.repeats // 2)}: images·estimators/s vs PGD-10's images/s (one member) above")
        print(common.table(["preset", "members", "s", "first s", "images·estimators/s", "vs PGD-10", "worst-case acc",
                            "strongest member"],
                           [[k, v["members"], f"{v['s']:.2f}", f"{v['first_s']:.1f}", f"{ne * v['members'] / v['s']:.1f}",
                             f"{ne * v['members'] / v['s'] / (B / med):.2f}x", f"{v['acc']:.3f}",
                             f"{v['strongest'][1]} {v['strongest'][0]:.3f}"] for k, v in ensembles.items()]))

    # ---- peer
    peer = None
    if args.peer_python:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "digits_model.npz")
            export_for_peer(path, variables, model, x_all, y_all, logits, eps)
            env = dict(os.environ, PYTHONWARNINGS="ignore")
            out = subprocess.run([args.peer_python, "-c", PEER_CODE, path, str(B), str(args.repeats), "10",
                                  str(args.peer_threads), ",".join(comps), str(nc), str(args.component_steps),
                                  str(args.square_queries)], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(f"  peer failed:\n{out.stderr[-3000:]}")
        else:
            peer = json.loads(out.stdout.strip().splitlines()[-1])
            if peer["note"]:
                print(f"  peer note: {peer['note']}")
            print(f"  SpikingJelly + torchattacks PGD-10 (torch {peer['torch']}, {peer['threads']} threads): "
                  f"{B / peer['pgd_sec']:9.1f} images/s  (median {peer['pgd_sec'] * 1e3:8.1f} ms, "
                  f"first {peer['pgd_first_sec']:6.2f} s)  robust acc {peer['pgd_robust_accuracy']:.4f}")
            print(f"  peer check: clean logits max |Δ| vs jsnn {peer['logit_max_abs_diff']:.2e}, "
                  f"clean acc {peer['clean_accuracy']:.4f} (jsnn {results['clean_accuracy']:.4f})")
            print(f"  ratio PGD-10 images/s jsnn / peer: {peer['pgd_sec'] / med:.2f}x")
    else:
        print("  peer not run (pass --peer_python=/path/to/venv/bin/python with torch, spikingjelly, torchattacks)")

    if comps:
        print(f"\nAutoAttack components, fra31 settings ({args.component_steps} it., 9 targets, {args.square_queries} "
              f"queries), {nc} test images, one batch, ε={eps}: seconds of a warm call (first = compile + run)")
        rows = []
        for c in comps:
            j, pc = components[c], (peer or {}).get("components", {}).get(c)
            rows.append([c, f"{j['s']:.2f}", f"{j['first_s']:.2f}", f"{j['acc']:.3f}",
                         "-" if pc is None else f"{pc['s']:.2f}", "-" if pc is None else f"{pc['acc']:.3f}",
                         "-" if pc is None else f"{pc['s'] / j['s']:.2f}x"])
        tot_j = sum(components[c]["s"] for c in comps)
        pcs = (peer or {}).get("components", {})
        tot_p = sum(pcs[c]["s"] for c in comps) if all(c in pcs for c in comps) else None
        rows.append(["all", f"{tot_j:.2f}", "", "", "-" if tot_p is None else f"{tot_p:.2f}", "",
                     "-" if tot_p is None else f"{tot_p / tot_j:.2f}x"])
        print(common.table(["component", "jsnn s", "jsnn first s", "jsnn acc", "torchattacks s", "peer acc",
                            "ratio peer/jsnn"], rows))
        print("  (each run on all images, as torchattacks' components do; AutoAttack's cascade runs later "
              "components only on the still-robust ones)")

    # ---- AutoAttack-rand, EOT 20, on the test split
    n = min(args.aa_images, x_all.shape[0])
    if n <= 0:
        return
    t0 = time.perf_counter()
    _, info = autoattack(version="rand", batch_size=B)(fn, x_all[:n], y_all[:n], key, eps=eps, full_output=True)
    total = time.perf_counter() - t0
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in info["seconds"].items())
    log = summary(info)
    accs = ", ".join(f"{k} {v:.4f}" for k, v in log.items())
    print(f"\nAutoAttack-rand (APGD-CE + APGD-DLR, 100 it., EOT 20, 10 judging draws), {n} test images, "
          f"batch {B}: {total:.1f} s incl. compilation ({n / total:.2f} images/s)")
    print(f"  stages: {stages}")
    print(f"  robust accuracy: {accs}")
    if n < x_all.shape[0]:
        print(f"  EXTRAPOLATED full split ({x_all.shape[0]} images): ≈ {total * x_all.shape[0] / n:.0f} s "
              f"(linear in images; compilation counted once more than needed)")
    goal = 600.0 * (n / x_all.shape[0])
    print(f"  goal: full split in < 10 min -> {'met' if total <= goal else 'NOT met'} on this run")

    # ---- a stochastic forward: EOT 20 really costs 20 forward/backward passes per step
    m = args.stochastic_images
    if m > 0:
        from jsnn.layers import EncoderConfig

        rsc = models.logits_fn(model.clone(encoder=EncoderConfig(name="rsc", sigma=0.05)), variables)
        xs, ys = x_all[:m], y_all[:m]
        first_s, med_s, _ = common.timed(lambda: apgd(rsc, xs, ys, key, eps=eps, steps=100, loss="ce", eot=20), 1,
                                  warmup=0)
        est = med_s / m * x_all.shape[0] * (log["clean"] + log["apgd-ce"])
        print(f"\nAPGD-CE-100, EOT 20, RSC-coded model (σ=0.05), {m} images: {m / med_s:.2f} images/s "
              f"(median {med_s:.1f} s, first {first_s:.1f} s)")
        print(f"  EXTRAPOLATED AutoAttack-rand on the full split of such a model: ≈ {est:.0f} s "
              f"(APGD-CE on the {log['clean']:.0%} clean-correct, APGD-DLR on the {log['apgd-ce']:.0%} left "
              f"as measured above; compilation excluded)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
