"""Gradient estimators of spiking models for attacks: values, names, presets, and the registry.

A spiking model's forward is exact and the same for every estimator; only its backward
changes the attack, so an attack picks its estimator independently of training.

* :class:`Estimator` is a value ``Estimator(surrogate, gradient, grid)``: ``surrogate`` a
  :class:`jsnn.surrogate.Surrogate` (``None`` = the model's own), ``gradient`` a mode of
  :data:`jsnn.neuron.GRADIENTS` — ``"bptt"``, ``"bptr"``, ``"rga"``, ``"hart"``, ``"ann"`` — or one
  registered in :data:`jsnn.models.base.ESTIMATOR_MODES` (``None`` = the model's own), and
  ``grid`` widths to search over (HART's γ search, see :func:`jsnn.attacks.ensemble`).
* Every width is *data*: the ensemble stacks the surrogates of the members that share a gradient
  mode and ``vmap``s one attack over them (one compiled program for all BPTT widths and shapes).
* :func:`parse` reads ``"triangle:1"``, ``"exponential:0.5"``, ``"bptr"``, ``"ann"``, ``"rga:0.2"``,
  ``"hart"`` (γ searched over :data:`HART_GAMMAS`), ``"hart:1"`` (fixed), ``"hart:0.5/1/2"``
  (searched over these), ``"default"``; :func:`expand` also reads the presets of :data:`PRESETS`:
  ``"sr"`` (Liu et al. 2024: triangle(1), sigmoid(4), atan(2), BPTR), ``"tmlr"`` (the 19 variants of
  Özdenizci & Legenstein, TMLR 2024) and ``"strong"`` (the model's own estimator, the 19, the
  rest of SR, RGA and HART).
* Extension point: :func:`register` adds a named estimator (and, by default, puts it into the
  ``strong`` preset) in one line.

Example:
    >>> from jsnn.attacks import gradients
    >>> [e.name for e in gradients.expand("sr")]
    ['triangle(1)', 'sigmoid(4)', 'atan(2)', 'bptr']
    >>> strong = {e.name for e in gradients.expand("strong")}  # (+ the estimators registered into it)
    >>> len(gradients.expand("tmlr")), {e.name for e in gradients.expand("tmlr") + gradients.expand("sr")} <= strong
    (19, True)
    >>> gradients.parse("hart").name, gradients.parse("rga").name, gradients.parse("exponential_d:2").name
    ('hart(0.5|1|2|3|4)', 'rga(0.2)', 'exponential_d(2)')
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional, Tuple

from jsnn import surrogate as surrogate_lib
from jsnn.models.base import ESTIMATOR_MODES
from jsnn.neuron import GRADIENTS
from jsnn.surrogate import Surrogate

RGA_GAMMA = 0.2  # RGA's γ (the reference code's default)
HART_GAMMAS = (0.5, 1.0, 2.0, 3.0, 4.0)  # HART's triangle widths searched by default


class Estimator(NamedTuple):
    """A backward estimator: surrogate (``None`` = the model's), gradient mode (``None`` = the model's),
    and an optional ``grid`` of widths to search over (the member then picks its width per batch).

    Example:
        >>> from jsnn import surrogate
        >>> from jsnn.attacks import Estimator
        >>> Estimator(surrogate.atan(2.0)).name, Estimator(None, "bptr").name, Estimator(None, None).name
        ('atan(2)', 'bptr', 'default')
    """

    surrogate: Optional[Surrogate] = None
    gradient: Optional[str] = "bptt"
    grid: Tuple[float, ...] = ()

    @property
    def name(self) -> str:
        g, s = self.gradient, self.surrogate
        if g in ("bptr", "ann"):
            return g
        if s is None:
            return "default" if g in ("bptt", None) else g
        widths = "|".join(f"{w:g}" for w in self.grid) if self.grid else f"{float(s.width):g}"
        if g == "rga" or (g == "hart" and s.name == "triangle"):
            return f"{g}({widths})"
        shape = f"{s.name}({widths})"
        return shape if g in ("bptt", None) else f"{shape}/{g}"

    def candidates(self) -> Tuple[Surrogate, ...]:
        """The surrogates of the search (``grid``): the shape of ``surrogate`` at every width."""
        return tuple(surrogate_lib.by_name(self.surrogate.name, w) for w in self.grid)


def bptt(surrogate: Optional[Surrogate] = None) -> Estimator:
    """BPTT with ``surrogate`` (``None`` = the model's training surrogate)."""
    return Estimator(surrogate, "bptt")


def bptr() -> Estimator:
    """Backpropagation through the rate (Ding et al. 2022): ``∂r/∂x̄ = 1[r > 0]``.

    Example:
        BPTR's input gradient is ``1[r > 0]``: none for a silent neuron, where a surrogate
        still has one. Rates over T = 4 steps of constant input are 0.5 (x = 0.6) and 0 (x = 0.1):

        >>> import jax, jax.numpy as jnp
        >>> from jsnn import neuron, surrogate
        >>> from jsnn.attacks import gradients
        >>> def rate(x, e):
        ...     return neuron.if_neuron(jnp.broadcast_to(x, (4, 2)), surrogate=e.surrogate,
        ...                             gradient=e.gradient).mean(0)
        >>> x = jnp.array([0.6, 0.1])
        >>> jax.grad(lambda x: rate(x, gradients.bptr()).sum())(x).tolist()
        [1.0, 0.0]
        >>> g = jax.grad(lambda x: rate(x, gradients.bptt(surrogate.triangle(1.0))).sum())(x)
        >>> bool(g[1] > 0)
        True
    """
    return Estimator(None, "bptr")


def ann() -> Estimator:
    """The ANN proxy (the T → 0 rate/ReLU counterpart of the TMLR 2024 protocol): ``∂r/∂x̄ = 1[x̄ > 0]``.

    ReLU's derivative at each layer's own time-averaged input current, i.e. the ReLU network
    linearised along the spiking forward (the reference runs the ReLU network's own forward;
    its masks sit at the ANN's currents instead).
    """
    return Estimator(None, "ann")


def rga(gamma: float = RGA_GAMMA) -> Estimator:
    """RGA (Bu et al., CVPR 2023): the rate function's derivative, :func:`jsnn.neuron.rga_slope` with γ.

    γ travels as the width of the estimator's surrogate (traced data; the shape is unused).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import neuron
        >>> from jsnn.attacks import gradients
        >>> e = gradients.rga(0.2)
        >>> f = lambda x: neuron.if_neuron(jnp.broadcast_to(x, (4, 3)), leak=0.5, surrogate=e.surrogate,
        ...                                gradient=e.gradient).mean(0).sum()
        >>> jax.grad(f)(jnp.array([0.3, 1.5, 2.5])).tolist()  # γ on [0, 1 − λ], (1 − γ + γλ)/(1 + λ) to 2
        [0.20000000298023224, 0.6000000238418579, 0.0]
    """
    return Estimator(surrogate_lib.triangle(gamma), "rga")


def hart(gamma: Optional[float] = None, grid: Tuple[float, ...] = HART_GAMMAS) -> Estimator:
    """HART (Hao et al., ICLR 2024): membrane detached in the time recursion, input gradient averaged over T.

    ``gamma`` fixes the triangle width; ``None`` searches it over ``grid`` (per batch, on the first
    examples, inside the attack: :func:`jsnn.attacks.ensemble`), as the paper scans γ per model.
    """
    if gamma is not None:
        return Estimator(surrogate_lib.triangle(gamma), "hart")
    grid = tuple(float(surrogate_lib.triangle(w).width) for w in grid)  # validates each width
    return Estimator(surrogate_lib.triangle(grid[0]), "hart", grid)


def default() -> Estimator:
    """The model's own estimator (its training surrogate and gradient; also the only one an ANN has)."""
    return Estimator(None, None)


def sr_ensemble() -> tuple:
    """The SR protocol: BPTT with triangle(1), sigmoid(4), atan(2), and BPTR.

    Example:
        >>> from jsnn.attacks import sr_ensemble
        >>> [e.name for e in sr_ensemble()]
        ['triangle(1)', 'sigmoid(4)', 'atan(2)', 'bptr']
    """
    return expand("sr")


def _width_arg(spec: str, arg: str):
    """``""`` → None, ``"2"`` → 2.0, ``"0.5/1/2"`` → (0.5, 1.0, 2.0)."""
    if not arg:
        return None
    try:
        values = tuple(float(a) for a in arg.split("/"))
    except ValueError:
        raise ValueError(f"estimator: width in {spec!r} is not a number (e.g. 'triangle:1' or 'hart:0.5/1/2')") from None
    return values if "/" in arg else values[0]


def _surrogate_estimator(name: str, arg) -> Estimator:
    if isinstance(arg, tuple):  # a search over widths of one shape
        grid = tuple(float(surrogate_lib.by_name(name, w).width) for w in arg)
        return Estimator(surrogate_lib.by_name(name, grid[0]), "bptt", grid)
    return bptt(surrogate_lib.by_name(name, arg))


def _hart_from_arg(arg) -> Estimator:
    return hart(grid=arg) if isinstance(arg, tuple) else hart(arg)


def _no_width(factory):
    def make(arg):
        if arg is not None:
            raise ValueError(f"estimator: {factory.__name__} takes no width, got {arg!r}")
        return factory()
    make.__name__ = factory.__name__
    return make


# name -> factory(width | (widths...) | None) -> Estimator; the surrogate shapes are parsed apart.
NAMED: Dict[str, Callable] = {
    "bptr": _no_width(bptr),
    "ann": _no_width(ann),
    "default": _no_width(default),
    "model": _no_width(default),
    "rga": lambda arg: rga(RGA_GAMMA if arg is None else arg),
    "hart": _hart_from_arg,
}

TMLR = ("triangle:1", "triangle:2", "triangle:3", "triangle:0.5", "triangle:0.25",
        "exponential_d:0.5", "exponential_d:1", "exponential_d:2", "exponential:0.5", "exponential:1",
        "exponential:2", "rectangle:0.25", "rectangle:0.5", "rectangle:1", "rectangle:2", "rectangle:4",
        "straight_through", "bptr", "ann")
# name -> member specs; "strong" is the default worst case of jsnn.evaluate ("default" first: the model's own
# estimator, which the sanity flag estimator_beats_training_surrogate compares the others with).
PRESETS: Dict[str, Tuple[str, ...]] = {
    "sr": ("triangle:1", "sigmoid:4", "atan:2", "bptr"),
    "tmlr": TMLR,
    "strong": ("default",) + TMLR + ("sigmoid:4", "atan:2", "rga", "hart"),
}


def register(name: str, factory: Callable, *, presets: Tuple[str, ...] = ("strong",)) -> None:
    """Adds the named estimator ``name`` (``factory(width | widths | None) -> Estimator``) and appends it to ``presets``.

    A gradient mode that is neither a surrogate nor a :data:`jsnn.neuron.GRADIENTS` mode (e.g. an
    estimator that reads the layer's membrane potential) registers its context in
    :data:`jsnn.models.base.ESTIMATOR_MODES` first.

    Example:
        >>> from jsnn.attacks import gradients
        >>> gradients.register("wide_triangle", lambda w: gradients.bptt(gradients.surrogate_lib.triangle(w or 8.0)),
        ...                    presets=())
        >>> gradients.parse("wide_triangle").name
        'triangle(8)'
        >>> _ = gradients.NAMED.pop("wide_triangle")
    """
    if name in surrogate_lib.SHAPES or name in PRESETS:
        raise ValueError(f"estimator registry: {name!r} is a surrogate shape or a preset name")
    NAMED[name] = factory
    for p in presets:
        if name not in PRESETS[p]:
            PRESETS[p] = PRESETS[p] + (name,)


def parse(spec) -> Estimator:
    """Estimator from a name of :data:`NAMED`, ``"<surrogate>"``, ``"<surrogate>:<width>"`` or ``"<name>:<w1>/<w2>"``.

    Example:
        >>> from jsnn.attacks import gradients
        >>> gradients.parse("atan:2"), gradients.parse("BPTR").name, gradients.parse("default").gradient
        (Estimator(surrogate=atan(2), gradient='bptt', grid=()), 'bptr', None)
        >>> gradients.parse("hart:1").name, gradients.parse("triangle:0.5/1").name
        ('hart(1)', 'triangle(0.5|1)')
        >>> gradients.parse("relu")
        Traceback (most recent call last):
        ...
        ValueError: estimator: unknown 'relu'; allowed: bptr, ann, default, model, rga, hart, pdsg, or sigmoid|atan|...[:width]
    """
    if isinstance(spec, Estimator):
        return spec
    if isinstance(spec, Surrogate):
        return bptt(spec)
    if not isinstance(spec, str):
        raise ValueError(f"estimator: expected a name such as 'atan:2' or 'bptr', got {spec!r}")
    s = spec.strip().lower()
    name, _, arg = s.partition(":")
    if name in NAMED:
        return NAMED[name](_width_arg(spec, arg))
    if name not in surrogate_lib.SHAPES:
        raise ValueError(f"estimator: unknown {spec!r}; allowed: {', '.join(NAMED)}, or "
                         f"{'|'.join(surrogate_lib.SHAPES)}[:width]")
    return _surrogate_estimator(name, _width_arg(spec, arg))


def expand(specs) -> Tuple[Estimator, ...]:
    """The estimators of ``specs`` (a comma string or a sequence) with the presets of :data:`PRESETS` expanded.

    Duplicates (by :attr:`Estimator.name`) are kept once, at their first place.

    Example:
        >>> from jsnn.attacks import gradients
        >>> [e.name for e in gradients.expand("bptr, sr")]
        ['bptr', 'triangle(1)', 'sigmoid(4)', 'atan(2)']
    """
    items = [t.strip() for t in specs.split(",")] if isinstance(specs, str) else list(specs)
    out, seen = [], set()
    for item in items:
        if isinstance(item, str) and not item:
            continue
        key = item.strip().lower() if isinstance(item, str) else None
        members = [parse(m) for m in PRESETS[key]] if key in PRESETS else [parse(item)]
        for e in members:
            if e.name not in seen:
                seen.add(e.name)
                out.append(e)
    return tuple(out)


def check(e: Estimator) -> Estimator:
    """``e`` if its fields are usable; a one-line ``ValueError`` naming the field otherwise."""
    if e.gradient is not None and e.gradient not in GRADIENTS and e.gradient not in ESTIMATOR_MODES:
        raise ValueError(f"estimator gradient: {e.gradient!r}; allowed: "
                         f"{', '.join(GRADIENTS + tuple(ESTIMATOR_MODES))} or None")
    if e.surrogate is not None and not isinstance(e.surrogate, Surrogate):
        raise ValueError(f"estimator surrogate: expected a jsnn.surrogate.Surrogate or None, got {e.surrogate!r}")
    if e.grid and e.surrogate is None:
        raise ValueError(f"estimator grid: {e.grid!r} needs a surrogate shape to search the widths of")
    return e
