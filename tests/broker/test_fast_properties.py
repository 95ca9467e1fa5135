"""The fast PUBLISH properties pack and parse exactly as paho's own class does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import paho_fixes
from broker.fast_properties import PublishProperties, unpack_publish
from broker.session import publish_properties

# MQTT strings: UTF-8 without NUL or U+FEFF (paho refuses both, [MQTT-1.5.4-3]; surrogates cannot be encoded).
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff"), max_size=12)
spec = st.fixed_dictionaries({}, optional={
    "correlation_data": st.binary(max_size=20), "response_topic": st.from_regex(r"[a-z0-9/]{1,12}", fullmatch=True),
    "message_expiry": st.integers(1, 2**32 - 1), "user_properties": st.dictionaries(text, text, max_size=4),
    "content_type": text})


def _paho(values: dict) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    if "message_expiry" in values:
        props.MessageExpiryInterval = values["message_expiry"]
    if "content_type" in values:
        props.ContentType = values["content_type"]
    if "response_topic" in values:
        props.ResponseTopic = values["response_topic"]
    if "correlation_data" in values:
        props.CorrelationData = values["correlation_data"]
    if values.get("user_properties"):
        props.UserProperty = list(values["user_properties"].items())
    return props


def _outcome(unpack, buffer: bytes) -> tuple:
    try:
        props, used = unpack(buffer)
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return ("raised", type(exc).__name__)
    return ("parsed", used, sorted(props.json().items()))


def _paho_unpack(buffer: bytes) -> tuple[Properties, int]:
    return paho_fixes._original_unpack(Properties(PacketTypes.PUBLISH), buffer)  # noqa: SLF001


@settings(max_examples=300, deadline=None)
@given(values=spec)
def test_packs_paho_bytes_and_reads_as_paho(values: dict) -> None:
    fast = publish_properties(**values)
    if fast is None:
        assert not any(values.values())
        return
    assert isinstance(fast, PublishProperties)
    assert fast.pack() == _paho(values).pack()
    assert fast.json() == _paho(values).json()


@settings(max_examples=300, deadline=None)
@given(values=spec, payload=st.binary(max_size=50), format_indicator=st.none() | st.integers(0, 1),
       alias=st.none() | st.integers(1, 65535))
def test_parses_what_paho_parses(values: dict, payload: bytes, format_indicator: int | None,
                                 alias: int | None) -> None:
    props = _paho(values)
    if format_indicator is not None:
        props.PayloadFormatIndicator = format_indicator
    if alias is not None:
        props.TopicAlias = alias  # not one Gridwire sends: paho's parser takes it
    buffer = props.pack() + payload
    assert _outcome(unpack_publish, buffer) == _outcome(_paho_unpack, buffer)
    assert _outcome(unpack_publish, buffer)[0] == "parsed"


@settings(max_examples=500, deadline=None)
@given(buffer=st.binary(min_size=1, max_size=40))
def test_any_bytes_give_paho_result_or_error(buffer: bytes) -> None:
    assert _outcome(unpack_publish, buffer) == _outcome(_paho_unpack, buffer)


def test_properties_set_the_paho_way_pack_through_paho() -> None:
    props = PublishProperties()
    props.TopicAlias = 3
    props.UserProperty = ("a", "b")
    reference = Properties(PacketTypes.PUBLISH)
    reference.TopicAlias = 3
    reference.UserProperty = ("a", "b")
    assert props.pack() == reference.pack()
