"""Whatever an adapter sends, the intake's handler never raises (the session would redeliver and
dead-letter it): a message is either taken, with readings of the topic's meter only, or refused
with one of the documented reason codes, and a refusal goes only to the meter's own adapter."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import topics
from broker.schemas import SEQ_PROPERTY, MeterReading
from broker.session import Message, MqttSession
from edge.local_intake import LocalIntake
from tests.factories import payload

OWNERS = {"meter-a": "cupboard", "gas-a": "cupboard", "meter-h": "heat"}
METERS = st.sampled_from([*OWNERS, "stranger", "", "a/b", "+"])
KINDS = st.sampled_from(["meterReading", "historicalMeterReading", "event", ""])
BODIES = st.one_of(st.binary(max_size=200), st.sampled_from([b"{}", b"[]", b"null", b'{"meterReadings": []}']),
                   st.builds(lambda m, i: payload(m, i), st.sampled_from(list(OWNERS)), st.integers(0, 50)))
REPLIES = st.sampled_from([None, "adapter/cupboard/ack", "adapter/heat/ack", "adapter/nobody/ack", "x/y"])
SEQS = st.sampled_from([None, "1", "x", "-3"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meter=METERS, kind=KINDS, body=BODIES, reply=REPLIES, seq=SEQS)
def test_every_message_is_taken_or_refused_with_a_reason_code(meter, kind, body, reply, seq):
    taken: list[list[MeterReading]] = []

    def submit(readings: list[MeterReading]) -> bool:
        taken.append(readings)
        return True

    intake = LocalIntake(session=MqttSession(client_id="t", host="127.0.0.1", port=1), owners=OWNERS,
                         submit=submit)
    topic = f"smartMeterMessage/{meter}/{kind}"
    message = Message(topic=topic, payload=body, qos=1, retain=False, response_topic=reply,
                      user_properties={SEQ_PROPERTY: seq} if seq is not None else {})
    asyncio.run(intake._on_message(message))

    if taken:
        assert intake.accepted == 1 and not intake.refused
        assert all(r.meter_id == meter for r in taken[0])
        assert reply in (None, topics.adapter_ack(OWNERS[meter]))
    else:
        assert intake.accepted == 0 and sum(intake.refused.values()) == 1
        assert set(intake.refused) <= {"0x87", "0x90", "0x99"}
    for ack_topic, (_confirmed, refusals) in intake._acks.items():
        assert ack_topic == topics.adapter_ack(OWNERS[meter])  # the meter's own adapter only
        assert all(r.seq == int(seq) for r in refusals)
