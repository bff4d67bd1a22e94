"""Interoperability with other SNN frameworks: NIR graphs (export and import).

Example:
    >>> from jsnn import interop
    >>> sorted(m for m in ("nir", "trace") if hasattr(interop, m))
    ['nir', 'trace']
"""

from jsnn.interop import nir, trace

__all__ = ["nir", "trace"]
