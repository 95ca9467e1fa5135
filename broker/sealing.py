"""Secrets sealed at rest: DLMS keys and passwords in the registry and in concentrator configs.

A sealed value is text, so it fits a database column or a TOML string::

    sealed:v1:<key id>:<base64url(nonce || AES-256-GCM ciphertext and tag)>

The associated data is the key id and a *context* naming what the value is (for example
``device:E0001:authentication_key``), so a sealed value copied to another field or device does
not open. The sealing key comes from settings as a key ring, ``<id>:<base64url of 32 bytes>``,
several separated by commas: the first seals, every one opens, so keys rotate without a
flag day (add the new key first, reseal, then drop the old one). Both the cloud and the
concentrator use this module, so it sits in ``broker/`` beside the PKI.

Errors name the key id and the context, never a value or a key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from broker.errors import Invalid

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed:v1:"
KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
# The environment variable both sides read the key ring from when no file is given.
KEY_ENV = "GRIDWIRE_SECRETS_KEY"


class SealingError(Invalid):
    """A key ring or a sealed value that cannot be used; the message names the key id or context."""


def is_sealed(value: str) -> bool:
    """Whether ``value`` is a sealed secret (rather than a secret in clear)."""
    return value.startswith(PREFIX)


def new_key(key_id: str | None = None) -> str:
    """A fresh key ring entry ``<id>:<base64url key>``; the id defaults to ``k`` and the date-free
    random suffix, so two keys made at once never share an id."""
    kid = key_id or f"k{secrets.token_hex(4)}"
    if not _KEY_ID.fullmatch(kid):
        raise SealingError("a key id is 1-32 of A-Z a-z 0-9 _ . -")
    return f"{kid}:{_b64(secrets.token_bytes(KEY_BYTES))}"


@dataclass(frozen=True, repr=False)
class KeyRing:
    """The sealing keys: the first seals, all open. ``repr`` shows the key ids only."""

    keys: tuple[tuple[str, bytes], ...]
    _by_id: dict[str, AESGCM] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # cryptography (about 7 MiB resident) loads with the first key ring, not with the module:
        # a concentrator whose config holds no sealed secret never needs it (docs/FIRMWARE.md, "Memory").
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not self.keys:
            raise SealingError("the sealing key ring is empty")
        by_id: dict[str, AESGCM] = {}
        for kid, key in self.keys:
            if kid in by_id:
                raise SealingError(f"sealing key id {kid!r} appears twice")
            by_id[kid] = AESGCM(key)
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def parse(cls, text: str, *, source: str = KEY_ENV) -> KeyRing:
        """Read ``id:base64url-key[,id:key...]``; a short, long or malformed key is refused by name."""
        entries = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
        if not entries:
            raise SealingError(f"{source}: no sealing key given (make one with `gridwire secrets new-key`)")
        keys: list[tuple[str, bytes]] = []
        for number, entry in enumerate(entries, 1):
            kid, sep, encoded = entry.partition(":")
            if not sep or not _KEY_ID.fullmatch(kid):
                raise SealingError(f"{source}: key {number} is not '<id>:<base64url key>' "
                                   "(id: 1-32 of A-Z a-z 0-9 _ . -)")
            try:
                key = _unb64(encoded)
            except (binascii.Error, ValueError):
                raise SealingError(f"{source}: key {kid!r} is not base64url") from None
            if len(key) != KEY_BYTES:
                raise SealingError(f"{source}: key {kid!r} is {len(key)} bytes; a sealing key is {KEY_BYTES} bytes "
                                   "(make one with `gridwire secrets new-key`)")
            keys.append((kid, key))
        return cls(tuple(keys))

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        try:
            text = path.read_text()
        except OSError as exc:
            raise SealingError(f"{path}: cannot read the sealing key: {exc.strerror}") from exc
        return cls.parse(text, source=str(path))

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> KeyRing | None:
        """The ring in ``GRIDWIRE_SECRETS_KEY``, or None when it is unset."""
        value = (environ if environ is not None else os.environ).get(KEY_ENV)
        return None if value is None else cls.parse(value)

    @property
    def current(self) -> str:
        """The id of the key that seals."""
        return self.keys[0][0]

    @property
    def key_ids(self) -> list[str]:
        return [kid for kid, _ in self.keys]

    def seal(self, clear: str, *, context: str) -> str:
        """Seal ``clear`` with the current key, bound to ``context``."""
        kid = self.current
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._by_id[kid].encrypt(nonce, clear.encode(), _aad(kid, context))
        return f"{PREFIX}{kid}:{_b64(nonce + sealed)}"

    def open(self, value: str, *, context: str) -> str:
        """The clear text of a sealed value; a wrong key, context or a changed value is refused."""
        kid, blob = _split(value, context)
        aead = self._by_id.get(kid)
        if aead is None:
            raise SealingError(f"{context}: sealed with key {kid!r}, which the sealing key ring "
                               f"({', '.join(self.key_ids)}) does not hold")
        from cryptography.exceptions import InvalidTag

        try:
            return aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(kid, context)).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise SealingError(f"{context}: sealed value does not open with key {kid!r} "
                               "(a different key under the same id, or a value sealed for another field)") from None

    def key_id_of(self, value: str) -> str:
        """Which key sealed ``value``."""
        return _split(value, "value")[0]

    def reseal(self, value: str, *, context: str) -> str:
        """``value`` sealed with the current key (opened first if sealed, sealed as is if clear)."""
        clear = self.open(value, context=context) if is_sealed(value) else value
        return self.seal(clear, context=context)

    def needs_reseal(self, value: str) -> bool:
        return not is_sealed(value) or self.key_id_of(value) != self.current

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(self.key_ids)})"


def open_all(ring: KeyRing | None, values: Iterable[tuple[str, str]]) -> list[str]:
    """Open each (value, context) that is sealed; clear ones pass through. Sealed values with no ring
    are refused, naming the first context."""
    opened: list[str] = []
    for value, context in values:
        if is_sealed(value):
            if ring is None:
                raise SealingError(f"{context} is sealed, but no sealing key is configured ({KEY_ENV})")
            opened.append(ring.open(value, context=context))
        else:
            opened.append(value)
    return opened


def _split(value: str, context: str) -> tuple[str, bytes]:
    if not is_sealed(value):
        raise SealingError(f"{context}: not a sealed value")
    kid, sep, encoded = value[len(PREFIX):].partition(":")
    try:
        blob = _unb64(encoded)
    except (binascii.Error, ValueError):
        blob = b""
    if not sep or not _KEY_ID.fullmatch(kid) or len(blob) < _NONCE_BYTES + 16:
        raise SealingError(f"{context}: malformed sealed value")
    return kid, blob


def _aad(kid: str, context: str) -> bytes:
    return f"gridwire-sealed:v1:{kid}:{context}".encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    text = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
