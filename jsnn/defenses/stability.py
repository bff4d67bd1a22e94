"""Membrane-potential perturbation dynamics (MPPD), the RSNN defense (Ding, Pan, Yu, Huang
2024, "Robust Stable Spiking Neural Networks", ICML; arXiv 2405.20694).

RSNN trains DLIF neurons (``config.model.neuron = "dlif"``, leak 0.99, learnable per-step
input gain) and penalizes how far an input perturbation drives the membrane of the *last
spiking layer* away from its clean trajectory, using the leaky integration without spikes
or reset:

    Δ[t] = I_clean[t] − I_pert[t]          (input currents; I_clean without gradient)
    Y[t] = λ·Y[t−1] + Δ[t],  Y[−1] = 0     (λ = 0.99)
    loss = w·L(x) + (1 − w)·CE(x_pert) + ρ·mean(Y²)      (w = 0.5, ρ = 1)

Perturbations: ``"gaussian"`` x + N(0, σ²), σ = 8/255 (noise training), or ``"rfgsm"``:
a N(0, s²) start (s = ``init_std`` = 0.001, *unconfirmed*: the paper writes N(0, 0.001)),
then one FGSM step of ε = 4/255 against the eval-mode model (adversarial training).

The last spiking layer is found by calling order: the last
:class:`jsnn.layers.SpikingNeuron` whose ``__call__`` runs during the forward (recorded
with :func:`flax.linen.intercept_methods`), and its current is the ``"current"`` it sows
into ``"intermediates"`` — the input ``X[t]`` of the membrane update (after DLIF's gain).
Both currents come from training-mode forwards with the same noise key.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jsnn.config import check_choice, check_number
from jsnn import losses
from jsnn.defenses import base, noise
from jsnn.layers import SpikingNeuron
from jsnn.models.base import train_forward

PERTURBATIONS = ("gaussian", "rfgsm")


def mppd_trace(delta, leak: float = 0.99):
    """``Y[t] = leak·Y[t−1] + Δ[t]`` over the leading (time) axis of ``delta`` ``[T, ...]``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.stability import mppd_trace
        >>> mppd_trace(jnp.ones((3, 1)), leak=0.5).ravel().tolist()  # 1, 0.5·1 + 1, 0.5·1.5 + 1
        [1.0, 1.5, 1.75]
    """

    def step(y, d):
        y = leak * y + d
        return y, y

    _, ys = jax.lax.scan(step, jnp.zeros_like(delta[0]), delta)
    return ys


def mppd_penalty(current_clean, current_pert, leak: float = 0.99):
    """``mean(Y²)`` with ``Δ = stop_gradient(I_clean) − I_pert`` (both ``[T, B, ...]``).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.stability import mppd_penalty
        >>> i = jnp.ones((2, 1, 3))
        >>> float(mppd_penalty(i, i)), float(mppd_penalty(i, 0 * i, leak=1.0))  # Y = 1, 2: (1 + 4)/2
        (0.0, 2.5)
    """
    delta = jax.lax.stop_gradient(current_clean) - current_pert
    return jnp.mean(jnp.square(mppd_trace(delta, leak)))


def _record_spiking_paths(paths):
    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, SpikingNeuron) and context.method_name == "__call__":
            paths.append(tuple(context.module.path))
        return next_fun(*args, **kwargs)

    return interceptor


def _lookup(tree, path):
    for name in path:
        tree = tree[name]
    return tree


def forward_with_current(model, params, model_state, x, key):
    """Training-mode forward returning ``(logits, new_model_state, current)``.

    ``current`` ``[T, B, ...]`` is the input current of the last spiking layer (module docstring).

    Raises:
      ValueError: the model has no :class:`~jsnn.layers.SpikingNeuron`.
    """
    paths = []
    with nn.intercept_methods(_record_spiking_paths(paths)):
        logits, new_state, inter = train_forward(model, params, model_state, x, key, intermediates=True)
    if not paths:
        raise ValueError(f"defense.rsnn: model {type(model).__name__} has no SpikingNeuron layer; MPPD needs one")
    current = _lookup(inter, paths[-1])["current"]
    return logits, new_state, current[-1] if isinstance(current, tuple) else current


def perturb(model, params, model_state, x, y, key, *, perturbation: str, sigma: float, eps: float,
            init_std: float):
    """RSNN's training perturbation of ``x`` (stop-gradient)."""
    k_noise, k_attack = jax.random.split(key)
    x = jax.lax.stop_gradient(x)
    if perturbation == "gaussian":
        return noise.perturb(x, k_noise, sigma)
    from jsnn.attacks.fgsm import fgsm

    x0 = noise.perturb(x, k_noise, init_std)
    logits_fn = base.eval_logits_fn(model, params, model_state)
    return jax.lax.stop_gradient(fgsm(logits_fn, x0, y, k_attack, eps=eps))


def membrane_stability(model, *, rho: float = 1.0, leak: float = 0.99, perturbation: str = "gaussian",
                       sigma: float = 8 / 255, eps: float = 4 / 255, init_std: float = 0.001,
                       clean_weight: float = 0.5):
    """RSNN/MPPD loss transform (see the module docstring).

    Args:
      model: the model being trained (DLIF neurons in the paper; any spiking model works).
      rho: weight ρ of ``mean(Y²)``; leak: λ of the Y recursion.
      perturbation: ``"gaussian"`` (σ = ``sigma``) or ``"rfgsm"`` (``init_std`` start, FGSM ``eps``).
      clean_weight: w, the weight of the wrapped clean loss; the perturbed CE gets 1 − w.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import DLIF, get_model
        >>> from jsnn.defenses import membrane_stability
        >>> from jsnn.losses import cross_entropy_loss_fn
        >>> model, x = get_model("digits_mlp", hidden=(8,), T=2, neuron=DLIF), jnp.full((3, 8, 8, 1), 0.5)
        >>> v = jax.jit(model.init)(jax.random.key(0), x)
        >>> params, state = v["params"], {"batch_stats": v["batch_stats"]}
        >>> batch, key = {"image": x, "label": jnp.array([0, 1, 2])}, jax.random.key(1)
        >>> loss_fn = cross_entropy_loss_fn(model)
        >>> clean, _ = jax.jit(loss_fn)(params, state, batch, key)  # deterministic model: any key
        >>> rsnn_loss_fn = jax.jit(membrane_stability(model, rho=2.0, clean_weight=0.25)(loss_fn))
        >>> loss, (_, aux) = rsnn_loss_fn(params, state, batch, key)
        >>> m = aux["metrics"]
        >>> bool(m["rsnn_penalty"] > 0), m["rsnn_pert_loss"].shape
        (True, ())
        >>> bool(jnp.allclose(loss, 0.25 * clean + 0.75 * m["rsnn_pert_loss"] + 2.0 * m["rsnn_penalty"]))
        True
    """
    rho = check_number(rho, "defense.rsnn.rho", low=0.0)
    leak = check_number(leak, "defense.rsnn.leak", low=0.0)
    check_choice(perturbation, "defense.rsnn.perturbation", PERTURBATIONS)
    sigma = check_number(sigma, "defense.rsnn.sigma", low=0.0)
    eps = check_number(eps, "defense.rsnn.eps", low=0.0)
    init_std = check_number(init_std, "defense.rsnn.init_std", low=0.0)
    w = check_number(clean_weight, "defense.rsnn.clean_weight", low=0.0, high=1.0)

    def transform(loss_fn):
        def mppd_loss_fn(params, model_state, batch, key):
            k_pert, k_loss, k_fwd = jax.random.split(key, 3)
            x, y = batch["image"], batch["label"]
            x_pert = perturb(model, params, model_state, x, y, k_pert, perturbation=perturbation, sigma=sigma,
                             eps=eps, init_std=init_std)
            paths = []
            with nn.intercept_methods(_record_spiking_paths(paths)):
                clean_loss, (new_state, aux) = loss_fn(params, model_state, batch, k_loss)
            own = base.reusable(aux, x, intermediates=True)  # the wrapped loss's forward, when it ran on x
            if own and paths:  # mppd_penalty stops the clean current's gradient: same value, same gradient
                i_clean = _lookup(own["intermediates"], paths[-1])["current"]
                i_clean = i_clean[-1] if isinstance(i_clean, tuple) else i_clean
            else:
                _, _, i_clean = forward_with_current(model, jax.lax.stop_gradient(params), model_state, x, k_fwd)
            z_pert, _, i_pert = forward_with_current(model, params, model_state, x_pert, k_fwd)
            pert_loss = losses.cross_entropy(z_pert, y).mean()
            reg = mppd_penalty(i_clean, i_pert, leak)
            loss = w * clean_loss + (1.0 - w) * pert_loss + rho * reg
            aux = base.with_metrics(aux, rsnn_penalty=reg, rsnn_pert_loss=pert_loss,
                                    rsnn_pert_accuracy=losses.accuracy(z_pert, y))
            return loss, (new_state, aux)

        return mppd_loss_fn

    return transform
