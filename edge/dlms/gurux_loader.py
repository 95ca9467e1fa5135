"""gurux-dlms imported in part: only the modules the code that runs needs (issue 15: RSS).

Each package ``__init__`` of gurux-dlms imports every module below it (about 400 in all), and
``_GXObjectFactory``, which ``GXDLMSClient`` imports, imports every COSEM interface class: a
concentrator paid for the XML translator, certificates, PLC, M-Bus and ~60 interface classes it
never uses. :func:`install` puts a finder first on ``sys.meta_path`` that makes each gurux
package a :class:`LazyPackage` instead of running its ``__init__``: the names the ``__init__``
would bind (read from its source, never run) import their module on first use. The object factory
is replaced by one that imports only the interface class asked for, its table read from the
factory's own source.

The module objects give what the real packages give (``from gurux_dlms.enums import DataType`` is
the class, a submodule not bound by ``__init__`` is the module), so gurux's own imports, cycles
included, resolve the same. If gurux-dlms changes how its ``__init__`` files or its factory are
written, reading them raises :class:`GuruxLayoutError` at import, loudly, rather than guessing;
gurux-dlms is pinned (``edge.dlms.gurux_fixes.PINNED_GURUX_VERSION``), and
tests/edge/dlms/test_gurux_loader.py checks every name of every package and every object type
against the full import. If ``gurux_dlms`` was imported before :func:`install`, it stays the full
package.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from broker.errors import Unavailable

ROOT = "gurux_dlms"
FACTORY = f"{ROOT}._GXObjectFactory"


class GuruxLayoutError(Unavailable, ImportError):
    """A gurux-dlms ``__init__`` or its object factory is not written as this loader reads it."""


class Bindings:
    """What a package's ``__init__`` binds: ``from .M import N [as A]``, ``from .M import *`` and
    literal assignments, in order; anything else is a :class:`GuruxLayoutError`."""

    def __init__(self, package: str, source: str, *, origin: str) -> None:
        self.names: dict[str, tuple[str, str]] = {}   # bound name -> (submodule, its attribute)
        self.stars: list[str] = []                    # submodules star-imported, in order
        self.constants: dict[str, Any] = {}
        for node in ast.parse(source, origin).body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and "." not in node.module:
                if [alias.name for alias in node.names] == ["*"]:
                    self.stars.append(node.module)
                else:
                    for alias in node.names:
                        self.names[alias.asname or alias.name] = (node.module, alias.name)
            elif (isinstance(node, ast.Assign) and len(node.targets) == 1
                  and isinstance(node.targets[0], ast.Name)):
                try:
                    self.constants[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError as exc:
                    raise GuruxLayoutError(f"{origin}:{node.lineno}: not a literal assignment") from exc
            elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a docstring
                raise GuruxLayoutError(f"{origin}:{node.lineno}: {package}'s __init__ does more than "
                                       f"import its modules ({type(node).__name__}); edge/dlms/gurux_loader.py "
                                       "cannot load it in part")


def _public(module: types.ModuleType) -> list[str]:
    """The names ``from module import *`` binds."""
    names = getattr(module, "__all__", None)
    return list(names) if names is not None else [name for name in vars(module) if not name.startswith("_")]


class LazyPackage(types.ModuleType):
    """A gurux package whose ``__init__`` has not run: each name it would bind, imported on first use."""

    _bindings: Bindings

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        bindings = self._bindings
        if name in bindings.names:
            module, attribute = bindings.names[name]
            try:
                value = getattr(importlib.import_module(f"{self.__name__}.{module}"), attribute)
            except AttributeError:
                # The module is still being imported (an import cycle) or lost the name: an
                # AttributeError here would make ``from package import name`` the module, silently.
                raise ImportError(f"cannot import {name!r} from {self.__name__}.{module} (edge/dlms/gurux_loader.py: "
                                  "a cycle the package's __init__ order had hidden?)", name=self.__name__) from None
        else:
            # A star-imported module of that name first (it defines the name), then the others in order.
            order = sorted(bindings.stars, key=lambda star: star != name)
            for star in order:
                module = importlib.import_module(f"{self.__name__}.{star}")
                if name in _public(module):
                    value = getattr(module, name)
                    break
            else:
                raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        object.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds each submodule it loads on its package; the real ``__init__``
        # had bound the name to what ``from .M import M`` (or a star import) gave instead.
        if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            bindings = self._bindings
            if bindings.names.get(name, ("", ""))[0] == name:
                value = getattr(value, bindings.names[name][1])
            elif name in bindings.stars and name in _public(value):
                value = getattr(value, name)
        object.__setattr__(self, name, value)


class _PackageLoader:  # the loader protocol (importlib.abc would import importlib.resources: ~1 MiB)
    def __init__(self, spec: importlib.machinery.ModuleSpec) -> None:
        self.real = spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = LazyPackage(spec.name)
        origin = str(self.real.origin)
        object.__setattr__(module, "_bindings", Bindings(spec.name, Path(origin).read_text(), origin=origin))
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        bindings: Bindings = module._bindings  # type: ignore[attr-defined]
        for name, value in bindings.constants.items():
            object.__setattr__(module, name, value)


class _FactoryLoader:
    def __init__(self, spec: importlib.machinery.ModuleSpec) -> None:
        self.real = spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        origin = str(self.real.origin)
        module._GXObjectFactory = lazy_factory(Path(origin).read_text(), origin=origin)  # type: ignore[attr-defined]


def factory_table(source: str, *, origin: str) -> tuple[dict[str, Made], Made]:
    """From ``_GXObjectFactory.py``: what ``createObject`` makes for each ObjectType member's name
    and for any other type (the ``else``); a :class:`GuruxLayoutError` if it is not the import list
    and ``if ot == ObjectType.X: ret = C()`` (or ``C(ot)``) chain of gurux-dlms 1.0.203."""
    tree = ast.parse(source, origin)
    where: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                where[alias.asname or alias.name] = f".{node.module}"
    factory = next((node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "_GXObjectFactory"),
                   None)
    method = next((node for node in (factory.body if factory else []) if isinstance(node, ast.FunctionDef)
                   and node.name == "createObject"), None)
    chain = next((node for node in (method.body if method else []) if isinstance(node, ast.If)
                  and isinstance(node.test, ast.Compare) and isinstance(node.test.comparators[0], ast.Attribute)), None)

    def made(body: Sequence[ast.stmt]) -> Made:
        if len(body) == 1 and isinstance(body[0], ast.Assign) and isinstance(body[0].value, ast.Call):
            call = body[0].value
            arguments = [arg.id if isinstance(arg, ast.Name) else None for arg in call.args]
            if isinstance(call.func, ast.Name) and call.func.id in where and not call.keywords and arguments in ([],
                                                                                                            ["ot"]):
                return Made(where[call.func.id], call.func.id, with_type=bool(arguments))
        raise GuruxLayoutError(f"{origin}:{body[0].lineno}: not `ret = <imported class>()` nor `(ot)`")

    table: dict[str, Made] = {}
    while isinstance(chain, ast.If):
        test = chain.test
        if not (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "ot"
                and isinstance(test.ops[0], ast.Eq) and isinstance(test.comparators[0], ast.Attribute)
                and isinstance(test.comparators[0].value, ast.Name) and test.comparators[0].value.id == "ObjectType"):
            raise GuruxLayoutError(f"{origin}:{test.lineno}: not `ot == ObjectType.X`")
        table.setdefault(test.comparators[0].attr, made(chain.body))
        chain = chain.orelse[0] if len(chain.orelse) == 1 and isinstance(chain.orelse[0], ast.If) else chain.orelse
    if not table or not isinstance(chain, list) or not chain:
        raise GuruxLayoutError(f"{origin}: _GXObjectFactory.createObject is not the chain this loader reads")
    return table, made(chain)


class Made(NamedTuple):
    """What the factory makes for a type: ``<module>.<name>()``, or ``(ot)`` ``with_type``."""

    module: str
    name: str
    with_type: bool


def lazy_factory(source: str, *, origin: str) -> type:
    """A ``_GXObjectFactory`` whose ``createObject`` imports only the class of the type asked for."""
    table, otherwise = factory_table(source, origin=origin)
    object_type = importlib.import_module(f"{ROOT}.enums.ObjectType").ObjectType
    try:
        makes = {object_type[member]: what for member, what in table.items()}
    except KeyError as exc:
        raise GuruxLayoutError(f"{origin}: ObjectType has no member {exc}") from None

    class _GXObjectFactory:
        """gurux-dlms's object factory, importing one interface class at a time."""

        @classmethod
        def createObject(cls, ot: Any) -> Any:  # noqa: N802 - gurux's name
            if ot is None:
                raise ValueError("Invalid object type.")
            what = makes.get(ot, otherwise)
            made = getattr(importlib.import_module(f"{ROOT}{what.module}"), what.name)
            return made(ot) if what.with_type else made()

    _GXObjectFactory.__module__ = FACTORY  # it stands in for gurux's own
    _GXObjectFactory.__qualname__ = "_GXObjectFactory"
    return _GXObjectFactory


class _Finder:  # the meta path finder protocol
    """Finds gurux's packages (and its object factory) for the loaders above."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ROOT and not fullname.startswith(f"{ROOT}."):
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None or real.origin is None:
            return None
        if real.submodule_search_locations is not None:
            spec = importlib.machinery.ModuleSpec(fullname, _PackageLoader(real), origin=real.origin, is_package=True)
            spec.submodule_search_locations = list(real.submodule_search_locations)
            spec.has_location = True
            return spec
        if fullname == FACTORY:
            spec = importlib.machinery.ModuleSpec(fullname, _FactoryLoader(real), origin=real.origin)
            spec.has_location = True
            return spec
        return None


_FINDER = _Finder()


def install() -> None:
    """From now on, import gurux-dlms in part (idempotent; the full package if already imported)."""
    if ROOT in sys.modules or _FINDER in sys.meta_path:
        return
    sys.meta_path.insert(0, _FINDER)


def in_part() -> bool:
    """Whether ``gurux_dlms`` is (or, once imported, will be) the package in part."""
    module = sys.modules.get(ROOT)
    return isinstance(module, LazyPackage) if module is not None else _FINDER in sys.meta_path
