"""Lazy package exports (PEP 562): ``busray.models``, ``busray.losses`` and ``busray.data`` name their
public API in their ``__init__`` without importing torch until an attribute is used.

Why: the config dataclasses live in those packages (``busray.models.config`` ...), and Python runs a
package's ``__init__`` before any of its submodules. Eager ``__init__`` imports made ``import
busray.config`` cost torch + timm (~3 s), paid by the sweep driver just to validate a sweep file and
by every CLI call, including ``--help``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``name`` from ``table[name]`` (a submodule) on first use."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
