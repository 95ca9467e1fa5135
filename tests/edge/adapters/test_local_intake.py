"""The concentrator's local listener: an external adapter's readings go through the outbox to
the store once, confirmed to the adapter only after the outbox commit; bad payloads are refused
with a reason code and counted in the status; a meter not the adapter's is refused by the broker."""

from __future__ import annotations

import asyncio
import json

import pytest

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeliveryAck, MeterReading
from broker.session import MqttSession, NegativeAckError, publish_properties
from edge.concentrator import Concentrator
from edge.config import load_config
from tests.cloud.core.harness import Inbox, session_for
from tests.edge.adapters.conftest import PASSWORDS
from tests.edge.concentrator.conftest import stored
from tests.factories import payload
from tests.fixtures.mosquitto import CLOUD
from tests.fixtures.waiting import poll_until, wait_for


class Adapter:
    """A bare external adapter: publishes with its sequence numbers and collects confirmations."""

    def __init__(self, server, adapter_id: str) -> None:
        self.id = adapter_id
        self.session = MqttSession(client_id=f"test-{adapter_id}", host=server.host, port=server.port,
                                   username=adapter_id, password=PASSWORDS[adapter_id])
        self.acks: list[DeliveryAck] = []

    async def __aenter__(self) -> Adapter:
        await self.session.connect()

        async def on_ack(message) -> None:
            self.acks.append(DeliveryAck.model_validate_json(message.payload))

        await self.session.subscribe(topics.adapter_ack(self.id), on_ack)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def publish(self, meter: str, body: bytes, seq: int, *, kind: str = "meterReading",
                      response_topic: str | None = None) -> None:
        props = publish_properties(response_topic=response_topic or topics.adapter_ack(self.id),
                                   user_properties={SEQ_PROPERTY: str(seq)})
        await self.session.publish(topics.local_meter_message(meter, kind), body, qos=1, properties=props)

    def confirmed(self) -> set[int]:
        return {seq for ack in self.acks for seq in ack.expand()}

    def refused(self) -> dict[int, int]:
        return {r.seq: r.reason_code for ack in self.acks for r in ack.refused}


async def test_external_adapter_readings_stored_once_bad_input_refused(local_broker, mosquitto, influxd, influx_db,
                                                                       ingest):
    config_path, local = local_broker
    concentrator = Concentrator.from_config(load_config(config_path))
    stop = asyncio.Event()
    task = asyncio.create_task(concentrator.run(stop), name="concentrator-under-test")
    try:
        assert concentrator.intake is not None
        async with Adapter(local, "cupboard") as cupboard, Adapter(local, "heat") as heat:
            for i in range(5):
                await cupboard.publish("meter-a", payload("meter-a", i), seq=i + 1)
            await cupboard.publish("gas-a", payload("gas-a", 0), seq=6)
            await heat.publish("meter-h", payload("meter-h", 0), seq=1)
            await wait_for(lambda: cupboard.confirmed() == {1, 2, 3, 4, 5, 6} and heat.confirmed() == {1},
                           what="the concentrator's confirmations")
            await wait_for(lambda: len(stored(influxd, influx_db, "meter-a")) == 5
                           and len(stored(influxd, influx_db, "gas-a")) == 1
                           and len(stored(influxd, influx_db, "meter-h")) == 1, what="readings stored")

            # A redelivery (the adapter did not hear the confirmation) is stored once.
            await cupboard.publish("meter-a", payload("meter-a", 0), seq=1)
            await wait_for(lambda: sum(ack.expand().count(1) for ack in cupboard.acks) == 2, what="second ack")

            # Bad input: answered with a reason code, counted in the status, never forwarded.
            await cupboard.publish("meter-a", b"{not json", seq=7)
            await cupboard.publish("meter-a", payload("gas-a", 3), seq=8)  # another meter's reading
            await cupboard.publish("meter-a", payload("meter-a", 9), seq=9, kind="somethingElse")
            await wait_for(lambda: cupboard.refused() == {7: 0x99, 8: 0x99, 9: 0x90}, what="refusals")
            # A Response Topic naming another adapter: refused, and that adapter hears nothing.
            await cupboard.publish("meter-a", b"{}", seq=1, response_topic=topics.adapter_ack("heat"))
            await wait_for(lambda: concentrator.intake.refused.get("0x87") == 1, what="the spoofed reply refused")
            status = concentrator._status("ONLINE")
            assert status.local_intake is not None
            assert status.local_intake.refused == {"0x99": 2, "0x90": 1, "0x87": 1}
            assert status.local_intake.accepted == 8
            assert "(adapter/heat/ack)" in (status.local_intake.last_refused or "")
            assert heat.refused() == {} and heat.confirmed() == {1}

            # The broker refuses a publish for a meter that is not the adapter's (0x87).
            with pytest.raises(NegativeAckError) as refused:
                await cupboard.publish("meter-h", payload("meter-h", 1), seq=10)
            assert refused.value.reason_code == 0x87

        assert len(stored(influxd, influx_db, "meter-a")) == 5
        assert len(stored(influxd, influx_db, "meter-h")) == 1
        assert await ingest.dead_letters.count() == 0  # nothing bad reached the cloud
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def reference_payload(meter: str, n: int, **changes: object) -> bytes:
    """What the OMDP reference SmartMeterAdapter publishes: flat, short OBIS names, strings for numbers."""
    document = {"readingTime": f"2026-06-01T10:{n:02d}:00Z", "meterId": meter,
                "propertyValues": [{"propertyName": "1-0:1.8.1", "numericalValue": f"{1000 + n}.5", "unit": "kWh"},
                                   {"propertyName": "1.7.0", "numericalValue": "0.133", "unit": "kW"}]}
    document.update(changes)
    return json.dumps(document).encode()


async def test_reference_adapter_payload_forwarded_once_malformed_refused(local_broker, mosquitto, influxd,
                                                                          influx_db, ingest):
    """The reference adapter's own shape, on its own topic (``readings``), with no sequence number
    and no Response Topic: read into a MeterReading, committed to the outbox before the concentrator
    acknowledges it to the local broker, forwarded and stored once however often it is sent; a
    malformed one refused with 0x99 and the reason, counted in the status, never forwarded."""
    config_path, local = local_broker
    concentrator = Concentrator.from_config(load_config(config_path))
    stop = asyncio.Event()
    task = asyncio.create_task(concentrator.run(stop), name="concentrator-under-test")
    adapter = MqttSession(client_id="omdp-reference-adapter", host=local.host, port=local.port,
                          username="cupboard", password=PASSWORDS["cupboard"])
    cloud, forwarded = session_for(mosquitto, CLOUD.username), Inbox()
    try:
        assert concentrator.intake is not None
        await cloud.connect()
        await cloud.subscribe(topics.concentrator_meter_message("conc-1", "meter-a", "meterReading"),
                              forwarded.handler)
        await adapter.connect()
        topic = topics.local_meter_message("meter-a", "readings")
        assert topic == "smartMeterMessage/meter-a/readings"
        intake = concentrator.intake

        async def first() -> int:
            # Until the concentrator's subscription is in place (its first connection: later its
            # durable session holds what arrives), sent again: the copies are stored once.
            await adapter.publish(topic, reference_payload("meter-a", 0), qos=1)
            return intake.accepted

        await poll_until(first, lambda accepted: accepted >= 1, what="the concentrator subscribed",
                         interval=0.2)
        for n in (1, 2, 0, 1, 2):  # the last three sent again, as after the reference adapter reconnects
            await adapter.publish(topic, reference_payload("meter-a", n), qos=1)
        await wait_for(lambda: len(stored(influxd, influx_db, "meter-a")) == 3, what="reference readings stored")

        bad = {  # each refused with the reason, whole
            "readingTime '2026-06-01T10:09:00' has no time zone": reference_payload(
                "meter-a", 9, readingTime="2026-06-01T10:09:00"),
            "numericalValue 'lots' is not a number": reference_payload("meter-a", 9, propertyValues=[
                {"propertyName": "1.8.1", "numericalValue": "lots", "unit": "kWh"}]),
            "'P+' is not an OBIS code": reference_payload("meter-a", 9, propertyValues=[
                {"propertyName": "P+", "numericalValue": "1", "unit": "kWh"}]),
            "meterId 'gas-a' does not match the topic's meter 'meter-a'": reference_payload("gas-a", 9),
        }
        for n, (reason, body) in enumerate(bad.items()):
            await adapter.publish(topic, body, qos=1)
            await wait_for(lambda n=n: concentrator.intake.refused.get("0x99") == n + 1, what="a refusal")
            assert "OMDP reference payload: " in (concentrator.intake.last_refused or "")
            assert reason in (concentrator.intake.last_refused or "")

        rows = sorted(stored(influxd, influx_db, "meter-a", fields='"OBIS_1.8.1", "OBIS_1.7.0", "reading_id"'))
        assert [(row[0].minute, row[1], row[2]) for row in rows] == [(n, 1000.5 + n, 0.133) for n in range(3)]
        assert {row[3] for row in rows} == {str(MeterReading.derive_id("meter-a", row[0])) for row in rows}
        # Forwarded as Gridwire's MeterReading, the meter as its adapter config describes it.
        sent = [MeterReading.model_validate_json(m.payload) for ms in forwarded.messages.values() for m in ms]
        assert {r.reading_time.minute for r in sent} == {0, 1, 2}
        assert {r.meter_individual.physical_meter_type.physical_meter_class for r in sent} == {"ELECTRICITY"}
        status = concentrator._status("ONLINE")
        assert status.local_intake is not None and status.local_intake.refused == {"0x99": 4}
        assert await ingest.dead_letters.count() == 0  # nothing malformed reached the cloud
    finally:
        await adapter.close()
        await cloud.close()
        stop.set()
        await asyncio.wait_for(task, 20)
    assert len(stored(influxd, influx_db, "meter-a")) == 3
