"""Spiking neuron dynamics as pure step functions scanned over time.

Conventions (METHODS.md; SpikingJelly, Fang et al. 2021):

* **LIF** charge, ``decay_input=True``:  ``H = V + (X − (V − V_reset)) / τ``;
  ``decay_input=False``: ``H = V − (V − V_reset) / τ + X``.
* **IF / leaky-IF** charge (SNN-RAT, SR papers; DLIF of RSNN): ``H = λ·V + X``
  (λ=1 is IF, λ=0.99 with a learnable per-step input gain is DLIF).
* Fire ``S = Θ(H − V_th)``, Θ(0)=1, surrogate gradient in the backward pass.
* Hard reset ``V = S·V_reset + (1 − S)·H``; soft reset (``v_reset=None``)
  ``V = H − S·V_th``; ``detach_reset`` stops the gradient through S in the reset.

Arrays are time-major ``[T, ...]``; the initial membrane potential is
``V_reset`` (0 for soft reset).

Gradient modes (:data:`GRADIENTS`; the forward is the same exact spiking forward in every mode,
only the backward of the layer over its whole time scan changes):

* ``"bptt"``: backprop through time with the surrogate ``g(u)`` at every spike.
* ``"bptr"``: through the rate (Ding et al. 2022, "SNN-RAT"): ``∂r/∂x̄ = 1[r > 0]`` with r the
  spike rate and x̄ the time-averaged input; the incoming gradient is averaged over T.
* ``"rga"``: rate gradient approximation (Bu et al., CVPR 2023): ``∂r/∂x̄ = f'(x̄)`` from the
  IF/LIF rate function (:func:`rga_slope`), γ the surrogate's width (its shape is unused).
* ``"hart"``: HART (Hao et al., ICLR 2024): BPTT with the membrane potential detached in the
  temporal recursion (``H_t = charge(sg(V_{t−1}), X_t)``), and the input gradient averaged over T
  and broadcast back to every step; the surrogate is the width-γ triangle of the paper.
* ``"ann"``: the ANN proxy (T → 0 counterpart, the rate/ReLU network): ``∂r/∂x̄ = 1[x̄ > 0]``,
  ReLU's derivative at the layer's own time-averaged input current.

A neuron's parameters are one hashable :class:`NeuronConfig` (Norse's split: parameters
next to pure dynamics; :class:`jsnn.layers.SpikingNeuron` is a thin wrapper), and
:func:`run` is the one dispatch; :func:`lif`, :func:`if_neuron` and :func:`dlif` are
conveniences that build the config from keywords.

Example:
    >>> import jax.numpy as jnp
    >>> from jsnn import neuron
    >>> neuron.lif(jnp.full((4, 1), 1.5), tau=2.0).ravel().tolist()
    [0.0, 1.0, 0.0, 1.0]
    >>> neuron.run(neuron.IF, jnp.full((4, 1), 0.5)).ravel().tolist()  # H = V + X
    [0.0, 1.0, 0.0, 1.0]
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jsnn import bptt
from jsnn import surrogate as surrogate_lib
from jsnn.surrogate import Surrogate

GRADIENTS = ("bptt", "bptr", "rga", "hart", "ann")
RATE_GRADIENTS = ("bptr", "rga", "ann")  # modes that backprop through the time-averaged input
NEURONS = ("lif", "if", "dlif")


class NeuronConfig(NamedTuple):
    """A neuron's parameters, shared by every spiking layer of a model; hashable (Python values).

    Attributes:
      kind: ``"lif"`` (SpikingJelly LIF), ``"if"`` (H = λV + X) or ``"dlif"`` (RSNN: learnable gain).
      tau: LIF time constant τ > 0.
      leak: IF / DLIF leak λ ≥ 0 (1.0 IF, 0.99 DLIF).
      v_threshold: V_th.
      v_reset: hard-reset value, ``None`` for soft reset.
      decay_input: LIF only: whether the input is divided by τ.
      detach_reset: stop the gradient through the spike in the reset.
      surrogate: backward shape (a :class:`~jsnn.surrogate.Surrogate` spec of Python numbers);
        ``None`` = :func:`default_surrogate` of the kind.
      gradient: ``"bptt"`` (through time), ``"bptr"`` (through the rate) or an attack-time
        mode of :data:`GRADIENTS` (``"rga"``, ``"hart"``, ``"ann"``; see the module docstring).
      remat: recompute each step in the backward pass (memory flat in T for the state).
      unroll: unroll the time loop; ``None`` (default) unrolls when T ≤ :data:`UNROLL_MAX_T`
        (faster for small T; see :func:`scan`).
      fused: ``gradient="bptt"`` with the hand-written reverse scan of :mod:`jsnn.bptt` (it keeps
        only H per step; ``remat`` is then moot); ``None`` (default): when the loop is rolled, and
        for time-major input (``time_axis=0``) unless ``unroll`` is set; ``True``: always (a rolled
        scan); ``False``: autodiff of the step.

    Example:
        >>> from jsnn.neuron import DLIF, IF, LIF
        >>> (LIF.kind, LIF.tau), (IF.kind, IF.leak), (DLIF.kind, DLIF.leak)
        (('lif', 2.0), ('if', 1.0), ('dlif', 0.99))
        >>> LIF._replace(v_reset=None).v_reset is None  # soft reset
        True
        >>> hash(LIF) == hash(LIF._replace()), LIF.check() is LIF
        (True, True)
        >>> LIF._replace(tau=0.0).check()
        Traceback (most recent call last):
        ValueError: model.tau: must be > 0 for the LIF neuron, got 0.0
    """

    kind: str = "lif"
    tau: float = 2.0
    leak: float = 1.0
    v_threshold: float = 1.0
    v_reset: Optional[float] = 0.0
    decay_input: bool = True
    detach_reset: bool = False
    surrogate: Optional[Surrogate] = None
    gradient: str = "bptt"
    remat: bool = False
    unroll: Optional[bool] = None
    fused: Optional[bool] = None

    def check(self, where: str = "model.") -> "NeuronConfig":
        """Validates the fields (traced values are skipped) with one line naming the field.

        Returns the config itself, or with a concrete array surrogate turned into its
        Python-number spec.
        """
        if self.kind not in NEURONS:
            raise ValueError(f"{where}neuron: unknown neuron {self.kind!r}; allowed: {', '.join(NEURONS)}")
        if self.kind == "lif" and not _traced(self.tau) and not (math.isfinite(float(self.tau)) and self.tau > 0):
            raise ValueError(f"{where}tau: must be > 0 for the LIF neuron, got {self.tau!r}")
        if self.kind != "lif" and not _traced(self.leak) and not (math.isfinite(float(self.leak)) and self.leak >= 0):
            raise ValueError(f"{where}leak: must be >= 0, got {self.leak!r}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"{where}gradient={self.gradient!r}; allowed: {', '.join(GRADIENTS)}")
        vth, vr = self.v_threshold, self.v_reset
        if not _traced(vth) and not math.isfinite(float(vth)):
            raise ValueError(f"{where}v_threshold: must be finite, got {vth!r}")
        if vr is not None and not _traced(vr) and not _traced(vth) and not float(vr) < float(vth):
            raise ValueError(f"{where}v_reset: {vr!r} must be below v_threshold={vth!r}")
        s = surrogate_lib.spec(self.surrogate)
        return self if s == self.surrogate else self._replace(surrogate=s)


LIF = NeuronConfig()
IF = NeuronConfig(kind="if", leak=1.0)
DLIF = NeuronConfig(kind="dlif", leak=0.99)
UNROLL_MAX_T = 8  # NeuronConfig.unroll=None unrolls the time loop up to this T (bench/train_step.py, bench/neuron.py)

# The surrogate of each kind when NeuronConfig.surrogate is None: sigmoid(4) (SpikingJelly's LIF),
# triangle(1) for IF / DLIF (the robustness papers' preset).
DEFAULT_SURROGATES = {"lif": surrogate_lib.sigmoid(4.0), "if": surrogate_lib.triangle(1.0),
                      "dlif": surrogate_lib.triangle(1.0)}


def default_surrogate(cfg: NeuronConfig) -> Surrogate:
    """The surrogate ``cfg`` differentiates with: its own, else its kind's default.

    Example:
        >>> from jsnn import surrogate
        >>> from jsnn.neuron import DLIF, LIF, default_surrogate
        >>> default_surrogate(LIF), default_surrogate(DLIF)
        (sigmoid(4), triangle(1))
        >>> default_surrogate(LIF._replace(surrogate=surrogate.atan(3.0)))  # an explicit one wins
        atan(3)
    """
    return DEFAULT_SURROGATES[cfg.kind] if cfg.surrogate is None else cfg.surrogate


def _traced(v) -> bool:
    return isinstance(v, jax.core.Tracer)


class Trace(NamedTuple):
    """What a neuron did, per step: spikes, charged potential H, post-reset V, and (from :func:`run`)
    the input current X it integrated (after DLIF's gain)."""

    spikes: jax.Array
    h: jax.Array
    v: jax.Array
    current: Optional[jax.Array] = None


# ----------------------------------------------------------------------------- steps


def lif_charge(v, x, *, tau: float, v_reset: Optional[float], decay_input: bool):
    """SpikingJelly LIF charge (soft reset uses V_reset = 0 in the leak)."""
    vr = 0.0 if v_reset is None else v_reset
    if decay_input:
        return v + (x - (v - vr)) / tau
    return v - (v - vr) / tau + x


def leaky_charge(v, x, *, leak: float):
    """IF-style charge ``H = λ·V + X`` (λ=1: IF; λ=0.99: DLIF)."""
    return leak * v + x


def fire_and_reset(h, *, v_threshold: float, v_reset: Optional[float], detach_reset: bool,
                   surrogate: Surrogate):
    """Returns ``(v_next, s)``: spike ``Θ(H − V_th)`` and hard or soft reset."""
    s = surrogate_lib.spike(h - v_threshold, surrogate)
    s_reset = jax.lax.stop_gradient(s) if detach_reset else s
    if v_reset is None:
        v = h - s_reset * v_threshold
    else:
        v = s_reset * v_reset + (1.0 - s_reset) * h
    return v, s


def make_fire(cfg: "NeuronConfig", surrogate: Surrogate) -> Callable:
    """``fire(h) -> (v_next, s)``: :func:`fire_and_reset` with ``cfg``'s threshold and reset."""
    return functools.partial(fire_and_reset, v_threshold=cfg.v_threshold, v_reset=cfg.v_reset,
                             detach_reset=cfg.detach_reset, surrogate=surrogate)


def make_step(charge: Callable, fire: Callable):
    """Single-step function ``(v, x_t) -> (v_next, Trace_t)`` that ``lax.scan`` runs: charge, then fire."""

    def step(v, x):
        h = charge(v, x)
        v_next, s = fire(h)
        return v_next, Trace(s, h, v_next)

    return step


# ----------------------------------------------------------------------------- scan


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def time_mean_grad(x_seq, time_axis: int = 0):
    """Identity forward; the backward replaces the gradient of every step by its mean over T (HART)."""
    return x_seq


def _tmg_fwd(x_seq, time_axis):
    return x_seq, None


def _tmg_bwd(time_axis, _, g):
    return (jnp.broadcast_to(g.mean(time_axis, keepdims=True), g.shape),)


time_mean_grad.defvjp(_tmg_fwd, _tmg_bwd)


def rga_slope(x_bar, *, leak, gamma, v_threshold=1.0):
    """RGA's rate-function derivative (Bu et al., CVPR 2023) for ``H = λV + X``, z = x̄ / V_th:

    ``f'(z) = γ`` for ``0 ≤ z ≤ 1 − λ``, ``(1 − γ + γλ) / (λ + 1)`` for ``1 − λ < z ≤ 2``, else 0;
    returns ``f'(z) / V_th`` (the derivative w.r.t. x̄). The reference code adds both pieces at
    the single point z = 1 − λ; here the pieces are disjoint. For IF (λ = 1) γ drops out: 1/2 on (0, 2].

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.neuron import rga_slope
        >>> g = rga_slope(jnp.array([-0.1, 0.1, 0.5, 2.5]), leak=0.8, gamma=0.2)  # (1 − 0.2 + 0.16) / 1.8
        >>> [round(float(v), 4) for v in g]
        [0.0, 0.2, 0.5333, 0.0]
    """
    z = x_bar / v_threshold
    low = (z >= 0) & (z <= 1 - leak)
    high = (z > 1 - leak) & (z <= 2)
    g = jnp.where(low, gamma, jnp.where(high, (1 - gamma + gamma * leak) / (leak + 1), 0.0))
    return (g / v_threshold).astype(x_bar.dtype)


@jax.custom_vjp
def _cotangent_barrier(x):
    """Identity; its backward materializes the cotangent (``optimization_barrier``) before it is used.

    Without it XLA CPU fused the unrolled loop's backward into each consumer of the layer's input
    gradient (BatchNorm's reductions, the conv), recomputing the whole time chain per consumer.
    """
    return x


_cotangent_barrier.defvjp(lambda x: (x, None), lambda _, g: (jax.lax.optimization_barrier(g),))


def _unrolled(T: int, unroll: Optional[bool]) -> bool:
    """Whether a loop of ``T`` steps is written out: ``unroll``, or (``None``) T ≤ :data:`UNROLL_MAX_T`."""
    return T <= UNROLL_MAX_T if unroll is None else bool(unroll)


def _time_loop(body, v0, xs, *, unroll: bool, time_axis: int):
    """``lax.scan(body, v0, xs)`` over axis ``time_axis`` of every leaf of ``xs``; the outputs keep that axis.

    Unrolled, the loop is written out step by step on ``lax.split`` parts of that axis (its transpose
    is one concatenation; per-step slices transpose to pads that XLA sums by evaluating every pad), so
    a batch-major ``[B, T, ...]`` input needs no transpose to time-major and XLA fuses across steps.
    Digits model, idle 2-core CPU (training step at batch 64 / input gradient at batch 128):
    split parts 25–29 / 28–41 ms; per-step slices 23–27 / 61–76 ms; split without
    :func:`_cotangent_barrier` 39–44 / 50–53 ms.
    """
    if not unroll:
        move = lambda a: jnp.moveaxis(a, time_axis, 0)
        _, out = jax.lax.scan(body, v0, jax.tree.map(move, xs))
        return jax.tree.map(lambda a: jnp.moveaxis(a, 0, time_axis), out)
    leaves, treedef = jax.tree.flatten(xs)
    T = leaves[0].shape[time_axis]
    parts = [[jnp.squeeze(p, time_axis) for p in jax.lax.split(_cotangent_barrier(a), [1] * T, axis=time_axis)]
             for a in leaves]
    v, outs = v0, []
    for t in range(T):
        v, out = body(v, jax.tree.unflatten(treedef, [p[t] for p in parts]))
        outs.append(out)
    return jax.tree.map(lambda *a: jnp.stack(a, time_axis), *outs)


def scan(step, x_seq, v0, *, remat: bool = False, gradient: str = "bptt", return_trace: bool = False,
         unroll: Optional[bool] = None, rate_slope: Optional[Callable] = None, time_axis: int = 0):
    """Runs ``step`` over the time axis of ``x_seq`` from ``v0``; the gradient mode shapes the backward.

    ``unroll`` writes the time loop out step by step (``None``: when T ≤ :data:`UNROLL_MAX_T`).
    For short T the loop's overhead dominates on CPU; unrolled, XLA fuses the steps
    (digits training step, T = 4, batch-major: 46 → 25–29 ms on an idle 2-core CPU, ``bench/train_step.py``)
    and floats may differ from the rolled loop in the last bits. ``time_axis`` is the axis of ``x_seq`` (and of
    the returned trace) that is time: 1 for batch-major ``[B, T, ...]`` activations.

    The rate modes (``"bptr"``, ``"rga"``, ``"ann"``) run the scan without gradient and add
    ``slope·(x̄ − sg(x̄))`` (zero forward) to the spikes, so ``∂S_t/∂X_t' = slope / T``;
    ``rate_slope(x_bar, rate) -> slope`` gives RGA's and the ANN proxy's slope (BPTR: ``1[r > 0]``).
    ``"hart"`` detaches the state between steps and averages the input gradient over T.

    Returns the spikes ``[T, ...]`` (or the whole :class:`Trace`).
    """
    T = jax.tree.leaves(x_seq)[0].shape[time_axis]
    unroll = _unrolled(T, unroll)
    loop = functools.partial(_time_loop, unroll=unroll, time_axis=time_axis)
    body = jax.checkpoint(step) if remat else step
    if gradient in RATE_GRADIENTS:
        x_const = jax.lax.stop_gradient(x_seq)
        trace = jax.lax.stop_gradient(loop(body, v0, x_const))
        rate = trace.spikes.mean(time_axis)
        x_bar = x_seq.mean(time_axis)
        if gradient == "bptr":  # backward through the rate: d r / d x̄ = 1[r > 0]; the output spikes carry it.
            surrogate_path = jnp.where(rate > 0, x_bar - jax.lax.stop_gradient(x_bar), 0.0)
        else:
            if rate_slope is None:
                raise ValueError(f"neuron.scan: gradient={gradient!r} needs rate_slope(x_bar, rate)")
            slope = jax.lax.stop_gradient(rate_slope(jax.lax.stop_gradient(x_bar), rate))
            surrogate_path = slope * (x_bar - jax.lax.stop_gradient(x_bar))
        trace = trace._replace(spikes=trace.spikes + jnp.expand_dims(surrogate_path, time_axis))
    elif gradient == "hart":
        hart_body = lambda v, x: body(jax.lax.stop_gradient(v), x)
        trace = loop(hart_body, v0, time_mean_grad(x_seq, time_axis))
    else:
        trace = loop(body, v0, x_seq)
    return trace if return_trace else trace.spikes


def rate_slope_fn(cfg: "NeuronConfig", surrogate: Optional[Surrogate]) -> Optional[Callable]:
    """``rate_slope(x_bar, rate)`` of ``cfg.gradient`` for :func:`scan` (``None`` outside rga / ann).

    RGA maps the neuron onto ``H = λV + X'``: IF / DLIF λ = leak, X' = X; LIF λ = 1 − 1/τ and
    X' = X/τ with ``decay_input`` (the chain rule's 1/τ included). γ = ``surrogate.width``.
    """
    if cfg.gradient == "ann":
        return lambda x_bar, rate: (x_bar > 0).astype(x_bar.dtype)
    if cfg.gradient != "rga":
        return None
    gamma = (default_surrogate(cfg) if surrogate is None else surrogate).width
    if cfg.kind == "lif":
        leak, scale = 1.0 - 1.0 / cfg.tau, (1.0 / cfg.tau if cfg.decay_input else 1.0)
    else:
        leak, scale = cfg.leak, 1.0
    def slope(x_bar, rate):
        g = jnp.asarray(gamma, x_bar.dtype)
        return scale * rga_slope(scale * x_bar, leak=leak, gamma=g, v_threshold=cfg.v_threshold)
    return slope


def run(cfg: NeuronConfig, x_seq, *, gain=None, surrogate: Optional[Surrogate] = None,
        return_trace: bool = False, where: str = "neuron.", time_axis: int = 0):
    """The neuron ``cfg`` over time: charge, fire, reset (the one dispatch over kinds).

    Args:
      cfg: the neuron's parameters.
      x_seq: input currents ``[T, ...]``.
      gain: DLIF only: the per-step input gain ``p`` ``[T]``; the input is ``p[t]·X[t]``.
      surrogate: backward shape as data (may be traced, e.g. an attack's estimator);
        ``None`` = :func:`default_surrogate` of ``cfg``.
      return_trace: return the :class:`Trace` (spikes, H, V) instead of the spikes.
      where: prefix of the error messages.
      time_axis: the axis of ``x_seq`` that is time (0: ``[T, ...]``; 1: batch-major ``[B, T, ...]``,
        which an unrolled loop runs without transposing); the trace keeps it.

    Returns:
      Spikes with time on ``time_axis`` (or a :class:`Trace`; its spikes carry the BPTR backward).
    """
    cfg = cfg.check(where)
    x_seq = jnp.asarray(x_seq)
    if x_seq.ndim <= time_axis or x_seq.shape[time_axis] < 1:
        raise ValueError(f"{where}x_seq: must have a time axis {time_axis} with T >= 1, got shape {x_seq.shape}")
    T = x_seq.shape[time_axis]
    if cfg.kind == "dlif":
        gain = jnp.asarray(gain)
        if gain.shape != (T,):
            raise ValueError(f"{where}dlif: gain must have shape [T]={(T,)}, got {gain.shape}")
        shape = [1] * x_seq.ndim
        shape[time_axis] = T
        x_seq = x_seq * gain.reshape(shape).astype(x_seq.dtype)
    if cfg.kind == "lif":
        charge = lambda v, x: lif_charge(v, x, tau=cfg.tau, v_reset=cfg.v_reset, decay_input=cfg.decay_input)
    else:
        charge = lambda v, x: leaky_charge(v, x, leak=cfg.leak)
    surrogate = default_surrogate(cfg) if surrogate is None else surrogate
    fire = make_fire(cfg, surrogate)
    step = make_step(charge, fire)
    state_shape = x_seq.shape[:time_axis] + x_seq.shape[time_axis + 1:]
    v0 = jnp.full(state_shape, 0.0 if cfg.v_reset is None else cfg.v_reset, x_seq.dtype)
    lin = _linear_charge(cfg)
    # Time-major input: the rolled reverse scan needs no transpose (T=8 f+b 2.02 -> 0.84 ms, bench/neuron.py);
    # batch-major model layers (time_axis=1) keep the unrolled loop for small T (no transposes there).
    fused = (not _unrolled(T, cfg.unroll) or (time_axis == 0 and cfg.unroll is None)) if cfg.fused is None else cfg.fused
    if cfg.gradient == "bptt" and lin is not None and fused:
        s_seq, h_seq, v_seq = bptt.scan(charge, fire, lin, jnp.moveaxis(x_seq, time_axis, 0), v0, surrogate)
        trace = Trace(*(jnp.moveaxis(a, 0, time_axis) for a in (s_seq, h_seq, v_seq)))
    else:
        trace = scan(step, x_seq, v0, remat=cfg.remat, gradient=cfg.gradient, return_trace=True, unroll=cfg.unroll,
                     rate_slope=rate_slope_fn(cfg, surrogate), time_axis=time_axis)
    return trace._replace(current=x_seq) if return_trace else trace.spikes


def _linear_charge(cfg: NeuronConfig) -> Optional["bptt.Linear"]:
    """The charge's partials ``∂H/∂V``, ``∂H/∂X`` and the reset constants (``None`` when a field is traced)."""
    fields = (cfg.tau, cfg.leak, cfg.v_threshold, cfg.v_reset)
    if any(_traced(f) for f in fields):
        return None
    if cfg.kind == "lif":
        a, b = 1.0 - 1.0 / cfg.tau, (1.0 / cfg.tau if cfg.decay_input else 1.0)
    else:
        a, b = cfg.leak, 1.0
    return bptt.Linear(float(a), float(b), float(cfg.v_threshold), None if cfg.v_reset is None else float(cfg.v_reset),
                       bool(cfg.detach_reset))


def lif(x_seq, *, surrogate: Optional[Surrogate] = None, return_trace: bool = False, **params):
    """Leaky integrate-and-fire neuron over time (SpikingJelly ``LIFNode`` conventions).

    ``params`` are :class:`NeuronConfig` fields (``tau``, ``v_threshold``, ``v_reset``,
    ``decay_input``, ``detach_reset``, ``gradient``, ``remat``); ``surrogate`` (default
    sigmoid(4)) and ``return_trace`` as in :func:`run`.
    """
    return run(NeuronConfig(kind="lif", **params), x_seq, surrogate=surrogate, return_trace=return_trace,
               where="neuron.lif: ")


def if_neuron(x_seq, *, surrogate: Optional[Surrogate] = None, return_trace: bool = False, **params):
    """(Leaky) integrate-and-fire ``H = λ·V + X``: the robustness papers' preset.

    The defaults are the SNN-RAT / SR preset: λ=1 (no leak; the papers' "tau=1"),
    V_th=1, hard reset to 0 with the gradient through the reset, triangle(1) surrogate.
    ``params`` are :class:`NeuronConfig` fields, with ``leak`` = λ ≥ 0 in place of τ.
    """
    return run(NeuronConfig(kind="if", **params), x_seq, surrogate=surrogate, return_trace=return_trace,
               where="neuron.if_neuron: ")


def dlif(x_seq, gain, *, surrogate: Optional[Surrogate] = None, return_trace: bool = False, **params):
    """DLIF of RSNN (Ding et al. 2024): ``V = 0.99·V + p[t]·X[t]``.

    Args:
      x_seq: input currents ``[T, ...]``.
      gain: learnable per-step input gain ``p`` of shape ``[T]`` (initialised to 1).
      surrogate, return_trace: as in :func:`run`.
      **params: :class:`NeuronConfig` fields (``leak`` 0.99 by default).
    """
    return run(DLIF._replace(**params), x_seq, gain=gain, surrogate=surrogate, return_trace=return_trace,
               where="neuron.dlif: ")
