"""XLA CPU options jsnn sets by default when it is imported (documented, overridable).

Two defaults: an XLA flag, and glibc malloc thresholds for the buffers XLA CPU allocates.

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

**malloc thresholds** (glibc only): ``mallopt(M_MMAP_THRESHOLD, 256 MiB)`` and
``mallopt(M_TRIM_THRESHOLD, 512 MiB)``. XLA CPU allocates every output and temporary buffer of a
call with malloc; glibc serves blocks above its mmap threshold (at most 32 MiB: a ``[128, 64,
1024]`` float32 trace is exactly that) with a fresh ``mmap`` and returns them on free, so each call
pays the kernel's zero-filling of those pages again (a page fault every 4 KiB). With the
thresholds raised, freed blocks stay in malloc's heap and the next call reuses them. LIF
forward+backward ``[128, 64, 1024]`` 49 → 31–36 ms; ``T = 8`` within its run-to-run noise;
VGG-11 CIFAR training step (T=4, batch 32) 4.97 → 4.64 s; digits training step unchanged (idle
2-core AMD EPYC, 2026-12-03; ``docs/attack_speed.md``). The cost: up to 512 MiB of freed memory
is kept by the process instead of being returned to the system. Set only if
``JSNN_MALLOC_DEFAULTS`` is not ``0``, the C library is glibc, and ``GLIBC_TUNABLES`` sets no
``glibc.malloc.*`` tunable (the user's allocator settings win); :func:`malloc_applied` says
what was set. Unlike the XLA flag it takes effect whenever it is set.

Example:
    >>> from jsnn import xla_options
    >>> xla_options.malloc_to_set({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, libc="glibc")
    {}
    >>> xla_options.malloc_to_set({}, libc="glibc")
    {'M_TRIM_THRESHOLD': 536870912, 'M_MMAP_THRESHOLD': 268435456}
    >>> xla_options.flags_to_add("--xla_dump_to=/tmp/d", jaxlib_version="0.10.2")
    ['--xla_cpu_experimental_ynn_fusion_type=']
    >>> xla_options.flags_to_add("--xla_cpu_experimental_ynn_fusion_type=dot", jaxlib_version="0.10.2")
    []
    >>> xla_options.flags_to_add("", jaxlib_version="0.4.30")  # not verified: nothing is set
    []
"""

from __future__ import annotations

import os
import ctypes
import platform
from typing import Dict, List, Optional, Tuple

DEFAULT_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)
VERIFIED_JAXLIB = ((0, 10), (0, 11))  # [low, high): jaxlib versions whose XLA knows DEFAULT_FLAGS
ENV_SWITCH = "JSNN_XLA_DEFAULTS"
MALLOC_DEFAULTS = {"M_TRIM_THRESHOLD": 512 << 20, "M_MMAP_THRESHOLD": 256 << 20}
MALLOC_SWITCH = "JSNN_MALLOC_DEFAULTS"
_MALLOPT_PARAM = {"M_TRIM_THRESHOLD": -1, "M_MMAP_THRESHOLD": -3}  # glibc's malloc.h

_APPLIED: List[str] = []
_MALLOC_APPLIED: Dict[str, int] = {}


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


def malloc_to_set(environ: dict, *, libc: str) -> Dict[str, int]:
    """The malloc thresholds to set (:data:`MALLOC_DEFAULTS`), or none (see the module docstring)."""
    if libc != "glibc" or environ.get(MALLOC_SWITCH, "1") == "0":
        return {}
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return {}
    return dict(MALLOC_DEFAULTS)


def apply_malloc(environ: Optional[dict] = None) -> Dict[str, int]:
    """Sets :func:`malloc_to_set`'s thresholds with ``mallopt`` in this process; returns what it set."""
    env = os.environ if environ is None else environ
    wanted = malloc_to_set(env, libc=platform.libc_ver()[0])
    if not wanted:
        return {}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - no mallopt in this C library
        return {}
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = {name: value for name, value in wanted.items() if mallopt(_MALLOPT_PARAM[name], value) == 1}
    _MALLOC_APPLIED.update(done)
    return done


def malloc_applied() -> Dict[str, int]:
    """The malloc thresholds :func:`apply_malloc` set in this process when jsnn was imported."""
    return dict(_MALLOC_APPLIED)
