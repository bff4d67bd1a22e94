"""One XLA compilation cache per test run, shared by the xdist workers, notebooks and subprocesses.

Most of the suite's time is XLA compilation, and many tests compile the same programs (the default
digits model's train step, its attacks): JAX's persistent cache (``JAX_COMPILATION_CACHE_DIR``,
inherited by every kernel and launched subprocess through the environment) compiles each once per
run. The first pytest process (xdist's controller, whose environment the workers inherit) makes a
fresh temporary folder and removes it at the end, so no run reads another's programs. A user's own
``JAX_COMPILATION_CACHE_DIR`` is kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_OWN_CACHE = None  # the folder this process made (the controller's, or a run without xdist's)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="jsnn-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


def pytest_sessionfinish(session, exitstatus):
    """The process that made the cache removes it once every worker is done."""
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
