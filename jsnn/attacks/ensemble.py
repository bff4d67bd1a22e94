"""The worst case over gradient estimators, as an attack combinator (one compiled program).

:func:`ensemble` runs one attack per estimator (:mod:`jsnn.attacks.gradients`) and judges every
result with the true forward; an example counts as robust in a draw only if it survives *every*
member (the SR protocol of Liu et al. 2024, the 19-variant protocol of Özdenizci & Legenstein,
TMLR 2024). Members that share a gradient mode are stacked (:func:`jsnn.surrogate.stack`) and
run under one ``vmap`` — one trace whatever their number, shapes and widths; members with the
model's own surrogate (``default``, BPTR, the ANN proxy) run alongside in the same jit.

A member with a ``grid`` (HART's γ, :func:`jsnn.attacks.gradients.hart`) first *searches* its
width: the attack runs with every width of the grid (vmapped) on the first ``search_examples``
images of the batch, the width whose points the true forward classifies correctly least often is
kept (the first on ties), and the attack then runs on the whole batch with it. The search is
part of the attack and its cost is reported in ``info["search"]``.

A *cascade* (``full=k``): the first ``k`` members attack every example as above (their
per-member accuracies are exact); each later member attacks only the examples whose chosen
point is still correct in some selection draw, compacted into batches padded to a multiple of :data:`CASCADE_BUCKET` (:mod:`jsnn.attacks.compact`), in stages of up to
:data:`CASCADE_STACK` consecutive members of one gradient mode (stacked as above). The verdict is
the same as every member attacking every example (an example is robust only if it survives
all), as in AutoAttack's cascade (Croce & Hein 2020); what is lost is the later members'
accuracy on the examples an earlier member already broke. Random starts and model noise of a
compacted stage are drawn for the compacted batch (same distribution, other draws).
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jsnn import surrogate as surrogate_lib
from jsnn.attacks import common
from jsnn.attacks import compact
from jsnn.attacks import gradients as gradients_lib
from jsnn.attacks.eot import _correct_draws
from jsnn.config import check_int

# Attack keyword arguments passed as traced values (no recompilation when they change).
DYNAMIC_KWARGS = frozenset({"eps", "step_size", "alpha", "target"})
CASCADE_STACK = 4  # members of one cascade stage (one gradient mode, stacked under one vmap)
CASCADE_BUCKET = 16  # a cascade stage pads its examples to a multiple of this (compact.bucket's step)


def _layout(estimators):
    """Static plan: groups of (gradient, indices) run stacked+vmapped, singles and searches run alone."""
    groups, singles, searches = {}, [], []
    for i, e in enumerate(estimators):
        if e.grid:
            searches.append((i, e.gradient))
        elif e.surrogate is None:
            singles.append((i, e.gradient))
        else:
            groups.setdefault(e.gradient, []).append(i)
    return tuple((g, tuple(ix)) for g, ix in groups.items()), tuple(singles), tuple(searches)


def cascade_stages(estimators, start: int) -> Tuple[Tuple[int, ...], ...]:
    """Member indices of the cascade stages after the first ``start`` members.

    Consecutive members of one gradient mode with a fixed surrogate form a stage of at most
    :data:`CASCADE_STACK` (run stacked); any other member (the model's own estimator, BPTR, the
    ANN proxy, a width search) is a stage of its own.

    Example:
        >>> from jsnn.attacks import gradients
        >>> from jsnn.attacks.ensemble import cascade_stages
        >>> [e.name for e in gradients.expand("default,sr,tmlr")][5:10]
        ['triangle(2)', 'triangle(3)', 'triangle(0.5)', 'triangle(0.25)', 'exponential_d(0.5)']
        >>> cascade_stages(gradients.expand("default,sr,tmlr"), 5)
        ((5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20), (21,))
    """
    stages, cur = [], []
    for i in range(start, len(estimators)):
        e = estimators[i]
        stackable = e.surrogate is not None and not e.grid
        if cur and (not stackable or len(cur) == CASCADE_STACK or estimators[cur[0]].gradient != e.gradient):
            stages.append(tuple(cur))
            cur = []
        if stackable:
            cur.append(i)
        else:
            stages.append((i,))
    if cur:
        stages.append(tuple(cur))
    return tuple(stages)


def _head(kw, n, batch):
    """Attack keywords restricted to the first ``n`` examples (per-example arrays such as ``eps`` [B])."""
    return {k: (v[:n] if hasattr(v, "shape") and v.ndim >= 1 and v.shape[0] == batch else v) for k, v in kw.items()}


@functools.partial(jax.jit, static_argnames=("attack", "layout", "num", "static_kwargs", "draws", "chunk",
                                             "search_examples"))
def _ensemble(make_logits_fn, judge, x, y, key, stacked, grids, dynamic_kwargs, *, attack, layout, num,
              static_kwargs, draws, chunk, search_examples):
    groups, singles, searches = layout
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
    search = {}
    n = min(search_examples, x.shape[0])
    for (i, gradient), cand in zip(searches, grids):
        k_search, k_run = jax.random.split(keys[i])
        xs, ys, kws = x[:n], y[:n], _head(kw, n, x.shape[0])
        g = cand.width.shape[0]
        trial = jax.vmap(lambda s, k: attack(make_logits_fn(s, gradient), xs, ys, k, **kws))(
            cand, jax.random.split(k_search, g))
        acc = jax.vmap(lambda xa: _correct_draws(judge, xa, ys, k_judge, draws=draws, chunk=chunk).mean())(trial)
        best = jnp.argmin(acc)
        chosen = jax.tree.map(lambda a: a[best], cand)
        out[i] = attack(make_logits_fn(chosen, gradient), x, y, k_run, **kw)
        search[i] = {"accuracy": acc, "chosen": best, "width": chosen.width}
    x_all = jnp.stack(out)
    k_select, k_final = jax.random.split(k_judge)
    correct = jax.vmap(lambda xa: _correct_draws(judge, xa, y, k_select, draws=draws, chunk=chunk))(x_all)
    worst = jnp.argmin(correct.sum(1), axis=0)  # per example: the estimator fooling the most draws
    x_adv = jnp.take_along_axis(x_all, worst.reshape((1, -1) + (1,) * (x.ndim - 1)), 0)[0]
    robust = _correct_draws(judge, x_adv, y, k_final, draws=draws, chunk=chunk)  # the chosen point, fresh draws
    return x_adv, {"x_adv": x_all, "correct": correct, "robust": robust, "accuracy": robust.mean(),
                   "accuracy_all_draws": robust.all(0).mean(), "per_estimator": correct.mean((1, 2)),
                   "worst": worst, "robust_any_member": correct.all(0)}, search


def _plan(estimators):
    """The static layout, stacked surrogates and search grids of a list of members."""
    groups, singles, searches = _layout(estimators)
    stacked = tuple(surrogate_lib.stack([estimators[i].surrogate for i in idx]) for _, idx in groups)
    grids = tuple(surrogate_lib.stack(estimators[i].candidates()) for i, _ in searches)
    return (groups, singles, searches), stacked, grids


def ensemble(attack: Callable, estimators: Optional[Sequence], make_logits_fn: Callable, *, draws: int = 1,
             chunk: Optional[int] = None, search_examples: int = 32, full: Optional[int] = None) -> Callable:
    """``attack`` once per gradient estimator, in one jit, as an attack: the worst case over estimators.

    The returned ``ens(logits_fn, x, y, key, *, eps, full_output=False, **attack_kwargs) -> x_adv``
    runs ``attack(make_logits_fn(e), x, y, k_e, ...)`` for every estimator ``e`` and judges each
    result with ``logits_fn`` (the true forward) over ``draws`` fresh keys; ``x_adv`` is, per
    example, the point of the estimator whose point is correct in the fewest draws (the first on
    ties). With ``full_output=True`` it returns ``(x_adv, info)`` where ``info`` holds the
    judged results, so nothing needs judging twice:

    * ``x_adv`` ``[E, B, ...]`` (each estimator's points), ``correct`` ``[E, M, B]`` (the
      selection draws),
    * ``robust`` ``[M, B]``: the chosen point judged on M *fresh* draws; ``accuracy`` (its
      mean), ``accuracy_all_draws`` (fraction robust in every draw). For a deterministic model
      this is "survives every member". For a stochastic one the adversary submits one point, so
      it is judged after it was chosen: ``robust_any_member`` ``[M, B]`` (correct under every
      member's point in draw m) picks the point after the draw and overstates the attack,
    * ``per_estimator`` ``[E]``: mean accuracy of each estimator's points (which estimator
      breaks the model), ``worst`` ``[B]``: the estimator chosen per example, ``names`` ``[E]``,
    * ``search`` ``{name: {grid, accuracy [G], chosen, width, attacks, examples, relative_cost}}``
      for the members that search a width: the accuracy of each width on the search images,
      the index and width kept, and the cost: ``attacks`` = G extra attack runs on ``examples``
      images, ``relative_cost`` = G·examples / B in units of one member's attack on the batch.

    Args:
      attack: a public attack, ``attack(logits_fn, x, y, key, **attack_kwargs) -> x_adv``
        (e.g. :func:`jsnn.attacks.pgd`); the identity of the function is part of the cache key.
      estimators: sequence of :class:`~jsnn.attacks.gradients.Estimator` (or specs and preset
        names for :func:`~jsnn.attacks.gradients.expand`); ``None`` or empty = the model's own
        estimator only (ANNs).
      make_logits_fn: ``make_logits_fn(surrogate, gradient) -> logits_fn``. A plain function
        (cached by identity: build it once) or a ``jax.tree_util.Partial`` whose array leaves
        are traced (:func:`jsnn.models.estimator_factory`).
      draws: M, fresh draws of the true forward to judge each example on (1 is exact for
        deterministic models).
      chunk: chunk size of the judgement draws.
      search_examples: images (the batch's first) a width search runs on.
      full: ``None``: every member attacks every example. An integer k: a cascade (module
        docstring): the first k members attack every example, the later ones only the still-robust
        examples (concrete inputs only); ``info`` then holds ``correct`` / ``per_estimator`` /
        ``x_adv`` of the first k members and ``cascade``, one entry per stage: ``members``
        (names), ``attacked`` (examples), ``accuracy`` (robust accuracy after the stage, mean over
        draws), ``seconds``, ``active`` ``[B]`` (the examples it attacked) and ``robust`` ``[M, B]``
        (after it); ``robust_full``: ``robust`` after the first k members.

    Keys: estimator i attacks with ``split(key_attack, E)[i]`` (a searching member splits it
    into its search and run keys), the judgement uses ``key_judge``
    (``key_attack, key_judge = split(key)``; the selection draws ``split(key_judge)[0]``, the fresh
    ones ``[1]``). Of ``attack_kwargs``, ``eps``, ``step_size``,
    ``alpha``, ``target`` and array values are traced, the rest (steps, norm, loss, ...) static.

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

        HART with its γ searched on the first image, then run on both:

        >>> from jsnn.attacks import gradients
        >>> hart = ensemble(pgd, [gradients.hart(grid=(0.5, 2.0))], make_logits_fn, search_examples=1)
        >>> _, info = hart(make_logits_fn(None, None), x, y, jax.random.key(0), eps=0.15, steps=2,
        ...                full_output=True)
        >>> s = info["search"]["hart(0.5|2)"]
        >>> s["grid"], s["examples"], s["relative_cost"], info["robust"].tolist()
        ((0.5, 2.0), 1, 1.0, [[False, True]])
    """
    estimators = gradients_lib.expand(estimators) if estimators else (gradients_lib.default(),)
    for e in estimators:
        gradients_lib.check(e)
    check_int(draws, "draws", where="ensemble ")
    check_int(search_examples, "search_examples", where="ensemble ")
    if full is not None:
        check_int(full, "full", where="ensemble ")
        if full >= len(estimators):
            full = None
    first = estimators if full is None else estimators[:full]
    (groups, singles, searches), stacked, grids = _plan(first)
    stages = () if full is None else tuple((idx, _plan([estimators[i] for i in idx])) for idx in
                                           cascade_stages(estimators, full))
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
        judge = common.as_partial(logits_fn)
        call = functools.partial(_ensemble, make, judge, attack=attack, static_kwargs=static_items, draws=draws,
                                 chunk=chunk, search_examples=search_examples)
        k_first = key if not stages else common.fold(key, 0)
        x_adv, info, search = call(x, y, k_first, stacked, grids, dynamic, layout=(groups, singles, searches),
                                   num=len(first))
        search = {first[i].name: (first[i], s, x.shape[0]) for i, s in search.items()}
        if stages:
            if not common._concrete((x, y, key, dynamic)):
                raise ValueError("ensemble full: a cascade compacts on the host; it needs concrete inputs (not traced)")
            x_adv, info, search = _cascade(call, judge, draws, chunk, x, y, key, dynamic, stages, estimators, x_adv,
                                           info, search)
        if not full_output:
            return x_adv
        n_of = lambda b: min(search_examples, b)
        info = dict(info, names=[e.name for e in first], search={
            name: dict(s, grid=e.grid, attacks=len(e.grid), examples=n_of(b), relative_cost=len(e.grid) * n_of(b) / b)
            for name, (e, s, b) in search.items()})
        return x_adv, info

    ensemble_attack.__name__ = f"ensemble_{getattr(attack, '__name__', 'attack')}"
    return ensemble_attack


def _cascade(call, judge, draws, chunk, x, y, key, dynamic, stages, estimators, x_adv, info, search):
    """The later stages of a cascade on the host: each attacks the examples robust in some draw, compacted."""
    b = x.shape[0]
    robust = np.array(info["robust"])  # [M, B]
    fewest = np.array(info["correct"]).sum(1).min(0)  # per example: fewest draws correct under any member so far
    x_adv = np.array(x_adv)
    x_np, y_np = np.asarray(x), np.asarray(y)
    per_example = {k: np.asarray(v) for k, v in dynamic.items() if np.ndim(v) >= 1 and np.shape(v)[0] == b}
    log = []
    for s, (idx, (layout, stacked, grids)) in enumerate(stages, start=1):
        t0, active = time.perf_counter(), fewest > 0  # the chosen point still correct in some selection draw
        k_stage = common.fold(key, s)

        def run(rows):
            dyn = dict(dynamic, **{k: jnp.asarray(v[rows]) for k, v in per_example.items()})
            xa, inf, srch = call(jnp.asarray(x_np[rows]), jnp.asarray(y_np[rows]), k_stage, stacked, grids, dyn,
                                 layout=layout, num=len(idx))
            for i, v in srch.items():
                search[estimators[idx[i]].name] = (estimators[idx[i]], v, len(rows))
            return xa, jnp.asarray(inf["correct"]).sum(1).min(0)

        if active.any():
            xa, cnt = compact.run(run, active, (x_adv, fewest), step=CASCADE_BUCKET)
            better = active & (cnt < fewest)
            x_adv[better], fewest = xa[better], np.minimum(fewest, cnt)
            # the chosen points judged on fresh draws (deterministic models: broken iff some member broke it)
            robust = np.asarray(_correct_draws(judge, jnp.asarray(x_adv), jnp.asarray(y_np), common.fold(key, s, 1),
                                               draws=draws, chunk=chunk))
        log.append({"members": [estimators[i].name for i in idx], "attacked": int(active.sum()),
                    "accuracy": float(robust.mean()), "seconds": time.perf_counter() - t0,
                    "active": active, "robust": robust.copy()})
    info = dict(info, robust_full=info["robust"], robust=jnp.asarray(robust), accuracy=jnp.asarray(robust.mean()),
                accuracy_all_draws=jnp.asarray(robust.all(0).mean()), cascade=log)
    return jnp.asarray(x_adv), info, search
