"""Standard-library modules a resident process imports but may never use, loaded on first use.

paho-mqtt's client does ``import urllib.request`` at import time, for one thing only: with PySocks
installed, its connect reads the ``mqtt_proxy``/``no_proxy`` environment through
``urllib.request.getproxies`` and ``proxy_bypass``. Importing urllib.request brings email,
http.client and more (about 2 MiB of a concentrator's RSS, issue 15). :func:`defer` puts a
:class:`Deferred` placeholder in ``sys.modules`` (and on the parent package) before anything
imports the module. ``import urllib.request`` then binds the placeholder, and the first attribute
read from it (``urllib.request.getproxies``, ``from urllib.request import urlopen``,
``hasattr(urllib.request, "proxy_bypass")``) imports the real module, which replaces the
placeholder everywhere the import system keeps it and whose attributes the placeholder copies, so
a reference taken before the load keeps working.

Why not :class:`importlib.util.LazyLoader`: its module answers every attribute, ``__spec__``
included, by loading, and the import statement reads ``__spec__`` (Python 3.11), so it loads at
once. A :class:`Deferred` answers the import system's own questions (``__spec__`` is None, it has
no ``__path__``) without loading.

gurux-dlms's object collection and its XML reader and writer import ``xml.etree.cElementTree``
(ElementTree, pyexpat) and ``xml.dom.minidom`` at import time for their XML save and load, which
the concentrator never calls (about 1.2 MiB): deferred the same way.

Only the concentrator's process (:mod:`gridwire.concentrator_process`) defers (:data:`CONCENTRATOR`);
other processes import the standard library as usual.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types

from broker.errors import Conflict

# Names the import system and ``hasattr`` probes read from a module without meaning to use it:
# answered without loading (a placeholder is not a package, has no file of its own yet).
_PROBES = frozenset({"__path__", "__file__", "__cached__", "__loader__", "__getattr__"})

_lock = threading.RLock()

# What the concentrator's process defers (see the module's doc and gridwire/concentrator_process.py).
CONCENTRATOR = ("urllib.request", "xml.etree.cElementTree", "xml.dom.minidom")


class DeferredImportError(Conflict):
    """:func:`defer` was asked for a module that is already imported (too late to defer)."""


class Deferred(types.ModuleType):
    """A placeholder for a module not imported yet: the first attribute read imports it."""

    def __getattr__(self, name: str) -> object:
        if name in _PROBES:
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def _load(self) -> types.ModuleType:
        name = self.__name__
        with _lock:
            current = sys.modules.get(name)
            if current is not None and not isinstance(current, Deferred):
                return current
            if current is self:
                del sys.modules[name]
            try:
                real = importlib.import_module(name)
            except BaseException:
                sys.modules.setdefault(name, self)
                raise
            # Whoever bound the placeholder (``import urllib.request`` binds the package, whose
            # attribute is now the real module; ``from urllib import request`` the placeholder
            # itself) reads the real module's attributes from here on, without __getattr__.
            for key, value in vars(real).items():
                if key not in ("__name__", "__spec__", "__loader__"):
                    self.__dict__[key] = value
            return real


def defer(name: str) -> None:
    """Put a :class:`Deferred` placeholder for the module ``name`` (a submodule of an importable
    package, e.g. ``urllib.request``) where the import system looks for it; a module already
    imported raises :class:`DeferredImportError`, since deferring it would gain nothing."""
    with _lock:
        current = sys.modules.get(name)
        if isinstance(current, Deferred):
            return
        if current is not None:
            raise DeferredImportError(f"{name} is already imported: too late to defer it")
        parent, _, child = name.rpartition(".")
        placeholder = Deferred(name)
        sys.modules[name] = placeholder
        if parent:
            setattr(importlib.import_module(parent), child, placeholder)


def loaded(name: str) -> bool:
    """Whether the real module ``name`` is imported (not only its placeholder)."""
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, Deferred)
