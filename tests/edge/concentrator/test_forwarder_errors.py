"""A publish the session cannot take (an MqttError, not a refusal by the broker) is logged and
published again later; it is not left behind until the next start."""

from __future__ import annotations

import asyncio
import logging
import uuid

from paho.mqtt.properties import Properties

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeliveryAck
from broker.session import Message, MqttError, MqttSession
from edge.forwarder import Forwarder
from edge.outbox import Outbox
from tests.fixtures.waiting import wait_for


class FailingOnce(MqttSession):
    """A real session on the real broker, except that the first publish of one outbox
    sequence number fails as a session error does (fault injection, not a stand-in)."""

    def __init__(self, *, failing_seq: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._failing_seq = str(failing_seq)
        self.failed = 0

    async def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False,
                      properties: Properties | None = None) -> None:
        seq = dict(getattr(properties, "UserProperty", []) or []).get(SEQ_PROPERTY)
        if seq == self._failing_seq and not self.failed:
            self.failed += 1
            raise MqttError(f"publish to {topic} failed: out of memory")
        await super().publish(topic, payload, qos=qos, retain=retain, properties=properties)


async def test_a_message_the_session_could_not_take_is_logged_and_published_again(tmp_path, mosquitto, caplog):
    caplog.set_level(logging.WARNING, logger="edge.forwarder")
    outbox = Outbox(tmp_path / "outbox.sqlite")
    topic = topics.concentrator_meter_message("conc-1", "m1", "meterReading")
    outbox.put_many([(topic, f'{{"n": {n}}}'.encode()) for n in range(5)])
    received: list[int] = []
    cloud = MqttSession(client_id=f"cloud-{uuid.uuid4().hex[:6]}", host=mosquitto.host, port=mosquitto.port,
                        **mosquitto.credentials("gridwire-cloud"))
    edge = FailingOnce(failing_seq=3, client_id=f"conc-1-{uuid.uuid4().hex[:6]}", host=mosquitto.host,
                       port=mosquitto.port, **mosquitto.credentials("conc-1"))

    async def store_and_confirm(message: Message) -> None:
        seq = int(message.user_properties[SEQ_PROPERTY])
        received.append(seq)
        await cloud.publish(topics.concentrator_ack("conc-1"), DeliveryAck.of([seq]).to_wire(), qos=1)

    async with cloud, edge:
        await cloud.subscribe(topics.ALL_METER_MESSAGES, store_and_confirm)
        forwarder = Forwarder(outbox=outbox, session=edge, concentrator_id="conc-1", confirm_timeout=0.5)
        await forwarder.start()
        runner = asyncio.create_task(forwarder.run(), name="forwarder-under-test")
        try:
            await wait_for(lambda: forwarder.confirmed == 5, what="all five confirmed and deleted", timeout=30)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
    assert edge.failed == 1
    assert sorted(received) == [1, 2, 3, 4, 5]
    assert len(outbox) == 0
    warning = next(r for r in caplog.records if "could not publish outbox message" in r.getMessage())
    assert "3" in warning.getMessage() and topic in warning.getMessage() and "out of memory" in warning.getMessage()
    outbox.close()
