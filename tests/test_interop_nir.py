"""NIR export / import: round trips, an independent discrete-time NIR interpreter, an snnTorch-made graph."""

import functools
import os

import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest

from jsnn import get_model
from jsnn.interop import nir as jnir
from jsnn.interop import trace as trace_lib

DATA = os.path.join(os.path.dirname(__file__), "data", "nir")


# ----------------------------------------------------------------------------- reference interpreter


def _conv_nchw(x, w, b, stride, padding, dilation, groups):
    """Plain numpy conv: x [B, C, H, W], w [O, I, kh, kw] (PyTorch's cross-correlation)."""
    B, C, H, W = x.shape
    O, I, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((B, O, Ho, Wo), x.dtype)
    og = O // groups
    for g in range(groups):
        xg, wg = xp[:, g * I:(g + 1) * I], w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh:i * dh + sh * Ho:sh, j * dw:j * dw + sw * Wo:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("bchw,oc->bohw", patch, wg[:, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def _pool(x, k, s, p, average):
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    B, C, H, W = x.shape
    Ho, Wo = (H - k[0]) // s[0] + 1, (W - k[1]) // s[1] + 1
    out = np.zeros((B, C, Ho, Wo), x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            out += x[:, :, i:i + s[0] * Ho:s[0], j:j + s[1] * Wo:s[1]]
    return out / (k[0] * k[1]) if average else out


def run_nir(graph, frames, dt):
    """Steps a chain NIR graph in discrete time: one explicit Euler step of length dt per frame.

    ``frames`` [T, B, C, H, W] (or [T, B, N]); returns the output [T, B, ...] and each neuron
    node's spikes {key: [T, B, ...]}. Written from the NIR definitions only: LIF
    ``v += dt/tau * (v_leak - v + r*I)``, IF ``v += dt*r*I``, ``z = v > v_threshold``,
    ``v = v_reset`` where z; state starts at v_reset.
    """
    order, key = ["input"], "input"
    nxt = dict(graph.edges)
    while key != "output":
        key = nxt[key]
        order.append(key)
    state = {k: None for k in order}
    outs, spikes = [], {k: [] for k in order if isinstance(graph.nodes[k], (nir.LIF, nir.IF))}
    for x in frames:
        h = np.asarray(x, np.float64)
        for k in order[1:-1]:
            n = graph.nodes[k]
            if isinstance(n, nir.Conv2d):
                h = _conv_nchw(h, n.weight.astype(np.float64), n.bias.astype(np.float64), n.stride, n.padding,
                               n.dilation, n.groups)
            elif isinstance(n, (nir.AvgPool2d, nir.SumPool2d)):
                h = _pool(h, tuple(n.kernel_size), tuple(n.stride), tuple(n.padding), isinstance(n, nir.AvgPool2d))
            elif isinstance(n, nir.Flatten):
                h = h.reshape(h.shape[0], -1)
            elif isinstance(n, nir.Affine):
                h = h @ n.weight.astype(np.float64).T + n.bias
            elif isinstance(n, nir.Linear):
                h = h @ n.weight.astype(np.float64).T
            else:
                v = np.broadcast_to(n.v_reset, h.shape).astype(np.float64) if state[k] is None else state[k]
                if isinstance(n, nir.LIF):
                    v = v + dt / n.tau * (n.v_leak - v + n.r * h)
                else:
                    v = v + dt * n.r * h
                z = v > n.v_threshold
                state[k] = np.where(z, n.v_reset, v)
                h = z.astype(np.float64)
                spikes[k].append(h)
        outs.append(h)
    return np.stack(outs), {k: np.stack(v) for k, v in spikes.items()}


def _jsnn_spikes(model, variables, x):
    """{neuron layer name: spikes [T, B, ...]} and the logits of a jsnn model (NHWC)."""
    logits, state = jax.jit(functools.partial(model.apply, capture_intermediates=True, mutable=["intermediates"]))(
        variables, x)
    inter = state["intermediates"]
    out = {}
    for name, v in inter.items():
        if isinstance(v, dict) and "__call__" in v and "membrane" in v:
            s = np.asarray(v["__call__"][0])
            out[name] = s.reshape((x.shape[0], model.T) + s.shape[1:]).swapaxes(0, 1)
    return logits, out


def _nchw(s):
    return s.transpose((0, 1, 4, 2, 3)) if s.ndim == 5 else s


def _random_variables(model, x, rng):
    """Variables of ``model`` drawn with numpy (no Flax init to compile): kernels ~ N(0, 1/fan_in), biases
    uniform in [0.1, 0.9] (every layer spikes, at varied rates), BatchNorm statistics and scales away
    from 0 and 1 (so the folding matters)."""
    def draw(path, s):
        name = jax.tree_util.keystr(path)
        if name.endswith("['var']") or name.endswith("['scale']"):
            return rng.uniform(0.5, 2.0, s.shape).astype(s.dtype)
        if name.endswith("['bias']") or name.endswith("['mean']"):
            return rng.uniform(0.1, 0.9, s.shape).astype(s.dtype)
        if name.endswith("['gain']"):
            return np.ones(s.shape, s.dtype)
        return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(s.dtype)
    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(model.init, jax.random.key(0), x))


@pytest.fixture(scope="module")
def conv_run():
    """A small digits conv SNN (LIF, BatchNorm, avg pool), its variables and a sample that spikes."""
    model = get_model("digits_conv", features=(4,), hidden=8, T=3, mean=(0.3,), std=(0.4,), input_channels=1)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, (6, 8, 8, 1)).astype(np.float32)
    variables = _random_variables(model, x, rng)
    return model, variables, x


def test_round_trip_conv_with_batchnorm(conv_run, tmp_path):
    """jsnn → NIR file → jsnn: the same spikes in every layer and the same logits (BatchNorm folded)."""
    model, variables, x = conv_run
    path = str(tmp_path / "conv.nir")
    jnir.write(path, jnir.export(model, variables, x))
    graph = jnir.read(path)
    assert [type(graph.nodes[k]).__name__ for k in jnir.chain(graph)] == [
        "Input", "Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine", "LIF", "Affine", "Output"]
    model2, variables2 = jnir.to_jsnn(graph, input_shape=(8, 8, 1))
    assert (model2.T, model2.normalize, model2.mean, model2.std) == (3, True, (0.3,), (0.4,))
    z, s = _jsnn_spikes(model, variables, x)
    z2, s2 = _jsnn_spikes(model2, variables2, x)
    assert sum(float(v.sum()) for v in s.values()) > 0
    for a, b in zip(s.values(), s2.values()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(z2, z, rtol=1e-5, atol=1e-6)
    # the imported model exports to the same graph and imports back bit for bit
    model3, variables3 = jnir.to_jsnn(jnir.export(model2, variables2, x), input_shape=(8, 8, 1))
    assert model3 == model2
    jax.tree.map(np.testing.assert_array_equal, variables3, variables2)


def test_reference_interpreter_reproduces_jsnn_spikes(conv_run):
    """The exported graph, stepped by a numpy NIR interpreter with its dt, spikes exactly as jsnn does."""
    model, variables, x = conv_run
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        graph = jnir.export(model, variables, x64, dt=1e-3)
        z, s = _jsnn_spikes(model, variables, x64)
        frames = (np.asarray(x64)[None].repeat(model.T, 0) - 0.3) / 0.4  # direct coding, normalized
        out, s_nir = run_nir(graph, frames.transpose(0, 1, 4, 2, 3), dt=float(graph.metadata["dt"]))
    assert sorted(s_nir) == sorted(s)
    for name in s:
        np.testing.assert_array_equal(s_nir[name], _nchw(s[name]))
    np.testing.assert_allclose(out.mean(0), z, rtol=1e-9, atol=1e-9)


PRESETS = {
    "lif": {"neuron": "lif", "tau": 3.0, "v_threshold": 0.7, "v_reset": 0.0},
    "lif_no_decay_input": {"neuron": "lif", "tau": 2.0, "decay_input": False, "v_reset": -0.2},
    "if": {"neuron": "if", "leak": 1.0, "v_threshold": 1.0, "v_reset": 0.0},
    "leaky_if": {"neuron": "if", "leak": 0.9},
    "dlif": {"neuron": "dlif", "leak": 0.99},
}


def test_neuron_presets_round_trip_and_interpreter(tmp_path):
    """Every jsnn neuron kind (one layer each): exact round trip through a file; the interpreter spikes as jsnn."""
    layers = [{"kind": "flatten"}]
    for i, name in enumerate(sorted(PRESETS)):
        layers += [{"kind": "dense", "features": 12 if i < 4 else 10, "name": f"fc_{name}"},
                   {"kind": "neuron", **PRESETS[name], "name": name}]
    model = get_model("sequential", layers=layers, T=4, normalize=False)
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 2.0, (5, 4, 4, 1)).astype(np.float32)
    variables = _random_variables(model, x, rng)
    variables["params"]["dlif"]["gain"] = np.full((4,), 1.25, np.float32)
    path = str(tmp_path / "m.nir")
    jnir.write(path, jnir.export(model, variables, x, dt=0.5))
    graph = jnir.read(path)
    assert [type(graph.nodes[k]).__name__ for k in sorted(PRESETS)] == ["LIF", "IF", "LIF", "LIF", "LIF"]
    model2, variables2 = jnir.to_jsnn(graph, input_shape=(4, 4, 1))
    for layer in model2.layers:  # the recorded layers, exactly
        d = dict(layer)
        if d["kind"] == "neuron":
            assert {k: d[k] for k in PRESETS[d["name"]]} == PRESETS[d["name"]]
    np.testing.assert_array_equal(model2.apply(variables2, x), model.apply(variables, x))
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        z, s = _jsnn_spikes(model, variables, x64)
        out, s_nir = run_nir(graph, np.asarray(x64)[None].repeat(4, 0).transpose(0, 1, 4, 2, 3), dt=0.5)
    for name in PRESETS:
        assert 0 < float(s[name].mean()) < 1, name
        np.testing.assert_array_equal(s_nir[name], s[name])
    np.testing.assert_allclose(out.mean(0), z, rtol=1e-9, atol=1e-9)


def test_snntorch_graph_reproduces_snntorch():
    """A graph written by snnTorch's export (tests/data/nir/make_snntorch.py) gives snnTorch's spikes."""
    graph = jnir.read(os.path.join(DATA, "snntorch_conv.nir"))
    ref = np.load(os.path.join(DATA, "snntorch_conv.npz"))
    with pytest.raises(ValueError, match="does not record its time step; pass dt"):
        jnir.to_jsnn(graph, input_shape=(8, 8, 1), T=6)
    model, variables = jnir.to_jsnn(graph, input_shape=(8, 8, 1), dt=1e-4, T=6)
    assert [dict(a)["kind"] for a in model.layers] == ["conv", "neuron", "avg_pool", "flatten", "dense", "neuron"]
    assert dict(model.layers[1])["neuron"] == "if" and abs(dict(model.layers[1])["leak"] - 0.9) < 1e-7
    z, s = _jsnn_spikes(model, variables, jnp.asarray(ref["x"]))
    np.testing.assert_array_equal(_nchw(s["1"]), ref["hidden"])
    np.testing.assert_array_equal(s["5"], ref["spikes"])
    np.testing.assert_allclose(z, ref["spikes"].mean(0), atol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_unsupported_nodes_are_one_line():
    a = lambda *s: np.ones(s)
    cuba = nir.CubaLIF(tau_syn=a(3), tau_mem=a(3), r=a(3), v_leak=0 * a(3), v_threshold=a(3))
    graph = nir.NIRGraph.from_list(nir.Affine(weight=a(3, 4), bias=a(3)), cuba)
    with pytest.raises(ValueError, match=r"^NIR node 'cubalif': CubaLIF has no jsnn layer; supported: Input"):
        jnir.to_jsnn(graph, input_shape=(2, 2, 1), dt=1.0)
    lif = nir.LIF(tau=np.array([2.0, 3.0]), r=a(2), v_leak=0 * a(2), v_threshold=a(2))
    graph = nir.NIRGraph.from_list(nir.Affine(weight=a(2, 4), bias=a(2)), lif)
    with pytest.raises(ValueError, match=r"NIR node 'lif': LIF.tau varies across neurons"):
        jnir.to_jsnn(graph, input_shape=(2, 2, 1), dt=1.0)
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([4])), "a": nir.Affine(a(4, 4), a(4)),
                                "b": nir.Affine(a(4, 4), a(4)), "output": nir.Output(output_type=np.array([4]))},
                         edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")])
    with pytest.raises(ValueError, match="branches and recurrence are not supported"):
        jnir.to_jsnn(graph, input_shape=(2, 2, 1), dt=1.0)


def test_export_refuses_what_nir_cannot_hold():
    with pytest.raises(ValueError, match="reset by subtraction .* has no NIR equivalent"):
        jnir.neuron_node({"neuron": "if", "v_reset": None}, (3,))
    with pytest.raises(ValueError, match=r"neuron sn: the DLIF gain varies over time \(\[1.0, 2.0\]\)"):
        jnir.neuron_node({"neuron": "dlif", "name": "sn"}, (3,), gain=[1.0, 2.0])
    import flax.linen as nn

    from jsnn.layers import Encoder, SpikingNeuron, time_average
    from jsnn.models import SpikingModel

    class MaxPooled(SpikingModel):
        @nn.compact
        def __call__(self, x, train=False):
            h = SpikingNeuron(self.T)(nn.Conv(2, (3, 3))(Encoder(self.T)(x)))
            h = nn.max_pool(h, (2, 2), (2, 2)).reshape((h.shape[0], -1))
            return time_average(nn.Dense(self.num_classes)(h), self.T)

    m, x = MaxPooled(T=2), jnp.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="between SpikingNeuron SpikingNeuron_0 and Dense Dense_0: an operation"):
        trace_lib.trace(m, _random_variables(m, x, np.random.default_rng(0)), x)


def test_snntorch_graph_as_a_run_directory(tmp_path):
    """launch.import_nir's route: a run directory that load_run (so evaluate / certify) takes as is."""
    import ml_collections

    from jsnn import checkpoint
    from jsnn.interop import nir_workdir

    path = os.path.join(DATA, "snntorch_conv.nir")
    config = ml_collections.ConfigDict({"data": {"name": "digits", "eval_batch_size": 512}, "model": {"T": 6}})
    with pytest.raises(ValueError, match=r"input shape \(1, 8, 8\) fits neither \(C, H, W\) = \(3, 32, 32\)"):
        nir_workdir.import_to_workdir(path, str(tmp_path / "c"), ml_collections.ConfigDict(
            {"data": {"name": "cifar10"}, "model": {"T": 6}}), dt=1e-4)
    workdir = str(tmp_path / "run")
    results = nir_workdir.import_to_workdir(path, workdir, config, dt=1e-4)
    assert nir_workdir.import_to_workdir(path, workdir, config, dt=1e-4) == results  # rerun: done
    run = checkpoint.load_run(workdir)
    assert (run.finished, run.step, run.fingerprint, run.model.normalize) == (True, 0, results["fingerprint"], False)
    ref = np.load(os.path.join(DATA, "snntorch_conv.npz"))
    np.testing.assert_allclose(run.model.apply(run.variables, ref["x"]), ref["spikes"].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="already holds another run"):
        nir_workdir.import_to_workdir(path, workdir, ml_collections.ConfigDict(
            {"data": {"name": "digits"}, "model": {"T": 5}}), dt=1e-4)
