"""Attack-time surrogates that read the layer's own membrane potential: PDSG and ASSG.

Both keep the exact spiking forward and change only the backward of every
:class:`~jsnn.layers.SpikingNeuron`, through the :func:`jsnn.layers.neuron_override` hook: the
layer first runs :func:`jsnn.neuron.run` (its charged potential H and input current X), derives a
surrogate width **per step** from ``u = H − V_th`` (stop-gradient), then runs BPTT over X with
that width at each step (:func:`run_per_step`). Models stay hashable specs; the estimators are
transforms of a ``logits_fn``, so they wrap :func:`jsnn.models.logits_fn` or an ensemble member
alike and one compiled attack serves every run.

* **PDSG** (potential-dependent surrogate gradient; Lun et al., "Towards effective and sparse
  adversarial attack on spiking neural networks via breaking invisible surrogate gradients",
  CVPR 2025): ``g(u) = exp(−(u − σ/2)² / 2σ²) / (√(2π)·σ)`` (the ``"shifted_gaussian"``
  shape of :mod:`jsnn.surrogate`), σ the standard deviation of H per channel (last axis) over time,
  batch and space. The public code (ryime/PDSG-SDA) accumulates over time: σ_t is the std of
  ``H[0..t]`` at step t (``window="causal"``, the default); ``window="all"`` uses all T steps (the
  issue's wording). As there, the std is unbiased (``ddof=1``) and σ = 0 becomes 1; here a
  window of one value (σ undefined, NaN in the reference) is 1 too.
* **ASSG** (adaptive sharpness surrogate gradient; Wang et al., "Towards reliable evaluation of
  adversarial robustness for spiking neural networks", arXiv 2512.22522): per neuron and step,
  running means across *attack iterations* of ``|u|`` and of its deviation,

      M ← β₁·M + (1 − β₁)·|u|,   D ← β₂·D + (1 − β₂)·| |u| − M |,   α = a / (M + r·D + ε),

  with atan's ``a = 2·tan(π·A/2)/π`` (A the bound on the expected gradient-vanishing degree;
  ``degree`` = A/2 is the public code's ``alpha``), or ``a = degree`` for the sigmoid shape, and the surrogate ``atan(α)``. The state ``{layer path: Moments}`` starts
  at M = 1, D = 0 and is updated by every forward (the first one included), before it is used.
  Defaults from the public code (craree/Towards-Reliable-Evaluation-...): A/2 = 0.425 (the attack's
  default), r = 1.5, β₁ = β₂ = 0.9, ε = 1e-4. Under EOT the new state is the mean over draws (the
  reference updates from the first draw only). :func:`assg` returns a *stateful* forward
  ``fn(x, key, state) -> (logits, state)``; :func:`jsnn.attacks.sapgd` carries its state.

Example:
    Both wrap a model's ``logits_fn``; the forward stays the model's own, bit for bit.

    >>> import jax, jax.numpy as jnp
    >>> from jsnn import get_model
    >>> from jsnn.attacks import adaptive
    >>> from jsnn.models import logits_fn
    >>> model, x = get_model("digits_mlp", hidden=(8,), T=2), jnp.full((2, 8, 8, 1), 0.5)
    >>> v = jax.jit(model.init)(jax.random.key(0), x)
    >>> f = adaptive.pdsg(logits_fn(model, v))
    >>> bool(jnp.array_equal(f(x, None), logits_fn(model, v)(x, None)))  # the forward is exact
    True
    >>> g = adaptive.assg(logits_fn(model, v))  # stateful: the state starts as None
    >>> z, state = g(x, None, None)
    >>> list(state), state["SpikingNeuron_0"].m.shape  # one Moments per layer: [T, B, 8]
    (['SpikingNeuron_0'], (2, 2, 8))
"""

from __future__ import annotations

import functools
import math
from typing import Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from jsnn import layers, neuron
from jsnn import surrogate as surrogate_lib
from jsnn.attacks import common, gradients
from jsnn.config import check_choice, check_int, check_number
from jsnn.models.base import ESTIMATOR_MODES
from jsnn.surrogate import Surrogate

WINDOWS = ("causal", "all")
ASSG_SHAPES = ("atan", "sigmoid")


class PDSG(NamedTuple):
    """PDSG's settings (hashable).

    Attributes:
      window: ``"causal"`` (σ_t over steps ≤ t: the public code) or ``"all"`` (over all T).
      ddof: delta degrees of freedom of the std (1: torch's unbiased default, as the public code).

    Example:
        >>> from jsnn.attacks.adaptive import PDSG
        >>> PDSG().check(), PDSG(window="all").window
        (PDSG(window='causal', ddof=1), 'all')
        >>> PDSG(window="future").check()
        Traceback (most recent call last):
        ValueError: pdsg.window: 'future'; allowed: causal, all
    """

    window: str = "causal"
    ddof: int = 1

    def check(self) -> "PDSG":
        check_choice(self.window, "window", WINDOWS, where="pdsg.")
        check_int(self.ddof, "ddof", 0, where="pdsg.")
        return self


class ASSG(NamedTuple):
    """ASSG's settings (hashable); defaults from the public code (see the module docstring).

    Attributes:
      degree: A/2, half the bound A on the expected gradient-vanishing degree (the public code's
        ``alpha``; in (0, 1/2) for atan).
      relax: r, weight of the deviation D in the sharpness.
      beta1, beta2: EMA factors of M and D across attack iterations, in [0, 1).
      eps: ε of ``α = a / (M + r·D + ε)``.
      shape: ``"atan"`` (the paper's; a = 2·tan(π·degree)/π) or ``"sigmoid"`` (a = degree).
      init_m, init_d: the state before the first forward (1 and 0 in the public code).

    Example:
        >>> from jsnn.attacks.adaptive import ASSG
        >>> round(ASSG().numerator, 4), ASSG(shape="sigmoid", degree=0.8).numerator
        (2.6517, 0.8)
    """

    degree: float = 0.425
    relax: float = 1.5
    beta1: float = 0.9
    beta2: float = 0.9
    eps: float = 1e-4
    shape: str = "atan"
    init_m: float = 1.0
    init_d: float = 0.0

    @property
    def numerator(self) -> float:
        """a of ``α = a / (M + r·D + ε)``."""
        return 2 * math.tan(math.pi * self.degree) / math.pi if self.shape == "atan" else float(self.degree)

    def check(self) -> "ASSG":
        check_choice(self.shape, "shape", ASSG_SHAPES, where="assg.")
        check_number(self.degree, "degree", low=0, low_open=True, high=0.5 if self.shape == "atan" else None,
                     high_open=True, where="assg.")
        check_number(self.relax, "relax", low=0, where="assg.")
        check_number(self.beta1, "beta1", low=0, high=1, high_open=True, where="assg.")
        check_number(self.beta2, "beta2", low=0, high=1, high_open=True, where="assg.")
        check_number(self.eps, "eps", low=0, where="assg.")
        check_number(self.init_m, "init_m", low=0, where="assg.")
        check_number(self.init_d, "init_d", low=0, where="assg.")
        if self.init_m + self.relax * self.init_d + self.eps <= 0:
            raise ValueError("assg: init_m + relax·init_d + eps must be > 0 (the first sharpness)")
        return self


class Moments(NamedTuple):
    """ASSG state of one layer: ``m`` (EMA of |u|) and ``d`` (EMA of its deviation), both ``[T, B, ...]``."""

    m: jax.Array
    d: jax.Array


# ----------------------------------------------------------------------------- the formulas


def pdsg_sigma(h, window: str = "causal", ddof: int = 1):
    """PDSG's σ of charged potentials ``h`` ``[T, B, ..., C]``: std per channel → ``[T, 1, ..., C]``.

    Reduces over batch and space and over the steps of the window (``"causal"``: ``0..t``;
    ``"all"``: every step, the same σ at each t). σ = 0 or undefined (n ≤ ddof) becomes 1.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks.adaptive import pdsg_sigma
        >>> h = jnp.array([[[0.0], [2.0]], [[4.0], [6.0]]])  # [T=2, B=2, C=1]
        >>> [round(float(s), 4) for s in pdsg_sigma(h).ravel()]  # std(0, 2) and std(0, 2, 4, 6), unbiased
        [1.4142, 2.582]
        >>> [round(float(s), 4) for s in pdsg_sigma(h, "all").ravel()]
        [2.582, 2.582]
    """
    h = jax.lax.stop_gradient(h)
    T, axes = h.shape[0], tuple(range(h.ndim - 1))

    def std(block):
        n = block.size // block.shape[-1]
        s = jnp.std(block, axis=axes, ddof=ddof, keepdims=True) if n > ddof else jnp.zeros_like(block[:1, :1])
        return jnp.where((s > 0) & jnp.isfinite(s), s, jnp.ones_like(s))

    if window == "all":
        return jnp.broadcast_to(std(h), (T,) + (1,) * (h.ndim - 2) + h.shape[-1:])
    return jnp.concatenate([std(h[: t + 1]) for t in range(T)], axis=0)


def assg_update(spec: ASSG, u, prev: Optional[Moments]) -> Moments:
    """One ASSG update from ``u = H − V_th`` (stop-gradient): ``M ← β₁M + (1−β₁)|u|``,
    ``D ← β₂D + (1−β₂)·||u| − M|`` with the new M; ``prev=None`` starts from (init_m, init_d).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks.adaptive import ASSG, assg_update
        >>> mom = assg_update(ASSG(), jnp.array([-3.0, 1.0]), None)  # M = 0.9 + 0.1|u|
        >>> [round(float(a), 4) for a in mom.m], [round(float(a), 4) for a in mom.d]
        ([1.2, 1.0], [0.18, 0.0])
    """
    a = jnp.abs(jax.lax.stop_gradient(u))
    m0, d0 = (spec.init_m, spec.init_d) if prev is None else prev
    m = spec.beta1 * m0 + (1 - spec.beta1) * a
    d = spec.beta2 * d0 + (1 - spec.beta2) * jnp.abs(a - m)
    return Moments(m.astype(a.dtype), d.astype(a.dtype))


def assg_sharpness(spec: ASSG, mom: Moments):
    """``α = a / (M + r·D + ε)`` per neuron and step."""
    return spec.numerator / (mom.m + spec.relax * mom.d + spec.eps)


# ----------------------------------------------------------------------------- the layer


def _charge(cfg: neuron.NeuronConfig):
    """The charge function :func:`jsnn.neuron.run` uses for ``cfg`` (DLIF's gain is already in the current)."""
    if cfg.kind == "lif":
        return functools.partial(neuron.lif_charge, tau=cfg.tau, v_reset=cfg.v_reset, decay_input=cfg.decay_input)
    return functools.partial(neuron.leaky_charge, leak=cfg.leak)


def run_per_step(cfg: neuron.NeuronConfig, current, surrogate: Surrogate) -> neuron.Trace:
    """BPTT of neuron ``cfg`` over input currents ``current`` ``[T, ...]`` (after any DLIF gain) with
    surrogate width ``surrogate.width[t]`` at step t (broadcast against the step's ``u``).

    ``surrogate.kind`` is one concrete shape. The forward equals :func:`jsnn.neuron.run`'s;
    ``cfg.gradient`` is ignored (this is BPTT), ``remat`` and ``unroll`` are honoured.

    Example:
        An IF neuron fed 0.6 twice: ``H = (0.6, 1.2)``, it spikes at t = 1. With triangle widths
        γ₀ = 1 and γ₁ = 2: ``∂S₁/∂X₁ = g_γ₁(0.2) = 0.45`` and, through the reset of step 0,
        ``∂S₁/∂X₀ = 0.45·(1 − H₀·g_γ₀(−0.4)) = 0.45·0.64``:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn import neuron, surrogate
        >>> from jsnn.attacks.adaptive import run_per_step
        >>> s = surrogate.Surrogate(surrogate.SHAPES.index("triangle"), jnp.array([[1.0], [2.0]]))
        >>> f = lambda x: run_per_step(neuron.IF, x, s).spikes[1].sum()
        >>> [round(float(a), 4) for a in jax.grad(f)(jnp.array([[0.6], [0.6]])).ravel()]
        [0.288, 0.45]
    """
    charge, kind = _charge(cfg), int(surrogate.kind)
    widths = jnp.broadcast_to(jnp.asarray(surrogate.width, current.dtype),
                              (current.shape[0],) + jnp.shape(surrogate.width)[1:])

    def step(v, xs):
        x_t, w_t = xs
        return neuron.make_step(charge, neuron.make_fire(cfg, Surrogate(kind, w_t)))(v, x_t)

    v0 = jnp.full(current.shape[1:], 0.0 if cfg.v_reset is None else cfg.v_reset, current.dtype)
    trace = neuron.scan(step, (current, widths), v0, remat=cfg.remat, return_trace=True, unroll=cfg.unroll)
    return trace._replace(current=current)


def _layer(width_fn, module, cfg, x_seq, *, return_trace: bool = True, **kw):
    """The override: :func:`jsnn.neuron.run` for H and X, then :func:`run_per_step` with ``width_fn``'s surrogate."""
    first = neuron.run(cfg, x_seq, return_trace=True, **kw)
    u = jax.lax.stop_gradient(first.h) - cfg.v_threshold
    trace = run_per_step(cfg, first.current, width_fn(module, u))
    return trace if return_trace else trace.spikes


_PDSG_KIND = surrogate_lib.SHAPES.index("shifted_gaussian")


def _pdsg_override(spec: PDSG):
    """The :func:`jsnn.layers.neuron_override` context of PDSG with ``spec``."""
    def width(module, u):
        return Surrogate(_PDSG_KIND, pdsg_sigma(u, spec.window, spec.ddof))

    return layers.neuron_override(functools.partial(_layer, width))


class _Pdsg(NamedTuple):
    """``(logits_fn, x, key) -> logits`` with PDSG in every spiking layer; equal by value."""

    spec: PDSG

    def __call__(self, logits_fn, x, key):
        with _pdsg_override(self.spec):
            return logits_fn(x, key)


def pdsg(logits_fn, spec: PDSG = PDSG()) -> Partial:
    """``logits_fn`` with the PDSG backward in every :class:`~jsnn.layers.SpikingNeuron` (forward unchanged).

    Returns a value-equal :class:`jax.tree_util.Partial` ``(x, key) -> logits``: pass it to any attack.
    """
    if not isinstance(spec, PDSG):
        raise ValueError(f"adaptive.pdsg: spec must be a jsnn.attacks.adaptive.PDSG, got {spec!r}")
    return Partial(_Pdsg(spec.check()), common.as_partial(logits_fn))


_MISSING = object()


class _Assg(NamedTuple):
    """``(logits_fn, x, key, state) -> (logits, state)`` with ASSG in every spiking layer; equal by value."""

    spec: ASSG

    def __call__(self, logits_fn, x, key, state=_MISSING):
        if state is _MISSING:
            raise ValueError("adaptive.assg: this forward carries ASSG state, call fn(x, key, state) with state None "
                             "at the first iteration (jsnn.attacks.sapgd does)")
        new: Dict[str, Moments] = {}

        def width(module, u):
            path = "/".join(module.path)
            if path in new:
                raise ValueError(f"adaptive.assg: layer {path!r} ran twice in one forward; ASSG keeps one state "
                                 "per layer")
            prev = None
            if state is not None:
                if path not in state:
                    raise ValueError(f"adaptive.assg: no state for layer {path!r}; state has {sorted(state)}")
                prev = state[path]
            new[path] = assg_update(self.spec, u, prev)
            kind = surrogate_lib.SHAPES.index(self.spec.shape)
            return Surrogate(kind, assg_sharpness(self.spec, new[path]))

        with layers.neuron_override(functools.partial(_layer, width)):
            logits = logits_fn(x, key)
        return logits, new


def assg(logits_fn, spec: ASSG = ASSG()) -> Partial:
    """Stateful ``fn(x, key, state) -> (logits, new_state)``: ``logits_fn`` with ASSG in every spiking layer.

    ``state`` is ``None`` at the first call, then the previous call's ``new_state``
    (``{layer path: Moments}``). :func:`jsnn.attacks.sapgd` recognises it (:func:`is_stateful`).
    """
    if not isinstance(spec, ASSG):
        raise ValueError(f"adaptive.assg: spec must be a jsnn.attacks.adaptive.ASSG, got {spec!r}")
    return Partial(_Assg(spec.check()), common.as_partial(logits_fn))


def is_stateful(fn) -> bool:
    """Whether ``fn`` is a stateful forward of :func:`assg` (``fn(x, key, state) -> (logits, state)``)."""
    return isinstance(fn, Partial) and isinstance(fn.func, _Assg)


# The named estimator "pdsg" (default settings) of jsnn.attacks.gradients: an ensemble member (run alone, as
# the members with the model's own surrogate) and part of the "strong" preset. ASSG is not registered: its
# state lives across attack iterations, which only a stateful attack (jsnn.attacks.sapgd) carries.
ESTIMATOR_MODES["pdsg"] = lambda surrogate: _pdsg_override(PDSG())


def _pdsg_estimator(arg):
    if arg is not None:
        raise ValueError(f"estimator: pdsg takes no width (σ comes from the membrane potential), got {arg!r}")
    return gradients.Estimator(None, "pdsg")


gradients.register("pdsg", _pdsg_estimator)
