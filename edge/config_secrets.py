"""The secrets of a concentrator config file, sealed at rest (:mod:`broker.sealing`).

Which fields are secrets: the broker password, a DLMS meter's password and keys (block cipher,
authentication, master), a Smarty P1 meter's keys. Each is sealed for its place,
``meter:<meter id>:<field>`` (a P1 meter: its port) or ``broker:password``, so a sealed value
moved to another meter does not open.

The sealing key ring comes from the file ``secrets_key_file`` names (relative to the config),
else from ``GRIDWIRE_SECRETS_KEY``. With a ring, every secret in the file must be sealed (a
clear one is refused, naming it: ``gridwire secrets seal-config`` seals them in place);
sealed secrets with no ring are refused too. With neither a ring nor a sealed value, clear
secrets are read as before, and :func:`clear_secret_fields` names them for a warning.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from broker.sealing import KEY_ENV, KeyRing, SealingError, is_sealed

METER_SECRETS = ("password", "block_cipher_key", "authentication_key", "master_key", "smarty_key",
                 "smarty_authentication_key")


def key_ring_for(raw: dict[str, Any], base: Path, environ: dict[str, str] | None = None) -> KeyRing | None:
    """The ring a config uses: its ``secrets_key_file`` (relative to ``base``), else the environment."""
    named = raw.get("secrets_key_file")
    if isinstance(named, str) and named:
        path = Path(named)
        return KeyRing.from_file(path if path.is_absolute() else base / path)
    value = (environ if environ is not None else os.environ).get(KEY_ENV)
    return KeyRing.parse(value) if value else None


def _meter_name(entry: dict[str, Any], index: int) -> str:
    return str(entry.get("meter_id") or entry.get("port") or f"#{index + 1}")


def secret_places(raw: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """Every secret in a raw config: (the table holding it, its key, its sealing context)."""
    broker = raw.get("broker")
    if isinstance(broker, dict) and isinstance(broker.get("password"), str):
        yield broker, "password", "broker:password"
    meters = raw.get("meters")
    for index, entry in enumerate(meters if isinstance(meters, list) else []):
        if not isinstance(entry, dict):
            continue
        for name in METER_SECRETS:
            if isinstance(entry.get(name), str):
                yield entry, name, f"meter:{_meter_name(entry, index)}:{name}"


def open_secrets(raw: dict[str, Any], ring: KeyRing | None) -> None:
    """Replace the sealed secrets of a raw config by their clear text, in place (before validation)."""
    clear: list[str] = []
    for table, key, context in secret_places(raw):
        value = table[key]
        if is_sealed(value):
            if ring is None:
                raise SealingError(f"{context} is sealed, but there is no sealing key: set secrets_key_file "
                                   f"or {KEY_ENV}")
            table[key] = ring.open(value, context=context)
        else:
            clear.append(context)
    if ring is not None and clear:
        raise SealingError(f"secrets in clear while a sealing key is configured: {', '.join(clear)} "
                           "(seal them with `gridwire secrets seal-config`)")


def clear_secret_fields(raw: dict[str, Any]) -> list[str]:
    """The contexts of the secrets a raw config holds in clear."""
    return [context for table, key, context in secret_places(raw) if not is_sealed(table[key])]


_TABLE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.]+)\s*\]\]?\s*(#.*)?$")
_STRING = r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\''


def seal_file_text(text: str, ring: KeyRing) -> tuple[str, int]:
    """The config text with each clear secret sealed in place (comments and layout kept), and how
    many were sealed. Secrets in inline tables are not rewritten; load the result to find any left."""
    lines = text.splitlines(keepends=True)
    blocks: list[tuple[str, int, int]] = []  # (table name, first line, end line)
    start, name = 0, ""
    for number, line in enumerate(lines):
        match = _TABLE.match(line)
        if match:
            blocks.append((name, start, number))
            start, name = number, match.group(1)
    blocks.append((name, start, len(lines)))
    sealed = 0
    meter_index = -1
    for table, first, end in blocks:
        if table == "broker":
            fields, where = ("password",), lambda _field: "broker:password"
        elif table == "meters":
            meter_index += 1
            ident = _block_value(lines[first:end], "meter_id") or _block_value(lines[first:end], "port")
            ident = ident or f"#{meter_index + 1}"
            fields, where = METER_SECRETS, lambda field, ident=ident: f"meter:{ident}:{field}"
        else:
            continue
        for number in range(first, end):
            match = re.match(rf"^(\s*)({'|'.join(fields)})(\s*=\s*)(?:{_STRING})(.*)$", lines[number], re.S)
            if not match:
                continue
            indent, field, equals, double, single, rest = match.groups()
            value = _unescape(double) if double is not None else single
            if is_sealed(value):
                continue
            lines[number] = f'{indent}{field}{equals}"{ring.seal(value, context=where(field))}"{rest}'
            sealed += 1
    return "".join(lines), sealed


def _block_value(lines: list[str], key: str) -> str | None:
    for line in lines:
        match = re.match(rf"^\s*{key}\s*=\s*(?:{_STRING})", line)
        if match:
            double, single = match.groups()
            return _unescape(double) if double is not None else single
    return None


def _unescape(text: str) -> str:
    return tomllib.loads(f'v = "{text}"')["v"]
