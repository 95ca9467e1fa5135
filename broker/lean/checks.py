"""The lean contract's checks of single values, each converting as pydantic's lax mode does, and the
errors they raise (:mod:`broker.lean.base` has the overview)."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any

from broker import errors
from broker.lean.wire import _encode_str, _plain, _w_bool, _w_datetime, _w_float, _w_int, _w_text, _writer, iso

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


def model(cls: type[Any]) -> Check:
    """A nested lean message (a :class:`broker.lean.base.Lean` class)."""
    def check(value: Any) -> Any:
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


aware_datetime.out = iso  # type: ignore[attr-defined]
any_datetime.out = iso  # type: ignore[attr-defined]
aware_datetime.json = _w_datetime  # type: ignore[attr-defined]
any_datetime.json = _w_datetime  # type: ignore[attr-defined]
boolean.json = _w_bool  # type: ignore[attr-defined]
_any_text.json = _w_text  # type: ignore[attr-defined]


__all__ = [
    "BadValue", "Check", "ContractError", "any_datetime", "anything", "aware_datetime", "boolean",
    "constant", "identifier", "integer", "list_of", "mapping_of", "member", "model", "number", "optional",
    "pair_of", "text"
]
