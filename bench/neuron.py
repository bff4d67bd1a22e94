"""LIF neuron over time: jsnn's scan vs an eager Python loop vs SpikingJelly; remat memory.

  python bench/neuron.py --peer_python=/work/peer_venv/bin/python [--Ts=8,32,128] [--batch=64] [--features=1024]

Shape ``[T, B, F]`` float32, LIF τ=2 (decay_input), V_th=1, hard reset 0, sigmoid(4) surrogate;
forward, and forward+backward of ``sum(spikes)`` w.r.t. the input current, timed separately.

* ``jsnn``: ``jax.jit(neuron.lif)`` (a ``lax.scan``); compile time reported apart.
* ``loop``: the same dynamics as an eager Python loop over ``jnp`` ops (what a naive user writes),
  gradient by un-jitted ``jax.grad``.
* ``sj``: SpikingJelly 2.0 ``LIFNode(step_mode='m')`` on CPU float32 (2.0 has no ``backend=`` argument;
  on CPU it runs a Python loop of torch ops forward and a hand-written Python-loop backward), and
  ``sj_autograd``: SpikingJelly's own torch-autograd multi-step reference (the old ``backend='torch'``
  path), both with ``torch.set_num_threads(2)``, in the peer's virtualenv (a subprocess; SpikingJelly
  is never a jsnn dependency). ``--peer_python`` defaults to the current interpreter if it can import
  spikingjelly.

Timing: warm-up, ``block_until_ready``, median of N (Spyx benchmark style). Memory: XLA's
``memory_analysis()`` of the compiled forward+backward at the largest T with ``remat`` off and on.
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
flags.DEFINE_integer("features", 1024, "Neurons per example F.")
flags.DEFINE_integer("repeats", 20, "Timed calls per jitted measurement (median).")
flags.DEFINE_integer("slow_repeats", 5, "Timed calls per peer measurement (median).")
flags.DEFINE_integer("loop_repeats", 3, "Timed calls per eager Python-loop measurement (median).")
flags.DEFINE_string("peer_python", None, "Python of a virtualenv with spikingjelly+torch (e.g. /work/peer_venv/bin/python).")
flags.DEFINE_bool("loop", True, "Also time the eager Python-loop reference.")
flags.DEFINE_string("json_out", None, "Write all numbers to this JSON file.")

PEER_CODE = textwrap.dedent(r"""
    import json, statistics, sys, time
    import torch
    from spikingjelly.activation_based import neuron, surrogate
    torch.set_num_threads(2)
    Ts = [int(t) for t in sys.argv[1].split(",")]
    B, F, repeats = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    def timeit(fn):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
        return statistics.median(times), min(times)

    try:
        from spikingjelly._ops.lif.reference import multi_step as autograd_multi_step
    except ImportError:
        autograd_multi_step = None
    g = torch.Generator().manual_seed(0)
    for T in Ts:
        x = torch.randn(T, B, F, generator=g) + 0.5
        sg = surrogate.Sigmoid(alpha=4.0)
        node = neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                              surrogate_function=sg, detach_reset=False, step_mode="m")

        def fwd():
            node.reset()
            with torch.no_grad():
                return node(x)

        def fwd_bwd():
            node.reset()
            xg = x.detach().requires_grad_(True)
            node(xg).sum().backward()
            return xg.grad

        row = {"T": T, "torch": torch.__version__, "threads": torch.get_num_threads()}
        for k, fn in (("sj_fwd", fwd), ("sj_fwd_bwd", fwd_bwd)):
            row[k], row[k + "_min"] = timeit(fn)
        if autograd_multi_step is not None:
            v0 = torch.zeros(B, F)

            def ag_fwd():
                with torch.no_grad():
                    return autograd_multi_step(x, v0, 2.0, True, 1.0, 0.0, sg, False)[0]

            def ag_fwd_bwd():
                xg = x.detach().requires_grad_(True)
                autograd_multi_step(xg, v0, 2.0, True, 1.0, 0.0, sg, False)[0].sum().backward()
                return xg.grad

            for k, fn in (("sj_autograd_fwd", ag_fwd), ("sj_autograd_fwd_bwd", ag_fwd_bwd)):
                row[k], row[k + "_min"] = timeit(fn)
        print(json.dumps(row), flush=True)
""")


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
    B, F = FLAGS.batch, FLAGS.features
    surr = surrogate.sigmoid(4.0)

    def lif(x, remat=False):
        return neuron.lif(x, tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate=surr, remat=remat)

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
          f"Shape [T, {B}, {F}] float32.", flush=True)
    results = {"shape": [None, B, F], "rows": []}
    for T in Ts:
        x = jax.random.normal(jax.random.key(0), (T, B, F), jnp.float32) + 0.5
        # same numbers from all three implementations
        ref = loop_lif(x)
        assert bool((lif(x) == ref).all()), "jsnn and the loop reference disagree"
        fwd = common.time_jit(lif, x, repeats=FLAGS.repeats)
        fwd_bwd = common.time_jit(jax.grad(lambda x: lif(x).sum()), x, repeats=FLAGS.repeats)
        fwd_bwd_remat = common.time_jit(jax.grad(lambda x: lif(x, remat=True).sum()), x, repeats=FLAGS.repeats)
        row = {"T": T, "jsnn_compile_fwd": fwd.compile_s, "jsnn_compile_fwd_bwd": fwd_bwd.compile_s}
        timings = {"jsnn_fwd": fwd, "jsnn_fwd_bwd": fwd_bwd, "jsnn_fwd_bwd_remat": fwd_bwd_remat}
        if FLAGS.loop:
            timings["loop_fwd"] = common.time_eager(loop_lif, x, repeats=FLAGS.loop_repeats)
            timings["loop_fwd_bwd"] = common.time_eager(jax.grad(lambda x: loop_lif(x).sum()), x,
                                                        repeats=FLAGS.loop_repeats)
        for k, t in timings.items():
            row[k], row[k + "_min"] = t.median_s, t.min_s
        results["rows"].append(row)
        print(f"  T={T}: jsnn fwd {1e3 * fwd.median_s:.2f} ms, fwd+bwd {1e3 * fwd_bwd.median_s:.2f} ms", flush=True)

    peer = _peer_python()
    if peer:
        print(f"peer: {peer}", flush=True)
        for prow in common.run_peer(peer, PEER_CODE, [",".join(map(str, Ts)), B, F, FLAGS.slow_repeats]):
            next(r for r in results["rows"] if r["T"] == prow["T"]).update(prow)
    else:
        print("peer: spikingjelly not importable and no --peer_python; peer columns skipped")

    cols = [("jsnn_fwd", "jsnn fwd"), ("loop_fwd", "loop fwd"), ("sj_fwd", "SJ fwd"),
            ("sj_autograd_fwd", "SJ-ag fwd"), ("jsnn_fwd_bwd", "jsnn f+b"),
            ("jsnn_fwd_bwd_remat", "jsnn f+b remat"), ("loop_fwd_bwd", "loop f+b"),
            ("sj_fwd_bwd", "SJ f+b"), ("sj_autograd_fwd_bwd", "SJ-ag f+b"),
            ("jsnn_compile_fwd", "compile fwd"), ("jsnn_compile_fwd_bwd", "compile f+b")]
    print("\nmilliseconds per call (median); compile = jsnn ahead-of-time compile, not in the timings")
    print(common.table(["T"] + [c[1] for c in cols],
                       [[r["T"]] + [common.fmt_ms(r.get(k)).strip() for k, _ in cols] for r in results["rows"]]))

    pairs = [("loop_fwd", "jsnn_fwd"), ("loop_fwd_bwd", "jsnn_fwd_bwd"), ("sj_fwd", "jsnn_fwd"),
             ("sj_fwd_bwd", "jsnn_fwd_bwd"), ("sj_autograd_fwd", "jsnn_fwd"), ("sj_autograd_fwd_bwd", "jsnn_fwd_bwd")]
    for stat, suffix in (("median", ""), ("min", "_min")):
        ratios = []
        for r in results["rows"]:
            line = [r["T"]]
            for peer_key, ours in pairs:
                v = r.get(peer_key + suffix)
                line.append("-" if v is None else f"{v / r[ours + suffix]:.1f}x")
                if v is not None:
                    r[f"speedup_vs_{peer_key}{suffix}"] = v / r[ours + suffix]
            ratios.append(line)
        print(f"\nspeed-up of jsnn (peer time / jsnn time), from the {stat} times")
        print(common.table(["T", "vs loop fwd", "vs loop f+b", "vs SJ fwd", "vs SJ f+b", "vs SJ-ag fwd",
                            "vs SJ-ag f+b"], ratios))

    # ---- memory of forward+backward at the largest T: remat off vs on
    T = max(Ts)
    x = jnp.zeros((T, B, F), jnp.float32)
    mem = {remat: common.memory_of(jax.grad(lambda x: lif(x, remat=remat).sum()), x) for remat in (False, True)}
    results["memory"] = {str(k): v for k, v in mem.items()}
    mib = lambda b: f"{b / 2**20:.1f}"
    print(f"\nXLA memory_analysis of jit(grad(sum(lif(x)))) at T={T} (MiB)")
    print(common.table(["remat", "temp", "argument", "output", "temp+arg+out"],
                       [[k, mib(v["temp_size_in_bytes"]), mib(v["argument_size_in_bytes"]),
                         mib(v["output_size_in_bytes"]),
                         mib(v["temp_size_in_bytes"] + v["argument_size_in_bytes"] + v["output_size_in_bytes"])]
                        for k, v in mem.items()]))
    t_ratio = mem[True]["temp_size_in_bytes"] / mem[False]["temp_size_in_bytes"]
    tot = lambda v: v["temp_size_in_bytes"] + v["argument_size_in_bytes"] + v["output_size_in_bytes"]
    print(f"remat/no-remat temp ratio {t_ratio:.3f}; total ratio {tot(mem[True]) / tot(mem[False]):.3f} "
          f"(one [T,B,F] f32 array = {mib(T * B * F * 4)} MiB)")
    results["memory"]["temp_ratio"] = t_ratio
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
