"""JSON in and out for the lean contract: reading a payload as pydantic's parser would, and writing
values as pydantic's ``model_dump_json`` does (:mod:`broker.lean.base` has the overview)."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any


class Dumpable:
    """What writes itself as a JSON object (a lean message, :class:`broker.lean.base.Lean`)."""

    def dump(self, *, exclude_none: bool = False) -> dict[str, Any]:
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


def _writer(check: Callable[[Any], Any]) -> Callable[[Any, bool], str]:
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


def _plain(value: Any, exclude_none: bool) -> Any:
    if value is None or isinstance(value, (bool, int)) and not isinstance(value, Enum):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # pydantic writes inf and NaN as null
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, Dumpable):
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


__all__ = ["Dumpable", "iso", "json_bytes", "load_json"]
