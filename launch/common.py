"""Helpers shared by the launch scripts: one-line user errors, config-file and override checks."""

import contextlib
import importlib.util
import logging as std_logging
import os
import sys

import ml_collections


class _DropOrbaxInfo(std_logging.Filter):
    """Keeps Orbax's per-save INFO chatter out of the training log (warnings still pass)."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax() -> None:
    """Drops Orbax INFO records at the ``absl`` logger (so every handler, e.g. a notebook's, is spared)."""
    logger = std_logging.getLogger("absl")
    if not any(isinstance(f, _DropOrbaxInfo) for f in logger.filters):
        logger.addFilter(_DropOrbaxInfo())


def fail(message: str) -> None:
    """Prints ``error: message`` to stderr and exits with status 2 (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


@contextlib.contextmanager
def clean_errors():
    """Turns user errors (bad config, missing or damaged files, unwritable paths) into one line, exit status 2.

    The messages of jsnn's own errors name the field or file; an OS error names its path.
    """
    quiet_orbax()
    try:
        yield
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    except OSError as e:  # permission denied, disk full, ...: name the path
        fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))


def load_config_file(path: str, flag: str = "--config") -> ml_collections.ConfigDict:
    """``get_config()`` of the config file ``path``; a missing file, a syntax error or no ``get_config`` is one line."""
    if not path:
        fail(f"{flag}: required (a config file such as launch/configs/default.py)")
    path = path.split(":", 1)[0]  # ml_collections allows "file.py:arg"
    if not os.path.isfile(path):
        fail(f"{flag}={path}: no such config file (see launch/configs/ for the known ones)")
    try:
        with open(path) as f:
            compile(f.read(), path, "exec")
    except SyntaxError as e:
        fail(f"{flag}={path}: syntax error at line {e.lineno}: {e.msg}")
    spec = importlib.util.spec_from_file_location("_jsnn_config_check", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's file raised while importing
        fail(f"{flag}={path}: importing it raised {type(e).__name__}: {e}")
    if not callable(getattr(module, "get_config", None)):
        fail(f"{flag}={path}: defines no get_config() (a config file returns its ConfigDict from get_config())")
    try:
        config = module.get_config()
    except Exception as e:
        fail(f"{flag}={path}: get_config() raised {type(e).__name__}: {e}")
    if not isinstance(config, ml_collections.ConfigDict):
        fail(f"{flag}={path}: get_config() must return an ml_collections.ConfigDict, got {type(config).__name__}")
    return config


def check_overrides(argv, config: ml_collections.ConfigDict, prefix: str = "config") -> None:
    """Every ``--<prefix>.a.b=v`` names a field of ``config``: else one line listing the known fields there."""
    for arg in argv[1:]:
        if not arg.startswith(f"--{prefix}."):
            continue
        path = arg[len(prefix) + 3:].split("=", 1)[0]
        node, done = config, []
        for part in path.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                where = ".".join(done) or prefix
                if isinstance(node, ml_collections.ConfigDict):
                    allowed = ", ".join(sorted(node.keys())) or (
                        f"none ({where} is empty in this config file; add the field there: a config cannot "
                        "gain fields from the command line)")
                else:
                    allowed = f"none ({where} is a value, not a section)"
                fail(f"--{prefix}.{path}: unknown field {part!r} in {where}; allowed: {allowed}")
            node, done = node[part], done + [part]


def check_config_argv(argv, flag: str = "config") -> None:
    """Before absl parses ``argv``: the ``--config`` file loads and every ``--config.*`` override exists."""
    value = None
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith(f"--{flag}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{flag}" and i + 1 < len(argv):
            value = argv[i + 1]
    if value is None:
        return  # absl reports the missing required flag itself
    check_overrides(argv, load_config_file(value, f"--{flag}"), flag)


def named_configs(config_file: str, names, overrides, spec, workdir: str):
    """``{name: config}`` for a ``config`` axis: ``<dir of config_file>/<name>.py`` with the spec's ``set``,
    its ``overrides[name]`` (``{workdir}`` formatted in string values), then the command-line overrides; and
    ``{name: (file, overrides)}``, what its ``launch.train`` command passes."""
    from ml_collections.config_flags import config_path

    per_config = spec.get("overrides") or {}
    directory = os.path.dirname(config_file.split(":", 1)[0])
    unknown = sorted(n for n in per_config if not os.path.isfile(os.path.join(directory, f"{n}.py")))
    if unknown:
        raise ValueError(f"get_sweep() overrides: {unknown} name no config file in {directory or '.'}")
    configs, commands = {}, {}
    for name in names:
        path = os.path.join(directory, f"{name}.py")
        c = load_config_file(path, flag=f"--grid config={name}")
        own = [(k, v.format(workdir=os.path.abspath(workdir)) if isinstance(v, str) else v)
               for k, v in list((spec.get("set") or {}).items()) + list((per_config.get(name) or {}).items())]
        pairs = own + list(overrides)  # the command line has the last word
        for field, value in pairs:
            config_path.set_value(field, c, value)
        configs[name], commands[name] = c, (path, pairs)
    return configs, commands
