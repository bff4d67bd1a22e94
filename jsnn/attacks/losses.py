"""Per-example attack losses (to be *maximized*): CE, CW margin, DLR and their targeted forms.

Every loss maps logits ``[B, K]`` and labels ``y`` ``[B]`` to values ``[B]``; targeted
losses also take the target classes ``t`` ``[B]``. :func:`get` returns a uniform
``loss(logits, y, target) -> [B]`` from a name, for the attacks' ``loss=`` argument.

* ``ce``: ``−log softmax(z)_y``.
* ``cw``: Carlini–Wagner margin ``max_{i≠y} z_i − z_y`` (Carlini & Wagner 2017).
* ``dlr``: Difference of Logits Ratio (Croce & Hein 2020),
  ``−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)``, π the logits sorted descending.
* ``ce_targeted``: ``log softmax(z)_t`` (i.e. minus the CE of the target).
* ``cw_targeted``: ``z_t − max_{i≠t} z_i``.
* ``dlr_targeted``: ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)`` (APGD-T).

Example:
    >>> import jax.numpy as jnp
    >>> from jsnn.attacks import losses
    >>> z, y = jnp.array([[3., 1., 0.], [0., 2., 1.]]), jnp.array([0, 1])
    >>> losses.cw_margin(z, y).tolist()  # 1 - 3, 1 - 2: both correctly classified
    [-2.0, -1.0]
    >>> [round(v, 3) for v in losses.get("dlr")(z, y, None).tolist()]  # -(3-1)/(3-0), -(2-1)/(2-0)
    [-0.667, -0.5]
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

_TINY = 1e-12


def _check_logits(logits, minimum: int, name: str):
    if logits.ndim != 2 or logits.shape[-1] < minimum:
        raise ValueError(f"losses.{name}: needs logits [B, K] with K >= {minimum}, got shape {logits.shape}")


def _label_logit(logits, y):
    return jnp.take_along_axis(logits, y[:, None].astype(jnp.int32), axis=-1)[:, 0]


def _max_other(logits, y):
    mask = jax.nn.one_hot(y, logits.shape[-1], dtype=bool)
    return jnp.max(jnp.where(mask, -jnp.inf, logits), axis=-1)


def ce(logits, y):
    """Cross-entropy ``−log softmax(z)_y`` per example.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import losses
        >>> z, y = jnp.array([[3., 1., 0.]]), jnp.array([0])
        >>> round(float(losses.ce(z, y)[0]), 3)  # log(1 + e⁻² + e⁻³)
        0.17
    """
    return -_label_logit(jax.nn.log_softmax(logits, axis=-1), y)


def cw_margin(logits, y):
    """Carlini–Wagner margin ``max_{i≠y} z_i − z_y`` (> 0 iff misclassified)."""
    _check_logits(logits, 2, "cw_margin")
    return _max_other(logits, y) - _label_logit(logits, y)


def dlr(logits, y):
    """DLR loss of Croce & Hein (2020): ``−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12)``.

    Shift- and scale-invariant in the logits; needs K ≥ 3 classes.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import losses
        >>> z, y = jnp.array([[3., 1., 0.]]), jnp.array([0])
        >>> round(float(losses.dlr(z, y)[0]), 3), round(float(losses.dlr(10 * z + 5, y)[0]), 3)
        (-0.667, -0.667)
    """
    _check_logits(logits, 3, "dlr")
    z_sorted = jnp.sort(logits, axis=-1)
    denom = z_sorted[:, -1] - z_sorted[:, -3] + _TINY
    return -(_label_logit(logits, y) - _max_other(logits, y)) / denom


def ce_targeted(logits, y, target):
    """Targeted CE: ``log softmax(z)_t`` (maximized when the target gets all the mass)."""
    del y
    return _label_logit(jax.nn.log_softmax(logits, axis=-1), target)


def cw_targeted(logits, y, target):
    """Targeted CW margin ``z_t − max_{i≠t} z_i``."""
    del y
    _check_logits(logits, 2, "cw_targeted")
    return _label_logit(logits, target) - _max_other(logits, target)


def dlr_targeted(logits, y, target):
    """Targeted DLR of APGD-T: ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)``; K ≥ 4.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import losses
        >>> z, y, t = jnp.array([[3., 1., 0., -1.]]), jnp.array([0]), jnp.array([1])
        >>> round(float(losses.dlr_targeted(z, y, t)[0]), 3)  # -(3 - 1) / (3 - (0 - 1)/2)
        -0.571
        >>> float(losses.cw_targeted(z, y, t)[0])  # z_t - max_{i≠t} z_i = 1 - 3
        -2.0
    """
    _check_logits(logits, 4, "dlr_targeted")
    z_sorted = jnp.sort(logits, axis=-1)
    denom = z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + _TINY
    return -(_label_logit(logits, y) - _label_logit(logits, target)) / denom


UNTARGETED = {"ce": ce, "cw": cw_margin, "dlr": dlr}


def _untargeted(fn):
    def loss(logits, y, target=None):
        del target
        return fn(logits, y)

    loss.__name__ = fn.__name__
    return loss


_UNIFORM = {name: _untargeted(fn) for name, fn in UNTARGETED.items()}
TARGETED = {"ce_targeted": ce_targeted, "cw_targeted": cw_targeted, "dlr_targeted": dlr_targeted}
LOSSES = tuple(UNTARGETED) + tuple(TARGETED)


def is_targeted(loss) -> bool:
    """Whether ``loss`` (a name) needs target classes.

    Example:
        >>> from jsnn.attacks import losses
        >>> losses.is_targeted("dlr_targeted"), losses.is_targeted("dlr")
        (True, False)
    """
    return isinstance(loss, str) and loss in TARGETED


def get(loss) -> Callable:
    """A uniform ``loss(logits, y, target) -> [B]`` from a name in :data:`LOSSES` or a callable.

    A callable is used as is with the signature ``loss(logits, y, target)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.attacks import losses
        >>> losses.get("cw")(jnp.array([[3., 1.]]), jnp.array([1]), None).tolist()  # 3 - 1
        [2.0]
        >>> losses.get("hinge")
        Traceback (most recent call last):
        ...
        ValueError: attack loss: unknown loss 'hinge'; allowed: ce, cw, dlr, ...
    """
    if callable(loss):
        return loss
    if loss in UNTARGETED:
        return _UNIFORM[loss]
    if loss in TARGETED:
        return TARGETED[loss]
    raise ValueError(f"attack loss: unknown loss {loss!r}; allowed: {', '.join(LOSSES)} or a callable")
