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
