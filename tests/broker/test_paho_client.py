"""The session's client reads PUBLISH packets itself: what it parses is what paho parses, and a
stream cut anywhere by the reads gives every packet once, in order."""

from __future__ import annotations

import socket

from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker import paho_fixes
from broker.paho_client import OffLoopClient, Received, _usual_publish
from broker.session import MqttSession  # noqa: F401 - importing the session applies paho_fixes

mqtt_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff"), max_size=8)
# What a PUBLISH may carry, each present or not: user properties alone (a concentrator's
# sequence number) are the case the client parses by itself.
publish_values = st.fixed_dictionaries({}, optional={
    "UserProperty": st.lists(st.tuples(mqtt_text, mqtt_text), min_size=1, max_size=3),
    "MessageExpiryInterval": st.integers(0, 2**32 - 1),
    "CorrelationData": st.binary(max_size=16),
    "ResponseTopic": mqtt_text.filter(bool),
    "TopicAlias": st.integers(1, 65535),
})


def _properties(values: dict) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def _seen(received: Received) -> tuple:
    """What the session reads of a received message (broker.session.MqttSession._message)."""
    props = received.properties
    user = received.user_property
    fields = {} if props is None else {k: v for k, v in props.json().items() if k != "UserProperty"}
    users = [user] if user else [tuple(p) for p in getattr(props, "UserProperty", None) or []]
    return (received.topic, received.mid, received.qos, received.retain, received.dup, bytes(received.payload),
            sorted(fields.items()), users)


def _paho(header: int, packet: bytes) -> tuple:
    result = paho_fixes._original_decode_publish(header, bytearray(packet), MQTTProtocolVersion.MQTTv5)  # noqa: SLF001
    return _seen(Received.of(result, bytes(result.topic).decode("utf-8")))


@settings(max_examples=300, deadline=None)
@given(header=st.sampled_from([0x30, 0x31, 0x32, 0x33, 0x38, 0x3A]), topic=mqtt_text.filter(bool),
       mid=st.integers(1, 65535), values=publish_values, payload=st.binary(max_size=100))
def test_a_publish_the_client_parses_itself_is_what_paho_parses(header: int, topic: str, mid: int, values: dict,
                                                                payload: bytes) -> None:
    encoded = topic.encode()
    qos = (header & 0x06) >> 1
    packet = (len(encoded).to_bytes(2, "big") + encoded + (mid.to_bytes(2, "big") if qos else b"")
              + _properties(values).pack() + payload)
    ours = _usual_publish(header, memoryview(packet))
    if ours is not None:  # None: paho's decode_publish decides, as for any unusual packet
        assert _seen(ours) == _paho(header, packet)
    if set(values) <= {"UserProperty"} and len(values.get("UserProperty", ())) <= 1:
        assert ours is not None and ours.properties is None  # the usual case: no properties object


@settings(max_examples=300, deadline=None)
@given(packet=st.binary(min_size=3, max_size=40))
def test_a_malformed_publish_is_left_to_paho(packet: bytes) -> None:
    """Anything the client's parse is unsure of is None or an error it hands over; what it does
    parse, paho parses the same."""
    try:
        ours = _usual_publish(0x32, memoryview(packet))
    except (IndexError, UnicodeDecodeError, ValueError):
        return
    if ours is not None:
        assert _seen(ours) == _paho(0x32, packet)


def _publish(topic: str, mid: int, payload: bytes) -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("gw-seq", str(mid))]
    body = len(topic).to_bytes(2, "big") + topic.encode() + mid.to_bytes(2, "big") + props.pack() + payload
    length, size = bytearray(), len(body)
    while True:
        size, digit = divmod(size, 128)
        length.append(digit | (0x80 if size else 0))
        if not size:
            return bytes([0x32]) + bytes(length) + body


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(1, 70_000), min_size=1, max_size=12))
def test_packets_cut_anywhere_by_the_reads_arrive_once_in_order(cuts: list[int]) -> None:
    """Real socket, the stream written in pieces of the given sizes; one packet over 64 KiB."""
    sizes = [10, 300, 90_000, 0, 5, 1_000, 70_000, 1]
    stream = b"".join(_publish(f"t/{n}", n + 1, bytes([n]) * size) for n, size in enumerate(sizes))
    client = OffLoopClient(callback_api_version=CallbackAPIVersion.VERSION2, client_id="reader",
                           protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
    got: list[Received] = []
    client.on_message = lambda _c, _u, message: got.append(message)
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        client._sock = ours  # noqa: SLF001 - the reads alone, no broker
        at = 0
        for cut in [*cuts, len(stream)]:
            piece = stream[at:at + cut]
            at += len(piece)
            theirs.sendall(piece)
            while client.loop_read() == 0 and _readable(ours):
                pass
            if at >= len(stream):
                break
    finally:
        client._sock = None  # noqa: SLF001
        ours.close()
        theirs.close()
    assert [(m.topic, m.mid, m.user_property, bytes(m.payload)) for m in got] == [
        (f"t/{n}", n + 1, ("gw-seq", str(n + 1)), bytes([n]) * size) for n, size in enumerate(sizes)]


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
