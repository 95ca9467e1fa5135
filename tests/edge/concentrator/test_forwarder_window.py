"""The forwarder keeps at most ``max_unconfirmed`` messages with the broker; the rest wait in the
outbox. With live batches it holds live readings for a short window and sends them together."""

from __future__ import annotations

import asyncio
import uuid

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeliveryAck, Refusal, parse_meter_message
from broker.session import Message, MqttSession, NegativeAckError
from edge.forwarder import Forwarder, LiveBatch
from edge.outbox import Keep, Outbox
from tests.e2e.conftest import wait_for
from tests.factories import payload


def session(server, user: str) -> MqttSession:
    return MqttSession(client_id=f"{user}-{uuid.uuid4().hex[:6]}", host=server.host, port=server.port,
                       **server.credentials(user))


async def test_unconfirmed_messages_are_bounded_and_confirmations_let_more_through(tmp_path, mosquitto) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    topic = topics.concentrator_meter_message("conc-1", "m1", "meterReading")
    outbox.put_many([(topic, f'{{"n": {n}}}'.encode()) for n in range(30)])
    received: list[int] = []

    async def on_reading(message: Message) -> None:
        received.append(int(message.user_properties[SEQ_PROPERTY]))

    async with session(mosquitto, "gridwire-cloud") as cloud, session(mosquitto, "conc-1") as edge:
        await cloud.subscribe(topics.ALL_METER_MESSAGES, on_reading)
        forwarder = Forwarder(outbox=outbox, session=edge, concentrator_id="conc-1", window=4, max_unconfirmed=10,
                              confirm_timeout=600)
        await forwarder.start()
        runner = asyncio.create_task(forwarder.run())
        await wait_for(lambda: len(received) == 10, what="the first ten messages")
        await wait_for(lambda: forwarder.published == 10, what="their PUBACKs")
        assert forwarder._next_batch() == []  # noqa: SLF001 - full: nothing more goes out unconfirmed

        await cloud.publish(topics.concentrator_ack("conc-1"), DeliveryAck.of(received[:5]).to_wire(), qos=1)
        await wait_for(lambda: len(received) == 15, what="five more after five confirmations")
        await wait_for(lambda: forwarder.published == 15, what="their PUBACKs")
        assert forwarder._next_batch() == []  # noqa: SLF001
        assert sorted(received) == list(range(1, 16))

        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    forwarder.flush()
    assert len(outbox) == 25  # the confirmed five deleted, the rest kept
    outbox.close()


async def test_live_readings_go_in_batches_and_each_is_confirmed_or_refused_on_its_own(tmp_path, mosquitto) -> None:
    """Live readings are held for the window and sent as one message on the batch topic, their
    payloads as they are and their sequence numbers in gw-seq; historical readings and events keep
    their own topics. A reading leaves the outbox when its own seq is confirmed or refused, and one
    not confirmed goes again, in a later batch."""
    outbox = Outbox(tmp_path / "outbox.sqlite")
    live = [(topics.concentrator_meter_message("conc-1", f"m{n % 3}", "meterReading"), payload(f"m{n % 3}", n))
            for n in range(7)]
    outbox.put_many(live[:4])                                                                       # seqs 1-4
    outbox.put(topics.concentrator_meter_message("conc-1", "m0", "historicalMeterReading"), payload("m0", 99),
               keep=Keep.PROFILE)                                                                   # 5
    outbox.put(topics.concentrator_event("conc-1", "m0"), b'{"event": 1}', keep=Keep.EVENT)         # 6
    outbox.put_many(live[4:])                                                                       # 7-9
    batches: list[tuple[str, bytes]] = []
    singles: list[str] = []

    async def on_batch(message: Message) -> None:
        batches.append((message.user_properties[SEQ_PROPERTY], bytes(message.payload)))

    async def on_single(message: Message) -> None:
        singles.append(message.topic)

    async with session(mosquitto, "gridwire-cloud") as cloud, session(mosquitto, "conc-1") as edge:
        await cloud.subscribe(topics.ALL_READING_BATCHES, on_batch)
        await cloud.subscribe(topics.ALL_METER_MESSAGES, on_single)
        await cloud.subscribe(topics.ALL_DEVICE_EVENTS, on_single)
        forwarder = Forwarder(outbox=outbox, session=edge, concentrator_id="conc-1", confirm_timeout=1.0,
                              live_batch=LiveBatch(window_s=0.2, max_readings=5))
        await forwarder.start()
        runner = asyncio.create_task(forwarder.run())
        await wait_for(lambda: len(batches) == 2 and len(singles) == 2, what="two batches and two single messages")
        assert [seqs for seqs, _ in batches] == ["1-4,7", "8-9"]
        readings = [r for _, body in batches for r in parse_meter_message(body)]
        assert [r.model_dump_json(by_alias=True, exclude_none=True).encode() for r in readings] == [p for _, p in live]
        assert sorted(singles) == sorted([topics.concentrator_meter_message("conc-1", "m0", "historicalMeterReading"),
                                          topics.concentrator_event("conc-1", "m0")])

        ack = DeliveryAck.of([1, 2, 3, 4, 5, 6, 8], refused=[Refusal(seq=7, reason_code=0x99, reason="bad reading")])
        await cloud.publish(topics.concentrator_ack("conc-1"), ack.to_wire(), qos=1)
        await wait_for(lambda: len(batches) == 3, what="the unconfirmed reading sent again")
        assert batches[2][0] == "9"
        await cloud.publish(topics.concentrator_ack("conc-1"), DeliveryAck.of([9]).to_wire(), qos=1)
        await wait_for(lambda: forwarder.confirmed == 9, what="every message confirmed or refused")
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert len(outbox) == 0
    assert forwarder.rejected == [("seq 7", "0x99 bad reading")]
    assert forwarder.batches == 3
    outbox.close()


class RefusingBatches(MqttSession):
    """A real session on the real broker, except that the batch topic is refused as a broker whose
    ACLs predate it would refuse it (0x87; fault injection, not a stand-in)."""

    async def publish(self, topic, payload, *, qos=1, retain=False, properties=None) -> None:  # noqa: ANN001
        if topic == topics.concentrator_reading_batch("conc-1"):
            raise NegativeAckError(f"publish to {topic} refused", reason_code=0x87)
        await super().publish(topic, payload, qos=qos, retain=retain, properties=properties)


async def test_a_broker_that_refuses_the_batch_topic_gets_the_readings_per_meter(tmp_path, mosquitto, caplog) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox.put_many([(topics.concentrator_meter_message("conc-1", "m1", "meterReading"), payload("m1", n))
                     for n in range(4)])
    received: list[int] = []

    async def store_and_confirm(message: Message) -> None:
        seq = int(message.user_properties[SEQ_PROPERTY])
        received.append(seq)
        await cloud.publish(topics.concentrator_ack("conc-1"), DeliveryAck.of([seq]).to_wire(), qos=1)

    cloud = session(mosquitto, "gridwire-cloud")
    edge = RefusingBatches(client_id=f"conc-1-{uuid.uuid4().hex[:6]}", host=mosquitto.host, port=mosquitto.port,
                           **mosquitto.credentials("conc-1"))
    async with cloud, edge:
        await cloud.subscribe(topics.ALL_METER_MESSAGES, store_and_confirm)
        forwarder = Forwarder(outbox=outbox, session=edge, concentrator_id="conc-1", confirm_timeout=600,
                              live_batch=LiveBatch(window_s=0.05, max_readings=10))
        await forwarder.start()
        runner = asyncio.create_task(forwarder.run())
        await wait_for(lambda: forwarder.confirmed == 4, what="every reading confirmed, sent per meter")
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert sorted(received) == [1, 2, 3, 4]
    assert forwarder.rejected == [] and forwarder.batches == 0
    assert "refused the live batch topic" in caplog.text
    outbox.close()
