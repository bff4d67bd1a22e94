"""Orthogonality retraction of RAT, "regularized adversarial training" (Ding, Bu, Yu, Huang,
Liu 2022, "SNN-RAT: Robustness-enhanced Spiking Neural Network through Regularized
Adversarial Training", NeurIPS).

After every optimizer step each weight matrix W (conv kernels reshaped to
``(out, in·kh·kw)``) takes one step towards the orthogonal (Stiefel) manifold, which bounds
its Lipschitz constant:

    W ← (1 + β)·W − β·W·Wᵀ·W          (β = 0.001 for VGG-11, 0.004 for WRN-16)

(a fixed point iff every singular value is 1; a singular value s moves to s + β(s − s³)).
The convex residual mixing weights of the WRN blocks (parameters named ``mix``) are
projected onto the probability simplex (Duchi et al. 2008). RAT trains with weight decay 0.

It is an ``optax.GradientTransformation`` chained *after* the optimizer: given the
optimizer's update ``u`` it returns ``u' = R(P + u) − P`` so that
``optax.apply_updates(P, u') = R(P + u)``. As in the authors' code, dense layers with more
than ``row_threshold`` (200) output units retract a random ``row_fraction`` of their rows per
step (the key lives in the optimizer state); by default (``row_fraction=1``) all rows are used.
Flax kernels are stored ``(fan_in, out)`` = Wᵀ, and ``(Wᵀ)(W)(Wᵀ) = (W Wᵀ W)ᵀ`` so the same
formula applies to the stored layout.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jsnn.config import check_int, check_number
from jsnn.defenses import base

KERNEL_NAMES = ("kernel",)
MIX_NAMES = ("mix",)


def retract(w, beta: float):
    """``(1 + β)·W − β·W·Wᵀ·W`` for a 2-D ``w`` (the cheaper association is used).

    Example:
        An orthogonal matrix is a fixed point; a singular value s moves to s + β(s − s³).

        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.orthogonal import retract
        >>> q = jnp.array([[0.6, -0.8], [0.8, 0.6]])  # a rotation
        >>> bool(jnp.allclose(retract(q, 0.1), q, atol=1e-6))
        True
        >>> bool(jnp.allclose(retract(2.0 * jnp.eye(2), 0.1), 1.4 * jnp.eye(2)))  # 2 + 0.1·(2 − 8)
        True
    """
    n, m = w.shape
    www = w @ (w.T @ w) if m <= n else (w @ w.T) @ w
    return (1.0 + beta) * w - beta * www


def retract_kernel(kernel, beta: float, *, key=None, row_fraction: float = 1.0, row_threshold: int = 200):
    """Retraction of a Flax kernel ``(..., fan_in, out)`` viewed as the matrix ``(fan_in·..., out)``.

    Rows of W are output units (columns of the stored kernel). A dense kernel (2-D) with
    more than ``row_threshold`` outputs and ``row_fraction < 1`` retracts a random subset of
    ``int(out·row_fraction)`` of them (``key`` required).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.orthogonal import retract_kernel
        >>> q = jnp.eye(18, 2) @ jnp.array([[0.6, -0.8], [0.8, 0.6]])  # orthonormal columns
        >>> kernel = q.reshape(3, 3, 2, 2)  # a 3×3 conv kernel, 2 → 2 channels
        >>> k = retract_kernel(kernel, 0.1)
        >>> k.shape, bool(jnp.allclose(k, kernel, atol=1e-5))
        ((3, 3, 2, 2), True)
        >>> m = retract_kernel(2.0 * kernel, 0.1).reshape(18, 2)
        >>> bool(jnp.allclose(m.T @ m, 1.4 ** 2 * jnp.eye(2), atol=1e-4))  # every singular value 2 → 1.4
        True
    """
    shape = kernel.shape
    k2 = kernel.reshape(-1, shape[-1])
    out = shape[-1]
    if kernel.ndim == 2 and row_fraction < 1.0 and out > row_threshold:
        if key is None:
            raise ValueError("orthogonal: row sampling (row_fraction < 1) needs a PRNG key")
        r = max(1, int(out * row_fraction))
        idx = jax.random.permutation(key, out)[:r]
        sub = retract(k2[:, idx], beta)
        return k2.at[:, idx].set(sub.astype(k2.dtype)).reshape(shape)
    return retract(k2, beta).astype(kernel.dtype).reshape(shape)


def project_simplex(v):
    """Euclidean projection of a vector onto ``{w ≥ 0, Σw = 1}`` (Duchi et al. 2008, Fig. 1).

    Sort descending u; ρ = max{j : u_j − (Σ_{i≤j} u_i − 1)/j > 0}; θ = (Σ_{i≤ρ} u_i − 1)/ρ;
    w = max(v − θ, 0).

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.orthogonal import project_simplex
        >>> for v in ([0.3, 0.3], [2.0, 0.0], [0.5, 0.2]):  # shift by θ, clip at 0, sum 1
        ...     print([round(float(w), 4) for w in project_simplex(jnp.array(v))])
        [0.5, 0.5]
        [1.0, 0.0]
        [0.65, 0.35]
    """
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u) - 1.0
    j = jnp.arange(1, v.shape[0] + 1, dtype=v.dtype)
    cond = u - css / j > 0
    rho = jnp.max(jnp.where(cond, jnp.arange(v.shape[0]), 0))
    theta = css[rho] / (rho + 1).astype(v.dtype)
    return jnp.maximum(v - theta, 0.0)


def _leaf_name(path) -> str:
    last = path[-1]
    for attr in ("key", "name", "idx"):
        if hasattr(last, attr):
            return str(getattr(last, attr))
    return str(last)


class OrthogonalState(NamedTuple):
    key: jax.Array


def retract_params(params, beta: float, *, key=None, row_fraction: float = 1.0, row_threshold: int = 200,
                   simplex: bool = True):
    """Applies the retraction to every ``kernel`` (ndim ≥ 2) and the simplex projection to every ``mix``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsnn.defenses.orthogonal import retract_params
        >>> params = {"dense": {"kernel": 2.0 * jnp.eye(2), "bias": jnp.ones(2)},
        ...           "block": {"mix": jnp.array([2.0, 0.0])}}
        >>> out = retract_params(params, 0.1)  # kernels retracted, mix projected, the rest kept
        >>> dense = out["dense"]
        >>> round(float(dense["kernel"][0, 0]), 4), dense["bias"].tolist(), out["block"]["mix"].tolist()
        (1.4, [1.0, 1.0], [1.0, 0.0])
    """
    leaves = jax.tree_util.tree_leaves_with_path(params)
    keys = iter(jax.random.split(key, max(1, len(leaves)))) if key is not None else None

    def one(path, p):
        k = next(keys) if keys is not None else None
        name = _leaf_name(path)
        if name in KERNEL_NAMES and p.ndim >= 2:
            return retract_kernel(p, beta, key=k, row_fraction=row_fraction, row_threshold=row_threshold)
        if simplex and name in MIX_NAMES and p.ndim == 1:
            return project_simplex(p)
        return p

    return jax.tree_util.tree_map_with_path(one, params)


def orthogonal(beta: float = 0.001, *, row_fraction: float = 1.0, row_threshold: int = 200, simplex: bool = True,
               seed: int = 0) -> optax.GradientTransformation:
    """RAT's retraction as an optax transform to chain after the optimizer (module docstring).

    Args:
      beta: retraction step β (0.001 VGG-11, 0.004 WRN-16 in the paper).
      row_fraction, row_threshold: row sampling of large dense layers (authors' code: 0.3, 200).
      simplex: project ``mix`` parameters onto the simplex.
      seed: seed of the row-sampling key kept in the optimizer state.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from jsnn.defenses import orthogonal
        >>> opt = optax.chain(optax.sgd(0.1), orthogonal(beta=0.1))
        >>> params = {"kernel": 2.0 * jnp.eye(2)}
        >>> updates, _ = opt.update({"kernel": jnp.zeros((2, 2))}, opt.init(params), params)
        >>> new = optax.apply_updates(params, updates)["kernel"]  # R(P + 0) = 1.4·I
        >>> bool(jnp.allclose(new, 1.4 * jnp.eye(2)))
        True
    """
    beta = check_number(beta, "defense.rat.beta", low=0.0)
    row_fraction = check_number(row_fraction, "defense.rat.row_fraction", low=0.0, high=1.0, low_open=True)
    row_threshold = check_int(row_threshold, "defense.rat.row_threshold", minimum=0)
    check_int(seed, "defense.rat.seed", minimum=0)

    def init_fn(params):
        del params
        return OrthogonalState(key=jax.random.key_data(jax.random.key(seed)))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("orthogonal: the retraction needs params (optimizer.update(grads, state, params))")
        key = jax.random.wrap_key_data(state.key)
        key, sub = jax.random.split(key)
        new_params = optax.apply_updates(params, updates)
        retracted = retract_params(new_params, beta, key=sub, row_fraction=row_fraction,
                                   row_threshold=row_threshold, simplex=simplex)
        new_updates = jax.tree_util.tree_map(lambda r, p: (r - p).astype(p.dtype), retracted, params)
        return new_updates, OrthogonalState(key=jax.random.key_data(key))

    return optax.GradientTransformation(init_fn, update_fn)
