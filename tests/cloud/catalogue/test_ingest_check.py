"""The catalogue check in the real ingest: readings it refuses are dead-lettered with the reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from broker import topics
from cloud.deadletters import DeadLetterStore
from cloud.ingest import IngestConsumer, WriteBatcher
from cloud.ingest.checks import catalogue_check
from cloud.store.influx import InfluxStore
from tests.factories import payload
from tests.fixtures.ingest import cloud_session, concentrator_session
from tests.fixtures.waiting import wait_for


@pytest.fixture
async def checked_ingest(mosquitto, influxd, influx_db, dead_letters: DeadLetterStore) -> AsyncIterator[IngestConsumer]:
    store = InfluxStore(url=influxd.url, database=influx_db)
    batcher = WriteBatcher(write=store.write_readings, max_readings=500, max_delay=0.05)
    session = cloud_session(mosquitto)
    consumer = IngestConsumer(session=session, batcher=batcher, dead_letters=dead_letters,
                              checks=(catalogue_check(),))
    stop = asyncio.Event()
    await session.connect()
    task = asyncio.create_task(consumer.run(stop), name="checked-ingest")
    await asyncio.wait_for(consumer.ready.wait(), 10)
    yield consumer
    stop.set()
    await task
    await session.close()
    await store.aclose()


def altered(meter: str, index: int, **first_value: object) -> bytes:
    document = json.loads(payload(meter, index))
    value = document["propertyValues"][0]
    for key, new in first_value.items():
        if key == "propertyId":
            value["operationalPropertyDefinition"]["propertyId"] = new
        else:
            value[key] = new
    return json.dumps(document).encode()


async def test_unknown_property_and_wrong_unit_are_dead_lettered_with_the_reason(
        checked_ingest: IngestConsumer, mosquitto, dead_letters: DeadLetterStore) -> None:
    topic = topics.concentrator_meter_message("conc-1", "meter-cat", "meterReading")
    cases = {
        altered("meter-cat", 1, propertyId="OBIS_99.9.9"): "unknown operational property 'OBIS_99.9.9'",
        altered("meter-cat", 2, unit="kW"): "unit 'kW' is not allowed for OBIS_1.8.1",
        altered("meter-cat", 3, numericalValue=None, textValue="1000"): "OBIS_1.8.1 takes a numericalValue",
    }
    async with concentrator_session(mosquitto) as pub:
        await pub.publish(topic, payload("meter-cat", 0))
        for body in cases:
            await pub.publish(topic, body)
        await pub.publish(topic, payload("meter-cat", 4))

    await wait_for(lambda: checked_ingest.dead_lettered == len(cases) and checked_ingest.stored_messages == 2,
                   timeout=30, interval=0.05, what="every message stored or dead-lettered")
    letters = await dead_letters.list()
    reasons = {letter.payload.encode(): letter.reason for letter in letters}
    assert set(reasons) == set(cases)
    for body, fragment in cases.items():
        assert "not in the OMDP catalogue" in reasons[body] and fragment in reasons[body]
