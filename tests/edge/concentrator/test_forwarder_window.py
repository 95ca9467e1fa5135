"""The forwarder keeps at most ``max_unconfirmed`` messages with the broker; the rest wait in the outbox."""

from __future__ import annotations

import asyncio
import uuid

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeliveryAck
from broker.session import Message, MqttSession
from edge.forwarder import Forwarder
from edge.outbox import Outbox
from tests.e2e.conftest import wait_for


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
