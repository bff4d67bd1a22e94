"""Defenses as composable loss transforms (DESIGN.md, "Defenses are loss transforms").

A defense maps ``loss_fn -> loss_fn`` where
``loss_fn(params, model_state, batch, key) -> (loss, (model_state, aux))`` and
``aux = {"metrics": {...}, "logits": ..., "image": ..., "intermediates": ...}``: the logged scalars
and the outputs of the wrapped loss's training forward on ``aux["image"]`` (see :mod:`jsnn.losses`).
Every defense passes ``aux`` through, adding its metrics (:func:`.base.with_metrics`); TRADES,
distill, MFDV and RSNN reuse its clean logits/intermediates (:func:`.base.reusable`) instead of
running the clean forward again, and run their own only when a wrapped transform changed the
images. :func:`chain` composes them like ``optax.chain`` (the first transform is applied
innermost). Parameter-space steps (RAT's retraction) are ``optax`` transforms.

Defenses by name (``config.defense.name``, ``"+"``-joined, innermost first; settings in
``config.defense.<name>``, defaults in :data:`DEFAULTS`):

=========  =====================================================  ==============================
name       what                                                   module
=========  =====================================================  ==============================
at         adversarial training (FGSM / R+FGSM / PGD, BN eval)    :mod:`.adversarial`
trades     TRADES, CE + β·KL(clean ‖ adv)                         :mod:`.trades`
noise      Gaussian noise augmentation                            :mod:`.noise`
sr         sparse-gradient regularizer (SR)                       :mod:`.sparse_gradient`
rsnn       MPPD membrane stability (RSNN; use DLIF neurons)       :mod:`.stability`
rat        orthogonal retraction after the optimizer (RAT)        :mod:`.orthogonal`
mfdv       stochastic-feature variance term (model ``mfdv``)      :mod:`.feature_variance`
distill    ANN teacher → SNN distillation (model ``ann`` teacher) :mod:`.distill`
=========  =====================================================  ==============================

Order matters: ``"sr+at"`` is ``chain(sr, at)`` = ``at(sr(CE))``: adversarial training
crafts the batch, and CE + SR is taken on it (SR+AT). ``"at+rat"`` is RAT proper
(adversarial training plus the retraction). RSC coding is not a loss transform but the
encoder (``config.model.encoder.name = "rsc"``).

The wrapper models these defenses train (``"mfdv"``, and ``"ann"`` for distillation teachers)
live in :mod:`jsnn.models.wrappers` and are registered with the other models.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import optax

from jsnn.defenses import base

# Public factories (they shadow the module names; import helpers from the modules directly,
# e.g. ``from jsnn.defenses.sparse_gradient import finite_difference``).
from jsnn.defenses.adversarial import adversarial_training
from jsnn.defenses.distill import distill
from jsnn.defenses.feature_variance import feature_variance
from jsnn.defenses.noise import gaussian_noise
from jsnn.defenses.orthogonal import orthogonal
from jsnn.defenses.sparse_gradient import sparse_gradient
from jsnn.defenses.stability import membrane_stability
from jsnn.defenses.trades import trades
from jsnn.models.wrappers import ANNNet, FeatureVarianceNet, StochasticFeatures  # the defenses' models (re-exported)

LossFn = Callable
LossTransform = Callable[[LossFn], LossFn]


def chain(*transforms: LossTransform) -> LossTransform:
    """Composes loss transforms: ``chain(a, b)(loss) == b(a(loss))``.

    Example:
        >>> from jsnn.defenses import chain
        >>> add_one = lambda f: lambda *a: (f(*a)[0] + 1.0, f(*a)[1])
        >>> double = lambda f: lambda *a: (2.0 * f(*a)[0], f(*a)[1])
        >>> loss_fn = lambda params, state, batch, key: (params, (state, {"metrics": {}}))
        >>> chain(add_one, double)(loss_fn)(3.0, {}, None, None)[0]  # double(add_one(L)) = 2·(3 + 1)
        8.0
        >>> chain(double, add_one)(loss_fn)(3.0, {}, None, None)[0]  # add_one(double(L)) = 2·3 + 1
        7.0
    """

    def apply(loss_fn):
        for t in transforms:
            loss_fn = t(loss_fn)
        return loss_fn

    return apply


def identity() -> LossTransform:
    """The no-op defense (vanilla training).

    Example:
        >>> from jsnn.defenses import identity
        >>> loss_fn = lambda params, state, batch, key: (params, (state, {"metrics": {}}))
        >>> identity()(loss_fn) is loss_fn
        True
    """
    return lambda loss_fn: loss_fn


class DefenseSetup(NamedTuple):
    """What training needs from the configured defenses."""

    loss_transform: LossTransform
    param_transform: Optional[optax.GradientTransformation] = None


class _Entry(NamedTuple):
    factory: Callable  # its keyword settings (with defaults) are the fields of config.defense.<name>
    kind: str  # "loss": a loss transform; "param": an optax transform chained after the optimizer
    takes_model: bool = True  # factory(model, **settings) or factory(**settings)
    skip: tuple = ()  # parameters that are not config fields (given in code)


_REGISTRY = {
    "at": _Entry(adversarial_training, "loss"),
    "trades": _Entry(trades, "loss"),
    "noise": _Entry(gaussian_noise, "loss", takes_model=False),
    "sr": _Entry(sparse_gradient, "loss"),
    "rsnn": _Entry(membrane_stability, "loss"),
    "rat": _Entry(orthogonal, "param", takes_model=False),
    "mfdv": _Entry(feature_variance, "loss"),
    "distill": _Entry(distill, "loss", skip=("teacher_fn",)),
}
DEFENSES = tuple(_REGISTRY)
# The settings of each defense and their defaults: read from the factory's signature (their one home).
DEFAULTS = {name: base.signature_defaults(e.factory, skip=e.skip) for name, e in _REGISTRY.items()}


def build(name: str, sub, model):
    """Defense ``name`` with ``config.defense.<name>`` (``sub``) over :data:`DEFAULTS`, for ``model``.

    Example:
        >>> from jsnn import defenses
        >>> defenses.build("noise", {"sigma": 0.1}, model=None)  # doctest: +ELLIPSIS
        <function gaussian_noise.<locals>.transform at ...>
    """
    e = _REGISTRY[name]
    settings = base.settings(name, sub, DEFAULTS[name])
    return e.factory(model, **settings) if e.takes_model else e.factory(**settings)


def default_config(name: str):
    """The defaults of defense ``name`` as an ``ml_collections.ConfigDict`` for experiment configs.

    None-valued defaults become typed placeholders, so every field stays overridable from the
    command line (``--config.defense.at.alpha=0.01``).

    Example:
        >>> from jsnn.defenses import default_config
        >>> cfg = default_config("at")
        >>> cfg.attack, cfg.steps, round(cfg.eps * 255, 3), cfg.alpha is None
        ('pgd', 7, 8.0, True)
        >>> default_config("bogus")
        Traceback (most recent call last):
        ValueError: defense name: unknown defense 'bogus'; allowed: at, trades, noise, ...
    """
    from ml_collections import ConfigDict, config_dict

    if name not in _REGISTRY:
        raise ValueError(f"defense name: unknown defense {name!r}; allowed: {', '.join(DEFENSES)}")
    factory = _REGISTRY[name].factory
    return ConfigDict({k: config_dict.placeholder(base.setting_type(factory, k)) if v is None else v
                       for k, v in DEFAULTS[name].items()})


def parse_names(name) -> list:
    """``"sr+at"`` → ``["sr", "at"]``; ``"none"`` / ``""`` → ``[]``; unknown or repeated names raise.

    Example:
        >>> from jsnn.defenses import parse_names
        >>> parse_names("sr+at"), parse_names("none")
        (['sr', 'at'], [])
        >>> parse_names("at+at")
        Traceback (most recent call last):
        ValueError: defense.name: ['at'] repeated in 'at+at'
    """
    names = [n.strip() for n in str(name if name is not None else "none").split("+")]
    names = [n for n in names if n and n != "none"]
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"defense.name: unknown defense(s) {unknown} in {name!r}; allowed: none, "
                         f"{', '.join(DEFENSES)} (joined with '+', innermost first)")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"defense.name: {dupes} repeated in {name!r}")
    return names


def from_config(config, model) -> DefenseSetup:
    """Builds the defenses named in ``config.defense`` for ``model`` (vanilla when absent).

    ``config.defense.name`` lists the defenses (``"+"``-joined, innermost first);
    ``config.defense.<name>`` holds each one's settings (missing fields take
    :data:`DEFAULTS`). Sub-dicts of defenses not named are allowed and ignored.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from ml_collections import ConfigDict
        >>> from jsnn import defenses
        >>> config = ConfigDict({"defense": {"name": "noise+rat", "noise": {"sigma": 0.0}}})
        >>> setup = defenses.from_config(config, model=None)  # neither of these needs the model
        >>> isinstance(setup.param_transform, optax.GradientTransformation)
        True
        >>> loss_fn = lambda params, state, batch, key: (batch["image"].sum(), (state, {"metrics": {}}))
        >>> batch = {"image": jnp.full((2, 3), 0.5), "label": jnp.zeros(2, int)}
        >>> float(setup.loss_transform(loss_fn)(None, {}, batch, jax.random.key(0))[0])  # σ = 0: unchanged
        3.0
        >>> defenses.from_config(ConfigDict({"seed": 0}), model=None).param_transform is None  # vanilla
        True
    """
    defense = config.get("defense", None) if hasattr(config, "get") else getattr(config, "defense", None)
    if defense is None:
        return DefenseSetup(identity())
    for key in defense.keys():
        if key != "name" and key not in _REGISTRY:
            raise ValueError(f"defense.{key}: unknown defense settings; allowed: name, {', '.join(DEFENSES)}")
    names = parse_names(defense.get("name", "none"))
    losses, params = [], []
    for n in names:
        built = build(n, defense.get(n, None), model)
        (losses if _REGISTRY[n].kind == "loss" else params).append(built)
    loss_transform = chain(*losses) if losses else identity()
    param_transform = None
    if params:
        param_transform = params[0] if len(params) == 1 else optax.chain(*params)
    return DefenseSetup(loss_transform, param_transform)


__all__ = [
    "ANNNet", "DEFAULTS", "DEFENSES", "DefenseSetup", "FeatureVarianceNet", "LossTransform", "StochasticFeatures",
    "adversarial_training", "base", "build", "chain", "default_config", "distill", "feature_variance", "from_config", "gaussian_noise",
    "identity", "membrane_stability", "orthogonal", "parse_names", "sparse_gradient", "trades",
]
