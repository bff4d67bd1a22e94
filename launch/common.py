"""Helpers shared by the launch scripts."""

import contextlib
import logging as std_logging
import sys

from absl import logging


class _DropOrbaxInfo(std_logging.Filter):
    """Keeps Orbax's per-save INFO chatter out of the training log (warnings still pass)."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax() -> None:
    logging.get_absl_handler().addFilter(_DropOrbaxInfo())


@contextlib.contextmanager
def clean_errors():
    """Turns user errors (bad config, missing data) into one message and exit status 2, no traceback."""
    quiet_orbax()
    try:
        yield
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
