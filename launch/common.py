"""Helpers shared by the launch scripts."""

import contextlib
import logging as std_logging
import sys



class _DropOrbaxInfo(std_logging.Filter):
    """Keeps Orbax's per-save INFO chatter out of the training log (warnings still pass)."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax() -> None:
    """Drops Orbax INFO records at the ``absl`` logger (so every handler, e.g. a notebook's, is spared)."""
    logger = std_logging.getLogger("absl")
    if not any(isinstance(f, _DropOrbaxInfo) for f in logger.filters):
        logger.addFilter(_DropOrbaxInfo())


@contextlib.contextmanager
def clean_errors():
    """Turns user errors (bad config, missing data) into one message and exit status 2, no traceback."""
    quiet_orbax()
    try:
        yield
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
