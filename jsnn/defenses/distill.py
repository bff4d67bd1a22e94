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

from typing import Any, Callable, Tuple

import flax.linen as nn
import jax

from jsnn import losses, models
from jsnn.defenses import base
from jsnn.layers import EncoderConfig, SpikingNeuron
from jsnn.models.base import SpikingModel, train_forward

DEFAULTS = dict(teacher_workdir=None, alpha=0.5, temperature=4.0)


def _relu_for_spikes(next_fun, args, kwargs, context):
    if isinstance(context.module, SpikingNeuron) and context.method_name == "__call__":
        return jax.nn.relu(args[0])
    return next_fun(*args, **kwargs)


class ANNNet(SpikingModel):
    """The ANN twin of a registered spiking model: T = 1, direct coding, ReLU for every spike layer.

    Attributes:
      backbone: registered model name.
      backbone_kwargs: extra backbone fields ``((name, value), ...)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jsnn import get_model
        >>> model = get_model("ann", backbone="digits_mlp", hidden=(8,))
        >>> x = jnp.linspace(0.0, 1.0, 3 * 64).reshape(3, 8, 8, 1)
        >>> v = jax.jit(model.init)(jax.random.key(1), x)
        >>> p = v["params"]["backbone"]  # at init BatchNorm (eval) is x / √(1 + 1e-5); then ReLU, not spikes
        >>> h = jax.nn.relu(x.reshape(3, -1) @ p["Dense_0"]["kernel"] / jnp.sqrt(1 + 1e-5))
        >>> expected = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
        >>> bool(jnp.allclose(jax.jit(model.apply)(v, x), expected, atol=1e-5))
        True
    """

    backbone: str = "digits_conv"
    backbone_kwargs: Tuple[Tuple[str, Any], ...] = ()

    @nn.compact
    def __call__(self, x, train: bool = False):
        net = models.MODELS[self.backbone](num_classes=self.num_classes, T=1, neuron=self.neuron,
                               encoder=EncoderConfig(), mean=self.mean, std=self.std,
                               input_channels=self.input_channels, name="backbone", **dict(self.backbone_kwargs))
        with nn.intercept_methods(_relu_for_spikes):
            return net(x, train=train)


def ann_model(*, backbone: str = "digits_conv", **kwargs) -> ANNNet:
    """Registry factory: SpikingModel fields go to the wrapper, the rest to the backbone."""
    own = {k: kwargs.pop(k) for k in list(kwargs) if k in ("num_classes", "T", "neuron", "encoder", "mean", "std",
                                                            "input_channels", "name", "parent")}
    if backbone not in models.MODELS or backbone == "ann":
        allowed = ", ".join(sorted(n for n in models.MODELS if n != "ann"))
        raise ValueError(f"model.kwargs.backbone: unknown backbone {backbone!r}; allowed: {allowed}")
    return ANNNet(backbone=backbone, backbone_kwargs=tuple(sorted(kwargs.items())), **own)


models.register("ann", ann_model)


def distill(model, teacher_fn: Callable, *, alpha: float = 0.5, temperature: float = 4.0):
    """Distillation loss transform (module docstring).

    Args:
      model: the student.
      teacher_fn: ``teacher_fn(x) -> logits`` (treated as constant).
      alpha: weight α of the distillation term; temperature: τ.

    Example:
        >>> import flax.linen as nn, jax, jax.numpy as jnp
        >>> from jsnn.defenses import distill
        >>> from jsnn.losses import kl_divergence
        >>> from jsnn.losses import cross_entropy_loss_fn
        >>> class Linear(nn.Module):  # a tiny model(x, train) -> logits
        ...     @nn.compact
        ...     def __call__(self, x, train=False):
        ...         return nn.Dense(3)(x.reshape((x.shape[0], -1)))
        >>> model, x, y = Linear(), jnp.full((2, 2, 2, 1), 0.5), jnp.array([0, 1])
        >>> params = jax.jit(model.init)(jax.random.key(0), x)["params"]
        >>> batch, key = {"image": x, "label": y}, jax.random.key(1)
        >>> loss_fn = cross_entropy_loss_fn(model)
        >>> clean, _ = jax.jit(loss_fn)(params, {}, batch, key)
        >>> teacher_fn = lambda x: jnp.zeros((x.shape[0], 3))  # a uniform teacher
        >>> kd_loss_fn = jax.jit(distill(model, teacher_fn, alpha=0.25, temperature=2.0)(loss_fn))
        >>> loss, (_, aux) = kd_loss_fn(params, {}, batch, key)
        >>> m = aux["metrics"]
        >>> kl = kl_divergence(teacher_fn(x), model.apply({"params": params}, x), 2.0).mean()
        >>> bool(jnp.allclose(m["distill_kl"], kl)), bool(jnp.allclose(loss, 0.75 * clean + 0.25 * 2.0**2 * kl))
        (True, True)
    """
    alpha = base.check_range(alpha, "defense.distill.alpha", low=0.0, high=1.0)
    temperature = base.check_range(temperature, "defense.distill.temperature", low=0.0, low_open=True)

    def transform(loss_fn):
        def kd_loss_fn(params, model_state, batch, key):
            k_loss, k_fwd = jax.random.split(key)
            x = batch["image"]
            loss, (new_state, aux) = loss_fn(params, model_state, batch, k_loss)
            t = jax.lax.stop_gradient(teacher_fn(x))
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


def from_config(sub, model):
    s = base.settings("distill", sub, DEFAULTS)
    if not s["teacher_workdir"]:
        raise ValueError("defense.distill.teacher_workdir: required (the workdir of a trained teacher, e.g. "
                         "python -m launch.train --config=launch/configs/digits_ann.py --workdir=DIR)")
    teacher_fn = load_teacher(str(s["teacher_workdir"]), model.num_classes)
    return distill(model, teacher_fn, alpha=s["alpha"], temperature=s["temperature"])
