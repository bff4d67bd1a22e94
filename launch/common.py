"""Helpers shared by the launch scripts."""

import contextlib
import sys


@contextlib.contextmanager
def clean_errors():
    """Turns user errors (bad config, missing data) into one message and exit status 2, no traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
