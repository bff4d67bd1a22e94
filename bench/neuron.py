"""LIF neuron over time: jsnn's scan vs an eager Python loop vs SpikingJelly; remat memory.

  python bench/neuron.py --peer_python=/work/peer/bin/python [--Ts=8,32,128] [--batch=64] [--features=1024]
  python bench/neuron.py --peer_python=python3 --peer_device=cuda --peer_impls=torch,triton \
      --legacy_peer_python=... --Ts=500 --batch=16 --features=4096,16384 --noloop   # bench/gpu.sh

Shape ``[T, B, F]`` float32, LIF τ=2 (decay_input), V_th=1, hard reset 0, sigmoid(4) surrogate;
forward, and forward+backward of ``sum(spikes)`` w.r.t. the input current, timed separately.

* ``jsnn``: ``jax.jit(neuron.lif)`` (a ``lax.scan``; unrolled for T ≤ 8); compile time reported apart.
  ``f+b`` is the default backward (T > 8: :mod:`jsnn.bptt`'s reverse scan), ``f+b autodiff`` autodiff of
  the scan (``fused=False``), ``remat`` the same with ``remat=True``, ``f+b fused rolled`` (T ≤ 8) the
  hand-written backward on a rolled scan (``fused=True``).
* ``loop``: the same dynamics as an eager Python loop over ``jnp`` ops (what a naive user writes),
  gradient by un-jitted ``jax.grad``.
* ``sj``: SpikingJelly 2.0 ``LIFNode(step_mode='m')`` on CPU float32 (2.0 has no ``backend=`` argument;
  on CPU it runs a Python loop of torch ops forward and a hand-written Python-loop backward), and
  ``sj_autograd``: SpikingJelly's own torch-autograd multi-step reference (the old ``backend='torch'``
  path), both with ``torch.set_num_threads(2)``, in the peer's virtualenv (a subprocess; SpikingJelly
  is never a jsnn dependency). ``--peer_python`` defaults to the current interpreter if it can import
  spikingjelly.
* on CUDA, ``sj-<impl>``: SpikingJelly 2.0 with ``SJ_LIF_CUDA_IMPLEMENTATION=<impl>`` per ``--peer_impls``
  (torch = its Python-loop reference, triton = its fused kernel); and ``sj14-<backend>``: SpikingJelly
  0.0.0.0.14's ``LIFNode(backend='torch'|'cupy')`` (the CuPy kernel of the Open Neuromorphic benchmark)
  under ``--legacy_peer_python``. Each peer runs in its own subprocess; one that fails is reported and
  skipped.

Timing: warm-up, ``block_until_ready``, median of N (Spyx benchmark style). Memory: XLA's
``memory_analysis()`` of the compiled forward+backward at the largest T: the default (for T > 8 the
hand-written BPTT of :mod:`jsnn.bptt`), autodiff of the scan (``fused=False``), and autodiff with ``remat``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap

from absl import app, flags

try:
    from bench import common
except ImportError:  # run as a script: bench/ is on sys.path
    import common

FLAGS = flags.FLAGS
flags.DEFINE_list("Ts", ["8", "32", "128"], "Time steps to benchmark.")
flags.DEFINE_integer("batch", 64, "Batch size B.")
flags.DEFINE_list("features", ["1024"], "Neurons per example F (one or more).")
flags.DEFINE_integer("repeats", 20, "Timed calls per jitted measurement (median).")
flags.DEFINE_integer("slow_repeats", 5, "Timed calls per peer measurement (median).")
flags.DEFINE_integer("loop_repeats", 3, "Timed calls per eager Python-loop measurement (median).")
flags.DEFINE_string("peer_python", None, "Python of a virtualenv with spikingjelly+torch (e.g. /work/peer/bin/python).")
flags.DEFINE_string("peer_device", "cpu", "torch device of the peers: cpu or cuda.")
flags.DEFINE_integer("peer_threads", 2, "torch threads of the peers on CPU.")
flags.DEFINE_list("peer_impls", ["auto"], "SpikingJelly 2.0 LIF implementations to time, one peer run each "
                  "(SJ_LIF_CUDA_IMPLEMENTATION: auto, cuda, triton, torch; only 'auto' on CPU).")
flags.DEFINE_string("legacy_peer_python", None, "Python that imports SpikingJelly 0.0.0.0.14 (backend= API), "
                    "e.g. PYTHONPATH set by bench/gpu.sh; timed with each of --legacy_backends.")
flags.DEFINE_list("legacy_backends", ["torch", "cupy"], "LIFNode(backend=...) values for --legacy_peer_python.")
flags.DEFINE_bool("loop", True, "Also time the eager Python-loop reference.")
flags.DEFINE_string("json_out", None, "Write all numbers to this JSON file.")

PEER_CODE = common.SJ_TIMING + textwrap.dedent(r"""
    import inspect, json, sys
    import torch
    from spikingjelly.activation_based import neuron, surrogate
    Ts = [int(t) for t in sys.argv[1].split(",")]
    B, Fs, repeats = int(sys.argv[2]), [int(f) for f in sys.argv[3].split(",")], int(sys.argv[4])
    device, backend, label = sys.argv[5], sys.argv[6], sys.argv[7]
    torch.set_num_threads(int(sys.argv[8]))
    legacy = "backend" in inspect.signature(neuron.LIFNode.__init__).parameters  # SpikingJelly <= 0.0.0.0.14
    extra = {"backend": backend} if legacy else {}

    try:
        from spikingjelly._ops.lif.reference import multi_step as autograd_multi_step
    except ImportError:
        autograd_multi_step = None
    g = torch.Generator().manual_seed(0)
    for F in Fs:
        for T in Ts:
            x = (torch.randn(T, B, F, generator=g) + 0.5).to(device)
            sg = surrogate.Sigmoid(alpha=4.0)
            node = neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                                  surrogate_function=sg, detach_reset=False, step_mode="m", **extra).to(device)

            def fwd():
                node.reset()
                with torch.no_grad():
                    return node(x)

            def fwd_bwd():
                node.reset()
                xg = x.detach().requires_grad_(True)
                node(xg).sum().backward()
                return xg.grad

            row = {"T": T, "F": F, "label": label, "torch": torch.__version__, "threads": torch.get_num_threads()}
            for k, fn in ((f"{label}_fwd", fwd), (f"{label}_fwd_bwd", fwd_bwd)):
                _, row[k], row[k + "_min"] = timed(fn, repeats)
            if autograd_multi_step is not None and label == "sj" and device == "cpu":
                v0 = torch.zeros(B, F)

                def ag_fwd():
                    with torch.no_grad():
                        return autograd_multi_step(x, v0, 2.0, True, 1.0, 0.0, sg, False)[0]

                def ag_fwd_bwd():
                    xg = x.detach().requires_grad_(True)
                    autograd_multi_step(xg, v0, 2.0, True, 1.0, 0.0, sg, False)[0].sum().backward()
                    return xg.grad

                for k, fn in (("sj_autograd_fwd", ag_fwd), ("sj_autograd_fwd_bwd", ag_fwd_bwd)):
                    _, row[k], row[k + "_min"] = timed(fn, repeats)
            print(json.dumps(row), flush=True)
""")


def _peers():
    """(label, python, backend, env) of every peer run: SpikingJelly 2.0 per implementation, legacy per backend."""
    runs = []
    py = _peer_python()
    if py:
        for impl in FLAGS.peer_impls:
            label = "sj" if impl == "auto" and FLAGS.peer_device == "cpu" else f"sj-{impl}"
            runs.append((label, py, "", {"SJ_LIF_CUDA_IMPLEMENTATION": impl}))
    if FLAGS.legacy_peer_python:
        for b in FLAGS.legacy_backends:
            runs.append((f"sj14-{b}", FLAGS.legacy_peer_python, b, {}))
    return runs


def _peer_python():
    if FLAGS.peer_python:
        return FLAGS.peer_python
    if importlib.util.find_spec("spikingjelly") is not None:
        return sys.executable
    return None


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp

    from jsnn import neuron, surrogate

    Ts = [int(t) for t in FLAGS.Ts]
    B, Fs = FLAGS.batch, [int(f) for f in FLAGS.features]
    surr = surrogate.sigmoid(4.0)

    def lif(x, remat=False, fused=None):
        return neuron.lif(x, tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate=surr, remat=remat, fused=fused)

    def loop_lif(x):  # the naive eager reference
        v = jnp.zeros(x.shape[1:], x.dtype)
        out = []
        for t in range(x.shape[0]):
            h = v + (x[t] - v) / 2.0
            s = surrogate.spike(h - 1.0, surr)
            v = (1.0 - s) * h
            out.append(s)
        return jnp.stack(out)

    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind}), "
          f"{os.cpu_count()} CPUs visible; XLA CPU uses its own intra-op thread pool (not pinned). "
          f"Shape [T, {B}, F] float32, F in {Fs}.", flush=True)
    results = {"batch": B, "rows": []}
    for F in Fs:
        for T in Ts:
            x = jax.random.normal(jax.random.key(0), (T, B, F), jnp.float32) + 0.5
            # same numbers from the scan and the loop reference
            assert bool((lif(x) == loop_lif(x)).all()), "jsnn and the loop reference disagree"
            fwd = common.time_jit(lif, x, repeats=FLAGS.repeats)
            fwd_bwd = common.time_jit(jax.grad(lambda x: lif(x).sum()), x, repeats=FLAGS.repeats)
            fwd_bwd_auto = common.time_jit(jax.grad(lambda x: lif(x, fused=False).sum()), x, repeats=FLAGS.repeats)
            fwd_bwd_remat = common.time_jit(jax.grad(lambda x: lif(x, remat=True, fused=False).sum()), x,
                                            repeats=FLAGS.repeats)
            row = {"T": T, "F": F, "jsnn_compile_fwd": fwd.compile_s, "jsnn_compile_fwd_bwd": fwd_bwd.compile_s}
            timings = {"jsnn_fwd": fwd, "jsnn_fwd_bwd": fwd_bwd, "jsnn_fwd_bwd_autodiff": fwd_bwd_auto,
                       "jsnn_fwd_bwd_remat": fwd_bwd_remat}
            if T <= neuron.UNROLL_MAX_T:  # the default unrolls here; the fused backward on a rolled scan too
                fused = common.time_jit(jax.grad(lambda x: lif(x, fused=True).sum()), x, repeats=FLAGS.repeats)
                timings["jsnn_fwd_bwd_fused"] = fused
            if FLAGS.loop:
                timings["loop_fwd"] = common.time_eager(loop_lif, x, repeats=FLAGS.loop_repeats)
                timings["loop_fwd_bwd"] = common.time_eager(jax.grad(lambda x: loop_lif(x).sum()), x,
                                                            repeats=FLAGS.loop_repeats)
            for k, t in timings.items():
                row[k], row[k + "_min"] = t.median_s, t.min_s
            results["rows"].append(row)
            print(f"  T={T} F={F}: jsnn fwd {1e3 * fwd.median_s:.3f} ms, fwd+bwd {1e3 * fwd_bwd.median_s:.3f} ms",
                  flush=True)

    labels = []
    peers = _peers()
    for label, py, backend, env in peers:
        print(f"peer {label}: {py} on {FLAGS.peer_device}", flush=True)
        try:
            prows = common.run_peer(py, PEER_CODE, [",".join(map(str, Ts)), B, ",".join(map(str, Fs)),
                                                    FLAGS.slow_repeats, FLAGS.peer_device, backend or "-", label,
                                                    FLAGS.peer_threads], env=env)
        except RuntimeError as e:  # one peer failing (e.g. no CuPy) must not lose the others' figures
            print(f"  peer {label} FAILED: {str(e)[-600:]}", flush=True)
            continue
        labels.append(label)
        for prow in prows:
            next(r for r in results["rows"] if (r["T"], r["F"]) == (prow["T"], prow["F"])).update(prow)
    if not peers:
        print("peer: spikingjelly not importable and no --peer_python; peer columns skipped")
    if "sj" in labels and any("sj_autograd_fwd" in r for r in results["rows"]):
        labels.append("sj_autograd")

    cols = [("jsnn_fwd", "jsnn fwd"), ("jsnn_fwd_bwd", "jsnn f+b"), ("jsnn_fwd_bwd_autodiff", "f+b autodiff"),
            ("jsnn_fwd_bwd_remat", "f+b autodiff remat"), ("jsnn_fwd_bwd_fused", "f+b fused rolled")]
    if FLAGS.loop:
        cols += [("loop_fwd", "loop fwd"), ("loop_fwd_bwd", "loop f+b")]
    cols += [c for lb in labels for c in ((f"{lb}_fwd", f"{lb} fwd"), (f"{lb}_fwd_bwd", f"{lb} f+b"))]
    cols += [("jsnn_compile_fwd", "compile fwd"), ("jsnn_compile_fwd_bwd", "compile f+b")]
    print("\nmilliseconds per call (median); compile = jsnn ahead-of-time compile, not in the timings")
    print(common.table(["T", "F"] + [c[1] for c in cols],
                       [[r["T"], r["F"]] + [common.fmt_ms(r.get(k)).strip() for k, _ in cols]
                        for r in results["rows"]]))

    pairs = ([("loop_fwd", "jsnn_fwd"), ("loop_fwd_bwd", "jsnn_fwd_bwd")] if FLAGS.loop else [])
    pairs += [p for lb in labels for p in ((f"{lb}_fwd", "jsnn_fwd"), (f"{lb}_fwd_bwd", "jsnn_fwd_bwd"))]
    for stat, suffix in (("median", ""), ("min", "_min")):
        ratios = []
        for r in results["rows"]:
            line = [r["T"], r["F"]]
            for peer_key, ours in pairs:
                v = r.get(peer_key + suffix)
                line.append("-" if v is None else f"{v / r[ours + suffix]:.2f}x")
                if v is not None:
                    r[f"speedup_vs_{peer_key}{suffix}"] = v / r[ours + suffix]
            ratios.append(line)
        print(f"\nspeed-up of jsnn (peer time / jsnn time), from the {stat} times")
        print(common.table(["T", "F"] + [f"vs {p.replace('_fwd_bwd', ' f+b').replace('_fwd', ' fwd')}" for p, _ in pairs],
                           ratios))

    # ---- memory of forward+backward at the largest T: remat off vs on
    T, F = max(Ts), Fs[0]
    x = jnp.zeros((T, B, F), jnp.float32)
    variants = {"default": dict(), "autodiff": dict(fused=False), "autodiff remat": dict(fused=False, remat=True)}
    mem = {k: common.memory_of(jax.grad(lambda x, kw=kw: lif(x, **kw).sum()), x) for k, kw in variants.items()}
    results["memory"] = {str(k): v for k, v in mem.items()}
    mib = lambda b: f"{b / 2**20:.1f}"
    print(f"\nXLA memory_analysis of jit(grad(sum(lif(x)))) at T={T}, F={F} (MiB)")
    print(common.table(["backward", "temp", "argument", "output", "temp+arg+out"],
                       [[k, mib(v["temp_size_in_bytes"]), mib(v["argument_size_in_bytes"]),
                         mib(v["output_size_in_bytes"]),
                         mib(v["temp_size_in_bytes"] + v["argument_size_in_bytes"] + v["output_size_in_bytes"])]
                        for k, v in mem.items()]))
    t_ratio = mem["autodiff remat"]["temp_size_in_bytes"] / mem["autodiff"]["temp_size_in_bytes"]
    tot = lambda v: v["temp_size_in_bytes"] + v["argument_size_in_bytes"] + v["output_size_in_bytes"]
    print(f"default/autodiff total ratio {tot(mem['default']) / tot(mem['autodiff']):.3f}; remat/autodiff temp ratio "
          f"{t_ratio:.3f}, total ratio {tot(mem['autodiff remat']) / tot(mem['autodiff']):.3f} "
          f"(one [T,B,F] f32 array = {mib(T * B * F * 4)} MiB)")
    results["memory"]["temp_ratio"] = t_ratio
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
