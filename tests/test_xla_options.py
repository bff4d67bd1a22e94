"""jsnn.xla_options: the XLA CPU defaults set on import, and every way they yield to the user."""

import os
import subprocess
import sys

import pytest

from jsnn import xla_options

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
PROBE = ("import os, jax, jsnn; jax.numpy.ones(1).block_until_ready(); "
         "print(repr(os.environ.get('XLA_FLAGS'))); print(jsnn.xla_options.applied())")


def _probe(code=PROBE, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_options.ENV_SWITCH)}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-2:]


def test_flags_to_add_respects_the_users_flags_and_the_verified_versions():
    assert xla_options.flags_to_add("", jaxlib_version="0.10.2") == [f"{FLAG}="]
    assert xla_options.flags_to_add("--xla_force_host_platform_device_count=2", jaxlib_version="0.10.0rc1") == [f"{FLAG}="]
    assert xla_options.flags_to_add(f"{FLAG}=individual_dot --x=1", jaxlib_version="0.10.2") == []
    for version in ("0.4.30", "0.9.9", "0.11.0", "1.0.0"):  # XLA aborts on a flag it does not know
        assert xla_options.flags_to_add("", jaxlib_version=version) == []


def test_apply_leaves_an_environment_alone_once_a_backend_started():
    import jax

    jax.numpy.ones(1).block_until_ready()  # this process's backend is running
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert xla_options.apply(env) == [] and env == {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}


@pytest.mark.skipif(not xla_options.flags_to_add("", jaxlib_version=__import__("jaxlib").__version__),
                    reason="the installed jaxlib is not one the default flags were verified with")
def test_import_sets_the_default_unless_the_user_chose():
    flags, applied = _probe()
    assert flags == repr(f"{FLAG}=") and applied == repr([f"{FLAG}="])
    flags, applied = _probe(XLA_FLAGS=f"{FLAG}=dot")  # the user's value wins
    assert flags == repr(f"{FLAG}=dot") and applied == "[]"
    flags, applied = _probe(**{xla_options.ENV_SWITCH: "0"})  # switched off
    assert flags == "None" and applied == "[]"
    late = "import os, jax; jax.numpy.ones(1).block_until_ready(); import jsnn; " + PROBE.split("; ", 2)[2]
    flags, applied = _probe(late)  # jsnn imported after the backend started: too late to matter, not set
    assert flags == "None" and applied == "[]"


def test_malloc_to_set_yields_to_the_user_and_to_other_c_libraries():
    assert xla_options.malloc_to_set({}, libc="glibc") == xla_options.MALLOC_DEFAULTS
    assert xla_options.malloc_to_set({xla_options.MALLOC_SWITCH: "0"}, libc="glibc") == {}
    assert xla_options.malloc_to_set({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, libc="glibc") == {}
    assert xla_options.malloc_to_set({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512"},
                                     libc="glibc") == xla_options.MALLOC_DEFAULTS
    assert xla_options.malloc_to_set({}, libc="") == {}  # musl, macOS: no mallopt of these


# A 40 MiB block: above glibc's default mmap threshold (at most 32 MiB), below jsnn's 256 MiB.
MMAP_PROBE = ("import ctypes, jsnn; libc = ctypes.CDLL(None)\n"
              "class Info(ctypes.Structure): _fields_ = [(n, ctypes.c_size_t) for n in "
              "('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
              "libc.mallinfo2.restype = Info; libc.malloc.restype = ctypes.c_void_p\n"
              "before = libc.mallinfo2().hblks; p = libc.malloc(40 << 20); mapped = libc.mallinfo2().hblks - before\n"
              "libc.free(ctypes.c_void_p(p)); print(mapped); print(sorted(jsnn.xla_options.malloc_applied()))")


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc" or not hasattr(__import__("ctypes").CDLL(None), "mallinfo2"),
                    reason="needs glibc >= 2.33 (mallinfo2)")
def test_import_raises_the_malloc_thresholds_so_large_buffers_are_reused():
    env = {k: v for k, v in os.environ.items() if k not in (xla_options.MALLOC_SWITCH, "GLIBC_TUNABLES")}
    def probe(**changes):
        out = subprocess.run([sys.executable, "-c", MMAP_PROBE], env={**env, **changes}, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip().splitlines()[-2:]
    assert probe() == ["0", repr(["M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD"])]  # from malloc's heap, reused
    assert probe(**{xla_options.MALLOC_SWITCH: "0"}) == ["1", "[]"]  # glibc's default: a fresh mmap
    assert probe(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=1048576") == ["1", "[]"]  # the user's value wins
