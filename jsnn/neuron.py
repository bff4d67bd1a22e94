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
``V_reset`` (0 for soft reset). ``gradient="bptr"`` backpropagates through the
rate (Ding et al. 2022, "SNN-RAT"; Bu et al. 2023 rate-gradient): the backward of
the layer is ``∂r/∂x̄ = 1[r > 0]`` with r the spike rate and x̄ the mean input.

Example:
    >>> import jax.numpy as jnp
    >>> from jsnn import neuron
    >>> neuron.lif(jnp.full((4, 1), 1.5), tau=2.0).ravel().tolist()
    [0.0, 1.0, 0.0, 1.0]
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jsnn import surrogate as surrogate_lib
from jsnn.surrogate import Surrogate

GRADIENTS = ("bptt", "bptr")


class Trace(NamedTuple):
    """What a neuron did, per step: spikes, charged potential H, post-reset V."""

    spikes: jax.Array
    h: jax.Array
    v: jax.Array


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


def make_step(charge: Callable, *, v_threshold: float, v_reset: Optional[float],
              detach_reset: bool, surrogate: Surrogate):
    """Single-step function ``(v, x_t) -> (v_next, Trace_t)`` that ``lax.scan`` runs."""

    def step(v, x):
        h = charge(v, x)
        v_next, s = fire_and_reset(h, v_threshold=v_threshold, v_reset=v_reset,
                                   detach_reset=detach_reset, surrogate=surrogate)
        return v_next, Trace(s, h, v_next)

    return step


# ----------------------------------------------------------------------------- scan


def _check(x_seq, v_threshold, v_reset, gradient):
    x_seq = jnp.asarray(x_seq)
    if x_seq.ndim < 1 or x_seq.shape[0] < 1:
        raise ValueError(f"neuron: x_seq must be time-major [T, ...] with T >= 1, got shape {x_seq.shape}")
    if gradient not in GRADIENTS:
        raise ValueError(f"neuron: gradient={gradient!r}; allowed: {', '.join(GRADIENTS)}")
    if not isinstance(v_threshold, jax.core.Tracer) and not math.isfinite(float(v_threshold)):
        raise ValueError(f"neuron: v_threshold must be finite, got {v_threshold!r}")
    if (v_reset is not None and not isinstance(v_reset, jax.core.Tracer)
            and not isinstance(v_threshold, jax.core.Tracer) and float(v_reset) >= float(v_threshold)):
        raise ValueError(f"neuron: v_reset={v_reset!r} must be below v_threshold={v_threshold!r}")
    return x_seq


def _run(step, x_seq, v0, *, remat: bool, gradient: str, return_trace: bool):
    body = jax.checkpoint(step) if remat else step
    if gradient == "bptr":
        x_const = jax.lax.stop_gradient(x_seq)
        _, trace = jax.lax.scan(body, v0, x_const)
        trace = jax.lax.stop_gradient(trace)
        rate = trace.spikes.mean(0)
        x_bar = x_seq.mean(0)
        # backward through the rate: d r / d x̄ = 1[r > 0]; the output spikes carry it.
        surrogate_path = jnp.where(rate > 0, x_bar - jax.lax.stop_gradient(x_bar), 0.0)
        trace = trace._replace(spikes=trace.spikes + surrogate_path[None])
    else:
        _, trace = jax.lax.scan(body, v0, x_seq)
    return trace if return_trace else trace.spikes


def _surrogate_or(surrogate, default):
    return default if surrogate is None else surrogate


def lif(x_seq, *, tau: float = 2.0, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
        decay_input: bool = True, detach_reset: bool = False, surrogate: Optional[Surrogate] = None,
        remat: bool = False, gradient: str = "bptt", return_trace: bool = False):
    """Leaky integrate-and-fire neuron over time (SpikingJelly ``LIFNode`` conventions).

    Args:
      x_seq: input currents ``[T, ...]``.
      tau: membrane time constant τ > 0.
      v_threshold: firing threshold V_th.
      v_reset: hard-reset potential, or ``None`` for soft reset (subtract V_th).
      decay_input: whether the input is divided by τ.
      detach_reset: stop the gradient through the spike in the reset.
      surrogate: backward shape; default ``sigmoid(4.0)``.
      remat: recompute each step in the backward pass (memory flat in T for the state).
      gradient: ``"bptt"`` (through time) or ``"bptr"`` (through the rate).
      return_trace: also return H and V (a :class:`Trace`) instead of spikes only.

    Returns:
      Spikes ``[T, ...]`` (or a :class:`Trace`).
    """
    x_seq = _check(x_seq, v_threshold, v_reset, gradient)
    if not isinstance(tau, jax.core.Tracer) and not (math.isfinite(float(tau)) and float(tau) > 0):
        raise ValueError(f"neuron.lif: tau must be > 0, got {tau!r}")
    charge = lambda v, x: lif_charge(v, x, tau=tau, v_reset=v_reset, decay_input=decay_input)
    step = make_step(charge, v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset,
                     surrogate=_surrogate_or(surrogate, surrogate_lib.sigmoid(4.0)))
    v0 = jnp.full(x_seq.shape[1:], 0.0 if v_reset is None else v_reset, x_seq.dtype)
    return _run(step, x_seq, v0, remat=remat, gradient=gradient, return_trace=return_trace)


def if_neuron(x_seq, *, leak: float = 1.0, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
              detach_reset: bool = False, surrogate: Optional[Surrogate] = None, remat: bool = False,
              gradient: str = "bptt", return_trace: bool = False):
    """(Leaky) integrate-and-fire ``H = λ·V + X``: the robustness papers' preset.

    The defaults are the SNN-RAT / SR preset: λ=1 (no leak; the papers' "tau=1"),
    V_th=1, hard reset to 0 with the gradient through the reset, triangle(1) surrogate.
    Arguments as in :func:`lif`, with ``leak`` = λ ≥ 0 in place of τ.
    """
    x_seq = _check(x_seq, v_threshold, v_reset, gradient)
    if not isinstance(leak, jax.core.Tracer) and not (math.isfinite(float(leak)) and float(leak) >= 0):
        raise ValueError(f"neuron.if_neuron: leak must be >= 0, got {leak!r}")
    charge = lambda v, x: leaky_charge(v, x, leak=leak)
    step = make_step(charge, v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset,
                     surrogate=_surrogate_or(surrogate, surrogate_lib.triangle(1.0)))
    v0 = jnp.full(x_seq.shape[1:], 0.0 if v_reset is None else v_reset, x_seq.dtype)
    return _run(step, x_seq, v0, remat=remat, gradient=gradient, return_trace=return_trace)


def dlif(x_seq, gain, *, leak: float = 0.99, **kwargs):
    """DLIF of RSNN (Ding et al. 2024): ``V = 0.99·V + p[t]·X[t]``.

    Args:
      x_seq: input currents ``[T, ...]``.
      gain: learnable per-step input gain ``p`` of shape ``[T]`` (initialised to 1).
      leak: fixed leak (0.99).
      **kwargs: as in :func:`if_neuron`.
    """
    gain = jnp.asarray(gain)
    if gain.shape != (jnp.shape(x_seq)[0],):
        raise ValueError(f"neuron.dlif: gain must have shape [T]={(jnp.shape(x_seq)[0],)}, got {gain.shape}")
    scaled = x_seq * gain.reshape((-1,) + (1,) * (jnp.ndim(x_seq) - 1))
    return if_neuron(scaled, leak=leak, **kwargs)
