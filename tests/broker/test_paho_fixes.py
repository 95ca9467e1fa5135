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
mqtt_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
publish_properties = st.builds(
    lambda user, expiry, correlation, topic: (user, expiry, correlation, topic),
    st.lists(st.tuples(mqtt_text, mqtt_text), max_size=3),
    st.none() | st.integers(0, 2**32 - 1), st.none() | st.binary(max_size=16), st.none() | mqtt_text.filter(bool))


@settings(max_examples=200, deadline=None)
@given(spec=publish_properties, payload=st.binary(max_size=300))
def test_well_formed_properties_parse_the_same(spec: tuple, payload: bytes) -> None:
    user, expiry, correlation, topic = spec
    props = Properties(PacketTypes.PUBLISH)
    if user:
        props.UserProperty = user
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if correlation is not None:
        props.CorrelationData = correlation
    if topic is not None:
        props.ResponseTopic = topic
    buffer = props.pack() + payload
    assert _outcome(paho_fixes._bounded_unpack, buffer) == _outcome(paho_fixes._original_unpack, buffer)  # noqa: SLF001
    assert _outcome(paho_fixes._bounded_unpack, buffer)[0] == "parsed"  # noqa: SLF001


@settings(max_examples=300, deadline=None)
@given(buffer=st.binary(max_size=40))
def test_any_bytes_give_the_same_result_or_error(buffer: bytes) -> None:
    assert _outcome(paho_fixes._bounded_unpack, buffer) == _outcome(paho_fixes._original_unpack, buffer)  # noqa: SLF001
