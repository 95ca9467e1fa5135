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
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, ClassVar

from broker import errors

Check = Callable[[Any], Any]
_MISSING = object()


class ContractError(errors.Invalid):
    """A message that breaks the contract: every field at fault, with its location and the reason."""

    def __init__(self, title: str, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.title = title
        self.problems = problems
        count = len(problems)
        lines = [f"{count} validation error{'s' if count != 1 else ''} for {title}"]
        for loc, msg in problems:
            if loc:
                lines.append(".".join(str(part) for part in loc))
            lines.append(f"  {msg}")
        super().__init__("\n".join(lines))

    def errors(self) -> list[dict[str, Any]]:
        """Each problem as pydantic's ``errors()`` gives it: ``loc`` and ``msg``."""
        return [{"loc": loc, "msg": msg} for loc, msg in self.problems]


class BadValue(errors.Invalid):
    """One field's value is wrong; ``loc`` is where inside the value (a list index, a key)."""

    def __init__(self, msg: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(msg)
        self.msg = msg
        self.loc = loc


# --- checks of single values ------------------------------------------------------------------

def text(*, min_length: int = 0, max_length: int | None = None, pattern: str | None = None) -> Check:
    compiled = re.compile(pattern) if pattern is not None else None
    if not min_length and max_length is None and compiled is None:
        return _any_text

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise BadValue("Input should be a valid string")
        if len(value) < min_length:
            raise BadValue(f"String should have at least {min_length} character{'s' if min_length != 1 else ''}")
        if max_length is not None and len(value) > max_length:
            raise BadValue(f"String should have at most {max_length} character{'s' if max_length != 1 else ''}")
        if compiled is not None and compiled.search(value) is None:
            raise BadValue(f"String should match pattern '{pattern}'")
        return value
    check.json = _w_text  # type: ignore[attr-defined]
    return check


def _any_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise BadValue("Input should be a valid string")


_INT_TEXT = re.compile(r"[+-]?\d+(?:_\d+)*(?:\.0*)?")
_I64 = 2**63


def integer(*, ge: int | None = None, le: int | None = None, gt: int | None = None, strict: bool = False) -> Check:
    def check(value: Any) -> int:
        if type(value) is int:
            out = value
        elif strict:
            raise BadValue("Input should be a valid integer")
        elif isinstance(value, bool):
            out = int(value)
        elif isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                raise BadValue("Input should be a valid integer, got a number with a fractional part")
            if abs(value) >= _I64:
                raise BadValue("Unable to parse input string as an integer, exceeded maximum size")
            out = int(value)
        elif isinstance(value, int):
            out = int(value)
        elif isinstance(value, str):
            stripped = value.strip()
            if _INT_TEXT.fullmatch(stripped) is None:
                raise BadValue("Input should be a valid integer, unable to parse string as an integer")
            out = int(stripped.split(".")[0])
        else:
            raise BadValue("Input should be a valid integer")
        _bounds(out, ge=ge, le=le, gt=gt)
        return out
    check.json = _w_int  # type: ignore[attr-defined]
    return check


def number(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
           allow_inf_nan: bool = True) -> Check:
    bounded = ge is not None or gt is not None or le is not None

    def check(value: Any) -> float:
        if type(value) is float:
            out = value
        elif isinstance(value, (int, float)):  # bool too: pydantic's lax mode takes true as 1.0
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise BadValue("Input should be a valid number, unable to parse string as a number") from None
        else:
            raise BadValue("Input should be a valid number")
        if not allow_inf_nan and not math.isfinite(out):
            raise BadValue("Input should be a finite number")
        if bounded:
            _bounds(out, ge=ge, gt=gt, le=le)
        return out
    if allow_inf_nan:
        check.out = _finite  # type: ignore[attr-defined]
    check.json = _w_float  # type: ignore[attr-defined]
    return check


def _finite(value: float, _exclude_none: bool) -> float | None:
    return value if math.isfinite(value) else None  # pydantic writes inf and NaN as null


def _bounds(value: float, *, ge: float | None = None, le: float | None = None, gt: float | None = None) -> None:
    if ge is not None and not value >= ge:
        raise BadValue(f"Input should be greater than or equal to {ge}")
    if gt is not None and not value > gt:
        raise BadValue(f"Input should be greater than {gt}")
    if le is not None and not value <= le:
        raise BadValue(f"Input should be less than or equal to {le}")


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def boolean(value: Any) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise BadValue("Input should be a valid boolean, unable to interpret input")
    raise BadValue("Input should be a valid boolean")


def anything(value: Any) -> Any:
    return value


anything.out = lambda value, _exclude_none: _plain(value, False)  # type: ignore[attr-defined]


def constant(*allowed: str) -> Check:
    """A Literal of strings."""
    shown = " or ".join(f"'{a}'" for a in allowed) if len(allowed) < 3 else \
        ", ".join(f"'{a}'" for a in allowed[:-1]) + f" or '{allowed[-1]}'"

    def check(value: Any) -> str:
        if isinstance(value, str) and value in allowed:
            return str(value)
        raise BadValue(f"Input should be {shown}")
    check.json = _w_text  # type: ignore[attr-defined]
    return check


def member(enum: type[Enum]) -> Check:
    values = {item.value: item for item in enum}
    allowed = list(values)
    shown = ", ".join(f"'{a}'" for a in allowed[:-1]) + f" or '{allowed[-1]}'"

    def check(value: Any) -> Enum:
        if isinstance(value, enum):
            return value
        try:
            return values[value]
        except (KeyError, TypeError):
            raise BadValue(f"Input should be {shown}") from None
    check.out = lambda value, _exclude_none: value.value  # type: ignore[attr-defined]
    check.json = lambda value, _exclude_none: _encode_str(value.value)  # type: ignore[attr-defined]
    return check


def identifier(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
        raise BadValue("Input should be a valid UUID, unable to parse string as a UUID")
    raise BadValue("UUID input should be a string, bytes or UUID object")


identifier.out = lambda value, _exclude_none: str(value)  # type: ignore[attr-defined]
identifier.json = lambda value, _exclude_none: f'"{value}"'  # type: ignore[attr-defined]


_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt _](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?")
_NUMERIC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def aware_datetime(value: Any) -> datetime:
    """An aware datetime from a datetime, an RFC 3339 string or a Unix time (pydantic's AwareDatetime)."""
    if isinstance(value, datetime):
        out = value
    elif isinstance(value, str):
        out = _from_timestamp(float(value)) if _NUMERIC.fullmatch(value) is not None else _parse_datetime(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out = _from_timestamp(value)
    else:
        raise BadValue("Input should be a valid datetime")
    if out.tzinfo is None or out.utcoffset() is None:
        raise BadValue("Input should have timezone info")
    return out


def any_datetime(value: Any) -> datetime:
    """A datetime, aware or naive (pydantic's ``datetime``)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _NUMERIC.fullmatch(value) is None:
        return _parse_datetime(value)
    return aware_datetime(value)


def _parse_datetime(value: str) -> datetime:
    match = _DATETIME.fullmatch(value)
    if match is None:
        raise BadValue("Input should be a valid datetime or date, invalid character in year"
                      if value[:4].isdigit() is False else "Input should be a valid datetime, invalid format")
    year, month, day, hour, minute, second, fraction, zulu, sign, tz_hour, tz_minute = match.groups()
    tz = None
    if zulu:
        tz = UTC
    elif sign:
        if int(tz_hour) > 23 or int(tz_minute) > 59:
            raise BadValue("Input should be a valid datetime, timezone offset out of range")
        offset = timedelta(hours=int(tz_hour), minutes=int(tz_minute))
        tz = timezone(-offset if sign == "-" else offset) if offset else UTC
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                        int((fraction or "0")[:6].ljust(6, "0")), tzinfo=tz)
    except ValueError as exc:
        raise BadValue(f"Input should be a valid datetime, {exc}") from None


def _from_timestamp(value: float) -> datetime:
    if not math.isfinite(value):
        raise BadValue("Input should be a valid datetime, invalid timestamp")
    whole = math.floor(value)
    fraction = value - whole
    if abs(value) > 2e10:  # pydantic takes such a number as milliseconds
        seconds, millis = divmod(int(whole), 1000)
        micros = round((millis + fraction) * 1000)
    else:
        seconds, micros = int(whole), round(fraction * 1_000_000)
    try:
        return _EPOCH + timedelta(seconds=seconds, microseconds=micros)
    except OverflowError:
        raise BadValue("Input should be a valid datetime, dates after 9999 are not supported as unix timestamps") \
            from None


def optional(check: Check) -> Check:
    def inner(value: Any) -> Any:
        return None if value is None else check(value)
    out = getattr(check, "out", None)
    if out is not None:
        inner.out = lambda value, exclude_none: None if value is None else out(value, exclude_none)  # type: ignore
    write = _writer(check)
    inner.json = lambda value, exclude_none: "null" if value is None else write(value, exclude_none)  # type: ignore
    inner.optional_of = check  # type: ignore[attr-defined]
    return inner


def list_of(item: Check, *, min_length: int = 0, max_length: int | None = None) -> Check:
    def check(value: Any) -> list:
        if not isinstance(value, (list, tuple)):
            raise BadValue("Input should be a valid list")
        if len(value) < min_length:
            raise BadValue(f"List should have at least {min_length} item{'s' if min_length != 1 else ''} "
                          f"after validation, not {len(value)}")
        if max_length is not None and len(value) > max_length:
            raise BadValue(f"List should have at most {max_length} items after validation, not {len(value)}")
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except BadValue as exc:
                raise BadValue(exc.msg, (index, *exc.loc)) from None
        return out
    convert = getattr(item, "out", None)
    if convert is not None:
        check.out = lambda value, exclude_none: [convert(v, exclude_none) for v in value]  # type: ignore
    write = _writer(item)
    check.json = lambda value, exclude_none: f"[{','.join([write(v, exclude_none) for v in value])}]"  # type: ignore
    return check


def pair_of(item: Check) -> Check:
    def check(value: Any) -> tuple:
        if not isinstance(value, (list, tuple)):
            raise BadValue("Input should be a valid tuple")
        if len(value) != 2:
            raise BadValue(f"Tuple should have {'at most' if len(value) > 2 else 'at least'} 2 items after validation, "
                          f"not {len(value)}")
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except BadValue as exc:
                raise BadValue(exc.msg, (index, *exc.loc)) from None
        return tuple(out)
    check.out = lambda value, _exclude_none: list(value)  # type: ignore[attr-defined]
    write = _writer(item)
    check.json = lambda value, exclude_none: f"[{','.join([write(v, exclude_none) for v in value])}]"  # type: ignore
    return check


def mapping_of(item: Check, *, max_length: int | None = None) -> Check:
    def check(value: Any) -> dict:
        if not isinstance(value, dict):
            raise BadValue("Input should be a valid dictionary")
        if max_length is not None and len(value) > max_length:
            raise BadValue(f"Dictionary should have at most {max_length} items after validation, not {len(value)}")
        out = {}
        for key, element in value.items():
            if not isinstance(key, str):
                raise BadValue("Input should be a valid string", (key,))
            try:
                out[key] = item(element)
            except BadValue as exc:
                raise BadValue(exc.msg, (key, *exc.loc)) from None
        return out
    convert = getattr(item, "out", None)
    if convert is not None:
        # exclude_none does not reach into a dict's values (as in pydantic).
        check.out = lambda value, _exclude_none: {k: convert(v, False) for k, v in value.items()}  # type: ignore
    write = _writer(item)
    check.json = lambda value, _exclude_none: "{%s}" % ",".join(  # type: ignore[attr-defined]
        [f"{_encode_str(k)}:{write(v, False)}" for k, v in value.items()])
    return check


def model(cls: type[Lean]) -> Check:
    def check(value: Any) -> Lean:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise BadValue(f"Input should be a valid dictionary or instance of {cls.__name__}")
        try:
            return cls.validate(value)
        except ContractError as exc:
            # One nested problem at a time is enough to say where; the first is reported.
            loc, msg = exc.problems[0]
            raise BadValue(msg, loc) from None
    check.out = lambda value, exclude_none: value.dump(exclude_none=exclude_none)  # type: ignore[attr-defined]
    check.json = lambda value, exclude_none: value.json_text(exclude_none)  # type: ignore[attr-defined]
    return check


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


class Lean:
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


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def load_json(payload: bytes | str) -> Any:
    """The document in a JSON payload; ValueError if it is not JSON, not UTF-8, or holds a lone
    surrogate (``"\\ud800"``: it cannot be written as UTF-8), as pydantic's parser says."""
    text = payload.decode() if isinstance(payload, (bytes, bytearray)) else payload
    try:
        document = json.loads(text)
    except RecursionError:
        raise ValueError("recursion limit exceeded") from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None and _has_surrogate(document):
        raise ValueError("lone surrogate in a string")
    return document


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    return False


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


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_encode_str = json.encoder.c_encode_basestring or json.encoder.py_encode_basestring  # type: ignore[attr-defined]


def _w_text(value: str, _exclude_none: bool) -> str:
    return _encode_str(value)


def _w_int(value: int, _exclude_none: bool) -> str:
    return int.__repr__(value)


def _w_float(value: float, _exclude_none: bool) -> str:
    return float.__repr__(value) if math.isfinite(value) else "null"  # pydantic writes inf and NaN as null


def _w_bool(value: bool, _exclude_none: bool) -> str:
    return "true" if value else "false"


_last_written: tuple[datetime | None, str] = (None, "")


def _w_datetime(value: datetime, _exclude_none: bool) -> str:
    # A reading's values share its time: the same object, written once (one tuple: thread-safe).
    global _last_written
    last = _last_written
    if value is last[0]:
        return last[1]
    written = f'"{iso(value)}"'
    _last_written = (value, written)
    return written


def _w_any(value: Any, _exclude_none: bool) -> str:
    return _ENCODER.encode(_plain(value, False))


def _writer(check: Check) -> Callable[[Any, bool], str]:
    """How a checked value is written as JSON text."""
    return getattr(check, "json", _w_any)


def json_bytes(document: Any) -> bytes:
    return _ENCODER.encode(document).encode()


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    return value


def iso(value: datetime, _exclude_none: bool = False) -> str:
    """A datetime as pydantic writes it: ``Z`` for a zero offset, else ``+HH:MM``."""
    text = value.isoformat()
    if text[-6:] == "+00:00":
        return text[:-6] + "Z"
    if text[-6] in "+-" and text[-3] == ":" and text[-9] != "+" and text[-9] != "-":
        return text  # +HH:MM already (no seconds in the offset)
    offset = value.utcoffset()
    text = value.replace(tzinfo=None).isoformat()
    if offset is None:
        return text
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


aware_datetime.out = iso  # type: ignore[attr-defined]
any_datetime.out = iso  # type: ignore[attr-defined]
aware_datetime.json = _w_datetime  # type: ignore[attr-defined]
any_datetime.json = _w_datetime  # type: ignore[attr-defined]
boolean.json = _w_bool  # type: ignore[attr-defined]
_any_text.json = _w_text  # type: ignore[attr-defined]


def _plain(value: Any, exclude_none: bool) -> Any:
    if value is None or isinstance(value, (bool, int)) and not isinstance(value, Enum):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # pydantic writes inf and NaN as null
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, Lean):
        return value.dump(exclude_none=exclude_none)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, exclude_none) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, False) for k, v in value.items()}
    return value


# --- config files: paths, secrets, a union chosen by a tag ---------------------------------------

def path(value: Any) -> Any:
    """A ``pathlib.Path`` from a string (pydantic's lax ``Path``: ``""`` is ``.``)."""
    if isinstance(value, PurePath):
        return Path(value)
    if isinstance(value, str):
        return Path(value)
    raise BadValue("Input is not a valid path for <class 'pathlib.Path'>")


path.out = lambda value, _exclude_none: str(value)  # type: ignore[attr-defined]
path.json = lambda value, _exclude_none: _encode_str(str(value))  # type: ignore[attr-defined]


class Secret:
    """A password or key that never shows in a repr, a log line or an error (pydantic's SecretStr:
    ``**********``, equal by value, falsy when empty)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{self}')"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    get = getattr(value, "get_secret_value", None)  # a pydantic SecretStr, handed over by a caller
    if get is not None:
        return Secret(get())
    raise BadValue("Input should be a valid string")


secret.out = lambda value, _exclude_none: str(value)  # type: ignore[attr-defined]
secret.json = lambda value, _exclude_none: _encode_str(str(value))  # type: ignore[attr-defined]


def choice(*allowed: Any) -> Check:
    """A Literal of ints (``Literal[1, 2]``): the number itself, 1.0 or true included, not text."""
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            for item in allowed:
                if type(value) in (int, bool, float) and value == item:
                    return item
        raise BadValue(f"Input should be {' or '.join(repr(a) for a in allowed)}")
    check.json = _w_int  # type: ignore[attr-defined]
    return check


def tagged(tag: str, classes: dict[str, type[Lean]]) -> Check:
    """One of ``classes``, chosen by the value of key ``tag`` (pydantic's discriminated union)."""
    expected = ", ".join(f"'{name}'" for name in classes)

    def check(value: Any) -> Lean:
        for cls in classes.values():
            if isinstance(value, cls):
                return value
        if not isinstance(value, dict):
            raise BadValue("Input should be a valid dictionary or object to extract fields from")
        if tag not in value:
            raise BadValue(f"Unable to extract tag using discriminator '{tag}'")
        key = value[tag]
        cls = classes.get(key) if isinstance(key, str) else None
        if cls is None:
            raise BadValue(f"Input tag '{key}' found using '{tag}' does not match any of the expected tags: {expected}")
        try:
            return cls.validate(value)
        except ContractError as exc:
            loc, msg = exc.problems[0]
            raise BadValue(msg, (key, *loc)) from None
    check.out = lambda value, exclude_none: value.dump(exclude_none=exclude_none)  # type: ignore[attr-defined]
    check.json = lambda value, exclude_none: value.json_text(exclude_none)  # type: ignore[attr-defined]
    return check
