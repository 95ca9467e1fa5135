"""The machinery of the lean contract: fields that check and convert as pydantic's lax mode does.

A lean message class lists its fields (:class:`Field`: name, wire alias, check, default); building
one (by keyword, by name or alias) or validating a parsed JSON document runs each field's check and
collects every problem into one :class:`ContractError` (a ValueError) that names the field and what
is wrong, in the words pydantic uses. Serialising gives the JSON pydantic's ``model_dump_json``
gives for the same values (camelCase aliases, datetimes as pydantic writes them).

The checks accept what pydantic's lax mode accepts from JSON: an int field takes ``5``, ``5.0``,
``"5"`` and ``true``; a float field a number or a numeric string; a bool field ``0``/``1`` and
``"yes"``/``"off"``...; a datetime field an RFC 3339 string or a Unix time (seconds, or
milliseconds above 2e10). tests/broker/test_lean_contract.py holds both to that.

The machinery lives in four modules: :mod:`broker.lean.checks` (single values, and the errors),
:mod:`broker.lean.config_values` (paths, secrets, tagged unions for config files),
:mod:`broker.lean.wire` (JSON in and out) and this one (fields, messages, the generated code).
Their public names are also importable from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from broker.lean.checks import *  # noqa: F403 - one place to import the machinery from
from broker.lean.checks import _MISSING, BadValue, Check, ContractError, _any_text
from broker.lean.config_values import *  # noqa: F403
from broker.lean.wire import *  # noqa: F403
from broker.lean.wire import Dumpable, _encode_str, _hashable, _w_text, _writer, load_json


# --- fields and messages ----------------------------------------------------------------------

class Field:
    """One field: its Python name, its wire name, the names it is read from, its check and default."""

    __slots__ = ("name", "alias", "accepted", "check", "default", "factory", "out", "json")

    def __init__(self, name: str, check: Check, *, alias: str | None = None, default: Any = _MISSING,
                 factory: Callable[[], Any] | None = None, accepted: Iterable[str] | None = None) -> None:
        self.name = name
        self.alias = alias or name
        # Input names, in pydantic's order: the alias (or the alias choices), then the name.
        self.accepted = tuple(dict.fromkeys([*(accepted or (self.alias,)), name]))
        self.check = check
        # How the value is written to JSON (None: as it is).
        self.out = getattr(check, "out", None)
        self.json = _writer(check)
        self.default = default
        self.factory = factory

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.factory is None


class Lean(Dumpable):
    """A message of the contract without pydantic: build with keywords, :meth:`validate` a parsed
    document, :meth:`parse` JSON, :meth:`dump` / :meth:`dump_json` as pydantic would."""

    fields: ClassVar[tuple[Field, ...]] = ()
    # extra="forbid" in the pydantic model: unknown keys are errors, not ignored.
    forbid_extra: ClassVar[bool] = False
    frozen: ClassVar[bool] = False
    title: ClassVar[str] = ""
    _names: ClassVar[frozenset[str]] = frozenset()
    _plan: ClassVar[tuple[tuple[str, str, Any], ...]] = ()
    _source: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.title = cls.__name__
        cls._names = frozenset(name for f in cls.fields for name in f.accepted)
        cls._plan = tuple((f.name, f.alias, f.out) for f in cls.fields)
        _generate(cls)

    def __init__(self, **data: Any) -> None:
        self._fill(data)

    @classmethod
    def validate(cls, data: Any) -> Any:
        """The message from a parsed JSON document (or a dict by field names); ContractError if it is wrong."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise ContractError(cls.title, [((), f"Input should be a valid dictionary or instance of {cls.title}")])
        obj = cls.__new__(cls)
        obj._fill(data)
        return obj

    @classmethod
    def parse(cls, payload: bytes | str) -> Any:
        """The message from JSON bytes; ContractError (a ValueError) if it is not JSON or breaks the contract."""
        try:
            document = load_json(payload)
        except ValueError as exc:
            raise ContractError(cls.title, [((), f"Invalid JSON: {exc}")]) from None
        return cls.validate(document)

    def _fill(self, data: dict) -> None:
        """Check ``data`` into this message (replaced per class by code generated from its fields)."""
        raise NotImplementedError

    def _after(self) -> None:
        """The model-level check (pydantic's ``model_validator(mode="after")``); raise ValueError."""

    def __setattr__(self, name: str, value: Any) -> None:
        if self.frozen:
            raise TypeError(f"{self.title} is frozen")
        object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (by field name), unchecked, as pydantic's ``model_copy(update=...)``."""
        obj = type(self).__new__(type(self))
        obj.__dict__.update(self.__dict__)
        obj.__dict__.update(changes)
        return obj

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __hash__(self) -> int:
        if not self.frozen:
            raise TypeError(f"unhashable type: {self.title!r}")
        return hash(tuple(_hashable(getattr(self, f.name)) for f in self.fields))

    def __repr__(self) -> str:
        return f"{self.title}({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in self.fields)})"

    def dump(self, *, exclude_none: bool = False) -> dict[str, Any]:
        """The JSON document (wire names), as ``model_dump(mode="json", by_alias=True)``."""
        out = {}
        values = self.__dict__
        for name, alias, convert in self._plan:
            value = values[name]
            if value is None:
                if not exclude_none:
                    out[alias] = None
            else:
                out[alias] = value if convert is None else convert(value, exclude_none)
        return out

    def dump_json(self, *, exclude_none: bool = False) -> bytes:
        """The JSON bytes, as ``model_dump_json(by_alias=True)`` writes them."""
        return self.json_text(exclude_none).encode()

    def json_text(self, exclude_none: bool = False) -> str:
        """The JSON text (replaced per class by code generated from its fields)."""
        raise NotImplementedError


def _generate(cls: type[Lean]) -> None:
    """Give ``cls`` a ``_fill`` and a ``json_text`` written out for its fields, one after another.

    The same steps a loop over ``cls.fields`` would take (the first input name given wins, a
    missing field takes its default or is required, each problem is kept, then the model check),
    but without the loop's lookups: a concentrator builds and writes every reading with them.
    The source is kept in ``cls._source``.
    """
    env: dict[str, Any] = {"_MISSING": _MISSING, "BadValue": BadValue, "ContractError": ContractError,
                           "_any_text": _any_text, "_str": str, "_encode_str": _encode_str}
    fill = ["def _fill(self, data):", "    values = self.__dict__", "    problems = []"]
    write = ["def json_text(self, exclude_none=False):", "    values = self.__dict__", "    parts = []"]
    for i, f in enumerate(cls.fields):
        # An optional field's None is handled here, so its check and writer are the inner ones.
        inner = getattr(f.check, "optional_of", None)
        check = f.check if inner is None else inner
        env[f"check{i}"], env[f"default{i}"], env[f"factory{i}"], env[f"write{i}"] = \
            check, f.default, f.factory, f.json if inner is None else _writer(inner)
        fill.append(f"    raw = data.get({f.accepted[0]!r}, _MISSING)")
        for name in f.accepted[1:]:
            fill.append(f"    if raw is _MISSING: raw = data.get({name!r}, _MISSING)")
        fill.append("    if raw is _MISSING:")
        if f.factory is not None:
            fill.append(f"        values[{f.name!r}] = factory{i}()")
        elif f.default is not _MISSING:
            fill.append(f"        values[{f.name!r}] = default{i}")
        else:
            fill.append(f"        problems.append((({f.alias!r},), 'Field required'))")
        if inner is not None:
            fill.append("    elif raw is None:")
            fill.append(f"        values[{f.name!r}] = None")
        if check is _any_text:  # the commonest check, inline
            fill.append("    elif type(raw) is _str:")
            fill.append(f"        values[{f.name!r}] = raw")
        fill.append("    else:")
        fill.append("        try:")
        fill.append(f"            values[{f.name!r}] = check{i}(raw)")
        fill.append("        except BadValue as exc:")
        fill.append(f"            problems.append((({f.alias!r}, *exc.loc), exc.msg))")
        key = f"{_encode_str(f.alias)}:"
        write.append(f"    value = values[{f.name!r}]")
        write.append("    if value is not None:")
        if env[f"write{i}"] is _w_text:
            write.append(f"        parts.append({key!r} + _encode_str(value))")
        else:
            write.append(f"        parts.append({key!r} + write{i}(value, exclude_none))")
        write.append("    elif not exclude_none:")
        write.append(f"        parts.append({key + 'null'!r})")
    if cls.forbid_extra:
        fill.append("    problems.extend(((key,), 'Extra inputs are not permitted') for key in data "
                    "if key not in self._names)")
    fill += ["    if not problems:", "        try:", "            self._after()", "            return",
             "        except ValueError as exc:", "            problems.append(((), f'Value error, {exc}'))",
             "    raise ContractError(self.title, problems)"]
    write.append("    return '{' + ','.join(parts) + '}'")
    cls._source = "\n".join(fill) + "\n\n" + "\n".join(write) + "\n"
    exec(compile(cls._source, f"<broker.lean {cls.__name__}>", "exec"), env)  # noqa: S102
    cls._fill = env["_fill"]
    cls.json_text = env["json_text"]
