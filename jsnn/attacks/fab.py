"""FAB-T: targeted fast adaptive boundary attack, L∞ (Croce & Hein, ICML 2020).

Reference: F. Croce, M. Hein, "Minimally distorted adversarial examples with a fast adaptive
boundary attack", arXiv 1907.02044, and the targeted L∞ version in AutoAttack
(``autoattack/fab_pt.py``, ``fab_projections.py``), which this module follows.

FAB searches for the *smallest* perturbation that changes the decision. For a target class
``t`` it linearises ``f(x) = z_t(x) − z_y(x)`` at the current iterate ``x⁽ⁱ⁾``, i.e. the
hyperplane ``π = {z : ∇f·z = ∇f·x⁽ⁱ⁾ − f(x⁽ⁱ⁾)}``, and takes the box-constrained minimal L∞
projections ``δ⁽ⁱ⁾ = proj_π(x⁽ⁱ⁾) − x⁽ⁱ⁾`` and ``δ₀ = proj_π(x₀) − x₀`` of the iterate and of the
original point. With ``α = clip(‖δ⁽ⁱ⁾‖∞ / (‖δ⁽ⁱ⁾‖∞ + ‖δ₀‖∞), 0, α_max)`` the step is

    x⁽ⁱ⁺¹⁾ = clip_[0,1]((1 − α)(x⁽ⁱ⁾ + η·δ⁽ⁱ⁾) + α(x₀ + η·δ₀)),

(η = 1.05 overshoots, α_max = 0.1 biases towards the original point). When ``x⁽ⁱ⁺¹⁾`` is
misclassified (any class ≠ y) it is recorded if it is the closest so far, then pulled back:
``x⁽ⁱ⁺¹⁾ ← x₀ + β(x⁽ⁱ⁺¹⁾ − x₀)`` (β = 0.9). Targets are the classes with the 2nd … (k+1)-th
largest clean logits (AutoAttack "standard": 9 targets, 1 restart, 100 iterations), run in
that order, each only updating examples that are still robust; later restarts start from a
uniform random point at L∞ distance ε/2. A found point counts only if its distance is ≤ ε,
so ``x_adv`` is either the clean image or a misclassified point inside the ε-ball.

Concrete inputs: the target runs go in sequence on the host, each one jitted ``lax.fori_loop``
over iterations on the still-robust examples only, compacted into bucketed batches
(:mod:`~jsnn.attacks.compact`; the reference does the same). Traced inputs (inside a jit): every
run is computed on the whole batch with masks, one ``lax.while_loop`` over runs that stops when
no example is left. Both give the same per-example result (deterministic models). ``key`` feeds
the model's noise (a fresh key per call); FAB itself is deterministic apart from random restarts.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

import numpy as np

from jsnn.attacks import common, compact
from jsnn.config import check_int


def projection_linf(t, w, b):
    """Minimal L∞ step onto a hyperplane inside the box ``[0, 1]^n`` (batched).

    Solves ``min ‖d‖∞  s.t.  w·(t + d) = b,  0 ≤ t + d ≤ 1`` row by row. With the residual
    ``r = b − w·t`` every coordinate moves by ``d_i = sign(r·w_i)·min(δ, c_i)``, ``c_i`` the
    room to the box in that direction; ``g(δ) = Σ|w_i|·min(δ, c_i)`` is piecewise linear and
    nondecreasing, so the optimal ``δ`` solves ``g(δ) = |r|`` on the segment found from the
    sorted breakpoints ``c_(k)``. If ``|r| > g(∞)`` the hyperplane is out of the box and the
    step goes to the box corner that gets closest (as the reference ``projection_linf``).

    Args:
      t: points ``[N, n]`` in ``[0, 1]``.
      w: normals ``[N, n]``.
      b: offsets ``[N]``.

    Returns:
      ``d`` ``[N, n]``.

    Example:
        Onto ``x₁ + x₂ = b``: an even step when the box allows it, else the blocked coordinate
        saturates (0.9 → 1.0) and the other one makes up the rest:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import projection_linf
        >>> t, w = jnp.array([[0.5, 0.5], [0.9, 0.5]]), jnp.ones((2, 2))
        >>> print(jax.jit(projection_linf)(t, w, jnp.array([1.5, 1.8])).round(3))
        [[0.25 0.25]
         [0.1  0.3 ]]
    """
    r = b - jnp.sum(w * t, axis=1)
    direction = jnp.sign(r)[:, None] * jnp.sign(w)
    room = jnp.where(direction > 0, 1.0 - t, t)
    aw = jnp.abs(w)
    need = jnp.abs(r)
    order = jnp.argsort(room, axis=1)
    room_s = jnp.take_along_axis(room, order, axis=1)
    aw_s = jnp.take_along_axis(aw, order, axis=1)
    saturated = jnp.cumsum(aw_s * room_s, axis=1) - aw_s * room_s  # Σ_{j<k} |w_j| c_j
    free = jnp.sum(aw, axis=1, keepdims=True) - (jnp.cumsum(aw_s, axis=1) - aw_s)  # Σ_{j≥k} |w_j|
    g = saturated + room_s * free  # g(c_(k)), nondecreasing in k
    n = t.shape[1]
    k = jnp.sum(g < need[:, None], axis=1)
    kc = jnp.minimum(k, n - 1)[:, None]
    a_k = jnp.take_along_axis(saturated, kc, axis=1)[:, 0]
    w_k = jnp.take_along_axis(free, kc, axis=1)[:, 0]
    delta = jnp.maximum(need - a_k, 0.0) / jnp.maximum(w_k, jnp.finfo(t.dtype).tiny)
    delta = jnp.where(k < n, delta, jnp.inf)
    return direction * jnp.minimum(delta[:, None], room)


def _check(logits_fn, x, y, key, eps, steps, num_targets, restarts, alpha_max, eta, beta):
    x, y = common.check_inputs(x, y, key, logits_fn)
    common.check_eps(eps)
    for name, v in (("steps", steps), ("num_targets", num_targets), ("restarts", restarts)):
        check_int(v, name, where="attack ")
    if not 0 <= alpha_max <= 1:
        raise ValueError(f"fab_t alpha_max: must be in [0, 1], got {alpha_max!r}")
    if not eta >= 1:
        raise ValueError(f"fab_t eta: must be >= 1, got {eta!r}")
    if not 0 < beta < 1:
        raise ValueError(f"fab_t beta: must be in (0, 1), got {beta!r}")
    return x, y


def fab_t(logits_fn, x, y, key, *, eps, steps: int = 100, num_targets: int = 9, restarts: int = 1,
          alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9, active=None, full_output: bool = False):
    """Targeted FAB, L∞ (AutoAttack's FAB-T), one jitted computation.

    Args:
      logits_fn: ``logits_fn(x, key) -> [B, K]`` logits (a function or a ``jax.tree_util.Partial``).
      x: clean images ``[B, H, W, C]`` in ``[0, 1]``.
      y: labels ``[B]``.
      key: PRNG key (model noise, random restarts).
      eps: L∞ radius: a point found farther than ``eps`` is discarded.
      steps: iterations per target and restart (100).
      num_targets: targets, the classes ranked 2 … num_targets + 1 by clean logit
        (9 in AutoAttack "standard"; must be < K).
      restarts: runs per target; run ``r > 0`` starts at a random point of L∞ norm ε/2.
      alpha_max, eta, beta: FAB's bias towards ``x₀``, overshoot and backtracking (0.1, 1.05, 0.9).
      active: optional boolean ``[B]``: attack only these examples (the others come back as ``x``).
      full_output: also return ``{"distance": [B]}``, the smallest L∞ distance of a
        misclassified point found (``inf`` where none, 0 where ``x`` is already misclassified).

    Returns:
      ``x_adv``: a misclassified point within ε of ``x`` where one was found, else ``x``.

    Example:
        For a linear model the minimal L∞ distance to the boundary is ``margin / ‖w_t − w_y‖₁``:
        0.4/4 = 0.1 for the first image (found within ε = 0.15) and 1.6/4 = 0.4 for the second:

        >>> import jax, jax.numpy as jnp
        >>> from jsnn.attacks import fab_t
        >>> W = jnp.array([[1., 0., 0.], [0., 1., 0.], [1., 0., 0.], [0., 1., 0.]])
        >>> logits_fn = lambda x, key: x.reshape(x.shape[0], -1) @ W
        >>> x = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]).reshape(2, 2, 2, 1)
        >>> y = jnp.array([0, 0])
        >>> x_adv, info = fab_t(logits_fn, x, y, jax.random.key(0), eps=0.15, steps=5,
        ...                     num_targets=2, full_output=True)
        >>> [round(d, 2) for d in info["distance"].tolist()], logits_fn(x_adv, None).argmax(-1).tolist()
        ([0.1, 0.4], [1, 0])
    """
    x, y = _check(logits_fn, x, y, key, eps, steps, num_targets, restarts, alpha_max, eta, beta)
    fn, eps = common.as_partial(logits_fn), jnp.asarray(eps, x.dtype)
    kw = dict(steps=steps, num_targets=num_targets, restarts=restarts, alpha_max=float(alpha_max), eta=float(eta),
              beta=float(beta))
    compact.check_active(active, x.shape[0])
    if common._concrete((x, y, key, eps, active)):
        all_rows = np.ones(x.shape[0], bool) if active is None else active
        x_adv, dist = _fab_t_compacted(fn, x, y, key, eps, all_rows, **kw)
    else:
        x_adv, dist = _fab_t(fn, x, y, key, eps, **kw)
        if active is not None:
            a = jnp.asarray(active, bool)
            x_adv = jnp.where(a.reshape((-1,) + (1,) * (x.ndim - 1)), x_adv, x)
            dist = jnp.where(a, dist, jnp.inf)
    if full_output:
        return x_adv, {"distance": dist}
    return x_adv


def _linf(a):
    return jnp.max(jnp.abs(a.reshape(a.shape[0], -1)), axis=1)


def _one_run(logits_fn, x, y, eps, target, k, random_start, rows, *, steps, alpha_max, eta, beta):
    """One FAB-T run towards ``target`` on ``x[rows]`` (all if None) → ``(closest adversarial point, its
    L∞ distance)`` per example; the random start is drawn for all of ``x`` and gathered."""
    k_start, k_iter = jax.random.split(k)
    u = jax.random.uniform(k_start, x.shape, x.dtype, -1.0, 1.0)
    bcast = (-1,) + (1,) * (x.ndim - 1)
    start = x + 0.5 * eps * u / jnp.maximum(_linf(u), 1e-12).reshape(bcast)
    x, y, start, target = compact.take(rows, x, y, start, target)
    B, shape = x.shape[0], x.shape
    x1 = jnp.clip(jnp.where(random_start, start, x), 0.0, 1.0)
    x0 = x.reshape(B, -1)

    def diff_and_grad(x1, k):
        def f(xx):
            logits = logits_fn(xx, k)
            zy = jnp.take_along_axis(logits, y[:, None], -1)[:, 0]
            zt = jnp.take_along_axis(logits, target[:, None], -1)[:, 0]
            return zt - zy
        df, vjp = jax.vjp(f, x1)
        return df, vjp(jnp.ones_like(df))[0]

    def body(i, carry):
        x1, adv, res = carry
        k_grad, k_pred = jax.random.split(jax.random.fold_in(k_iter, i))
        df, dg = diff_and_grad(x1, k_grad)
        w = dg.reshape(B, -1)
        xf = x1.reshape(B, -1)
        b = -df + jnp.sum(w * xf, axis=1)
        d = projection_linf(jnp.concatenate([xf, x0]), jnp.concatenate([w, w]), jnp.concatenate([b, b]))
        d1, d2 = d[:B], d[B:]
        a1 = jnp.maximum(jnp.max(jnp.abs(d1), axis=1), 1e-8)
        a2 = jnp.maximum(jnp.max(jnp.abs(d2), axis=1), 1e-8)
        alpha = jnp.clip(a1 / (a1 + a2), 0.0, alpha_max)[:, None]
        xf = jnp.clip((xf + eta * d1) * (1 - alpha) + (x0 + eta * d2) * alpha, 0.0, 1.0)
        x1 = xf.reshape(shape)
        is_adv = jnp.argmax(logits_fn(x1, k_pred), -1) != y
        dist = _linf(x1 - x)
        closer = is_adv & (dist < res)
        adv = jnp.where(closer.reshape(bcast), x1, adv)
        res = jnp.where(closer, dist, res)
        x1 = jnp.where(is_adv.reshape(bcast), x + (x1 - x) * beta, x1)
        return x1, adv, res

    init = (x1, x, jnp.full((B,), jnp.inf, x.dtype))
    _, adv, res = jax.lax.fori_loop(0, steps, body, init)
    return adv, res


def _run_keys(k_runs, r):
    """``(run key, check key)`` of target run ``r``."""
    return jax.random.split(jax.random.fold_in(k_runs, r))


def _judge_run(logits_fn, adv, res, y, eps, k_check):
    """A run's point counts iff within ε and misclassified on a fresh forward."""
    return (res <= eps) & (jnp.argmax(logits_fn(adv, k_check), -1) != y)


@functools.partial(jax.jit, static_argnames=("steps", "alpha_max", "eta", "beta"))
def _run_rows(logits_fn, x, y, eps, target, k_runs, r, random_start, rows, *, steps, alpha_max, eta, beta):
    """Run ``r`` on ``x[rows]`` (host-compacted mode): ``(adv, distance, fooled)`` per row."""
    k_r, k_check = _run_keys(k_runs, r)
    adv, res = _one_run(logits_fn, x, y, eps, target, k_r, random_start, rows, steps=steps,
                        alpha_max=alpha_max, eta=eta, beta=beta)
    return adv, res, _judge_run(logits_fn, adv, res, y[rows], eps, k_check)


@jax.jit
def _clean(logits_fn, x, y, key):
    """``(robust [B], ranking [B, K] ascending, run key)`` from the clean logits."""
    k_clean, k_runs = jax.random.split(key)
    z = logits_fn(x, k_clean)
    return jnp.argmax(z, -1) == y, jnp.argsort(z, axis=-1), k_runs


def _check_targets(num_targets, ranking):
    if num_targets >= ranking.shape[-1]:
        raise ValueError(f"fab_t num_targets: must be < the number of classes {ranking.shape[-1]}, "
                         f"got {num_targets}")


def _fab_t_compacted(logits_fn, x, y, key, eps, active, *, num_targets, restarts, **kw):
    """The target runs in sequence on the host, each on the examples still robust (compacted)."""
    robust, ranking, k_runs = _clean(logits_fn, x, y, key)
    _check_targets(num_targets, ranking)
    robust = np.asarray(robust) & np.asarray(active, bool)
    ranking = np.asarray(ranking)
    x_adv, dist = np.array(x), np.where(robust, np.inf, 0.0).astype(x.dtype)
    for r in range(num_targets * restarts):
        if not robust.any():
            break
        target = jnp.asarray(ranking[:, -(2 + r // restarts)])
        call = lambda rows: _run_rows(logits_fn, x, y, eps, target, k_runs, r, (r % restarts) > 0, rows, **kw)
        adv, res, fooled = compact.run(call, robust, (x, np.full(x.shape[0], np.inf, x.dtype),
                                                      np.zeros(x.shape[0], bool)))
        fooled &= robust
        x_adv[fooled] = adv[fooled]
        dist = np.where(robust, np.minimum(dist, res), dist)
        robust &= ~fooled
    return jnp.asarray(x_adv), jnp.asarray(dist)


@functools.partial(jax.jit, static_argnames=("steps", "num_targets", "restarts",
                                             "alpha_max", "eta", "beta"))
def _fab_t(logits_fn, x, y, key, eps, *, steps, num_targets, restarts, alpha_max, eta, beta):
    """All target runs in one jitted ``lax.while_loop`` over the whole batch (masked; traced inputs)."""
    bcast = (-1,) + (1,) * (x.ndim - 1)
    robust, ranking, k_runs = _clean(logits_fn, x, y, key)
    _check_targets(num_targets, ranking)
    n_runs = num_targets * restarts

    def cond(state):
        r, robust, _, _ = state
        return (r < n_runs) & jnp.any(robust)

    def run(state):
        r, robust, x_adv, dist = state
        target = ranking[:, -(2 + r // restarts)]
        k_r, k_check = _run_keys(k_runs, r)
        adv, res = _one_run(logits_fn, x, y, eps, target, k_r, (r % restarts) > 0, None, steps=steps,
                            alpha_max=alpha_max, eta=eta, beta=beta)
        fooled = robust & _judge_run(logits_fn, adv, res, y, eps, k_check)
        x_adv = jnp.where(fooled.reshape(bcast), adv, x_adv)
        dist = jnp.where(robust, jnp.minimum(dist, res), dist)
        return r + 1, robust & ~fooled, x_adv, dist

    dist0 = jnp.where(robust, jnp.inf, 0.0).astype(x.dtype)
    _, _, x_adv, dist = jax.lax.while_loop(cond, run, (jnp.int32(0), robust, x, dist0))
    return x_adv, dist
