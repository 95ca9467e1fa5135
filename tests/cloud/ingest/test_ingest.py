"""Ingest against the real broker and influxd: stored once, bad input dead-lettered, outages survived."""

from __future__ import annotations

from tests.fixtures.waiting import wait_for

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import topics
from cloud.ingest.consumer import IngestConsumer
from tests.fixtures.influx import stored_rows
from tests.fixtures.ingest import concentrator_session
from tests.factories import payload, reading


def stored(influxd, db: str) -> dict[int, tuple[str, float]]:
    """Every stored point: time (ns) -> (reading id, OBIS_1.8.1), from influxd directly."""
    return {stamp: values for _, stamp, values in stored_rows(influxd, db, "reading_id", "OBIS_1.8.1")}


async def test_readings_are_stored_exactly_once_with_their_values(ingest, mosquitto, influxd, influx_db):
    async with concentrator_session(mosquitto) as pub:
        topic = topics.concentrator_meter_message("conc-1", "meter-a", "meterReading")
        await asyncio.gather(*(pub.publish(topic, payload("meter-a", i)) for i in range(300)))
        # A redelivery of the first hundred (as after a concentrator crash) must not duplicate.
        await asyncio.gather(*(pub.publish(topic, payload("meter-a", i)) for i in range(100)))
    await wait_for(lambda: ingest.consumer.stored_messages == 400)
    points = stored(influxd, influx_db)
    assert len(points) == 300
    expected = {int(reading("meter-a", i).reading_time.timestamp() * 1e9):
                (str(reading("meter-a", i).meter_reading_identifier), 1000 + i * 0.25) for i in range(300)}
    assert points == expected


async def test_bad_payloads_are_dead_lettered_with_reason_and_stream_continues(ingest, mosquitto, influxd, influx_db):
    good = topics.concentrator_meter_message("conc-1", "meter-b", "meterReading")
    bad_cases = {
        b"not json at all": "not JSON",
        b'{"meterReadingIdentifier": "x"}': "meterReadingIdentifier",
        json.dumps({**json.loads(payload("meter-b", 1)), "readingTime": "2026-01-05T00:15:00"}).encode():
            "timezone",
        payload("someone-else", 2): "does not match the topic's meter",
        json.dumps({**json.loads(payload("meter-b", 3)), "propertyValues": []}).encode(): "propertyValues",
    }
    async with concentrator_session(mosquitto) as pub:
        await pub.publish(good, payload("meter-b", 0))
        for bad in bad_cases:
            await pub.publish(good, bad)
        await pub.publish(good, payload("meter-b", 10))
    await wait_for(lambda: ingest.consumer.dead_lettered == len(bad_cases) and ingest.consumer.stored_messages == 2)
    letters = await ingest.dead_letters.list()
    assert len(letters) == len(bad_cases)
    reasons = {letter.payload.encode(): letter.reason for letter in letters}
    assert set(reasons) == set(bad_cases)
    for body, fragment in bad_cases.items():
        assert fragment in reasons[body]
    assert {letter.topic for letter in letters} == {good}
    assert len(stored(influxd, influx_db)) == 2


async def test_a_live_batch_is_stored_and_each_reading_confirmed_or_refused_on_its_own(
        ingest, mosquitto, influxd, influx_db):
    """concentrator/{cid}/batch/meterReading: readings of several meters in one message, gw-seq
    naming each one's outbox row. The good ones are stored and confirmed; a bad one is refused
    with 0x99 and its reason, and dead-lettered, without holding the others back; a batch that
    cannot be read at all is refused whole, with one dead letter."""
    from tests.cloud.ingest.rig import Concentrator

    no_zone = json.dumps({**json.loads(payload("meter-e", 2)), "readingTime": "2026-01-05T00:15:00"}).encode()
    good = [payload("meter-d", 0), payload("meter-e", 0), payload("meter-d", 1)]
    async with Concentrator(mosquitto) as conc:
        await conc.publish_batch([1, 2, 3, 5], b'{"meterReadings":[%s]}' % b",".join([*good[:2], no_zone, good[2]]))
        await conc.publish_batch([6, 7], b"not json")
        await conc.publish_batch([8], b'{"meterReadings":[%s]}' % b",".join(good[:2]))  # two readings, one seq
        await conc.wait_acked(lambda acked: acked >= {1, 2, 5} and len(conc.refused) == 4)
    assert conc.acked == {1, 2, 5}
    assert {seq: code for seq, (code, _) in conc.refused.items()} == {3: 0x99, 6: 0x99, 7: 0x99, 8: 0x99}
    assert "timezone" in conc.refused[3][1] and "not JSON" in conc.refused[6][1]
    assert "gw-seq names 1 messages, the batch holds 2 readings" in conc.refused[8][1]
    letters = await ingest.dead_letters.list()
    assert len(letters) == 3 and {letter.topic for letter in letters} == {topics.concentrator_reading_batch("conc-1")}
    kept = [json.loads(letter.payload) for letter in letters if letter.payload != "not json"]
    assert json.loads(no_zone) in kept  # the refused reading itself, not the whole batch
    assert ingest.consumer.stored_messages == 3
    times = {int(reading(meter, i).reading_time.timestamp() * 1e9) for meter, i in
             (("meter-d", 0), ("meter-e", 0), ("meter-d", 1))}
    assert {(meter, stamp) for meter, stamp, _ in stored_rows(influxd, influx_db, "reading_id")} == {
        ("meter-d", min(times)), ("meter-e", min(times)), ("meter-d", max(times))}


async def test_influxdb_outage_mid_stream_loses_nothing(ingest, mosquitto, influxd, influx_db):
    topic = topics.concentrator_meter_message("conc-1", "meter-c", "meterReading")
    async with concentrator_session(mosquitto) as pub:
        await asyncio.gather(*(pub.publish(topic, payload("meter-c", i)) for i in range(200)))
        await wait_for(lambda: ingest.consumer.stored_messages >= 200)
        await asyncio.to_thread(influxd.stop)
        await asyncio.gather(*(pub.publish(topic, payload("meter-c", i)) for i in range(200, 600)))
        await wait_for(lambda: ingest.batcher.retries >= 2)
        assert ingest.consumer.stored_messages == 200  # nothing acknowledged while the store is down
        await asyncio.to_thread(influxd.start)
    await wait_for(lambda: ingest.consumer.stored_messages == 600, timeout=60)
    assert len(stored(influxd, influx_db)) == 600
    assert ingest.consumer.dead_lettered == 0




@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                 max_leaves=20).map(lambda doc: json.dumps(doc).encode()),
))
def test_validation_refuses_arbitrary_payloads_with_a_value_error_only(body):
    from broker.session import Message

    consumer = IngestConsumer(session=None, batcher=None, dead_letters=None)  # type: ignore[arg-type]
    message = Message(topic="concentrator/c/smartMeterMessage/m/meterReading", payload=body, qos=1, retain=False)
    try:
        consumer._validate(message)  # noqa: SLF001
    except ValueError:
        pass
