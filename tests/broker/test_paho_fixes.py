"""The paho-mqtt fix parses exactly what paho parses, without copying the payload behind."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import paho_fixes
from broker.session import MqttSession  # noqa: F401 - importing the session applies the fix


def _outcome(unpack, buffer: bytes) -> tuple:
    try:
        props, used = unpack(Properties(PacketTypes.PUBLISH), buffer)
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return ("raised", type(exc).__name__)
    return ("parsed", used, sorted(props.json().items()))


def test_the_fix_is_installed_by_the_session() -> None:
    assert Properties.unpack is paho_fixes._bounded_unpack  # noqa: SLF001


# MQTT strings: UTF-8 without NUL (paho refuses NUL, and surrogates cannot be encoded).
# Text paho packs and parses back: no surrogates, NUL or U+FEFF (paho refuses it, [MQTT-1.5.4-3]).
mqtt_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff"), max_size=8)
publish_properties = st.builds(
    lambda user, expiry, correlation, topic: (user, expiry, correlation, topic),
    st.lists(st.tuples(mqtt_text, mqtt_text), max_size=3),
    st.none() | st.integers(0, 2**32 - 1), st.none() | st.binary(max_size=16), st.none() | mqtt_text.filter(bool))


def _properties(spec: tuple) -> Properties:
    user, expiry, correlation, response = spec
    props = Properties(PacketTypes.PUBLISH)
    if user:
        props.UserProperty = user
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if correlation is not None:
        props.CorrelationData = correlation
    if response is not None:
        props.ResponseTopic = response
    return props


@settings(max_examples=200, deadline=None)
@given(spec=publish_properties, payload=st.binary(max_size=300))
def test_well_formed_properties_parse_the_same(spec: tuple, payload: bytes) -> None:
    buffer = _properties(spec).pack() + payload
    assert _outcome(paho_fixes._bounded_unpack, buffer) == _outcome(paho_fixes._original_unpack, buffer)  # noqa: SLF001
    assert _outcome(paho_fixes._bounded_unpack, buffer)[0] == "parsed"  # noqa: SLF001


@settings(max_examples=300, deadline=None)
@given(buffer=st.binary(max_size=40))
def test_any_bytes_give_the_same_result_or_error(buffer: bytes) -> None:
    assert _outcome(paho_fixes._bounded_unpack, buffer) == _outcome(paho_fixes._original_unpack, buffer)  # noqa: SLF001


def _publish_outcome(decode, header: int, packet: bytes, protocol) -> tuple:
    try:
        result = decode(header, packet, protocol)
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return ("raised", type(exc).__name__)
    props = sorted(result.properties.json().items()) if result.properties is not None else None
    return ("parsed", result.dup, result.qos, result.retain, bytes(result.topic), result.mid, props,
            bytes(result.payload))


def test_publish_decoding_is_installed_by_the_session() -> None:
    from paho.mqtt import _packet

    assert _packet.decode_publish is paho_fixes._decode_publish  # noqa: SLF001


@settings(max_examples=300, deadline=None)
@given(header=st.integers(0, 15), topic=st.binary(max_size=12), mid=st.integers(0, 65535),
       spec=publish_properties, payload=st.binary(max_size=200), v5=st.booleans())
def test_publish_packets_decode_the_same(header: int, topic: bytes, mid: int, spec: tuple, payload: bytes,
                                         v5: bool) -> None:
    from paho.mqtt.enums import MQTTProtocolVersion

    props = _properties(spec)
    qos = (header & 0x06) >> 1
    packet = (len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
              + (props.pack() if v5 else b"") + payload)
    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    fixed = _publish_outcome(paho_fixes._decode_publish, header, packet, protocol)  # noqa: SLF001
    assert fixed == _publish_outcome(paho_fixes._original_decode_publish, header, packet, protocol)  # noqa: SLF001
    assert fixed[0] == "parsed" or (not v5 and not topic)


@settings(max_examples=300, deadline=None)
@given(header=st.integers(0, 15), packet=st.binary(max_size=40), v5=st.booleans())
def test_malformed_publish_packets_fail_the_same(header: int, packet: bytes, v5: bool) -> None:
    from paho.mqtt.enums import MQTTProtocolVersion

    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    assert (_publish_outcome(paho_fixes._decode_publish, header, packet, protocol)  # noqa: SLF001
            == _publish_outcome(paho_fixes._original_decode_publish, header, packet, protocol))  # noqa: SLF001


# Every property a PUBLISH may carry, each present or not (paho builds the reference packet).
every_publish_property = st.fixed_dictionaries({}, optional={
    "UserProperty": st.lists(st.tuples(mqtt_text, mqtt_text), min_size=1, max_size=3),
    "MessageExpiryInterval": st.integers(0, 2**32 - 1),
    "CorrelationData": st.binary(max_size=16),
    "ResponseTopic": mqtt_text.filter(bool),
    "ContentType": mqtt_text,
    "PayloadFormatIndicator": st.integers(0, 1),
    "TopicAlias": st.integers(1, 65535),
    "SubscriptionIdentifier": st.lists(st.integers(1, 268_435_455), min_size=1, max_size=2),
})


def _paho_properties(values: dict) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


@settings(max_examples=300, deadline=None)
@given(values=every_publish_property, payload=st.binary(max_size=50), qos=st.integers(0, 2))
def test_every_publish_property_decodes_as_paho_decodes_it(values: dict, payload: bytes, qos: int) -> None:
    from paho.mqtt.enums import MQTTProtocolVersion

    packet = b"\x00\x01t" + (b"\x00\x07" if qos else b"") + _paho_properties(values).pack() + payload
    v5 = MQTTProtocolVersion.MQTTv5
    fixed = _publish_outcome(paho_fixes._decode_publish, qos << 1, packet, v5)  # noqa: SLF001
    assert fixed == _publish_outcome(paho_fixes._original_decode_publish, qos << 1, packet, v5)  # noqa: SLF001
    assert fixed[0] == "parsed"


@settings(max_examples=300, deadline=None)
@given(packet=st.binary(max_size=12), v5=st.booleans())
def test_pubacks_decode_as_paho_decodes_them(packet: bytes, v5: bool) -> None:
    from paho.mqtt import _packet
    from paho.mqtt.enums import MQTTProtocolVersion

    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311

    def outcome(decode) -> tuple:
        try:
            result = decode(0x40, packet, protocol)
        except Exception as exc:  # noqa: BLE001 - the error itself is compared
            return ("raised", type(exc).__name__)
        return ("parsed", result.mid, result.reason.value, result.reason.getName(), result.properties.json())

    assert _packet.decode_puback is paho_fixes._decode_puback  # noqa: SLF001
    assert outcome(paho_fixes._decode_puback) == outcome(paho_fixes._original_decode_puback)  # noqa: SLF001
