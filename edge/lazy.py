"""Names a package exports but imports only when first used (PEP 562 module ``__getattr__``).

A concentrator without DLMS, Modbus or P1 meters must not pay for gurux-dlms, pymodbus or the
P1 parser; ``edge.dlms``, ``edge.modbus`` and ``edge.p1`` export their names through this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def exports(package: str, namespace: dict[str, Any], where: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: each name of ``where`` (name -> module) imported once,
    when first asked for, and kept in the package's ``namespace``."""

    def __getattr__(name: str) -> Any:
        try:
            module = where[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
