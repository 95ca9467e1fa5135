"""MQTT 5 PUBLISH properties built, packed and parsed without paho's per-attribute lookups.

paho's :class:`~paho.mqtt.properties.Properties` rebuilds its name and type tables in every
constructor, and every attribute set, ``pack`` and ``unpack`` walks the 27 property names
stripping spaces from each (``str.replace``) to find one identifier. On the command path,
where every message carries three or four properties, that was 20-40% of each process's CPU
(cProfile of ``bench/lights_switch.py``: the core, domain, API and light-fleet processes).

:class:`PublishProperties` is a ``Properties`` for PUBLISH packets (paho and every caller
read and set its attributes as before) whose tables are the class's, made once, and whose
``pack`` writes the properties Gridwire sends directly. :func:`unpack_publish` parses a
received PUBLISH's properties in one pass. Both give exactly paho's bytes and objects
(``tests/broker/test_fast_properties.py`` checks them against paho with hypothesis); for
anything unusual (a property Gridwire does not send, a malformed packet) they hand over to
paho's own code, which packs, parses or raises as it always did.
"""

from __future__ import annotations

import struct
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker.errors import Invalid

_TABLES = Properties(PacketTypes.PUBLISH)
_original_unpack = Properties.unpack

# Identifiers of the PUBLISH properties handled here, in paho's packing order.
_PAYLOAD_FORMAT, _EXPIRY, _CONTENT_TYPE, _RESPONSE_TOPIC, _CORRELATION, _USER = 1, 2, 3, 8, 9, 38
_FAST = frozenset({"PayloadFormatIndicator", "MessageExpiryInterval", "ContentType", "ResponseTopic",
                   "CorrelationData", "UserProperty", "packetType"})
_INT16 = struct.Struct("!H")
_INT32 = struct.Struct("!L")


class PublishProperties(Properties):
    """PUBLISH properties sharing one set of paho's tables; set as on paho's class, or with :meth:`of`."""

    types = _TABLES.types
    names = _TABLES.names
    properties = _TABLES.properties

    def __init__(self, packetType: int = PacketTypes.PUBLISH) -> None:  # noqa: N803 - paho's name
        object.__setattr__(self, "packetType", packetType)

    @classmethod
    def of(cls, *, correlation_data: bytes | None = None, response_topic: str | None = None,
           message_expiry: int | None = None, user_properties: list[tuple[str, str]] | None = None,
           content_type: str | None = None) -> PublishProperties:
        """Properties from values already checked by the caller (no per-name look-ups)."""
        props = cls()
        put = object.__setattr__
        if message_expiry is not None:
            put(props, "MessageExpiryInterval", message_expiry)
        if content_type is not None:
            put(props, "ContentType", content_type)
        if response_topic is not None:
            put(props, "ResponseTopic", response_topic)
        if correlation_data is not None:
            put(props, "CorrelationData", correlation_data)
        if user_properties:
            put(props, "UserProperty", list(user_properties))
        return props

    def pack(self) -> bytes:
        """paho's bytes for these properties, written directly for the ones Gridwire sends."""
        fields = self.__dict__
        if self.packetType != PacketTypes.PUBLISH or not fields.keys() <= _FAST:
            return super().pack()
        out = bytearray()
        if "PayloadFormatIndicator" in fields:
            out += bytes((_PAYLOAD_FORMAT, fields["PayloadFormatIndicator"]))
        if "MessageExpiryInterval" in fields:
            out.append(_EXPIRY)
            out += _INT32.pack(fields["MessageExpiryInterval"])
        if "ContentType" in fields:
            _string(out, _CONTENT_TYPE, fields["ContentType"])
        if "ResponseTopic" in fields:
            _string(out, _RESPONSE_TOPIC, fields["ResponseTopic"])
        if "CorrelationData" in fields:
            data = fields["CorrelationData"]
            out.append(_CORRELATION)
            out += _INT16.pack(len(data))
            out += data
        for key, value in fields.get("UserProperty", ()):
            _string(out, _USER, key)
            _utf8(out, value)
        return _vbi(len(out)) + bytes(out)


def _utf8(out: bytearray, text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else bytes(text, "utf-8")
    out += _INT16.pack(len(data))
    out += data


def _string(out: bytearray, identifier: int, text: str | bytes) -> None:
    out.append(identifier)
    _utf8(out, text)


def _vbi(value: int) -> bytes:
    if value < 128:
        return bytes((value,))
    out = bytearray()
    while True:
        digit, value = value % 128, value // 128
        out.append(digit | 0x80 if value else digit)
        if not value:
            return bytes(out)


class _Unusual(Invalid):
    """Not a case the fast parser takes: paho's parser decides."""


def _read_text(buffer: bytes, pos: int, end: int) -> tuple[str, int]:
    if pos + 2 > end:
        raise _Unusual
    stop = pos + 2 + _INT16.unpack_from(buffer, pos)[0]
    if stop > end:
        raise _Unusual
    text = buffer[pos + 2:stop].decode("utf-8")  # strict: encoded surrogates raise
    if "\x00" in text or "\ufeff" in text:
        raise _Unusual
    return text, stop


def _parse(buffer: bytes) -> tuple[PublishProperties, int]:
    first = buffer[0]
    if first < 128:
        start, length = 1, first
    elif len(buffer) > 1 and buffer[1] < 128:
        start, length = 2, (first & 127) + (buffer[1] << 7)
    else:
        raise _Unusual
    end = start + length
    if end > len(buffer):
        raise _Unusual
    fields: dict[str, Any] = {}
    pos = start
    while pos < end:
        identifier = buffer[pos]
        pos += 1
        if identifier == _USER:
            key, pos = _read_text(buffer, pos, end)
            value, pos = _read_text(buffer, pos, end)
            fields.setdefault("UserProperty", []).append((key, value))
            continue
        if identifier == _CORRELATION:
            if pos + 2 > end:
                raise _Unusual
            stop = pos + 2 + _INT16.unpack_from(buffer, pos)[0]
            if stop > end:
                raise _Unusual
            name, value, pos = "CorrelationData", bytes(buffer[pos + 2:stop]), stop
        elif identifier == _RESPONSE_TOPIC:
            name = "ResponseTopic"
            value, pos = _read_text(buffer, pos, end)
        elif identifier == _CONTENT_TYPE:
            name = "ContentType"
            value, pos = _read_text(buffer, pos, end)
        elif identifier == _EXPIRY and pos + 4 <= end:
            name, value, pos = "MessageExpiryInterval", _INT32.unpack_from(buffer, pos)[0], pos + 4
        elif identifier == _PAYLOAD_FORMAT and pos + 1 <= end:
            name, value, pos = "PayloadFormatIndicator", buffer[pos], pos + 1
        else:
            raise _Unusual
        if name in fields:
            raise _Unusual  # twice: paho raises
        fields[name] = value
    if fields.get("PayloadFormatIndicator", 0) not in (0, 1):
        raise _Unusual  # paho's attribute check refuses it
    props = PublishProperties()
    props.__dict__.update(fields)
    return props, end


def unpack_publish(buffer: bytes) -> tuple[Properties, int]:
    """A PUBLISH's properties at the start of ``buffer`` and the bytes they took, as paho's
    ``Properties(PUBLISH).unpack`` returns them (or raises)."""
    try:
        return _parse(buffer)
    except (_Unusual, IndexError, UnicodeDecodeError, struct.error):
        return _original_unpack(Properties(PacketTypes.PUBLISH), buffer)


__all__ = ["PublishProperties", "unpack_publish"]
