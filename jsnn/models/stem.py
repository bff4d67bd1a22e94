"""The input stem of every model: encoder → normalize → first layer, computed once over T when it can be.

With direct coding (Rueckauer et al. 2017) the encoder repeats the image at every time step,
so the first (stateless) layer sees the same input T times. :func:`encode_first` then runs
it once on ``[B, ...]`` and repeats its output to the merged ``[B·T, ...]`` axis (batch-major,
as :func:`jsnn.layers.merge_time`): the same forward values, bit for bit, at 1/T of the first
layer's cost. Gradients are mathematically the same; their floating-point sums run in another
order (the T time steps are summed before the first layer's transpose instead of after it).
Stochastic encoders (Poisson, RSC) draw a new input at every step: the layer runs on all B·T.

Off by default (``FIRST_LAYER_ONCE = False``): on the digits model it measured 1.02× for PGD-10
and 1.01× for a training step (2-core CPU, loaded; noise level: the first conv is ~1.5 % of the
conv work), and it changes the last bits of the weight gradients, so training would no longer
reproduce earlier runs bit for bit. Set ``stem.FIRST_LAYER_ONCE = True`` before a model is
traced to use it (a model with a larger share of work in its first layer may gain more; not measured).

Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> from jsnn.models import stem
    >>> from jsnn.models.base import SpikingModel
    >>> class Stem(SpikingModel):
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         return stem.encode_first(self, x, nn.Conv(4, (3, 3), use_bias=False))
    >>> stem.FIRST_LAYER_ONCE = True
    >>> m, x = Stem(T=3), jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
    >>> v = m.init(jax.random.key(1), x)
    >>> h = m.apply(v, x)  # [B·T, 8, 8, 4], b-major: rows 0, 1, 2 are image 0 at t = 0, 1, 2
    >>> h.shape, bool(jnp.all(h[0] == h[2])), bool(jnp.all(h[0] == h[3]))
    ((6, 8, 8, 4), True, False)
    >>> stem.FIRST_LAYER_ONCE = False
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from jsnn import encoding
from jsnn.layers import Encoder, Normalize

FIRST_LAYER_ONCE = False  # see the module docstring (measured; changes gradient bits)


def encode_first(model, x, first: Callable):
    """``first(normalize(encode(x)))`` on the merged ``[B·T, ...]`` axis; once over T for direct coding.

    Args:
      model: the calling :class:`~jsnn.models.SpikingModel` (its ``T``, ``encoder``, ``mean``, ``std``).
      x: images ``[B, H, W, C]``.
      first: the first stateless layer (a Flax module or function of ``[N, ...]`` arrays), built in
        the caller's ``nn.compact`` scope so its parameter names do not change.
    """
    if FIRST_LAYER_ONCE and model.encoder.name == "direct":
        encoding._check_T(model.T)
        return jnp.repeat(first(Normalize(model.mean, model.std)(x)), model.T, axis=0)
    return first(Normalize(model.mean, model.std)(Encoder(model.T, model.encoder)(x)))
