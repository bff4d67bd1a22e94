"""XLA CPU options jsnn sets by default when it is imported (documented, overridable).

``--xla_cpu_experimental_ynn_fusion_type=`` (empty: no YNNPACK library fusions). jaxlib 0.10's XLA
CPU hands convolutions, dots, reductions and elementwise fusions to YNNPACK; on a 2-core x86 CPU
those ran on one core, while XLA's own (Eigen) kernels use every core. A 3×3 conv 32→64 channels on
``[256, 8, 8, 32]`` (the digits model's second layer, T·B = 256): forward 6.9 → 3.9 ms, input
gradient 7.8 → 4.4 ms, weight gradient 14.9 → 6.1 ms; the digits training step 43 → 28–33 ms
(idle 2-core AMD EPYC, 2026-12-02; ``python bench/train_step.py``). Results change in the last
float bits (another convolution kernel), not in any formula.

Rules: the option is appended to ``XLA_FLAGS`` only if (1) ``JSNN_XLA_DEFAULTS`` is not ``0``,
(2) ``XLA_FLAGS`` does not already name the flag (the user's value wins), (3) the installed
jaxlib is one this option was verified with (:data:`VERIFIED_JAXLIB`; XLA aborts the process on a
flag it does not know), and (4) no JAX backend has started yet (XLA reads ``XLA_FLAGS`` once, when
the CPU backend starts: import jsnn before the first JAX computation). :func:`applied` says what
was set.

Example:
    >>> from jsnn import xla_options
    >>> xla_options.flags_to_add("--xla_dump_to=/tmp/d", jaxlib_version="0.10.2")
    ['--xla_cpu_experimental_ynn_fusion_type=']
    >>> xla_options.flags_to_add("--xla_cpu_experimental_ynn_fusion_type=dot", jaxlib_version="0.10.2")
    []
    >>> xla_options.flags_to_add("", jaxlib_version="0.4.30")  # not verified: nothing is set
    []
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

DEFAULT_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)
VERIFIED_JAXLIB = ((0, 10), (0, 11))  # [low, high): jaxlib versions whose XLA knows DEFAULT_FLAGS
ENV_SWITCH = "JSNN_XLA_DEFAULTS"

_APPLIED: List[str] = []


def _version(text: str) -> Tuple[int, ...]:
    parts = []
    for p in text.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def flags_to_add(xla_flags: str, *, jaxlib_version: str) -> List[str]:
    """The default flags that ``xla_flags`` does not set yet, if ``jaxlib_version`` is verified."""
    low, high = VERIFIED_JAXLIB
    if not low <= _version(jaxlib_version)[:2] < high:
        return []
    named = {f.split("=", 1)[0] for f in xla_flags.split()}
    return [f for f in DEFAULT_FLAGS if f.split("=", 1)[0] not in named]


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - another jax layout: assume not started
        return False
    return bool(getattr(xla_bridge, "_backends", None))


def apply(environ: Optional[dict] = None) -> List[str]:
    """Appends the verified defaults to ``XLA_FLAGS`` (see the module docstring); returns what it added."""
    env = os.environ if environ is None else environ
    if env.get(ENV_SWITCH, "1") == "0" or _backend_started():
        return []
    try:
        import jaxlib
        version = jaxlib.__version__
    except (ImportError, AttributeError):  # pragma: no cover
        return []
    add = flags_to_add(env.get("XLA_FLAGS", ""), jaxlib_version=version)
    if add:
        env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", "")] + add).strip()
        if environ is None:
            _APPLIED.extend(add)
    return add


def applied() -> List[str]:
    """The flags :func:`apply` added to this process's ``XLA_FLAGS`` when jsnn was imported."""
    return list(_APPLIED)
