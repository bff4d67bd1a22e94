"""Adversarial training (Madry et al. 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR; FGSM: Goodfellow et al. 2015; R+FGSM: Tramèr et al. 2018 / Wong
et al. 2020 "Fast is better than free").

The batch is replaced by adversarial examples crafted against the *current* parameters with
BatchNorm in evaluation mode (running statistics), as the SNN robustness papers do
(``model.eval()`` while attacking), and the wrapped loss is applied to them:

    loss = (1 − w)·L(x) + w·L(x_adv),   x_adv = attack(f_θ^eval, x, y)   (stop-gradient)

``w`` (``mix``) = 1 is Madry's adversarial training; 0.5 is Goodfellow's clean/adversarial mix.
The inner attack comes from :mod:`jsnn.attacks` and uses the model's own training
surrogate. Stochastic models are attacked with their own noise (one draw, ``eot`` to average).
"""

from __future__ import annotations

from typing import Optional

import jax

from jsnn.config import check_choice, check_int, check_number
from jsnn.defenses import base

ATTACKS = ("fgsm", "rfgsm", "pgd")
NORMS = ("linf", "l2")


def craft(model, params, model_state, x, y, key, *, attack: str = "pgd", eps: float = 8 / 255,
          steps: int = 7, step_size=None, alpha=None, norm: str = "linf", random_start: bool = True,
          eot: int = 1):
    """Adversarial examples against the eval-mode forward of the current parameters.

    Args:
      attack: ``"fgsm"``, ``"rfgsm"`` (random step α, default ε/2, then ε − α) or ``"pgd"``.
      eps: radius in pixel units; steps / step_size: PGD (step_size None: 2.5·ε/steps);
      alpha: R+FGSM random step; norm: ``"linf"`` / ``"l2"``; random_start: PGD;
      eot: draws per gradient for stochastic models.

    Returns:
      ``x_adv`` with ``stop_gradient`` applied.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.defenses import base
        >>> from jsnn.defenses.adversarial import craft
        >>> model, params, batch, key, _ = base.linear_problem()
        >>> x, y = batch["image"], batch["label"]
        >>> x_adv = craft(model, params, {}, x, y, key, attack="pgd", eps=0.1, steps=3)
        >>> x_adv.shape, bool(jnp.all(jnp.abs(x_adv - x) <= 0.1 + 1e-6))  # inside the ε-ball
        ((2, 2, 2, 1), True)
    """
    from jsnn.attacks.fgsm import fgsm, rfgsm
    from jsnn.attacks.pgd import pgd

    logits_fn = base.eval_logits_fn(model, params, model_state)
    x = jax.lax.stop_gradient(x)
    if attack == "fgsm":
        x_adv = fgsm(logits_fn, x, y, key, eps=eps, norm=norm, eot=eot)
    elif attack == "rfgsm":
        x_adv = rfgsm(logits_fn, x, y, key, eps=eps, alpha=alpha, norm=norm, eot=eot)
    elif attack == "pgd":
        x_adv = pgd(logits_fn, x, y, key, eps=eps, norm=norm, steps=steps, step_size=step_size,
                            random_start=random_start, eot=eot)
    else:
        raise ValueError(f"defense.at.attack: {attack!r}; allowed: {', '.join(ATTACKS)}")
    return jax.lax.stop_gradient(x_adv)


def adversarial_training(model, *, attack: str = "pgd", eps: float = 8 / 255, steps: int = 7,
                         step_size: float = 0.01, alpha: Optional[float] = None, norm: str = "linf", random_start: bool = True,
                         mix: float = 1.0, eot: int = 1):
    """Loss transform training on adversarial examples (see the module docstring).

    Defaults are the SR+AT recipe (METHODS.md): PGD-7, ε = 8/255, α = 0.01 (2.55/255), random start.

    Args:
      model: the Flax model being trained.
      mix: weight w ∈ (0, 1] of the adversarial term; the clean term gets 1 − w.
      Others: see :func:`craft`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.defenses import adversarial_training
        >>> from jsnn.defenses import base
        >>> model, params, batch, key, loss_fn = base.linear_problem()  # a linear 3-class model
        >>> clean, _ = jax.jit(loss_fn)(params, {}, batch, key)
        >>> at = jax.jit(adversarial_training(model, attack="fgsm", eps=0.1)(loss_fn))
        >>> adv, (_, aux) = at(params, {}, batch, key)
        >>> bool(adv > clean)  # CE of a linear model is convex in x: an FGSM step raises it
        True
        >>> at0 = jax.jit(adversarial_training(model, eps=0.0, mix=0.5, steps=2)(loss_fn))  # x_adv = x
        >>> bool(jnp.allclose(at0(params, {}, batch, key)[0], clean))  # (1 − w)·L(x) + w·L(x)
        True
    """
    check_choice(attack, "defense.at.attack", ATTACKS)
    check_choice(norm, "defense.at.norm", NORMS)
    check_number(eps, "defense.at.eps", low=0.0)
    check_int(steps, "defense.at.steps")
    if step_size is not None:
        check_number(step_size, "defense.at.step_size", low=0.0, low_open=True)
    if alpha is not None:
        check_number(alpha, "defense.at.alpha", low=0.0, high=eps)
    mix = check_number(mix, "defense.at.mix", low=0.0, high=1.0, low_open=True)
    check_int(eot, "defense.at.eot")
    kw = dict(attack=attack, eps=eps, steps=steps, step_size=step_size, alpha=alpha, norm=norm,
              random_start=random_start, eot=eot)

    def transform(loss_fn):
        def adv_loss_fn(params, model_state, batch, key):
            k_attack, k_loss = jax.random.split(key)
            y = batch["label"]
            x_adv = craft(model, params, model_state, batch["image"], y, k_attack, **kw)
            adv_batch = base.with_image(batch, x_adv)
            if mix == 1.0:
                loss, (model_state, aux) = loss_fn(params, model_state, adv_batch, k_loss)
                return loss, (model_state, base.with_metrics(aux, at_adv_loss=loss))
            k_clean, k_adv = jax.random.split(k_loss)
            clean_loss, (model_state, clean_aux) = loss_fn(params, model_state, batch, k_clean)
            adv_loss, (model_state, aux) = loss_fn(params, model_state, adv_batch, k_adv)
            loss = (1.0 - mix) * clean_loss + mix * adv_loss
            metrics = dict(aux["metrics"], at_adv_loss=adv_loss, at_clean_loss=clean_loss)
            if "accuracy" in clean_aux["metrics"]:
                metrics["at_clean_accuracy"] = clean_aux["metrics"]["accuracy"]
            return loss, (model_state, {**clean_aux, "metrics": metrics})  # the clean batch's forward outputs

        return adv_loss_fn

    return transform
