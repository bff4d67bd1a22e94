"""Data parallelism on JAX's SPMD machinery: one ``Mesh`` axis ``"data"`` over every device.

Batches are split along their leading axis with ``NamedSharding(mesh, P("data"))``;
parameters and optimizer state are replicated (``P()``); ``jax.jit`` inserts the
collectives (BatchNorm statistics and gradients are global means, as on one device).
On multi-host TPU VMs call ``jax.distributed.initialize()`` first (``launch.train``
does so when ``--distributed`` is set); each host then feeds its slice of the global
batch, which every host computes identically from ``(seed, step)``.

Example:
    >>> import numpy as np
    >>> from jsnn import parallel
    >>> mesh = parallel.data_mesh()
    >>> parallel.shard_batch({"x": np.zeros((4, 2))}, mesh)["x"].shape
    (4, 2)
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P


def data_mesh() -> Mesh:
    """A 1-D mesh named ``"data"`` over all (global) devices."""
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def check_divisible(batch_size: int, mesh: Mesh, field: str = "data.batch_size") -> None:
    """Raises ``ValueError`` unless the global batch divides by the device count."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(f"{field}: the global batch size {batch_size} must be divisible by the {n} devices "
                         f"(use a multiple of {n})")


def replicate(tree, mesh: Mesh):
    """Places ``tree`` on every device of ``mesh`` (parameters, optimizer state)."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch, mesh: Mesh):
    """Splits a host batch (the global batch, identical on every host) over the ``"data"`` axis."""
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    i, n = jax.process_index(), jax.process_count()

    def local(x):
        x = np.asarray(x)
        per = x.shape[0] // n
        return jax.make_array_from_process_local_data(sharding, x[i * per:(i + 1) * per], x.shape)

    return jax.tree.map(local, batch)


def pad_batch(batch, multiple: int):
    """Pads a batch's leading axis (repeating the last example) to a multiple; returns (batch, mask)."""
    leaves = jax.tree.leaves(batch)
    b = leaves[0].shape[0]
    pad = (-b) % multiple
    mask = np.concatenate([np.ones(b, bool), np.zeros(pad, bool)])
    if pad:
        batch = jax.tree.map(lambda x: np.concatenate([x, np.repeat(np.asarray(x)[-1:], pad, 0)]), batch)
    return batch, mask
