"""Gradient estimators of spiking models for attacks, and the worst case over an ensemble of them.

A spiking model's forward is exact and the same for every estimator; only its backward
(the surrogate shape/width under BPTT, or backprop through the rate, BPTR) changes the
attack. An attack therefore picks its estimator independently of training.

Design:

* :class:`Estimator` is a value: ``Estimator(surrogate, gradient)`` with ``surrogate`` a
  :class:`jsnn.surrogate.Surrogate` (or ``None`` = the model's own) and ``gradient``
  ``"bptt"`` / ``"bptr"`` (or ``None`` = the model's own). :func:`parse` reads
  ``"triangle:1"``, ``"atan"``, ``"bptr"``, ``"default"``.
* ``make_logits_fn(surrogate, gradient) -> logits_fn`` builds the attacked forward, e.g.
  ``functools.partial(jsnn.models.logits_fn, model, variables)`` adapted to keywords, or a
  ``jax.tree_util.Partial(build, variables)`` so parameters are traced, not baked in as
  constants. It must accept a *traced* surrogate (``jsnn.models.logits_fn`` does).
* :func:`ensemble` makes an attack that runs one attack per estimator in **one compiled computation**:
  the BPTT estimators with explicit surrogates are stacked (``jsnn.surrogate.stack``) and
  run under ``vmap`` (one trace, whatever their number); BPTR and "model default"
  estimators run alongside in the same jit. Every adversarial example is then judged with
  the true forward (the ``logits_fn`` the attack is called with) over ``draws`` fresh
  keys, and an example counts as robust in a draw only if it survives *every* estimator
  (the SR protocol of Liu et al. 2024: triangle(1), sigmoid(4), atan(2) and BPTR —
  :func:`sr_ensemble`).
* For an ANN or a single estimator the ensemble degenerates to one attack.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from jsnn import surrogate as surrogate_lib
from jsnn.attacks import common
from jsnn.attacks.eot import _correct_draws
from jsnn.config import check_int
from jsnn.neuron import GRADIENTS
from jsnn.surrogate import Surrogate

# Attack keyword arguments passed as traced values (no recompilation when they change).
DYNAMIC_KWARGS = frozenset({"eps", "step_size", "alpha", "target"})


class Estimator(NamedTuple):
    """A backward estimator: surrogate (``None`` = the model's) and ``"bptt"``/``"bptr"`` (``None`` = the model's).

    Example:
        >>> from jsnn import surrogate
        >>> from jsnn.attacks import Estimator
        >>> Estimator(surrogate.atan(2.0)).name, Estimator(None, "bptr").name, Estimator(None, None).name
        ('atan(2)', 'bptr', 'default')
    """

    surrogate: Optional[Surrogate] = None
    gradient: Optional[str] = "bptt"

    @property
    def name(self) -> str:
        if self.gradient == "bptr":
            return "bptr"
        s = "default" if self.surrogate is None else repr(self.surrogate)
        return s if self.gradient in ("bptt", None) else f"{s}/{self.gradient}"


def bptt(surrogate: Optional[Surrogate] = None) -> Estimator:
    """BPTT with ``surrogate`` (``None`` = the model's training surrogate)."""
    return Estimator(surrogate, "bptt")


def bptr() -> Estimator:
    """Backpropagation through the rate (Ding et al. 2022).

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


def default() -> Estimator:
    """The model's own estimator (also the only one an ANN has)."""
    return Estimator(None, None)


def sr_ensemble() -> tuple:
    """The SR protocol: BPTT with triangle(1), sigmoid(4), atan(2), and BPTR.

    Example:
        >>> from jsnn.attacks import sr_ensemble
        >>> [e.name for e in sr_ensemble()]
        ['triangle(1)', 'sigmoid(4)', 'atan(2)', 'bptr']
    """
    return (bptt(surrogate_lib.triangle(1.0)), bptt(surrogate_lib.sigmoid(4.0)),
            bptt(surrogate_lib.atan(2.0)), bptr())


def parse(spec) -> Estimator:
    """Estimator from ``"bptr"``, ``"default"``, ``"<surrogate>"`` or ``"<surrogate>:<width>"``.

    Example:
        >>> from jsnn.attacks import gradients
        >>> gradients.parse("atan:2"), gradients.parse("BPTR").name, gradients.parse("default").gradient
        (Estimator(surrogate=atan(2), gradient='bptt'), 'bptr', None)
        >>> gradients.parse("relu")
        Traceback (most recent call last):
        ...
        ValueError: estimator: unknown 'relu'; allowed: bptr, default, or sigmoid|atan|...[:width]
    """
    if isinstance(spec, Estimator):
        return spec
    if isinstance(spec, Surrogate):
        return bptt(spec)
    if not isinstance(spec, str):
        raise ValueError(f"estimator: expected a name such as 'atan:2' or 'bptr', got {spec!r}")
    s = spec.strip().lower()
    if s == "bptr":
        return bptr()
    if s in ("default", "model"):
        return default()
    name, _, width = s.partition(":")
    if name not in surrogate_lib.SHAPES:
        raise ValueError(f"estimator: unknown {spec!r}; allowed: bptr, default, or "
                         f"{'|'.join(surrogate_lib.SHAPES)}[:width]")
    try:
        w = float(width) if width else None
    except ValueError:
        raise ValueError(f"estimator: width in {spec!r} is not a number") from None
    return bptt(surrogate_lib.by_name(name, w))


def _check_estimator(e: Estimator):
    if e.gradient is not None and e.gradient not in GRADIENTS:
        raise ValueError(f"estimator gradient: {e.gradient!r}; allowed: {', '.join(GRADIENTS)} or None")
    if e.surrogate is not None and not isinstance(e.surrogate, Surrogate):
        raise ValueError(f"estimator surrogate: expected a jsnn.surrogate.Surrogate or None, got {e.surrogate!r}")


def _layout(estimators):
    """Static plan: groups of (gradient, indices) run stacked+vmapped, singles run alone."""
    groups, singles = {}, []
    for i, e in enumerate(estimators):
        if e.surrogate is None:
            singles.append((i, e.gradient))
        else:
            groups.setdefault(e.gradient, []).append(i)
    return tuple((g, tuple(ix)) for g, ix in groups.items()), tuple(singles)


@functools.partial(jax.jit, static_argnames=("attack", "layout", "num", "static_kwargs", "draws", "chunk"))
def _ensemble(make_logits_fn, judge, x, y, key, stacked, dynamic_kwargs, *, attack, layout, num, static_kwargs,
              draws, chunk):
    groups, singles = layout
    kw = dict(static_kwargs)
    kw.update(dynamic_kwargs)
    k_attack, k_judge = jax.random.split(key)
    keys = jax.random.split(k_attack, num)
    out = [None] * num
    for (gradient, idx), surr in zip(groups, stacked):
        run = lambda s, k, g=gradient: attack(make_logits_fn(s, g), x, y, k, **kw)
        res = jax.vmap(run)(surr, keys[jnp.asarray(idx)])
        for j, i in enumerate(idx):
            out[i] = res[j]
    for i, gradient in singles:
        out[i] = attack(make_logits_fn(None, gradient), x, y, keys[i], **kw)
    x_all = jnp.stack(out)
    correct = jax.vmap(lambda xa: _correct_draws(judge, xa, y, k_judge, draws=draws, chunk=chunk))(x_all)
    robust = correct.all(0)
    worst = jnp.argmin(correct.mean(1), axis=0)  # per example: the estimator fooling the most draws
    x_adv = jnp.take_along_axis(x_all, worst.reshape((1, -1) + (1,) * (x.ndim - 1)), 0)[0]
    return x_adv, {"x_adv": x_all, "correct": correct, "robust": robust, "accuracy": robust.mean(),
                   "accuracy_all_draws": robust.all(0).mean(), "per_estimator": correct.mean((1, 2)),
                   "worst": worst}


def ensemble(attack: Callable, estimators: Optional[Sequence], make_logits_fn: Callable, *, draws: int = 1,
             chunk: Optional[int] = None) -> Callable:
    """``attack`` once per gradient estimator, in one jit, as an attack: the worst case over estimators.

    The returned ``ens(logits_fn, x, y, key, *, eps, full_output=False, **attack_kwargs) -> x_adv``
    runs ``attack(make_logits_fn(e), x, y, k_e, ...)`` for every estimator ``e`` and judges each
    result with ``logits_fn`` (the true forward) over ``draws`` fresh keys; ``x_adv`` is, per
    example, the point of the estimator whose point is correct in the fewest draws (the first on
    ties). With ``full_output=True`` it returns ``(x_adv, info)`` where ``info`` holds the
    judged results, so nothing needs judging twice:

    * ``x_adv`` ``[E, B, ...]`` (each estimator's points), ``correct`` ``[E, M, B]``,
    * ``robust`` ``[M, B]``: robust under every estimator in draw ``m``; ``accuracy`` (its
      mean), ``accuracy_all_draws`` (fraction robust in every draw),
    * ``per_estimator`` ``[E]``: mean accuracy of each estimator's points (which estimator
      breaks the model), ``worst`` ``[B]``: the estimator chosen per example.

    Args:
      attack: a public attack, ``attack(logits_fn, x, y, key, **attack_kwargs) -> x_adv``
        (e.g. :func:`jsnn.attacks.pgd`); the identity of the function is part of the cache key.
      estimators: sequence of :class:`Estimator` (or specs for :func:`parse`); ``None`` or
        empty = the model's own estimator only (ANNs).
      make_logits_fn: ``make_logits_fn(surrogate, gradient) -> logits_fn``. A plain function
        (cached by identity: build it once) or a ``jax.tree_util.Partial`` whose array leaves
        are traced.
      draws: M, fresh draws of the true forward to judge each example on (1 is exact for
        deterministic models).
      chunk: chunk size of the judgement draws.

    Keys: estimator i attacks with ``split(key_attack, E)[i]``, the judgement uses
    ``key_judge`` (``key_attack, key_judge = split(key)``). Of ``attack_kwargs``, ``eps``,
    ``step_size``, ``alpha``, ``target`` and array values are traced, the rest (steps, norm,
    loss, ...) static.

    Example:
        PGD with the four SR estimators on a tiny spiking model (IF neurons, T = 4, rates fed to
        a linear readout), in one jit; only the first image can be flipped within ε:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn import neuron
        >>> from jsnn.attacks import ensemble, pgd, sr_ensemble
        >>> W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])
        >>> def make_logits_fn(surrogate, gradient):
        ...     def logits_fn(x, key):
        ...         spikes = neuron.if_neuron(jnp.broadcast_to(x, (4,) + x.shape), surrogate=surrogate,
        ...                                   gradient=gradient or "bptt")
        ...         return spikes.mean(0) @ W
        ...     return logits_fn
        >>> x, y = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]), jnp.array([0, 0])
        >>> ens = ensemble(pgd, sr_ensemble(), make_logits_fn)
        >>> x_adv, info = ens(make_logits_fn(None, None), x, y, jax.random.key(0), eps=0.15, steps=2,
        ...                   full_output=True)
        >>> x_adv.shape, info["robust"].tolist(), info["per_estimator"].tolist()
        ((2, 4), [[False, True]], [0.5, 0.5, 0.5, 0.5])
    """
    estimators = tuple(parse(e) for e in (estimators or (default(),)))
    for e in estimators:
        _check_estimator(e)
    check_int(draws, "draws", where="ensemble ")
    groups, singles = _layout(estimators)
    stacked = tuple(surrogate_lib.stack([estimators[i].surrogate for i in idx]) for _, idx in groups)
    make = common.as_partial(make_logits_fn)

    def ensemble_attack(logits_fn, x, y, key, *, eps, full_output: bool = False, **attack_kwargs):
        x, y = common.check_inputs(x, y, key, logits_fn)
        common.check_eps(eps, batch=x.shape[0])
        dynamic, static = {}, {}
        for k, v in dict(attack_kwargs, eps=eps).items():
            if v is not None and (k in DYNAMIC_KWARGS or hasattr(v, "__array__")):
                dynamic[k] = v
            else:
                static[k] = v
        try:
            static_items = tuple(sorted(static.items()))
            hash(static_items)
        except TypeError as err:
            raise ValueError(f"ensemble: attack keyword arguments must be hashable or arrays ({err})") from None
        x_adv, info = _ensemble(make, common.as_partial(logits_fn), x, y, key, stacked, dynamic, attack=attack,
                                layout=(groups, singles), num=len(estimators), static_kwargs=static_items,
                                draws=draws, chunk=chunk)
        return (x_adv, info) if full_output else x_adv

    ensemble_attack.__name__ = f"ensemble_{getattr(attack, '__name__', 'attack')}"
    return ensemble_attack
