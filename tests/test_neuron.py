"""Independent checks of jsnn.neuron: own Python-loop reference, hand-computed cases, SpikingJelly values."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsnn import neuron, surrogate


@pytest.fixture
def x64():
    """float64 for the duration of one test only (other test files are unaffected)."""
    with jax.enable_x64(True):
        yield


# ----------------------------------------------------------------------------- own reference
# A plain Python loop over time with its own Heaviside/surrogate, written from METHODS.md
# and sharing no code with jsnn (the surrogate derivatives are re-typed here).

G = {
    "sigmoid": lambda u, a: a * jax.nn.sigmoid(a * u) * (1 - jax.nn.sigmoid(a * u)),
    "atan": lambda u, a: (a / 2) / (1 + (jnp.pi * a * u / 2) ** 2),
    "triangle": lambda u, g: jnp.maximum(0.0, 1 - jnp.abs(u) / g) / g,
}
JSNN_SURR = {"sigmoid": surrogate.sigmoid, "atan": surrogate.atan, "triangle": surrogate.triangle}


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def ref_spike(u, name, width):
    return jnp.where(u >= 0, 1.0, 0.0).astype(u.dtype)


def _ref_spike_fwd(u, name, width):
    return ref_spike(u, name, width), u


def _ref_spike_bwd(name, width, u, g):
    return (g * G[name](u, width),)


ref_spike.defvjp(_ref_spike_fwd, _ref_spike_bwd)


def ref_neuron(x, *, kind="lif", tau=2.0, leak=1.0, gain=None, v_threshold=1.0, v_reset=0.0,
               decay_input=True, detach_reset=False, surr=("sigmoid", 4.0)):
    """Returns (spikes, H, V) as [T, ...] arrays, computed step by step in a Python loop."""
    vr = 0.0 if v_reset is None else v_reset
    v = jnp.full(x.shape[1:], vr, x.dtype)
    S, H, V = [], [], []
    for t in range(x.shape[0]):
        xt = x[t] if gain is None else gain[t] * x[t]
        if kind == "lif":
            h = v + (xt - (v - vr)) / tau if decay_input else v - (v - vr) / tau + xt
        else:  # "if" / "dlif": H = λ·V + X
            h = leak * v + xt
        s = ref_spike(h - v_threshold, *surr)
        sr = jax.lax.stop_gradient(s) if detach_reset else s
        v = h - sr * v_threshold if v_reset is None else sr * v_reset + (1 - sr) * h
        S.append(s)
        H.append(h)
        V.append(v)
    return jnp.stack(S), jnp.stack(H), jnp.stack(V)


def jgrad(f):
    """jit-compiled gradient (one compile instead of many eager dispatches)."""
    return jax.jit(jax.grad(f))


def _inputs(shape, seed=0, scale=1.2, shift=0.4):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale + shift)


def _loss_weights(shape, seed=1):
    r = np.random.default_rng(seed)
    return jnp.asarray(r.normal(size=shape)), jnp.asarray(r.normal(size=shape))


LIF_CASES = [
    dict(v_reset=0.0, decay_input=True, detach_reset=False, surr=("sigmoid", 4.0)),
    dict(v_reset=0.0, decay_input=True, detach_reset=True, surr=("sigmoid", 4.0)),
    dict(v_reset=0.0, decay_input=False, detach_reset=False, surr=("atan", 2.0)),
    dict(v_reset=0.0, decay_input=False, detach_reset=True, surr=("triangle", 1.0)),
    dict(v_reset=None, decay_input=True, detach_reset=False, surr=("atan", 2.0)),
    dict(v_reset=None, decay_input=True, detach_reset=True, surr=("sigmoid", 4.0)),
    dict(v_reset=None, decay_input=False, detach_reset=False, surr=("triangle", 0.5)),
    dict(v_reset=None, decay_input=False, detach_reset=True, surr=("sigmoid", 2.0)),
    dict(v_reset=-0.3, tau=3.5, v_threshold=0.7, decay_input=True, detach_reset=False, surr=("sigmoid", 4.0)),
]


def _jsnn_kwargs(case):
    kw = dict(case)
    name, width = kw.pop("surr")
    kw["surrogate"] = JSNN_SURR[name](width)
    return kw


def _compare_with_reference(fn, ref, x, extra_args=()):
    """Forward traces equal, and gradients of sum(a·S) + sum(b·V) w.r.t. all args equal."""
    a, b = _loss_weights(x.shape)
    argnums = tuple(range(1 + len(extra_args)))

    def value_and_grads(f):
        def loss(*args):
            tr = neuron.Trace(*f(*args))
            return jnp.sum(a * tr.spikes) + jnp.sum(b * tr.v), tr
        return jax.jit(jax.value_and_grad(loss, argnums=argnums, has_aux=True))(x, *extra_args)

    (_, tr), g = value_and_grads(fn)
    (_, rtr), gr = value_and_grads(ref)
    rs = np.asarray(rtr.spikes)
    np.testing.assert_array_equal(np.asarray(tr.spikes), rs)
    np.testing.assert_allclose(np.asarray(tr.h), np.asarray(rtr.h), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(tr.v), np.asarray(rtr.v), rtol=1e-12, atol=1e-12)
    assert 0 < rs.sum() < rs.size  # the case does spike, but not always
    for gi, gri in zip(g, gr):
        assert np.all(np.isfinite(np.asarray(gi)))
        np.testing.assert_allclose(np.asarray(gi), np.asarray(gri), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- scan == loop


@pytest.mark.parametrize("case", LIF_CASES)
def test_lif_matches_python_loop(x64, case):
    x = _inputs((7, 3, 4))
    kw = _jsnn_kwargs(case)
    fn = lambda x: neuron.lif(x, return_trace=True, **kw)
    ref = lambda x: ref_neuron(x, kind="lif", **case)
    _compare_with_reference(fn, ref, x)


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("leak", [1.0, 0.5])
def test_if_matches_python_loop(x64, v_reset, detach_reset, leak):
    x = _inputs((8, 2, 5), seed=3, scale=0.8, shift=0.3)
    fn = lambda x: neuron.if_neuron(x, leak=leak, v_reset=v_reset, detach_reset=detach_reset, return_trace=True)
    # if_neuron's default surrogate is triangle(1) (SR / SNN-RAT preset)
    ref = lambda x: ref_neuron(x, kind="if", leak=leak, v_reset=v_reset, detach_reset=detach_reset,
                               surr=("triangle", 1.0))
    _compare_with_reference(fn, ref, x)


@pytest.mark.parametrize("detach_reset", [False, True])
def test_dlif_matches_python_loop_incl_gain_gradient(x64, detach_reset):
    T = 6
    x = _inputs((T, 3, 4), seed=5, scale=0.7, shift=0.3)
    gain = jnp.asarray([1.0, 0.8, 1.3, 0.5, 1.1, 2.0])
    fn = lambda x, p: neuron.dlif(x, p, detach_reset=detach_reset, return_trace=True)
    ref = lambda x, p: ref_neuron(x, kind="dlif", leak=0.99, gain=p, detach_reset=detach_reset,
                                  surr=("triangle", 1.0))
    _compare_with_reference(fn, ref, x, extra_args=(gain,))


def test_spikes_only_output_and_shape_dtype():
    x = jnp.asarray(_inputs((4, 2, 3, 3, 2)), jnp.float32)
    for fn in (neuron.lif, neuron.if_neuron):
        s = fn(x)
        assert s.shape == x.shape and s.dtype == jnp.float32
        assert set(np.unique(np.asarray(s))) <= {0.0, 1.0}
        np.testing.assert_array_equal(np.asarray(s), np.asarray(fn(x, return_trace=True).spikes))
    s = neuron.dlif(x, jnp.ones(4))
    np.testing.assert_array_equal(np.asarray(s), np.asarray(neuron.if_neuron(x, leak=0.99)))


def test_docstring_example():
    # LIF τ=2, X=1.5: H1=0.75 (no spike), H2=0.75+(1.5−0.75)/2=1.125 (spike, V→0), repeat.
    np.testing.assert_array_equal(np.asarray(neuron.lif(jnp.full((4, 1), 1.5), tau=2.0)).ravel(), [0, 1, 0, 1])


# ----------------------------------------------------------------------------- hand-computed cases


def test_if_hand_case_three_steps(x64):
    """IF, λ=1, V_th=1, hard reset to 0, triangle(γ=1): x = [0.6, 0.6, 0.6], L = S1+S2+S3.

    Forward:
      t1: H1=0.6, u=-0.4, S1=0, g1=0.6, V1=0.6
      t2: H2=1.2, u=+0.2, S2=1, g2=0.8, V2=0
      t3: H3=0.6, u=-0.4, S3=0, g3=0.6, V3=0.6
    Backward, ∂V/∂H = (1−S) + (V_reset − H)·g (through the reset), ∂H_t/∂V_{t−1} = λ = 1, ∂H/∂X = 1:
      δH3 = g3 = 0.6
      δH2 = g2 + δH3·∂V2/∂H2 = 0.8 + 0.6·(0 − 1.2·0.8) = 0.8 − 0.576 = 0.224
      δH1 = g1 + δH2·∂V1/∂H1 = 0.6 + 0.224·(1 − 0.6·0.6) = 0.6 + 0.224·0.64 = 0.74336
      → dL/dx = [0.74336, 0.224, 0.6]
    With detach_reset, ∂V/∂H = 1 − S:
      δH3 = 0.6; δH2 = 0.8 + 0.6·0 = 0.8; δH1 = 0.6 + 0.8·1 = 1.4 → dL/dx = [1.4, 0.8, 0.6]
    """
    x = jnp.asarray([0.6, 0.6, 0.6])
    tr = neuron.if_neuron(x, return_trace=True)
    np.testing.assert_array_equal(np.asarray(tr.spikes), [0, 1, 0])
    np.testing.assert_allclose(np.asarray(tr.h), [0.6, 1.2, 0.6], rtol=1e-14)
    np.testing.assert_allclose(np.asarray(tr.v), [0.6, 0.0, 0.6], rtol=1e-14)
    g = jgrad(lambda x: neuron.if_neuron(x).sum())(x)
    np.testing.assert_allclose(np.asarray(g), [0.74336, 0.224, 0.6], rtol=1e-12)
    gd = jgrad(lambda x: neuron.if_neuron(x, detach_reset=True).sum())(x)
    np.testing.assert_allclose(np.asarray(gd), [1.4, 0.8, 0.6], rtol=1e-12)
    # the reset path only matters before a spike has been reset: last step identical, earlier ones differ
    assert g[2] == gd[2]
    assert abs(float(g[1] - gd[1]) + 0.576) < 1e-12  # δV2·(−H2·g2) = 0.6·(−0.96)


def test_lif_hand_case_three_steps(x64):
    """LIF τ=2 (decay_input), V_th=1, hard reset 0, triangle(1): x = [1.5, 1.5, 1.5], L = ΣS.

    Forward: H1 = 0.75 (S=0, V1=0.75); H2 = 0.75 + (1.5 − 0.75)/2 = 1.125 (S=1, V2=0); H3 = 0.75 (S=0).
    Surrogate: g1 = 1 − 0.25 = 0.75, g2 = 1 − 0.125 = 0.875, g3 = 0.75.
    ∂H_t/∂V_{t−1} = 1 − 1/τ = 0.5, ∂H/∂X = 1/τ = 0.5, ∂V/∂H = (1 − S) − H·g.
      ∂V1/∂H1 = 1 − 0.75·0.75 = 0.4375;  ∂V2/∂H2 = −1.125·0.875 = −0.984375
      δH3 = 0.75
      δH2 = 0.875 + 0.5·0.75·(−0.984375) = 0.505859375
      δH1 = 0.75 + 0.5·0.505859375·0.4375 = 0.86065673828125
      dL/dx = 0.5·δH = [0.430328369140625, 0.2529296875, 0.375]   (all dyadic: exact)
    """
    x = jnp.asarray([1.5, 1.5, 1.5])
    f = lambda x: neuron.lif(x, tau=2.0, surrogate=surrogate.triangle(1.0))
    np.testing.assert_array_equal(np.asarray(f(x)), [0, 1, 0])
    np.testing.assert_array_equal(np.asarray(jgrad(lambda x: f(x).sum())(x)),
                                  [0.430328369140625, 0.2529296875, 0.375])
    # soft reset: V2 = H2 − 1 = 0.125, H3 = 0.125 + (1.5 − 0.125)/2 = 0.8125, still no spike at t3
    tr = neuron.lif(x, v_reset=None, surrogate=surrogate.triangle(1.0), return_trace=True)
    np.testing.assert_array_equal(np.asarray(tr.spikes), [0, 1, 0])
    np.testing.assert_array_equal(np.asarray(tr.h), [0.75, 1.125, 0.8125])


def test_detach_reset_changes_gradient_only_through_reset(x64):
    # Soft reset: V = H − S·V_th, so ∂V/∂H = 1 − V_th·g (attached) vs 1 (detached).
    x = _inputs((6, 10), seed=7)
    f = lambda d: lambda x: neuron.lif(x, v_reset=None, detach_reset=d, surrogate=surrogate.triangle(1.0)).sum()
    g_att, g_det = jgrad(f(False))(x), jgrad(f(True))(x)
    # forward identical
    np.testing.assert_array_equal(np.asarray(neuron.lif(x, detach_reset=True)), np.asarray(neuron.lif(x)))
    # last step: no later reset depends on it → identical gradient
    np.testing.assert_array_equal(np.asarray(g_att[-1]), np.asarray(g_det[-1]))
    assert not np.allclose(np.asarray(g_att[:-1]), np.asarray(g_det[:-1]))
    # and with a surrogate that is zero everywhere on this input (triangle with tiny γ and no H near
    # V_th), the reset gradient vanishes, so attached == detached.
    xs = jnp.asarray([[0.2], [2.5], [0.1]])
    fz = lambda d: lambda x: neuron.lif(x, detach_reset=d, surrogate=surrogate.triangle(1e-3)).sum()
    np.testing.assert_array_equal(np.asarray(jgrad(fz(False))(xs)), np.asarray(jgrad(fz(True))(xs)))


# ----------------------------------------------------------------------------- SpikingJelly values
# Produced ONCE by running SJ_SCRIPT below with the peer venv (SpikingJelly 2.0.0, torch 2.13.0+cpu):
#   /work/peer_venv/bin/python -c "$(python -c 'import tests.test_neuron as t; print(t.SJ_SCRIPT)')"
# SpikingJelly is not a test dependency; the numbers are pasted constants.
SJ_SCRIPT = '''
import numpy as np, torch
from spikingjelly.activation_based import neuron, surrogate
T, N = 5, 4
x0 = np.round(1.5 * np.sin(1.7 * np.arange(T * N)) + 0.8, 3).reshape(T, N)
w = np.round(np.cos(0.9 * np.arange(T * N)), 3).reshape(T, N)
cases = {
 "hard_sigmoid": dict(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False,
                      surrogate_function=surrogate.Sigmoid(alpha=4.0)),
 "soft_atan": dict(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=None, detach_reset=False,
                   surrogate_function=surrogate.ATan(alpha=2.0)),
 "hard_nodecay_detach": dict(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0, detach_reset=True,
                             surrogate_function=surrogate.Sigmoid(alpha=4.0)),
 "tau3_vr-0.2_vth0.8": dict(tau=3.0, decay_input=True, v_threshold=0.8, v_reset=-0.2, detach_reset=False,
                            surrogate_function=surrogate.Sigmoid(alpha=4.0)),
}
print("SJ_X =", x0.tolist()); print("SJ_W =", w.tolist())
for name, kw in cases.items():
    node = neuron.LIFNode(step_mode="m", store_v_seq=True, **kw)
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    s = node(x)
    (s * torch.tensor(w)).sum().backward()
    print(name, s.detach().numpy().astype(int).tolist(), node.v_seq.detach().numpy().tolist(), x.grad.numpy().tolist())
'''
SJ_X = [[0.8, 2.287, 0.417, -0.589], [1.541, 1.998, -0.25, -0.127], [2.089, 1.395, -0.642, 0.577],
        [2.3, 0.637, -0.658, 1.339], [2.119, -0.078, -0.293, 1.96]]
SJ_W = [[1.0, 0.622, -0.227, -0.904], [-0.897, -0.211, 0.635, 1.0], [0.608, -0.244, -0.911, -0.889],
        [-0.194, 0.648, 0.999, 0.595], [-0.26, -0.918, -0.881, -0.178]]
SJ_REF = {
    "hard_sigmoid": dict(
        kw=dict(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False, surr=("sigmoid", 4.0)),
        spikes=[[0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 1]],
        v=[[0.4, 0.0, 0.2085, -0.2945], [0.9705, 0.999, -0.02075000000000002, -0.21075],
           [0.0, 0.0, -0.331375, 0.18312499999999998], [0.0, 0.3185, -0.4946875, 0.7610625],
           [0.0, 0.12025, -0.39384375, 0.0]],
        grad=[[-0.04281072323742138, 0.3423732201078145, -0.009530232806853674, 0.009933296530000963],
              [-0.44492596972100307, -0.10556538383338243, 0.01673734737501449, 0.03976891702282259],
              [0.12268864755013387, -0.13108783890677153, -0.007923107025250849, 0.04818051931815848],
              [-0.021321429310293974, 0.05098149267866524, 0.001703003536179019, 0.22799155111560607],
              [-0.1281763111644707, -0.051313167150648285, -0.006627741030267683, -0.055056378125399694]]),
    "soft_atan": dict(
        kw=dict(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=None, detach_reset=False, surr=("atan", 2.0)),
        spikes=[[0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 1]],
        v=[[0.4, 0.14349999999999996, 0.2085, -0.2945], [0.9705, 0.07074999999999987, -0.02075000000000002, -0.21075],
           [0.5297499999999999, 0.7328749999999999, -0.331375, 0.18312499999999998],
           [0.4148749999999999, 0.6849375, -0.4946875, 0.7610625],
           [0.26693750000000005, 0.30346875, -0.39384375, 0.36053124999999997]],
        grad=[[-0.0635934341766668, 0.24989573934617818, -0.0074794282152669846, -0.005910195333161675],
              [-0.44443105637461056, -0.10151785030618948, 0.0193351759824471, 0.04212426661920731],
              [0.058613174348516935, -0.041824599794896306, -0.01931894977414142, 0.020953603497540982],
              [-0.059963795711555426, 0.14403994021906172, 0.011227149290119299, 0.18325708478763245],
              [-0.076324007142011, -0.07929795371064748, -0.02183430856774938, -0.038985865678062344]]),
    "hard_nodecay_detach": dict(
        kw=dict(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0, detach_reset=True, surr=("sigmoid", 4.0)),
        spikes=[[0, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1], [1, 0, 0, 1]],
        v=[[0.8, 0.0, 0.417, -0.589], [0.0, 0.0, -0.04150000000000001, -0.4215],
           [0.0, 0.0, -0.6627500000000001, 0.36624999999999996], [0.0, 0.637, -0.9893750000000001, 0.0],
           [0.0, 0.2405, -0.7876875000000001, 0.0]],
        grad=[[0.8158990697223758, 0.014291229982926966, -0.05531846131924781, -0.030833975020552296],
              [-0.07947943271760383, -0.015022720063967016, 0.03586644688342552, -0.04915453443529604],
              [0.03041613548912709, -0.1382254000948843, -0.004689547283084277, -0.12527089534304403],
              [-0.004234010752897048, 0.31828196857026486, 1.8000924631812742e-05, 0.23340954181690793],
              [-0.011569204934427486, -0.1602695238528071, -0.002759457356720943, -0.014666209420055186]]),
    "tau3_vr-0.2_vth0.8": dict(
        kw=dict(tau=3.0, decay_input=True, v_threshold=0.8, v_reset=-0.2, detach_reset=False, surr=("sigmoid", 4.0)),
        spikes=[[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]],
        v=[[0.06666666666666665, 0.5623333333333334, -0.061000000000000026, -0.3963333333333333],
           [0.4914444444444444, -0.2, -0.1906666666666667, -0.37322222222222223],
           [-0.2, 0.265, -0.4077777777777778, -0.12314814814814817],
           [0.5666666666666667, 0.32233333333333336, -0.5578518518518518, 0.2975679012345679],
           [-0.2, 0.12222222222222226, -0.5362345679012346, 0.7850452674897119]],
        grad=[[-0.017269142341168064, 0.1501569196182915, -0.0024779536186146796, 0.0007942136352652186],
              [-0.1284298841444004, -0.06427251048444932, 0.010066614412939627, 0.01593865861754377],
              [0.23328968928310526, 0.002636263013543074, -0.008158739385648943, 0.0058820390019952385],
              [-0.07061693875538654, 0.06052056364515227, 0.0020545966518933727, 0.05135636588808715],
              [-0.0721406859970198, -0.07152688370834719, -0.005552674132293114, -0.059280286790472085]]),
}


@pytest.mark.parametrize("name", sorted(SJ_REF))
def test_lif_matches_spikingjelly_float64(x64, name):
    ref = SJ_REF[name]
    kw = _jsnn_kwargs(ref["kw"])
    x, w = jnp.asarray(SJ_X), jnp.asarray(SJ_W)
    tr = neuron.lif(x, return_trace=True, **kw)
    np.testing.assert_array_equal(np.asarray(tr.spikes), ref["spikes"])
    np.testing.assert_allclose(np.asarray(tr.v), ref["v"], rtol=1e-12, atol=1e-14)
    g = jgrad(lambda x: jnp.sum(w * neuron.lif(x, **kw)))(x)
    np.testing.assert_allclose(np.asarray(g), ref["grad"], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", sorted(SJ_REF))
def test_lif_matches_spikingjelly_float32(name):
    ref = SJ_REF[name]
    kw = _jsnn_kwargs(ref["kw"])
    x, w = jnp.asarray(SJ_X, jnp.float32), jnp.asarray(SJ_W, jnp.float32)
    np.testing.assert_array_equal(np.asarray(neuron.lif(x, **kw)), ref["spikes"])
    g = jax.jit(jax.grad(lambda x: jnp.sum(w * neuron.lif(x, **kw))))(x)
    np.testing.assert_allclose(np.asarray(g), ref["grad"], rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- remat


REMAT_CASES = {
    "lif": lambda x, **k: neuron.lif(x, **k),
    "lif_soft_nodecay": lambda x, **k: neuron.lif(x, v_reset=None, decay_input=False, **k),
    "if": lambda x, **k: neuron.if_neuron(x, **k),
    "dlif": lambda x, **k: neuron.dlif(x, jnp.linspace(0.5, 1.5, x.shape[0]), **k),
    "lif_bptr": lambda x, **k: neuron.lif(x, gradient="bptr", **k),
}


@pytest.mark.parametrize("option", ["remat", "unroll"])
@pytest.mark.parametrize("name", sorted(REMAT_CASES))
def test_remat_identical_values_and_gradients(name, option):
    fn = REMAT_CASES[name]
    x = jnp.asarray(_inputs((9, 4, 6), seed=11), jnp.float32)
    w = jnp.asarray(_loss_weights(x.shape)[0], jnp.float32)
    outs = {}
    for remat in (False, True):
        def loss(x):
            tr = fn(x, **{option: remat}, return_trace=True)
            return jnp.sum(w * tr.spikes) + jnp.sum(tr.v ** 2), tr
        outs[remat] = jax.jit(jax.value_and_grad(loss, has_aux=True))(x)
    tol = dict(rtol=1e-6, atol=1e-7) if option == "remat" else dict(rtol=1e-4, atol=1e-6)  # unroll: fused float32
    for a, b in zip(jax.tree.leaves(outs[False]), jax.tree.leaves(outs[True])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)
    np.testing.assert_array_equal(np.asarray(outs[False][0][1].spikes), np.asarray(outs[True][0][1].spikes))
    assert np.abs(np.asarray(outs[True][1])).sum() > 0


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("gradient", ["bptt", "bptr", "rga", "hart", "ann"])
@pytest.mark.parametrize("kind", ["lif", "dlif"])
def test_batch_major_time_axis_is_the_time_major_neuron(kind, gradient, unroll, x64):
    """``time_axis=1`` on ``[B, T, ...]`` (what SpikingNeuron runs, no transpose) is the time-major neuron."""
    cfg = (neuron.LIF if kind == "lif" else neuron.DLIF)._replace(gradient=gradient, unroll=unroll)
    x = jnp.asarray(_inputs((5, 3, 4), seed=3))  # [T, B, N]
    w = jnp.asarray(_loss_weights(x.shape)[0])
    gain = jnp.linspace(0.5, 1.5, 5) if kind == "dlif" else None

    def loss(x, axis):
        xs = x if axis == 0 else jnp.swapaxes(x, 0, 1)
        tr = neuron.run(cfg, xs, gain=gain, return_trace=True, time_axis=axis)
        tr = tr if axis == 0 else jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), tr)
        return jnp.sum(w * tr.spikes) + jnp.sum(tr.h ** 2), tr

    (l0, t0), g0 = jax.value_and_grad(loss, has_aux=True)(x, 0)
    (l1, t1), g1 = jax.value_and_grad(loss, has_aux=True)(x, 1)
    for a, b in zip(jax.tree.leaves(t0), jax.tree.leaves(t1)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(float(l0), float(l1), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g0), np.asarray(g1), rtol=1e-12, atol=1e-12)
    assert np.abs(np.asarray(g0)).sum() > 0


def test_unroll_none_unrolls_short_sequences_only():
    """``unroll=None`` writes the loop out for T ≤ UNROLL_MAX_T (no while loop in the program), scans beyond,
    for autodiff of the step and for batch-major input (the model layers); time-major input takes the
    hand-written reverse scan (rolled, no transpose needed) at every T unless ``unroll`` is set."""
    for T, rolled in ((neuron.UNROLL_MAX_T, False), (neuron.UNROLL_MAX_T + 1, True)):
        autodiff = str(jax.make_jaxpr(lambda x: neuron.lif(x, fused=False))(jnp.ones((T, 2))))
        batch_major = str(jax.make_jaxpr(lambda x: neuron.run(neuron.LIF, x, time_axis=1))(jnp.ones((2, T))))
        assert ("scan" in autodiff) == rolled and ("scan" in batch_major) == rolled, (T, autodiff[:200])
    time_major = lambda **kw: str(jax.make_jaxpr(lambda x: neuron.lif(x, **kw))(jnp.ones((2, 2))))
    assert "scan" in time_major() and "scan" not in time_major(unroll=True)


# ----------------------------------------------------------------------------- BPTR


def test_bptr_gradient_is_its_definition(x64):
    """BPTR: ∂r/∂x̄ = 1[r > 0], with r = (1/T)Σ_t S_t and x̄ = (1/T)Σ_t X_t, so ∂x̄/∂X_t = 1/T.

    IF (λ=1, V_th=1, hard reset), T=4:
      neuron 0: X=0.6 every step → H = 0.6, 1.2(S), 0.6, 1.2(S) → r = 0.5 > 0
      neuron 1: X=0.1 every step → H = 0.1 … 0.4, never fires → r = 0
    L = r (per neuron, summed): dL/dX_t = [1/T, 0] = [0.25, 0] at every step.
    L = Σ_t c_t S_t with c = [1, 2, 3, 4]: each S_t carries ∂S_t/∂x̄ = 1[r>0], so
      dL/dX_t = 1[r>0]·(Σ_t c_t)/T = [10/4, 0] = [2.5, 0] at every step.
    """
    x = jnp.asarray([[0.6, 0.1]] * 4)
    f = lambda x, s=None: neuron.if_neuron(x, gradient="bptr", surrogate=s)
    np.testing.assert_array_equal(np.asarray(f(x)), [[0, 0], [1, 0], [0, 0], [1, 0]])
    np.testing.assert_array_equal(np.asarray(f(x)), np.asarray(neuron.if_neuron(x)))  # same forward as BPTT
    g_rate = jgrad(lambda x: f(x).mean(0).sum())(x)
    np.testing.assert_allclose(np.asarray(g_rate), [[0.25, 0.0]] * 4, rtol=1e-14)
    c = jnp.asarray([1.0, 2.0, 3.0, 4.0])[:, None]
    g_c = jax.jit(jax.grad(lambda x, s: jnp.sum(c * f(x, s))))
    for s in (surrogate.triangle(1.0), surrogate.sigmoid(4.0), surrogate.triangle(0.1)):  # any surrogate
        g = g_c(x, s)
        np.testing.assert_allclose(np.asarray(g), [[2.5, 0.0]] * 4, rtol=1e-14)
    # BPTT on the same case differs (it is not a rate gradient)
    g_bptt = jgrad(lambda x: jnp.sum(c * neuron.if_neuron(x)))(x)
    assert not np.allclose(np.asarray(g_bptt), [[2.5, 0.0]] * 4)


def test_bptr_lif_random_against_definition(x64):
    x = _inputs((5, 3, 7), seed=13, scale=1.0, shift=0.5)
    c = _loss_weights(x.shape)[0]
    s = neuron.lif(x, gradient="bptr")
    np.testing.assert_array_equal(np.asarray(s), np.asarray(neuron.lif(x)))
    g = jgrad(lambda x: jnp.sum(c * neuron.lif(x, gradient="bptr")))(x)
    fired = np.asarray(s).mean(0) > 0
    assert fired.any() and (~fired).any()
    want = np.broadcast_to(fired * np.asarray(c).sum(0) / x.shape[0], x.shape)
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- attack-time modes: RGA, HART, ANN


def _rga_ref(z, lam, gamma):
    """Bu et al. 2023, as in hzc1208/HART_Attack RateBp (V_th = 1), with disjoint pieces."""
    return np.where((z >= 0) & (z <= 1 - lam), gamma, np.where((z > 1 - lam) & (z <= 2), (1 - gamma + gamma * lam) / (lam + 1), 0.0))


@pytest.mark.parametrize("leak", [1.0, 0.5, 0.8])
def test_rga_gradient_is_its_formula(x64, leak):
    x = _inputs((4, 9), seed=3, scale=1.5, shift=0.3)
    c = _loss_weights(x.shape)[0]
    gamma = 0.3
    f = lambda x: jnp.sum(c * neuron.if_neuron(x, leak=leak, gradient="rga", surrogate=surrogate.triangle(gamma)))
    np.testing.assert_array_equal(np.asarray(neuron.if_neuron(x, leak=leak, gradient="rga")),
                                  np.asarray(neuron.if_neuron(x, leak=leak)))  # the same forward
    x_bar = np.asarray(x).mean(0)
    want = np.broadcast_to(_rga_ref(x_bar, leak, gamma) * np.asarray(c).sum(0) / x.shape[0], x.shape)
    np.testing.assert_allclose(np.asarray(jgrad(f)(x)), want, rtol=1e-12, atol=1e-15)


def test_rga_lif_maps_onto_leaky_if(x64):
    """SpikingJelly LIF (decay_input): H = (1 − 1/τ)V + X/τ, so λ = 1 − 1/τ, X' = X/τ and ∂/∂X = f'(x̄/τ)/τ."""
    tau, gamma = 2.0, 0.2
    x = _inputs((4, 9), seed=4, scale=3.0, shift=0.2)
    c = _loss_weights(x.shape)[0]
    g = jgrad(lambda x: jnp.sum(c * neuron.lif(x, tau=tau, gradient="rga", surrogate=surrogate.triangle(gamma))))(x)
    x_bar = np.asarray(x).mean(0)
    want = np.broadcast_to(_rga_ref(x_bar / tau, 1 - 1 / tau, gamma) / tau * np.asarray(c).sum(0) / 4, x.shape)
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["if", "lif"])
def test_hart_gradient_is_its_definition(x64, kind):
    """HART: H_t = charge(sg(V_{t−1}), X_t) and the input gradient averaged over T:
    dL/dX_t' = (1/T) Σ_t c_t·g(H_t − V_th)·∂H_t/∂X_t (∂H/∂X = 1 for IF, 1/τ for LIF with decay_input)."""
    x = _inputs((5, 8), seed=5, scale=1.5, shift=0.5)
    c = _loss_weights(x.shape)[0]
    s = surrogate.triangle(1.5)
    run = neuron.if_neuron if kind == "if" else neuron.lif
    trace = run(x, return_trace=True)
    f = lambda x: jnp.sum(c * run(x, gradient="hart", surrogate=s))
    np.testing.assert_array_equal(np.asarray(run(x, gradient="hart", surrogate=s)), np.asarray(trace.spikes))
    dh = 1.0 if kind == "if" else 0.5
    per_step = np.asarray(c) * np.maximum(0.0, 1 - np.abs(np.asarray(trace.h) - 1.0) / 1.5) / 1.5 * dh
    want = np.broadcast_to(per_step.mean(0), x.shape)
    np.testing.assert_allclose(np.asarray(jgrad(f)(x)), want, rtol=1e-12, atol=1e-15)


def test_ann_proxy_gradient_is_relu_at_the_mean_current(x64):
    x = _inputs((4, 9), seed=6, scale=1.0, shift=0.5)
    c = _loss_weights(x.shape)[0]
    g = jgrad(lambda x: jnp.sum(c * neuron.if_neuron(x, gradient="ann")))(x)
    x_bar = np.asarray(x).mean(0)
    assert (x_bar > 0).any() and (x_bar <= 0).any()
    want = np.broadcast_to((x_bar > 0) * np.asarray(c).sum(0) / 4, x.shape)
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-12, atol=1e-15)


def test_rga_gamma_is_traced_data_one_trace():
    x = _inputs((4, 6), seed=7, scale=1.0, shift=0.5)

    def body(s, x):
        return jax.grad(lambda x: neuron.if_neuron(x, leak=0.5, gradient="rga", surrogate=s).sum())(x)

    f = jax.jit(chex.assert_max_traces(body, n=1))
    for gamma in (0.1, 0.2, 0.4):
        f(surrogate.as_data(surrogate.triangle(gamma)), x)


# ----------------------------------------------------------------------------- jit / vmap over surrogates


def test_neuron_vmapped_over_surrogates_one_trace():
    chex.clear_trace_counter()
    x = jnp.asarray(_inputs((5, 8), seed=2), jnp.float32)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def grads(s, x):
        return jax.vmap(lambda s_: jax.grad(lambda x: neuron.lif(x, surrogate=s_).sum())(x))(s)

    bank = [surrogate.sigmoid(4.0), surrogate.atan(2.0), surrogate.triangle(1.0)]
    g = grads(surrogate.stack(bank), x)
    single = jax.jit(jax.grad(lambda x, s: neuron.lif(x, surrogate=s).sum()))
    for i, s in enumerate(bank):
        np.testing.assert_allclose(np.asarray(g[i]), np.asarray(single(x, s)), rtol=1e-5, atol=1e-6)
    grads(surrogate.stack([surrogate.sigmoid(1.0), surrogate.atan(9.0), surrogate.triangle(0.2)]), x)  # no retrace


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("fn", [neuron.lif, neuron.if_neuron], ids=["lif", "if"])
def test_empty_time_axis_and_scalar_raise(fn):
    with pytest.raises(ValueError, match=r"T >= 1"):
        fn(jnp.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"T >= 1"):
        fn(jnp.asarray(1.0))


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        neuron.lif(jnp.zeros((3, 2)), tau=tau)


@pytest.mark.parametrize("leak", [-0.1, float("nan")])
def test_bad_leak(leak):
    with pytest.raises(ValueError, match="leak"):
        neuron.if_neuron(jnp.zeros((3, 2)), leak=leak)
    with pytest.raises(ValueError, match="leak"):
        neuron.dlif(jnp.zeros((3, 2)), jnp.ones(3), leak=leak)


@pytest.mark.parametrize("fn", [neuron.lif, neuron.if_neuron], ids=["lif", "if"])
def test_bad_gradient_mode(fn):
    with pytest.raises(ValueError, match=r"gradient='bpt'.*bptt, bptr, rga, hart, ann"):
        fn(jnp.zeros((3, 2)), gradient="bpt")


def test_bad_dlif_gain_and_thresholds():
    with pytest.raises(ValueError, match=r"gain must have shape"):
        neuron.dlif(jnp.zeros((3, 2)), jnp.ones(4))
    with pytest.raises(ValueError, match="v_reset"):
        neuron.lif(jnp.zeros((3, 2)), v_threshold=0.5, v_reset=0.5)
    with pytest.raises(ValueError, match="v_threshold"):
        neuron.if_neuron(jnp.zeros((3, 2)), v_threshold=float("nan"))
