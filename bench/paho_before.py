"""Puts back paho's own MQTT 5 properties (as before issues 12 and 14), for a before/after in
one run: ``bench/ingest.py --paho paho,light`` and ``bench/concentrator.py --paho paho,light``
start processes that call :func:`apply` first. The payload-copy fixes of
``broker/paho_fixes.py`` stay: only the properties path (built, packed, parsed) and the
PUBACK decoding go back to paho's."""

from __future__ import annotations

from typing import Any

from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class _PahoProperties:
    """``PublishProperties.of`` as paho's own class builds them."""

    @staticmethod
    def of(**values: Any) -> Properties:
        props = Properties(PacketTypes.PUBLISH)
        names = {"correlation_data": "CorrelationData", "response_topic": "ResponseTopic",
                 "message_expiry": "MessageExpiryInterval", "user_properties": "UserProperty",
                 "content_type": "ContentType"}
        for key, value in values.items():
            if value is not None:
                setattr(props, names[key], value)
        return props


def _paho_unpack(buffer: bytes) -> tuple[Properties, int]:
    return Properties(PacketTypes.PUBLISH).unpack(buffer)


def apply() -> None:
    import broker.session  # noqa: F401 - installs the fixes once; what follows undoes the properties ones
    from broker import mqtt_types, paho_fixes

    paho_fixes.unpack_publish = _paho_unpack  # type: ignore[assignment]
    _packet.decode_puback = paho_fixes._original_decode_puback  # noqa: SLF001
    mqtt_types.PublishProperties = _PahoProperties  # type: ignore[assignment,misc]
