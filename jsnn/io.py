"""Files jsnn writes and reads: atomic writes, JSON / jsonl that name the damaged file, the environment.

Every result file goes through :func:`write_atomic` (a temporary file beside the target, then
``os.replace``), so a kill at any point leaves either the old file or the new one, never half of
one. Reads go through :func:`read_json` / :func:`read_jsonl`, which turn a damaged file into one
:class:`DamagedFileError` line naming the file and what to do.

Example:
    >>> import os, tempfile
    >>> from jsnn import io
    >>> d = tempfile.TemporaryDirectory()
    >>> path = os.path.join(d.name, "r.json")
    >>> io.write_json(path, {"accuracy": 0.5})
    >>> io.read_json(path)
    {'accuracy': 0.5}
    >>> with open(path, "w") as f:
    ...     _ = f.write('{"accuracy": ')  # a truncated file
    >>> io.read_json(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    jsnn.io.DamagedFileError: .../r.json: damaged JSON (Expecting value at line 1 column 14); delete it ...
    >>> d.cleanup()
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from typing import Any, Callable, Dict, List, Optional

import numpy as np


class DamagedFileError(ValueError):
    """A file jsnn wrote earlier cannot be read back (truncated, not JSON, wrong shape)."""


def ensure_dir(path: str, field: str = "directory") -> str:
    """Creates directory ``path`` if needed; a file in the way or an unwritable place is one line naming ``field``.

    Example:
        >>> import tempfile
        >>> from jsnn import io
        >>> f = tempfile.NamedTemporaryFile()
        >>> io.ensure_dir(f.name, "--workdir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: --workdir=...: is a file, not a directory; choose another directory
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{field}={path}: is a file, not a directory; choose another directory")
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{field}={path}: a parent is a file, not a directory; choose another directory") from None
    except OSError as e:
        raise ValueError(f"{field}={path}: cannot be created ({e.strerror}); choose a writable directory") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{field}={path}: not writable (permission denied); choose a writable directory")
    return path


def write_atomic(path: str, write: Callable[[str], None], suffix: str = "") -> None:
    """Calls ``write(tmp)`` on a unique temporary file beside ``path``, then renames it over ``path``."""
    directory = ensure_dir(os.path.dirname(os.path.abspath(path)))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    except PermissionError:
        raise ValueError(f"{directory}: not writable (permission denied); choose a writable directory") from None
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _json_default(o):
    if isinstance(o, np.generic) or hasattr(o, "__array__"):
        return np.asarray(o).tolist()
    return str(o)


def write_json(path: str, obj) -> None:
    """Writes ``obj`` as indented, key-sorted JSON, atomically (numpy/jax arrays become lists)."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)

    write_atomic(path, write, suffix=".json")


def write_text(path: str, text: str) -> None:
    """Writes ``text`` atomically."""

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            f.write(text)

    write_atomic(path, write)


def _damaged(path: str, what: str, hint: Optional[str]) -> DamagedFileError:
    hint = hint or "delete it and rerun the command that wrote it"
    return DamagedFileError(f"{path}: {what}; {hint}")


def read_json(path: str, *, hint: Optional[str] = None, kind: type = dict):
    """Reads a JSON file; a damaged one raises :class:`DamagedFileError` naming ``path`` and ``hint``.

    Args:
      path: the file.
      hint: what the user should do (default: delete it and rerun the command that wrote it).
      kind: the type the top level must have (``dict`` by default; ``None`` for any).
    """
    try:
        with open(path) as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise _damaged(path, f"damaged JSON ({e.msg} at line {e.lineno} column {e.colno})", hint) from None
    except UnicodeDecodeError:
        raise _damaged(path, "not a text file", hint) from None
    if kind is not None and not isinstance(obj, kind):
        raise _damaged(path, f"expected a JSON {kind.__name__}, got {type(obj).__name__}", hint)
    return obj


def read_jsonl(path: str, *, hint: Optional[str] = None) -> List[Dict[str, Any]]:
    """The JSON objects of a jsonl file, one per non-empty line; a damaged line names the file and line."""
    out = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise _damaged(path, f"line {i} is damaged JSON ({e.msg})", hint) from None
            if not isinstance(obj, dict):
                raise _damaged(path, f"line {i} is not a JSON object", hint)
            out.append(obj)
    return out


def write_jsonl(path: str, rows) -> None:
    """Writes ``rows`` (dicts) as jsonl, atomically."""
    write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def environment() -> Dict[str, Any]:
    """Package versions and device kind, recorded with every result."""
    import importlib.metadata as md

    import jax

    versions = {}
    for pkg in ("jsnn", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    dev = jax.devices()[0]
    return {"versions": versions, "platform": dev.platform, "device_kind": dev.device_kind,
            "device_count": jax.device_count(), "python": platform.python_version()}


__all__ = ["DamagedFileError", "ensure_dir", "environment", "read_json", "read_jsonl", "write_atomic", "write_json",
           "write_jsonl", "write_text"]
