"""Two fixes to paho-mqtt 2.x, applied when ``broker.session`` is imported. Both only stop
paho copying a received payload again and again; what it parses, returns and raises stays
the same (``tests/broker/test_paho_fixes.py`` checks both against the unpatched functions).

``Properties.unpack`` gets the whole rest of a packet (for a PUBLISH: the properties *and*
the payload) and strips what it parsed by slicing the ``bytes``, and its variable-byte-integer
decoder does the same a byte at a time. Every slice copies the rest of the packet: for an
89 KiB batch of meter readings, eight or more copies of the payload per message, which was
6% of ingest's CPU (py-spy, ``bench/ingest.py``). The fix hands ``unpack`` only the bytes
its properties occupy (their length is the variable byte integer in front of them); if that
fails (a malformed packet) paho parses the whole buffer as before, so what it parses,
returns and raises is unchanged.

``_packet.decode_publish`` splits topic, packet id and properties off the front of a PUBLISH
with ``struct.unpack`` formats that copy the rest each time (three copies of the payload).
The fix reads the same fields through a memoryview (the properties with
:func:`broker.fast_properties.unpack_publish`, which gives paho's objects in one pass) and
hands the payload on as a view of the packet (``MqttSession`` copies it once for its handlers, or not at all for a session made
with ``payload_views``); on any error it calls the original, which raises what it always
raised.

``_packet.decode_puback`` builds a ``ReasonCode`` and a ``Properties`` for every PUBACK (one
per published reading at the edge). A plain success PUBACK (packet id only, MQTT 5) now gets
a shared success reason code and empty properties; any other PUBACK goes to paho.
"""

from __future__ import annotations

from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MalformedPacket, Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker.fast_properties import PublishProperties, unpack_publish

_original_unpack = Properties.unpack
_original_decode_publish = _packet.decode_publish
_original_decode_puback = _packet.decode_puback
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)


def _length_prefix(buffer: bytes) -> int:
    """Bytes taken by the variable byte integer at the start of ``buffer`` and what it counts."""
    value = 0
    for index in range(min(4, len(buffer))):
        digit = buffer[index]
        value += (digit & 127) << (7 * index)
        if not digit & 128:
            return index + 1 + value
    raise MalformedPacket("malformed Variable Byte Integer")


def _bounded_unpack(self: Properties, buffer: bytes) -> tuple[Properties, int]:
    try:
        return _original_unpack(self, buffer[:_length_prefix(buffer)])
    except Exception:  # noqa: BLE001 - malformed: paho on the whole buffer decides, as unpatched
        return _original_unpack(self, buffer)


def _decode_publish(header: int, packet: bytes | bytearray | memoryview, protocol: MQTTProtocolVersion) -> _packet.PublishPacket:
    try:
        view = memoryview(packet)
        qos = (header & 0x06) >> 1
        if len(view) < 2:
            raise ValueError("short")
        end = 2 + int.from_bytes(view[:2], "big")
        if end > len(view):
            raise ValueError("short")
        topic = bytes(view[2:end])
        if protocol != MQTTProtocolVersion.MQTTv5 and not topic:
            raise ValueError("empty topic")
        mid = 0
        if qos > 0:
            if end + 2 > len(view):
                raise ValueError("short")
            mid = int.from_bytes(view[end:end + 2], "big")
            end += 2
        properties = None
        if protocol == MQTTProtocolVersion.MQTTv5:
            rest = view[end:]
            # Bounded to the properties' own bytes; parsed in one pass (paho's parser for anything unusual).
            properties, used = unpack_publish(bytes(rest[:_length_prefix(rest)]))
            end += used
        # The payload is a view of the packet, not a copy: MqttSession copies it for its
        # handlers unless they asked for views (see payload_views there).
        return _packet.PublishPacket(dup=bool(header & 0x08), qos=qos, retain=bool(header & 0x01), topic=topic,
                                     mid=mid, properties=properties, payload=view[end:])
    except Exception:  # noqa: BLE001 - malformed: the original decides, and raises as it always did
        return _original_decode_publish(header, bytearray(packet), protocol)


def _decode_puback(header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion) -> _packet.PubackPacket:
    if protocol == MQTTProtocolVersion.MQTTv5 and len(packet) == 2:
        # Success with no reason code or properties: nothing to parse (the reason code is
        # never changed by its receivers, so one serves every PUBACK).
        return _packet.PubackPacket(mid=(packet[0] << 8) | packet[1], reason=_PUBACK_SUCCESS,
                                    properties=PublishProperties(PacketTypes.PUBACK))
    return _original_decode_puback(header, packet, protocol)


def apply() -> None:
    """Install the fixes (idempotent)."""
    if getattr(Properties.unpack, "__name__", "") != _bounded_unpack.__name__:
        Properties.unpack = _bounded_unpack  # type: ignore[method-assign]
    _packet.decode_publish = _decode_publish
    _packet.decode_puback = _decode_puback
