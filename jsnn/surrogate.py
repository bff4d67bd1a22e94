"""Heaviside spikes with surrogate gradients.

A surrogate is *data*: a :class:`Surrogate` holds the shape as an integer index
(``kind``) and its width. The factories return Python numbers, so a model's own
surrogate is a hashable spec (two models built from one config compare and hash
equal); passed to a jitted function, the same value is traced data (:func:`as_data`),
so one compiled function serves every width and shape and can be ``jax.vmap``-ed over
a :func:`stack` of them (the SR attack protocol).

Forward: ``spike(u) = Θ(u)`` with ``Θ(0) = 1``. Backward: ``g(u)`` of the
surrogate, u = H - V_th (SpikingJelly conventions, Fang et al. 2021).

Shapes (``kind``) and what their parameter means — the TMLR 2024 attack protocol
(Özdenizci & Legenstein) calls every one of them γ:

==================  =====================================  ===========================
kind                g(u)                                   parameter
==================  =====================================  ===========================
sigmoid             α·σ(αu)·(1 − σ(αu))                    α slope (SpikingJelly)
atan                (α/2) / (1 + (παu/2)²)                 α slope (SpikingJelly)
triangle            max(0, γ − |u|) / γ²                   γ half-width ("PCW")
rectangle           1[|u| < w/2] / w                       w = γ full width ("RECT")
fast_sigmoid        1 / (1 + k|u|)²                        k slope (SuperSpike)
straight_through    1                                      none ("STE")
exponential         exp(−γ|u|)                             γ rate ("EXP")
exponential_d       0.3·exp(−γ|u|)                         γ rate ("EXP-D")
shifted_gaussian    exp(−(u − σ/2)²/2σ²) / (√(2π)·σ)       σ std (PDSG, Lun et al. 2025)
==================  =====================================  ===========================

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jsnn import surrogate
    >>> float(jax.grad(lambda u: surrogate.spike(u, surrogate.triangle(1.0)))(0.5))
    0.5
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# New shapes are appended (a kind is an index: stored specs and stacks keep their meaning).
SHAPES = ("sigmoid", "atan", "triangle", "rectangle", "fast_sigmoid", "straight_through", "exponential",
          "exponential_d", "shifted_gaussian")
DEFAULT_WIDTHS = {
    "sigmoid": 4.0,
    "atan": 2.0,
    "triangle": 1.0,
    "rectangle": 1.0,
    "fast_sigmoid": 25.0,
    "straight_through": 1.0,
    "exponential": 1.0,
    "exponential_d": 1.0,
    "shifted_gaussian": 1.0,  # PDSG (jsnn.attacks.adaptive) sets σ per channel from the membrane potential
}
# Amplitude α of the exponential shapes, g(u) = α·exp(−γ|u|) (the TMLR 2024 protocol's EXP and EXP-D).
EXPONENTIAL_AMPLITUDE = {"exponential": 1.0, "exponential_d": 0.3}


class Surrogate(NamedTuple):
    """A surrogate-gradient shape as a pytree.

    Attributes:
      kind: index into :data:`SHAPES` (a Python int in a spec, an int32 array as data).
      width: the shape parameter α, γ, w or k (a Python float in a spec, an array as data).

    Example:
        >>> from jsnn import surrogate
        >>> surrogate.atan(2.0) == surrogate.by_name("atan", 2), hash(surrogate.atan(2.0)) == hash(surrogate.atan(2))
        (True, True)
        >>> surrogate.stack([surrogate.triangle(1.0), surrogate.sigmoid(4.0)]).kind.tolist()  # kinds mix
        [2, 0]
    """

    kind: jax.Array
    width: jax.Array

    @property
    def name(self) -> str:
        """Shape name (needs a concrete ``kind``)."""
        return SHAPES[int(self.kind)]

    def __repr__(self) -> str:  # readable in logs and configs
        try:
            return f"{self.name}({float(self.width):g})"
        except Exception:  # traced
            return "Surrogate(<traced>)"


def _make(name: str, width: float) -> Surrogate:
    if isinstance(width, jax.core.Tracer):
        return Surrogate(SHAPES.index(name), width)
    w = float(width)
    if not (math.isfinite(w) and w > 0):
        raise ValueError(f"surrogate {name}: width must be a finite number > 0, got {width!r}")
    return Surrogate(SHAPES.index(name), w)


def sigmoid(alpha: float = 4.0) -> Surrogate:
    """g(u) = α·σ(αu)·(1 − σ(αu))."""
    return _make("sigmoid", alpha)


def atan(alpha: float = 2.0) -> Surrogate:
    """g(u) = (α/2) / (1 + (παu/2)²)."""
    return _make("atan", alpha)


def triangle(gamma: float = 1.0) -> Surrogate:
    """g(u) = max(0, 1 − |u|/γ) / γ = max(0, γ − |u|) / γ² (the robustness papers' default).

    The piecewise-linear "PCW" of the TMLR 2024 protocol and the ZIF of SNN-RAT / HART; γ is the
    half-width of the support, the peak 1/γ.
    """
    return _make("triangle", gamma)


def rectangle(width: float = 1.0) -> Surrogate:
    """g(u) = 1[|u| < w/2] / w (the TMLR 2024 protocol's "RECT" with γ = w, the full width)."""
    return _make("rectangle", width)


def fast_sigmoid(slope: float = 25.0) -> Surrogate:
    """SuperSpike (Zenke & Ganguli 2018): g(u) = 1 / (1 + k|u|)²."""
    return _make("fast_sigmoid", slope)


def straight_through() -> Surrogate:
    """g(u) = 1 (straight-through estimator)."""
    return _make("straight_through", 1.0)


def exponential(gamma: float = 1.0) -> Surrogate:
    """g(u) = exp(−γ|u|) (SLAYER-style; the "EXP" variant of Özdenizci & Legenstein, TMLR 2024).

    γ is a *rate* here (larger γ = narrower), unlike the width γ of :func:`triangle` and
    :func:`rectangle`; the peak g(0) = 1 does not depend on γ.
    """
    return _make("exponential", gamma)


def exponential_d(gamma: float = 1.0) -> Surrogate:
    """g(u) = 0.3·exp(−γ|u|): the TMLR 2024 protocol's "EXP-D" (the exponential with amplitude 0.3).

    The amplitude enters once per spiking layer and per step of the reset path, so the input
    gradient's direction differs from :func:`exponential`'s where paths cross different numbers
    of spike nonlinearities (the temporal reset paths).
    """
    return _make("exponential_d", gamma)


def by_name(name: str, width: float | None = None) -> Surrogate:
    """Surrogate from its name, e.g. ``by_name("atan", 2.0)``; ``width=None`` uses the default."""
    if name not in SHAPES:
        raise ValueError(f"surrogate: unknown name {name!r}; allowed: {', '.join(SHAPES)}")
    return _make(name, DEFAULT_WIDTHS[name] if width is None else width)


def stack(surrogates) -> Surrogate:
    """Stacks surrogates (any shapes and widths) along a new leading axis, for ``jax.vmap``.

    One compiled program then runs every estimator of an ensemble; the shape is selected per
    element by its traced ``kind`` (see :func:`derivative`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import surrogate
        >>> bank = surrogate.stack([surrogate.triangle(1.0), surrogate.sigmoid(4.0), surrogate.atan(2.0)])
        >>> g = jax.vmap(lambda s: jax.grad(lambda u: surrogate.spike(u, s))(0.0))(bank)
        >>> g.tolist()  # g(0) = 1/γ, α/4, α/2
        [1.0, 1.0, 1.0]
    """
    surrogates = [as_data(s) for s in surrogates]
    if not surrogates:
        raise ValueError("surrogate.stack: needs at least one surrogate, got none")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *surrogates)


def as_data(s: Surrogate) -> Surrogate:
    """``s`` with array leaves of fixed dtypes (int32 kind, default-float width).

    Whatever built it (a factory's Python numbers, arrays, a stack), equal-shaped surrogates
    then share one jit cache entry.
    """
    if not isinstance(s, Surrogate):
        raise ValueError(f"surrogate: expected a jsnn.surrogate.Surrogate, got {s!r}")
    return Surrogate(jnp.asarray(s.kind, jnp.int32), jnp.asarray(s.width, jnp.result_type(float)))


def spec(s: Surrogate | None) -> Surrogate | None:
    """``s`` as a hashable spec of Python numbers (a model's own surrogate).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn import surrogate
        >>> surrogate.spec(surrogate.Surrogate(jnp.asarray(1), jnp.asarray(3.0)))
        atan(3)
    """
    if s is None:
        return None
    if not isinstance(s, Surrogate):
        raise ValueError(f"model surrogate: expected a jsnn.surrogate.Surrogate or None, got {s!r}")
    if isinstance(s.kind, jax.core.Tracer) or isinstance(s.width, jax.core.Tracer) or jnp.ndim(s.width) or jnp.ndim(s.kind):
        raise ValueError("model surrogate: must be one concrete surrogate (Python numbers); pass a traced or "
                         "stacked attack-time surrogate as data: models.logits_fn(model, variables, surrogate=...)")
    kind = int(s.kind)
    if not 0 <= kind < len(SHAPES):
        raise ValueError(f"model surrogate: kind {kind} out of range; allowed: 0..{len(SHAPES) - 1} ({', '.join(SHAPES)})")
    return _make(SHAPES[kind], float(s.width))


def derivative(u: jax.Array, surrogate: Surrogate) -> jax.Array:
    """The surrogate derivative g(u), numerically stable for any finite u."""
    w = jnp.asarray(surrogate.width, u.dtype)
    abs_u = jnp.abs(u)
    branches = [
        lambda: w * jax.nn.sigmoid(w * u) * jax.nn.sigmoid(-w * u),
        lambda: (w / 2) / (1 + jnp.square(jnp.pi * w * u / 2)),
        lambda: jnp.maximum(0.0, 1 - abs_u / w) / w,
        lambda: jnp.where(abs_u < w / 2, 1 / w, jnp.zeros_like(u)),
        lambda: 1 / jnp.square(1 + w * abs_u),
        lambda: jnp.ones_like(u),
        lambda: EXPONENTIAL_AMPLITUDE["exponential"] * jnp.exp(-w * abs_u),
        lambda: EXPONENTIAL_AMPLITUDE["exponential_d"] * jnp.exp(-w * abs_u),
        lambda: jnp.exp(-jnp.square(u - w / 2) / (2 * jnp.square(w))) / (math.sqrt(2 * math.pi) * w),
    ]
    kind = surrogate.kind
    if not isinstance(kind, jax.core.Tracer):  # concrete: trace only the one shape
        return branches[int(kind)]().astype(u.dtype)
    return jnp.select([kind == i for i in range(len(SHAPES))], [b() for b in branches]).astype(u.dtype)


def _float0_like(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


@jax.custom_vjp
def spike(u: jax.Array, surrogate: Surrogate) -> jax.Array:
    """Heaviside spike Θ(u) with Θ(0) = 1; gradient from ``surrogate``."""
    u = jnp.asarray(u)
    return (u >= 0).astype(u.dtype)


def _spike_fwd(u, surrogate):
    return spike(u, surrogate), (u, surrogate)


def _spike_bwd(res, g):
    u, surrogate = res
    return g * derivative(jnp.asarray(u), surrogate), jax.tree.map(_float0_like, surrogate)


spike.defvjp(_spike_fwd, _spike_bwd)
