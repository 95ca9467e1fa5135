"""The lean contract's checks for config files: paths, secrets, a Literal of ints, a union chosen by
a tag (:mod:`broker.lean.base` has the overview)."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

from broker.lean.checks import BadValue, Check, ContractError
from broker.lean.wire import _encode_str, _w_int

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


def tagged(tag: str, classes: dict[str, type[Any]]) -> Check:
    """One of ``classes``, chosen by the value of key ``tag`` (pydantic's discriminated union)."""
    expected = ", ".join(f"'{name}'" for name in classes)

    def check(value: Any) -> Any:
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


__all__ = ["Secret", "choice", "path", "secret", "tagged"]
