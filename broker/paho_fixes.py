"""One fix to paho-mqtt 2.x, applied when ``broker.session`` is imported.

``Properties.unpack`` gets the whole rest of a packet (for a PUBLISH: the properties *and*
the payload) and strips what it parsed by slicing the ``bytes``, and its variable-byte-integer
decoder does the same a byte at a time. Every slice copies the rest of the packet: for an
89 KiB batch of meter readings, eight or more copies of the payload per message, which was
6% of ingest's CPU (py-spy, ``bench/ingest.py``). The fix hands ``unpack`` only the bytes
its properties occupy (their length is the variable byte integer in front of them); if that
fails (a malformed packet) paho parses the whole buffer as before, so what it parses,
returns and raises is unchanged. ``tests/broker/test_paho_fixes.py``
checks that against the unpatched function.
"""

from __future__ import annotations

from paho.mqtt.properties import MalformedPacket, Properties

_original_unpack = Properties.unpack


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


def apply() -> None:
    """Install the fix (idempotent)."""
    if getattr(Properties.unpack, "__name__", "") != _bounded_unpack.__name__:
        Properties.unpack = _bounded_unpack  # type: ignore[method-assign]
