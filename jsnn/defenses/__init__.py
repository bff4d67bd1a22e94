"""Defenses as composable loss transforms (DESIGN.md, "Defenses are loss transforms").

A defense maps ``loss_fn -> loss_fn`` where
``loss_fn(params, model_state, batch, key) -> (loss, (model_state, metrics))``;
:func:`chain` composes them like ``optax.chain`` (the first transform is applied
innermost). Parameter-space steps (RAT's retraction) are ``optax`` transforms.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import optax

LossFn = Callable
LossTransform = Callable[[LossFn], LossFn]


def chain(*transforms: LossTransform) -> LossTransform:
    """Composes loss transforms: ``chain(a, b)(loss) == b(a(loss))``."""

    def apply(loss_fn):
        for t in transforms:
            loss_fn = t(loss_fn)
        return loss_fn

    return apply


def identity() -> LossTransform:
    """The no-op defense (vanilla training)."""
    return lambda loss_fn: loss_fn


class DefenseSetup(NamedTuple):
    """What training needs from the configured defenses."""

    loss_transform: LossTransform
    param_transform: Optional[optax.GradientTransformation] = None


def from_config(config, model) -> DefenseSetup:
    """Builds the defenses named in ``config.defense`` for ``model`` (vanilla when absent)."""
    defense = config.get("defense", None)
    names = [] if defense is None else [n for n in str(defense.get("name", "none")).split("+") if n and n != "none"]
    if names:
        raise ValueError(f"defense.name: unknown defense(s) {names}; allowed: none")
    return DefenseSetup(identity())
