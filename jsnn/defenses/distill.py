"""Knowledge distillation from an ANN teacher into an SNN (Hinton et al. 2015, "Distilling the
Knowledge in a Neural Network"), the E-RSCT idea of RSC-SNN (Wu et al. 2024, arXiv
2407.20099: a pre-trained ANN teaches the RSC-coded SNN; details *unconfirmed*).

    loss = (1 − α)·L(x) + α·τ²·mean KL(softmax(t(x)/τ) ‖ softmax(s(x)/τ))

``t`` are the frozen teacher's logits (evaluation mode, clean input), ``s`` the student's
(training mode; for an RSC student its coding noise is part of ``s``).

The teacher is any registered model run as an ANN: :class:`ANNNet` (``config.model.name =
"ann"``, ``config.model.kwargs.backbone = <registered model>``) runs the backbone with T = 1,
direct coding, and every :class:`~jsnn.layers.SpikingNeuron` replaced by a ReLU (via
:func:`flax.linen.intercept_methods`), so the teacher is trained by the same launcher
(``launch/configs/digits_ann.py``) and loaded from its workdir by
``config.defense.distill.teacher_workdir``.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax

from jsnn import losses, models
from jsnn.config import check_number
from jsnn.defenses import base
from jsnn.models.base import train_forward


def distill(model, teacher_fn: Optional[Callable] = None, *, teacher_workdir: Optional[str] = None,
            alpha: float = 0.5, temperature: float = 4.0):
    """Distillation loss transform (module docstring).

    Args:
      model: the student.
      teacher_fn: ``teacher_fn(x) -> logits`` (treated as constant); or
      teacher_workdir: the workdir of a trained teacher, loaded (:func:`load_teacher`) when the
        transform is applied to a loss, i.e. when training starts, not when the defense is built
        (a sweep validates its runs before it trains the teacher they name).
      alpha: weight α of the distillation term; temperature: τ.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn.defenses import distill
        >>> from jsnn.losses import kl_divergence
        >>> from jsnn.defenses import base
        >>> model, params, batch, key, loss_fn = base.linear_problem()  # a linear 3-class model
        >>> clean, _ = jax.jit(loss_fn)(params, {}, batch, key)
        >>> teacher_fn = lambda x: jnp.zeros((x.shape[0], 3))  # a uniform teacher
        >>> kd_loss_fn = jax.jit(distill(model, teacher_fn, alpha=0.25, temperature=2.0)(loss_fn))
        >>> loss, (_, aux) = kd_loss_fn(params, {}, batch, key)
        >>> m = aux["metrics"]
        >>> x = batch["image"]
        >>> kl = kl_divergence(teacher_fn(x), model.apply({"params": params}, x), 2.0).mean()
        >>> bool(jnp.allclose(m["distill_kl"], kl)), bool(jnp.allclose(loss, 0.75 * clean + 0.25 * 2.0**2 * kl))
        (True, True)
    """
    alpha = check_number(alpha, "defense.distill.alpha", low=0.0, high=1.0)
    temperature = check_number(temperature, "defense.distill.temperature", low=0.0, low_open=True)
    if (teacher_fn is None) == (not teacher_workdir):
        raise ValueError("defense.distill.teacher_workdir: required (the workdir of a trained teacher, e.g. "
                         "python -m launch.train --config=launch/configs/digits_ann.py --workdir=DIR)"
                         if teacher_fn is None else "distill: give teacher_fn or teacher_workdir, not both")

    def transform(loss_fn):
        teacher = teacher_fn or load_teacher(str(teacher_workdir), model.num_classes)
        def kd_loss_fn(params, model_state, batch, key):
            k_loss, k_fwd = jax.random.split(key)
            x = batch["image"]
            loss, (new_state, aux) = loss_fn(params, model_state, batch, k_loss)
            t = jax.lax.stop_gradient(teacher(x))
            own = base.reusable(aux, x)  # the wrapped loss's forward, when it ran on x
            s = own["logits"] if own else train_forward(model, params, model_state, x, k_fwd)[0]
            kl = losses.kl_divergence(t, s, temperature).mean()
            total = (1.0 - alpha) * loss + alpha * temperature ** 2 * kl
            return total, (new_state, base.with_metrics(aux, distill_kl=kl))

        return kd_loss_fn

    return transform


def load_teacher(workdir: str, num_classes: int) -> Callable:
    """``teacher_fn(x)`` from a run trained by ``launch.train`` in ``workdir`` (evaluation mode).

    Example:
        >>> import tempfile
        >>> from jsnn.defenses.distill import load_teacher
        >>> with tempfile.TemporaryDirectory() as workdir:  # nothing trained there
        ...     load_teacher(workdir, num_classes=10)
        Traceback (most recent call last):
        FileNotFoundError: workdir '...' has no config.json: train it first with launch.train
    """
    from jsnn import checkpoint

    _, teacher, variables, *_ = checkpoint.load_run(workdir)
    if teacher.num_classes != num_classes:
        raise ValueError(f"defense.distill.teacher_workdir: teacher in {workdir!r} has {teacher.num_classes} classes, "
                         f"the student {num_classes}")
    fn, key = models.logits_fn(teacher, variables), jax.random.key(0)

    def teacher_fn(x):
        return fn(x, key)

    return teacher_fn
