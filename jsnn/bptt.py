"""Backprop through time for the linear-charge neurons as one hand-written reverse scan.

Every neuron of :mod:`jsnn.neuron` charges linearly, ``H_t = a·V_{t−1} + b·X_t + c`` (LIF with
``decay_input``: a = 1 − 1/τ, b = 1/τ; without: b = 1; IF / DLIF: a = λ, b = 1), then fires
``S_t = Θ(H_t − V_th)`` and resets (hard: ``V_t = S_t·V_reset + (1 − S_t)·H_t``; soft:
``V_t = H_t − S_t·V_th``). Given the cotangents ``S̄_t, H̄_t, V̄_t`` of the outputs, BPTT is the
reverse recursion (``g`` the surrogate derivative at ``H_t − V_th``, ``Ṽ_t = V̄_t + a·Ĥ_{t+1}``)::

    S̃_t = S̄_t + Ṽ_t·∂V_t/∂S_t        (hard: V_reset − H_t; soft: −V_th; 0 with detach_reset)
    Ĥ_t = H̄_t + Ṽ_t·∂V_t/∂H_t + S̃_t·g (hard: ∂V_t/∂H_t = 1 − S_t; soft: 1)
    X̄_t = b·Ĥ_t,    V̄_0 = a·Ĥ_1.

Autodiff of ``lax.scan`` computes the same sums but keeps every intermediate of each step and runs
the transposed step's many small ops; this backward keeps only ``H`` (one array of the layer's
size per step) and runs one fused elementwise body per step. Both loops carry the one array they
output (``H_{t−1}``, from which the step recomputes the reset ``V_{t−1}``; ``Ĥ_{t+1}``), and ``S``, ``V``
and ``X̄ = b·Ĥ`` are computed from it after the loop, over the whole array: XLA CPU ran each further
carried or stacked value of a step as a fusion of its own, re-reading ``X_t`` and ``V`` on one thread
(LIF ``[128, 64, 1024]``: see docs/attack_speed.md). The forward is the neuron's own charge and
fire functions (the same floats as :func:`jsnn.neuron.scan`); the backward differs from autodiff's by
floating-point reassociation only (tests/test_bptt.py: float64 against ``jax.vjp`` of the scan
for every kind, reset and surrogate, first and second order). Reverse mode only (``jax.jvp``
through it raises). :func:`jsnn.neuron.run` uses it for ``gradient="bptt"`` with a rolled loop.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import bptt, neuron
    >>> x = jnp.linspace(0.0, 2.0, 12).reshape(12, 1)
    >>> cfg = neuron.LIF._replace(unroll=False)
    >>> g_fused = jax.grad(lambda x: neuron.run(cfg, x).sum())(x)
    >>> g_auto = jax.grad(lambda x: neuron.run(cfg._replace(fused=False), x).sum())(x)
    >>> bool(jnp.allclose(g_fused, g_auto, atol=1e-6))
    True
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jsnn import surrogate as surrogate_lib


class Linear(NamedTuple):
    """The charge's partial derivatives ``a = ∂H/∂V`` and ``b = ∂H/∂X`` and the fire/reset constants."""

    a: float
    b: float
    v_threshold: float
    v_reset: Optional[float]  # None: soft reset
    detach_reset: bool


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def scan(charge: Callable, fire: Callable, lin: Linear, x_seq, v0, surrogate):
    """``(S, H, V)`` ``[T, ...]`` of the neuron over time-major ``x_seq`` from ``v0``, with the BPTT above.

    ``charge(v, x_t) -> h`` and ``fire(h) -> (v_next, s)`` are the neuron's (:func:`jsnn.neuron.make_step`
    composes the same two); the charge must be linear with ``lin``'s partials; ``surrogate`` is the one
    it fires with (data).
    """
    return _forward(charge, fire, x_seq, v0)


def _forward(charge, fire, x_seq, v0):
    """``H`` from a loop whose carry is ``H_{t−1}`` (``V_{t−1} = fire(H_{t−1})``, ``v0`` at t = 0), then ``V, S``."""
    def body(carry, x):
        h_prev, first = carry
        h = charge(jnp.where(first, v0, fire(h_prev)[0]), x)
        return (h, jnp.zeros_like(first)), h

    _, h = jax.lax.scan(body, (jnp.zeros_like(v0), jnp.ones((), bool)), x_seq)
    v, s = fire(h)
    return s, h, v


def _scan_fwd(charge, fire, lin, x_seq, v0, surrogate):
    s, h, v = _forward(charge, fire, x_seq, v0)
    return (s, h, v), (h, surrogate)


def _scan_bwd(charge, fire, lin, res, cts):
    h_seq, surrogate = res
    gs_seq, gh_seq, gv_seq = cts
    dt = h_seq.dtype
    a, b, vth = (jnp.asarray(c, dt) for c in (lin.a, lin.b, lin.v_threshold))

    def body(hbar_next, xs):
        h, gs, gh, gv = xs
        u = h - vth
        g = surrogate_lib.derivative(u, surrogate)
        vbar = gv + a * hbar_next
        if lin.v_reset is None:
            dv_dh, dv_ds = jnp.ones_like(h), -vth
        else:
            s = (u >= 0).astype(dt)
            dv_dh, dv_ds = 1.0 - s, jnp.asarray(lin.v_reset, dt) - h
        sbar = gs if lin.detach_reset else gs + vbar * dv_ds
        hbar = gh + vbar * dv_dh + sbar * g
        return hbar, hbar

    _, hbar = jax.lax.scan(body, jnp.zeros_like(h_seq[0]), (h_seq, gs_seq, gh_seq, gv_seq), reverse=True)
    return b * hbar, a * hbar[0], jax.tree.map(surrogate_lib._float0_like, surrogate)


scan.defvjp(_scan_fwd, _scan_bwd)
