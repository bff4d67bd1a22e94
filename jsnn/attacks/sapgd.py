"""SA-PGD, the stable adaptive PGD of Wang et al., "Towards reliable evaluation of adversarial
robustness for spiking neural networks" (arXiv 2512.22522), with ASSG as the paper's attack.

Update (the public code, craree/Towards-Reliable-Evaluation-..., ``ASSG_SAPGD``), per example,
with ``ḡ = mean|g|`` and ``ḡ² = mean g²`` over the image:

    m ← β₁·m + g/ḡ,   v ← β₂·v + g²/ḡ²,   δ = clip(η·m/(√v + 1e-12), −η, η),   xᵏ⁺¹ = P(xᵏ + δ)

(m = v = 0 before the first step; β₁ = 0.5, β₂ = 0.8), P the projection onto the ε-ball ∩ [0, 1],
``η⁰ = init_step·ε`` (1·ε). The step is halved at the APGD checkpoints
(:func:`jsnn.attacks.apgd_checkpoints`: 22, 41, 57, ... of N = 100): always (``schedule="always"``,
the public code), or only where APGD's conditions say progress stalled (``schedule="stall"``:
the loss rose in at most ρ of the window's steps, or the best loss did not improve since the last
checkpoint; no restart from the best point).

With a stateful forward of :func:`jsnn.attacks.adaptive.assg` the attack carries its ASSG state:
every gradient evaluation (the first at x⁰ included) updates the moments from the layer
potentials and uses the new sharpness — the paper's ASSG + SA-PGD. Any other ``logits_fn`` gets
plain SA-PGD.

Details the paper leaves open are keywords with the public code's values as defaults: β₁, β₂,
``init_step``, the schedule. Differences from the public code: the random start is uniform in
the ball (:func:`jsnn.attacks.common.random_init`; the reference scales a uniform draw to
‖δ‖∞ = ε), L2 projects onto the L2 ball (the reference clips to the L∞ box under L2 too), zero
gradients give a zero step instead of NaN, and the returned point follows
:mod:`jsnn.attacks.common` (misclassified if any iterate was, else the highest-loss one).
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from jsnn.attacks import adaptive, common
from jsnn.attacks import losses as losses_lib
from jsnn.attacks.apgd import _check, _schedule
from jsnn.attacks.common import Best, expand
from jsnn.attacks.eot import value_and_grad
from jsnn.config import check_choice, check_number

SCHEDULES = ("always", "stall")


def _oracle(logits_fn, loss, y, target, *, eot: int, eot_chunk, stateful: bool):
    """``vg(x, key, state) -> (loss [B], grad, fooled [B], new_state)``; EOT means (the state's too)."""
    loss_fn = losses_lib.get(loss)
    call = logits_fn if stateful else (lambda x, k, state: (logits_fn(x, k), state))

    def vg(x, key, state):
        def per_draw(xx, k):
            logits, new = call(xx, k, state)
            return loss_fn(logits, y, target).astype(xx.dtype), (logits, new)

        v, g, (logits, new) = value_and_grad(per_draw, x, key, samples=eot, chunk=eot_chunk)
        return v, g.astype(x.dtype), common.misclassified(logits, y), jax.lax.stop_gradient(new)

    return vg


def _mean_abs(a):
    return jnp.mean(jnp.abs(a), axis=tuple(range(1, a.ndim)), keepdims=True)


def _run(vg, x, key, eps, *, norm, steps, random_start, schedule, rho, beta1, beta2, init_step, stateful,
         return_state: bool = False):
    k_init, k_noise = jax.random.split(key)
    x0 = common.random_init(k_init, x, eps, norm) if random_start else x
    loss0, g0, fooled0, state0 = vg(x0, common.fold(k_noise, 0), None if stateful else ())
    is_ckpt, window = _schedule(steps)
    eps_arr = jnp.broadcast_to(jnp.asarray(eps, x.dtype), x.shape[:1])
    zeros = jnp.zeros_like(x)
    carry = dict(x=x0, grad=g0, m=zeros, v=zeros, step=init_step * eps_arr, state=state0,
                 ret=common.init_best(x0, loss0, fooled0), loss_prev=loss0, loss_best=loss0,
                 count=jnp.zeros(x.shape[:1], jnp.int32), best_last=loss0, reduced_last=jnp.ones(x.shape[:1], bool))

    def body(i, s):
        g = s["grad"]
        m = beta1 * s["m"] + g / (_mean_abs(g) + common._TINY)
        v = beta2 * s["v"] + jnp.square(g) / (_mean_abs(jnp.square(g)) + common._TINY)
        eta = expand(s["step"], x)
        delta = jnp.clip(eta * m / (jnp.sqrt(v) + 1e-12), -eta, eta)
        x_new = common.project(s["x"] + delta, x, eps, norm)
        loss, g_new, fooled, state = vg(x_new, common.fold(k_noise, i + 1), s["state"])
        ret = common.update_best(s["ret"], x_new, loss, fooled)
        count = s["count"] + (loss > s["loss_prev"]).astype(jnp.int32)
        loss_best = jnp.maximum(s["loss_best"], jnp.where(jnp.isnan(loss), -jnp.inf, loss))
        c = is_ckpt[i]
        if schedule == "always":
            reduce = jnp.ones(x.shape[:1], bool)
        else:  # APGD's conditions (1) oscillation, (2) no improvement since the last checkpoint
            reduce = (count.astype(x.dtype) <= rho * window[i]) | (~s["reduced_last"] & (s["best_last"] >= loss_best))
        halve = c & reduce
        return dict(x=x_new, grad=g_new, m=m, v=v, step=jnp.where(halve, s["step"] / 2, s["step"]), state=state,
                    ret=ret, loss_prev=loss, loss_best=loss_best, count=jnp.where(c, 0, count),
                    best_last=jnp.where(c, loss_best, s["best_last"]),
                    reduced_last=jnp.where(c, reduce, s["reduced_last"]))

    carry = jax.lax.fori_loop(0, steps, body, carry)
    return carry if return_state else carry["ret"]


@functools.partial(jax.jit, static_argnames=("norm", "steps", "restarts", "loss", "eot", "random_start", "schedule",
                                             "rho", "beta1", "beta2", "init_step", "eot_chunk", "restart_chunk",
                                             "stateful"))
def _sapgd(logits_fn, x, y, key, eps, target, *, norm, steps, restarts, loss, eot, random_start, schedule, rho,
           beta1, beta2, init_step, eot_chunk, restart_chunk, stateful):
    vg = _oracle(logits_fn, loss, y, target, eot=eot, eot_chunk=eot_chunk, stateful=stateful)
    run = lambda k: _run(vg, x, k, eps, norm=norm, steps=steps, random_start=random_start, schedule=schedule,
                         rho=rho, beta1=beta1, beta2=beta2, init_step=init_step, stateful=stateful)
    return common.run_restarts(run, key, restarts, restart_chunk)


def _logits_only(fn, x, key):
    return fn(x, key, None)[0]


def sapgd(logits_fn, x, y, key, *, eps, norm: str = "linf", steps: int = 100, restarts: int = 1, loss="ce",
          target=None, eot: int = 1, random_start: bool = True, schedule: str = "always", rho: float = 0.75,
          beta1: float = 0.5, beta2: float = 0.8, init_step: float = 1.0, eot_chunk: Optional[int] = None,
          restart_chunk: Optional[int] = None, full_output: bool = False):
    """SA-PGD (Wang et al. 2025); ASSG + SA-PGD when ``logits_fn`` is :func:`jsnn.attacks.adaptive.assg`'s.

    Args:
      logits_fn: ``logits_fn(x, key) -> logits [B, K]``, or a stateful ASSG forward
        (``fn(x, key, state) -> (logits, state)``, see :func:`~jsnn.attacks.adaptive.is_stateful`).
      x: clean images ``[B, ...]`` in [0, 1].
      y: labels ``[B]``.
      key: PRNG key (random starts; model noise via ``fold_in`` over steps).
      eps: radius (pixel units), scalar or ``[B]``.
      norm: ``"linf"`` or ``"l2"``.
      steps: N iterations (gradient evaluations: N + 1).
      restarts: independent restarts under ``vmap`` (each with its own ASSG state).
      loss: ``"ce"``, ``"dlr"``, ``"cw"``, a targeted loss with ``target``, or a callable.
      target: target classes ``[B]`` for a targeted loss.
      eot: EOT draws per gradient (the ASSG state is updated with their mean).
      random_start: start at a random point of the ball (else at ``x``).
      schedule: ``"always"`` halve η at every checkpoint (the public code) or ``"stall"`` (APGD's conditions).
      rho: ρ of the ``"stall"`` oscillation condition.
      beta1, beta2: decay of the normalised first and second moments (0.5, 0.8 in the public code).
      init_step: η⁰ / ε (1 in the public code).
      eot_chunk, restart_chunk: chunk sizes (``lax.map``) of the EOT draws and restarts.
      full_output: return the :class:`~jsnn.attacks.common.Best` (x, loss, fooled) instead of x.

    Returns:
      ``x_adv`` like ``x`` (or a ``Best``).

    Example:
        On a linear model the CW margin is maximised at the corner ``x + ε·sign(w₁ − w₀)``:

        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jsnn.attacks import sapgd
        >>> W = jnp.array([[1., 0.], [0., 1.], [1., 0.], [0., 1.]])  # sign(w₁ − w₀) = (−, +, −, +)
        >>> x, y = jnp.array([[0.6, 0.4, 0.6, 0.4], [0.9, 0.1, 0.9, 0.1]]), jnp.array([0, 0])
        >>> best = sapgd(lambda x, key: x @ W, x, y, jax.random.key(0), eps=0.15, steps=10, loss="cw",
        ...              full_output=True)
        >>> np.asarray(best.loss, float).round(3).tolist(), best.fooled.tolist()
        ([0.2, -1.0], [True, False])
        >>> bool(jnp.all(jnp.abs(best.x - x) <= 0.15 + 1e-6))
        True
    """
    stateful = adaptive.is_stateful(logits_fn)
    probe = functools.partial(_logits_only, logits_fn) if stateful else logits_fn
    x, y = _check(probe, x, y, key, eps, norm, steps, restarts, eot, rho)  # APGD's: inputs, ε, counts, ρ
    common.check_target(loss, target, y)
    check_choice(schedule, "schedule", SCHEDULES, where="sapgd ")
    check_number(beta1, "beta1", low=0, high=1, high_open=True, where="sapgd ")
    check_number(beta2, "beta2", low=0, high=1, high_open=True, where="sapgd ")
    check_number(init_step, "init_step", low=0, low_open=True, where="sapgd ")
    best = _sapgd(common.as_partial(logits_fn), x, y, key, eps, target, norm=norm, steps=steps, restarts=restarts,
                  loss=loss, eot=eot, random_start=random_start, schedule=schedule, rho=float(rho),
                  beta1=float(beta1), beta2=float(beta2), init_step=float(init_step), eot_chunk=eot_chunk,
                  restart_chunk=restart_chunk, stateful=stateful)
    return best if full_output else best.x
