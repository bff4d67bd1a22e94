"""The one config reader: validators, typed views per section, config comparison.

Every field of an experiment config is checked here or by the view of the package that owns it
(:func:`jsnn.data.read_config`, a defense's factory signature), always with one line that names the
field, the value and what is allowed. Defaults live in ``launch/configs/default.py`` and in the
typed views' (function) signatures, nowhere else.

Example:
    >>> from jsnn import config as cfg
    >>> cfg.check_int(3, "train.log_every")
    3
    >>> cfg.check_number(float("nan"), "optim.learning_rate", low=0, low_open=True)
    Traceback (most recent call last):
    ValueError: optim.learning_rate: must be a finite number > 0, got nan
    >>> cfg.read_optim({"learning_rate": 0.05}).momentum  # missing fields take the view's defaults
    0.9
    >>> cfg.check_known({"name": "x", "typo": 1}, "model", ("name", "T"))
    Traceback (most recent call last):
    ValueError: model.typo: unknown field; allowed: T, name
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any, Dict, Iterable, Mapping, NamedTuple, Optional, Sequence

import ml_collections

# Fields that may change between a run and its resumption (they do not change the trajectory).
RESUMABLE_FIELDS = ("train.log_every", "train.checkpoint_every", "train.eval_every", "train.tensorboard")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")


# ----------------------------------------------------------------------------- validators


def get(section, name: str, default=None):
    """``section.name`` for a ConfigDict, mapping or attribute object (``default`` when absent)."""
    if section is None:
        return default
    if isinstance(section, (Mapping, ml_collections.ConfigDict)):
        return section.get(name, default)
    return getattr(section, name, default)


def check_int(value, field: str, minimum: Optional[int] = 1, maximum: Optional[int] = None, *,
              allow_none: bool = False, where: str = "") -> Optional[int]:
    """An integer in ``[minimum, maximum]`` (bools rejected); ``ValueError`` naming ``field`` otherwise.

    Example:
        >>> from jsnn.config import check_int
        >>> check_int(None, "data.train_limit", allow_none=True) is None
        True
        >>> check_int(2.0, "model.T")
        Traceback (most recent call last):
        ValueError: model.T: must be an integer >= 1, got 2.0
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        bounds = [f">= {minimum}"] if minimum is not None else []
        bounds += [f"<= {maximum}"] if maximum is not None else []
        allowed = "an integer" + (" " + " and ".join(bounds) if bounds else "") + (" or None" if allow_none else "")
        raise ValueError(f"{where}{field}: must be {allowed}, got {value!r}")
    return int(value)


def check_number(value, field: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
                 allow_none: bool = False, where: str = "") -> Optional[float]:
    """A finite real number in the given range (NaN and ±inf are always rejected).

    Example:
        >>> from jsnn.config import check_number
        >>> check_number(0.5, "defense.at.mix", low=0.0, high=1.0, low_open=True)
        0.5
        >>> check_number(0, "defense.at.mix", low=0.0, high=1.0, low_open=True)
        Traceback (most recent call last):
        ValueError: defense.at.mix: must be a finite number > 0.0 and <= 1.0, got 0
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    ok = ok and math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        parts = ([f"{'>' if low_open else '>='} {low}"] if low is not None else [])
        parts += ([f"{'<' if high_open else '<='} {high}"] if high is not None else [])
        allowed = "a finite number" + (" " + " and ".join(parts) if parts else "") + (" or None" if allow_none else "")
        raise ValueError(f"{where}{field}: must be {allowed}, got {value!r}")
    return v


def check_choice(value, field: str, allowed: Sequence[str], *, where: str = "") -> str:
    """``value`` if it is one of ``allowed``; else one line listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{where}{field}: {value!r}; allowed: {', '.join(allowed)}")
    return value


def check_bool(value, field: str, *, where: str = "") -> bool:
    """A bool (numpy bools too); 0/1 and strings are rejected."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise ValueError(f"{where}{field}: must be true or false, got {value!r}")
    return bool(value)


def check_known(section, prefix: str, allowed: Iterable[str]) -> None:
    """Rejects fields of ``section`` that are not in ``allowed`` (one line listing the known ones)."""
    allowed = set(allowed)
    for k in (section or {}).keys():
        if k not in allowed:
            raise ValueError(f"{prefix}.{k}: unknown field; allowed: {', '.join(sorted(allowed))}")


def check_finite(config, where: str = "") -> None:
    """Every float in ``config`` (flattened) is finite: a NaN or inf setting is an error.

    Example:
        >>> from jsnn.config import check_finite
        >>> check_finite({"optim": {"learning_rate": float("inf")}})
        Traceback (most recent call last):
        ValueError: optim.learning_rate: must be finite, got inf
    """
    for k, v in flatten(config).items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{where}{k}: must be finite, got {v!r}")


# ----------------------------------------------------------------------------- flattening, comparison


def flatten(d, prefix: str = "") -> Dict[str, Any]:
    """Nested dicts / ConfigDicts → ``{"a.b": value}`` (None → ``{}``).

    Example:
        >>> from jsnn.config import flatten
        >>> flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3})
        {'a.b': 1, 'a.c.d': 2, 'e': 3}
    """
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, (Mapping, ml_collections.ConfigDict)):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def to_dict(config) -> Dict[str, Any]:
    """A ConfigDict (or mapping) as plain JSON-compatible dicts, exactly as ``config.json`` stores it."""
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(dict(config), default=str))


def differences(recorded: Mapping, config_dict: Mapping, ignore: Sequence[str] = RESUMABLE_FIELDS) -> str:
    """``"field: old -> new, ..."`` (first six) for fields that differ, ``ignore`` aside; ``""`` when equal.

    Example:
        >>> from jsnn.config import differences
        >>> differences({"a": {"b": 1}, "train": {"log_every": 5}}, {"a": {"b": 2}, "train": {"log_every": 9}})
        'a.b: 1 -> 2'
    """
    old, new = flatten(recorded), flatten(config_dict)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in ignore)
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:6])


# ----------------------------------------------------------------------------- typed views


def _view(view_cls, section, prefix: str):
    """Fields of ``view_cls`` read from ``section`` (missing ones take the view's defaults); unknown
    fields of ``section`` are rejected."""
    check_known(section, prefix, view_cls._fields)
    return {k: get(section, k, d) for k, d in view_cls._field_defaults.items()}


class OptimConfig(NamedTuple):
    """``config.optim``: SGD+momentum (coupled L2) or Adam; cosine or constant schedule."""

    name: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_steps: int = 0


def read_optim(section) -> OptimConfig:
    """Validated ``config.optim``.

    Example:
        >>> from jsnn.config import read_optim
        >>> read_optim({"momentum": -5})
        Traceback (most recent call last):
        ValueError: optim.momentum: must be a finite number >= 0 and < 1, got -5
    """
    f = _view(OptimConfig, section, "optim")
    return OptimConfig(
        name=check_choice(f["name"], "optim.name", OPTIMIZERS),
        learning_rate=check_number(f["learning_rate"], "optim.learning_rate", low=0, low_open=True),
        momentum=check_number(f["momentum"], "optim.momentum", low=0, high=1, high_open=True),
        nesterov=check_bool(f["nesterov"], "optim.nesterov"),
        weight_decay=check_number(f["weight_decay"], "optim.weight_decay", low=0),
        schedule=check_choice(f["schedule"], "optim.schedule", SCHEDULES),
        warmup_steps=check_int(f["warmup_steps"], "optim.warmup_steps", 0),
    )


class TrainConfig(NamedTuple):
    """``config.train``: length, logging, checkpointing, clean-evaluation draws, TensorBoard event files."""

    num_epochs: Optional[float] = 15.0
    num_steps: Optional[int] = None
    checkpoint_every: int = 100
    log_every: int = 25
    eval_draws: int = 10
    tensorboard: bool = True


def read_train(section) -> TrainConfig:
    """Validated ``config.train``.

    Example:
        >>> from jsnn.config import read_train
        >>> read_train({"log_every": 5, "checkpoint_every": 10}).checkpoint_every
        10
        >>> read_train({"eval_draws": 0})
        Traceback (most recent call last):
        ValueError: train.eval_draws: must be an integer >= 1, got 0
    """
    f = _view(TrainConfig, section, "train")
    cfg = TrainConfig(
        num_epochs=check_number(f["num_epochs"], "train.num_epochs", low=0, low_open=True, allow_none=True),
        num_steps=check_int(f["num_steps"], "train.num_steps", 1, allow_none=True),
        checkpoint_every=check_int(f["checkpoint_every"], "train.checkpoint_every", 1),
        log_every=check_int(f["log_every"], "train.log_every", 1),
        eval_draws=check_int(f["eval_draws"], "train.eval_draws", 1),
        tensorboard=check_bool(f["tensorboard"], "train.tensorboard"),
    )
    if cfg.num_steps is None and cfg.num_epochs is None:
        raise ValueError("train.num_epochs: must be a finite number > 0 when train.num_steps is unset, got None")
    if cfg.checkpoint_every % cfg.log_every:
        raise ValueError(f"train.checkpoint_every: {cfg.checkpoint_every} must be a multiple of train.log_every="
                         f"{cfg.log_every} (a resumed run then logs the same metric windows as an uninterrupted one)")
    return cfg


TOP_LEVEL = ("seed", "data", "model", "optim", "defense", "train", "evaluate")


def check_top_level(config) -> None:
    """The experiment config's sections: required ones present, no unknown ones, an integer seed."""
    for section in ("data", "model", "optim", "train"):
        if section not in config:
            raise ValueError(f"config: missing section {section!r}; a config has: {', '.join(TOP_LEVEL)}")
    check_known(config, "config", TOP_LEVEL)
    check_int(config.get("seed") if hasattr(config, "get") else None, "seed", None)


__all__ = [
    "OPTIMIZERS", "OptimConfig", "RESUMABLE_FIELDS", "SCHEDULES", "TOP_LEVEL", "TrainConfig", "check_bool",
    "check_choice", "check_finite", "check_int", "check_known", "check_number", "check_top_level", "differences",
    "flatten", "get", "read_optim", "read_train", "to_dict",
]
