"""Puts back paho's own MQTT 5 properties (as before issue 14), for a before/after in one run:
``bench/ingest.py --paho paho,light`` and ``bench/concentrator.py --paho paho,light`` start
processes that call :func:`apply` first. The payload-copy fixes of ``broker/paho_fixes.py``
stay: only the properties path goes back to what it was."""

from __future__ import annotations

from typing import Any

from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import mqtt_properties, mqtt_types, paho_fixes


def _not_handled(*_args: Any) -> Any:
    raise mqtt_properties.NotHandled("paho's own properties (bench/paho_before.py)")


def _paho_publish_properties(values: dict[str, Any]) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def apply() -> None:
    import broker.session  # noqa: F401 - installs the fixes once; what follows overrides two of them

    paho_fixes.parse_publish = _not_handled  # type: ignore[assignment]
    _packet.decode_puback = paho_fixes._original_decode_puback  # noqa: SLF001
    mqtt_types.light_publish_properties = _paho_publish_properties  # type: ignore[assignment]
