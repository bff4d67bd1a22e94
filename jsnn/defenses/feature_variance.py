"""Stochastic features with variance maximization, MFDV (arXiv 2201.00148, MFDV-SNN; related:
WCA-Net, Eustratiadis et al. 2021, "Weight-covariance alignment for adversarially robust
neural networks", ICML; PNI, He et al. 2019). Details are *unconfirmed* (METHODS.md) and are
config fields.

Model side — :class:`~jsnn.models.wrappers.FeatureVarianceNet` (registered as ``config.model.name = "mfdv"``) wraps
any registered backbone whose readout is widened to ``2·d`` outputs, read as the mean and the
pre-scale of the penultimate features (both linear in the time-averaged last spikes):

    [μ(h), s(h)] = backbone(x),   σ = softplus(s) + σ_min,   z = μ + σ ⊙ ε,   logits = W z + b

with ``ε ~ N(0, I)`` fresh per example from rng ``"noise"`` — in training *and* at test time,
so the deployed model is stochastic (evaluate it with EOT). :class:`~jsnn.models.wrappers.StochasticFeatures` is
the generic ``μ + σ⊙ε`` layer.

Loss side — :func:`feature_variance`:

    loss = L(x) − λ_t·R(σ),   λ_t = λ·min(1, t / ramp_steps)

with ``R = mean log σ²`` (``reg="log_var"``, default) or WCA's ``log tr(W Σ Wᵀ)``
(``reg="wca"``, Σ = diag σ², averaged over the batch). The step ``t`` is a counter in the
model's ``"counters"`` collection that this loss increments.

Scale guard: rescaling (μ, σ) by c and W by 1/c leaves the logits unchanged while R grows by
2·log c, so R alone can be inflated for free. ``unit_norm=True`` (default) uses unit-norm
classifier rows (``W_k / ‖W_k‖``), which removes that direction; the remaining growth of μ and
σ goes through the backbone weights, held by the optimizer's weight decay.
"""

from __future__ import annotations

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jsnn.config import check_choice, check_int, check_number
from jsnn.defenses import base
from jsnn.models.base import train_forward
from jsnn.models.wrappers import FeatureVarianceNet, unit_columns

REGULARIZERS = ("log_var", "wca")


def regularizer(sigma, reg: str = "log_var", classifier_kernel=None):
    """R(σ): ``mean log σ²`` or WCA's ``mean_b log Σ_k Σ_i W_ik² σ_bi²`` (W normalized per class if given so).

    Example:
        >>> import math, jax.numpy as jnp
        >>> from jsnn.defenses.feature_variance import regularizer
        >>> sigma = jnp.full((2, 3), math.e)
        >>> round(float(regularizer(sigma)), 4)  # log e² = 2
        2.0
        >>> wca = regularizer(sigma, "wca", jnp.ones((3, 4)))  # log Σ_k Σ_i 1·e² = log(4·3·e²)
        >>> round(float(wca), 4) == round(math.log(4 * 3 * math.e**2), 4)
        True
    """
    if reg == "log_var":
        return jnp.mean(jnp.log(jnp.square(sigma)))
    if classifier_kernel is None:
        raise ValueError("defense.mfdv.reg='wca' needs the classifier kernel")
    return jnp.mean(jnp.log(jnp.square(sigma) @ jnp.sum(jnp.square(classifier_kernel), axis=1)))


def ramp(lam: float, step, ramp_steps: int):
    """``λ·min(1, step / ramp_steps)`` (``λ`` when ``ramp_steps`` is 0).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.feature_variance import ramp
        >>> [round(float(ramp(0.1, jnp.array(t), 200)), 4) for t in (0, 50, 400)]
        [0.0, 0.025, 0.1]
    """
    if ramp_steps <= 0:
        return jnp.asarray(lam, jnp.float32)
    return lam * jnp.minimum(1.0, step.astype(jnp.float32) / ramp_steps)


def feature_variance(model, *, lam: float = 0.1, ramp_steps: int = 200, reg: str = "log_var"):
    """MFDV loss transform ``L(x) − λ_t·R(σ)`` for a :class:`FeatureVarianceNet` (module docstring).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import get_model
        >>> from jsnn.defenses import feature_variance
        >>> from jsnn.losses import cross_entropy_loss_fn
        >>> model = get_model("mfdv", backbone="digits_mlp", features=4, hidden=(8,), T=2)
        >>> x, y = jnp.full((3, 8, 8, 1), 0.5), jnp.array([0, 1, 2])
        >>> v = jax.jit(model.init)(jax.random.key(0), x)
        >>> params, state = v["params"], {k: v[k] for k in ("batch_stats", "counters")}
        >>> loss_fn = jax.jit(feature_variance(model, lam=0.5, ramp_steps=4)(cross_entropy_loss_fn(model)))
        >>> loss, (new_state, aux) = loss_fn(params, state, {"image": x, "label": y}, jax.random.key(1))
        >>> m = aux["metrics"]
        >>> int(new_state["counters"]["step"]), float(m["mfdv_lambda"])  # λ_0 = 0.5·0/4, step counted
        (1, 0.0)
        >>> _, (_, aux) = loss_fn(params, new_state, {"image": x, "label": y}, jax.random.key(1))
        >>> m = aux["metrics"]
        >>> float(m["mfdv_lambda"])  # λ_1 = 0.5·1/4
        0.125
        >>> feature_variance(get_model("digits_mlp"))
        Traceback (most recent call last):
        ValueError: defense.mfdv: needs config.model.name='mfdv' (a FeatureVarianceNet), got SpikingMLP
    """
    if not isinstance(model, FeatureVarianceNet):
        raise ValueError(f"defense.mfdv: needs config.model.name='mfdv' (a FeatureVarianceNet), got "
                         f"{type(model).__name__}")
    lam = check_number(lam, "defense.mfdv.lam", low=0.0)
    ramp_steps = check_int(ramp_steps, "defense.mfdv.ramp_steps", minimum=0)
    check_choice(reg, "defense.mfdv.reg", REGULARIZERS)

    def transform(loss_fn):
        def mfdv_loss_fn(params, model_state, batch, key):
            k_loss, k_fwd = jax.random.split(key)
            x = batch["image"]
            loss, (new_state, aux) = loss_fn(params, model_state, batch, k_loss)
            own = base.reusable(aux, x, intermediates=True)  # the wrapped loss's forward, when it ran on x
            inter = own["intermediates"] if own else train_forward(model, params, model_state, x, k_fwd,
                                                                   intermediates=True)[2]
            sigma = inter["features"]["sigma"][-1]
            kernel = params["classifier"]["kernel"]
            if model.unit_norm:
                kernel = unit_columns(kernel)
            r = regularizer(sigma, reg, kernel)
            step = model_state["counters"]["step"]
            lam_t = ramp(lam, step, ramp_steps)
            new_state = {**new_state, "counters": {"step": step + 1}}
            aux = base.with_metrics(aux, mfdv_reg=r, mfdv_lambda=lam_t, mfdv_sigma=jnp.mean(sigma))
            return loss - lam_t * r, (new_state, aux)

        return mfdv_loss_fn

    return transform
