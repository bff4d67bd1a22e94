"""Auto-PGD (APGD) and targeted APGD-T of Croce & Hein (2020), "Reliable evaluation of
adversarial robustness with an ensemble of diverse parameter-free attacks", ICML.

Schedule (the reference code fra0099/auto-attack, ``APGDAttack.attack_single_run``):

* start ``x⁰`` (random in the ball, or ``x``); step ``η = 2ε`` per example;
* ``z = P(xᵏ + η·s(∇ℓ(xᵏ)))`` with ``s = sign`` (L∞) or ``g/‖g‖₂`` (L2);
  ``xᵏ⁺¹ = P(xᵏ + α(z − xᵏ) + (1 − α)(xᵏ − xᵏ⁻¹))``, α = 1 at the first step, 0.75 after;
* checkpoints (1-indexed iteration counts) ``w₁ = ⌊0.22N⌋`` and
  ``w_{j+1} = w_j + max(w_j − w_{j−1} − ⌊0.03N⌋, ⌊0.06N⌋)`` (each at least 1), i.e.
  22, 41, 57, 70, 80, 87, 93, 99 for N = 100 (paper: p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06));
* at a checkpoint ``w_j``, per example, halve ``η`` and restart from the best point (with its
  gradient) if (1) the loss rose, ``ℓ(xⁱ⁺¹) > ℓ(xⁱ)``, in at most ρ·(w_j − w_{j−1}) of the steps
  since the last checkpoint (ρ = 0.75; ``≤`` as in the reference code), or (2) η was not halved
  at the previous checkpoint and the best loss did not improve since then (condition (2) is
  off at the first checkpoint, as in the reference).

One deliberate difference: the first window's first comparison is ``ℓ(x¹) > ℓ(x⁰)`` as in the
paper; the reference code compares ``ℓ(x¹)`` with 0 there (a negative-index artefact).

The returned point follows :mod:`jsnn.attacks.common`: misclassified if any iterate was,
otherwise the highest-loss iterate; best over restarts (vmapped) and targets.

APGD-T: for each of the ``num_targets`` classes ranked 2nd, 3rd, ... by the clean logits, run
APGD on the targeted DLR loss ``−(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2)``; the targets run
under ``vmap`` (chunked with ``target_chunk``). Success is misclassification (``argmax ≠ y``).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jsnn.attacks import common, compact
from jsnn.attacks import losses as losses_lib
from jsnn.attacks.common import Best, expand
from jsnn.attacks.eot import expectation, oracle
from jsnn.attacks.pgd import check_iterative
from jsnn.config import check_int


def checkpoints(steps: int) -> tuple:
    """APGD checkpoints as 1-indexed iteration counts (reference-code integer conventions).

    >>> checkpoints(100)
    (22, 41, 57, 70, 80, 87, 93, 99)
    """
    check_int(steps, "steps", where="attack ")
    first = max(int(0.22 * steps), 1)
    minimum = max(int(0.06 * steps), 1)
    decrease = max(int(0.03 * steps), 1)
    out, k, w = [], first, first
    while w <= steps:
        out.append(w)
        k = max(k - decrease, minimum)
        w += k
    return tuple(out)


def _schedule(steps: int):
    """Per-iteration (0-based) arrays: is-checkpoint flag and the window length ending there."""
    is_ckpt = np.zeros(steps, bool)
    window = np.ones(steps, np.float32)
    prev = 0
    for w in checkpoints(steps):
        is_ckpt[w - 1] = True
        window[w - 1] = w - prev
        prev = w
    return jnp.asarray(is_ckpt), jnp.asarray(window)


def _start(key, x, eps, norm: str, random_start: bool):
    """``(x⁰, noise key)`` of one run: a random point of the ball (or ``x``), drawn for the whole batch."""
    k_init, k_noise = jax.random.split(key)
    return (common.random_init(k_init, x, eps, norm) if random_start else x), k_noise


def _run(orc, x, x0, k_noise, eps, *, norm: str, steps: int, rho: float, return_state: bool = False) -> Best:
    """One APGD run (one restart) from ``x0`` → per-example :class:`Best` (or the final state dict, for tests)."""
    loss0, g0, fooled0 = orc.value_and_grad(x0, common.fold(k_noise, 0))
    is_ckpt, window = _schedule(steps)
    eps_arr = jnp.broadcast_to(jnp.asarray(eps, x.dtype), x.shape[:1])
    state = dict(
        x=x0, x_old=x0, grad=g0, step=2.0 * eps_arr,
        x_best=x0, g_best=g0, loss_best=loss0,
        ret=common.init_best(x0, loss0, fooled0),
        loss_prev=loss0, count=jnp.zeros(x.shape[:1], jnp.int32),
        best_last=loss0, reduced_last=jnp.ones(x.shape[:1], bool),
    )

    def body(i, s):
        a = jnp.where(i == 0, 1.0, 0.75).astype(x.dtype)
        momentum = s["x"] - s["x_old"]
        z = common.project(s["x"] + expand(s["step"], x) * common.normalize(s["grad"], norm), x, eps, norm)
        x_new = common.project(s["x"] + a * (z - s["x"]) + (1 - a) * momentum, x, eps, norm)
        loss, g, fooled = orc.value_and_grad(x_new, common.fold(k_noise, i + 1))
        ret = common.update_best(s["ret"], x_new, loss, fooled)
        count = s["count"] + (loss > s["loss_prev"]).astype(jnp.int32)
        improved = loss > s["loss_best"]
        imp_b = expand(improved, x).astype(bool)
        x_best = jnp.where(imp_b, x_new, s["x_best"])
        g_best = jnp.where(imp_b, g, s["g_best"])
        loss_best = jnp.where(improved, loss, s["loss_best"])
        # checkpoint
        c = is_ckpt[i]
        oscillating = count.astype(jnp.float32) <= rho * window[i]
        no_improvement = ~s["reduced_last"] & (s["best_last"] >= loss_best)
        reduce = oscillating | no_improvement
        halve = c & reduce
        halve_b = expand(halve, x).astype(bool)
        return dict(
            x=jnp.where(halve_b, x_best, x_new), x_old=s["x"],
            grad=jnp.where(halve_b, g_best, g),
            step=jnp.where(halve, s["step"] / 2, s["step"]),
            x_best=x_best, g_best=g_best, loss_best=loss_best, ret=ret,
            loss_prev=loss, count=jnp.where(c, 0, count),
            best_last=jnp.where(c, loss_best, s["best_last"]),
            reduced_last=jnp.where(c, reduce, s["reduced_last"]),
        )

    state = jax.lax.fori_loop(0, steps, body, state)
    return state if return_state else state["ret"]


@functools.partial(jax.jit, static_argnames=("norm", "steps", "restarts", "loss", "eot", "random_start",
                                             "rho", "eot_chunk", "restart_chunk"))
def _apgd(logits_fn, x, y, key, eps, target, rows, *, norm, steps, restarts, loss, eot, random_start, rho,
          eot_chunk, restart_chunk):
    """APGD on ``x[rows]`` (all of ``x`` if ``rows`` is None); random starts drawn for all of ``x``."""
    xr, yr, er, tr = compact.take(rows, x, y, eps, target)
    orc = oracle(logits_fn, loss, yr, tr, eot=eot, eot_chunk=eot_chunk)

    def run(k):
        x0, k_noise = _start(k, x, eps, norm, random_start)
        return _run(orc, xr, compact.take(rows, x0), k_noise, er, norm=norm, steps=steps, rho=rho)

    return common.run_restarts(run, key, restarts, restart_chunk)


def _masked(best: Best, x, active) -> Best:
    """Inactive examples (``active`` False) come back as ``x``, not fooled, loss −∞."""
    if active is None:
        return best
    a = jnp.asarray(active, bool)
    return Best(jnp.where(expand(a, x).astype(bool), best.x, x), jnp.where(a, best.loss, -jnp.inf),
                best.fooled & a)


def _unattacked(x) -> Best:
    return Best(x, jnp.full(x.shape[:1], -jnp.inf, x.dtype), jnp.zeros(x.shape[:1], bool))


def _check(logits_fn, x, y, key, eps, norm, steps, restarts, eot, rho):
    x, y = check_iterative(logits_fn, x, y, key, eps, norm, steps, restarts, eot)
    if not (0.0 < float(rho) <= 1.0):
        raise ValueError(f"apgd rho: must be in (0, 1], got {rho!r}")
    return x, y


def apgd(logits_fn, x, y, key, *, eps, norm: str = "linf", steps: int = 100, restarts: int = 1,
         loss="ce", target=None, eot: int = 1, random_start: bool = True, rho: float = 0.75,
         eot_chunk: Optional[int] = None, restart_chunk: Optional[int] = None, active=None,
         full_output: bool = False):
    """APGD (Croce & Hein 2020) with CE, DLR (or any :mod:`~jsnn.attacks.losses` loss).

    Args:
      logits_fn: ``logits_fn(x, key) -> logits [B, K]`` (a function or a ``jax.tree_util.Partial``).
      x: clean images ``[B, ...]`` in [0, 1].
      y: labels ``[B]``.
      key: PRNG key (random starts; model noise via ``fold_in`` over steps).
      eps: radius (pixel units), scalar or ``[B]``.
      norm: ``"linf"`` or ``"l2"``.
      steps: N, iterations (gradient evaluations: N + 1).
      restarts: independent random restarts, run under ``vmap``.
      loss: ``"ce"``, ``"dlr"``, ``"cw"``, a targeted loss with ``target``, or a callable.
      target: target classes ``[B]`` for a targeted loss.
      eot: EOT draws per gradient.
      random_start: start at a random point of the ball (else at ``x``).
      rho: ρ of checkpoint condition (1).
      eot_chunk: EOT chunk size; restart_chunk: restart chunk size (``lax.map``).
      active: optional boolean ``[B]``: attack only these examples (the others come back as ``x``,
        not fooled); concrete inputs are compacted into bucketed batches (:mod:`~jsnn.attacks.compact`).
      full_output: return the :class:`~jsnn.attacks.common.Best` (x, loss, fooled) instead of x.

    Returns:
      ``x_adv`` like ``x`` (or a ``Best``).

    Example:
        A linear 2-class model: the CW margin is maximised at the corner ``x + ε·sign(w₁ − w₀)``,
        where it is ``0.2`` for the first example (fooled) and ``−1`` for the second:

        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jsnn.attacks import apgd
        >>> W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])  # sign(w₁ − w₀) = (−, +, −, +)
        >>> x, y = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]), jnp.array([0, 0])
        >>> best = apgd(lambda x, key: x @ W, x, y, jax.random.key(0), eps=0.15, steps=5, loss="cw",
        ...             full_output=True)
        >>> np.asarray(best.loss, float).round(3).tolist(), best.fooled.tolist()
        ([0.2, -1.0], [True, False])
        >>> bool(jnp.all(jnp.abs(best.x - x) <= 0.15 + 1e-6))
        True
    """
    x, y = _check(logits_fn, x, y, key, eps, norm, steps, restarts, eot, rho)
    common.check_target(loss, target, y)
    call = functools.partial(_apgd, common.as_partial(logits_fn), x, y, key, eps, target, norm=norm,
                             steps=steps, restarts=restarts, loss=loss, eot=eot, random_start=random_start,
                             rho=float(rho), eot_chunk=eot_chunk, restart_chunk=restart_chunk)
    if compact.check_active(active, x.shape[0]) is None:
        best = call(None)
    elif common._concrete((x, y, key, eps, target, active)):
        best = Best(*map(jnp.asarray, compact.run(call, active, _unattacked(x))))
    else:
        best = _masked(call(None), x, active)
    return best if full_output else best.x


def target_classes(logits, num_targets: int):
    """Targets of APGD-T: classes ranked 2nd … (num_targets+1)-th by ``logits`` → ``[num_targets, B]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import target_classes
        >>> target_classes(jnp.array([[3., 1., 0., 2.], [0., 2., 1., 3.]]), 2).tolist()
        [[3, 1], [1, 2]]
    """
    order = jnp.argsort(logits, axis=-1)  # ascending
    return jnp.stack([order[:, -(i + 2)] for i in range(num_targets)])


@functools.partial(jax.jit, static_argnames=("num_targets", "eot", "eot_chunk"))
def _targets(logits_fn, x, key, *, num_targets, eot, eot_chunk):
    """``(target classes [num_targets, B], per-target keys)`` exactly as :func:`_apgd_t` draws them."""
    k_clean, k_attack = jax.random.split(key)
    clean = expectation(lambda xx, k: jax.lax.stop_gradient(logits_fn(xx, k)), x, k_clean,
                        samples=eot, chunk=eot_chunk)
    if num_targets > clean.shape[-1] - 1:
        raise ValueError(f"apgd_targeted num_targets: {num_targets} exceeds the number of other classes "
                         f"({clean.shape[-1] - 1})")
    return target_classes(clean, num_targets), jax.random.split(k_attack, num_targets)


@functools.partial(jax.jit, static_argnames=("norm", "steps", "num_targets", "restarts", "loss", "eot",
                                             "random_start", "rho", "eot_chunk", "target_chunk"))
def _apgd_t(logits_fn, x, y, key, eps, *, norm, steps, num_targets, restarts, loss, eot, random_start,
            rho, eot_chunk, target_chunk):
    targets, keys = _targets(logits_fn, x, key, num_targets=num_targets, eot=eot, eot_chunk=eot_chunk)

    def per_target(args):
        t, k = args
        orc = oracle(logits_fn, loss, y, t, eot=eot, eot_chunk=eot_chunk)

        def run(kk):
            x0, k_noise = _start(kk, x, eps, norm, random_start)
            return _run(orc, x, x0, k_noise, eps, norm=norm, steps=steps, rho=rho)

        return common.run_restarts(run, k, restarts, None)

    return common.select_best(common.map_chunked(per_target, (targets, keys), target_chunk))


def _apgd_t_compacted(logits_fn, x, y, key, eps, active, *, num_targets, eot, eot_chunk, **kw) -> Best:
    """The targets in sequence, each on the examples no earlier target has fooled (host compaction).

    An example fooled by target j keeps target j's point (the reference cascade); the others keep
    the best point over all targets, as :func:`_apgd_t`. Keys as :func:`_apgd_t`.
    """
    targets, keys = _targets(logits_fn, x, key, num_targets=num_targets, eot=eot, eot_chunk=eot_chunk)
    best = _unattacked(x)
    todo = np.asarray(active, bool)
    for j in range(num_targets):
        if not todo.any():
            break
        call = functools.partial(_apgd, logits_fn, x, y, keys[j], eps, targets[j], eot=eot, eot_chunk=eot_chunk,
                                 restart_chunk=None, **kw)
        part = compact.run(call, todo, _unattacked(x))
        better = np.asarray(common.is_better(part.loss, part.fooled, best.loss, best.fooled)) & todo
        if j == 0:
            better = todo  # the first target's point even at loss −∞ (as select_best's ties)
        b = jnp.asarray(better)
        best = Best(jnp.where(expand(b, x).astype(bool), part.x, best.x), jnp.where(b, part.loss, best.loss),
                    jnp.where(b, part.fooled, best.fooled))
        todo = todo & ~np.asarray(best.fooled)
    return best


def apgd_targeted(logits_fn, x, y, key, *, eps, norm: str = "linf", steps: int = 100, num_targets: int = 9,
                  restarts: int = 1, loss="dlr_targeted", eot: int = 1, random_start: bool = True,
                  rho: float = 0.75, eot_chunk: Optional[int] = None, target_chunk: Optional[int] = None,
                  active=None, full_output: bool = False):
    """APGD-T: APGD with the targeted DLR loss against each of the top ``num_targets`` other classes.

    Arguments as in :func:`apgd`; targets come from the (EOT-averaged) clean logits. Concrete
    inputs: the ``num_targets`` (9 in AutoAttack) targets run in sequence, each only on the
    (``active``) examples no earlier target fooled, compacted into bucketed batches (an example
    fooled by target j returns target j's point). Traced inputs (inside a jit): all targets run
    on every example under ``vmap``, in chunks of ``target_chunk`` if given, and a fooled example
    returns its highest-loss fooling point. The two agree on which examples are fooled.

    Example:
        The targeted DLR loss needs K ≥ 4 classes; here classes 2 and 3 are never predicted:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import apgd_targeted
        >>> W = jnp.array([[1., 0., 0., 0.], [0., 1., 0., 0.], [1., 0., 0., 0.], [0., 1., 0., 0.]])
        >>> logits_fn = lambda x, key: x @ W
        >>> x, y = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]), jnp.array([0, 0])
        >>> x_adv = apgd_targeted(logits_fn, x, y, jax.random.key(0), eps=0.15, steps=5, num_targets=2)
        >>> logits_fn(x_adv, None).argmax(-1).tolist(), bool(jnp.all(jnp.abs(x_adv - x) <= 0.15 + 1e-6))
        ([1, 0], True)
    """
    x, y = _check(logits_fn, x, y, key, eps, norm, steps, restarts, eot, rho)
    check_int(num_targets, "num_targets", where="attack ")
    if not losses_lib.is_targeted(loss) and not callable(loss):
        raise ValueError(f"apgd_targeted loss: {loss!r}; allowed: {', '.join(losses_lib.TARGETED)} or a callable")
    fn, kw = common.as_partial(logits_fn), dict(norm=norm, steps=steps, num_targets=num_targets, restarts=restarts,
                                                 loss=loss, eot=eot, random_start=random_start, rho=float(rho),
                                                 eot_chunk=eot_chunk)
    compact.check_active(active, x.shape[0])
    if common._concrete((x, y, key, eps, active)):
        all_rows = np.ones(x.shape[0], bool) if active is None else np.asarray(active, bool)
        best = _apgd_t_compacted(fn, x, y, key, eps, all_rows, **kw)
    else:
        best = _masked(_apgd_t(fn, x, y, key, eps, target_chunk=target_chunk, **kw), x, active)
    return best if full_output else best.x
