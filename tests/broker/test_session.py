"""The MQTT session against a real Mosquitto running the project's config."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from broker.session import ConnectError, MqttSession, NegativeAckError, Message, publish_properties
from tests.fixtures.mosquitto import MosquittoServer


def session(server: MosquittoServer, user: str, **kwargs) -> MqttSession:
    client_id = kwargs.pop("client_id", f"{user}-{uuid.uuid4().hex[:8]}")
    return MqttSession(client_id=client_id, host=server.host, port=server.port, **server.credentials(user), **kwargs)


async def collect_until(received: list, count: int, timeout: float = 20.0) -> None:
    async def wait() -> None:
        while len(received) < count:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(wait(), timeout)


async def test_publish_returns_after_puback_and_subscriber_receives_properties(shared_mosquitto):
    received: list[Message] = []

    async def handler(msg: Message) -> None:
        received.append(msg)

    topic = f"concentrator/conc-1/smartMeterMessage/m-{uuid.uuid4().hex[:6]}/meterReading"
    async with session(shared_mosquitto, "gridwire-cloud") as sub, session(shared_mosquitto, "conc-1") as pub:
        await sub.subscribe(topic, handler)
        props = publish_properties(correlation_data=b"abc", response_topic="concentrator/conc-1/response",
                                   user_properties={"org": "org-a"}, message_expiry=30)
        await pub.publish(topic, b"hello", properties=props)
        await collect_until(received, 1)
    msg = received[0]
    assert (msg.payload, msg.correlation_data, msg.response_topic) == (b"hello", b"abc", "concentrator/conc-1/response")
    assert msg.user_properties == {"org": "org-a"}
    assert msg.message_expiry is not None and 0 < msg.message_expiry <= 30


@pytest.mark.parametrize("views", [False, True])
async def test_payloads_are_bytes_or_views_of_the_packet_as_asked(shared_mosquitto, views: bool):
    received: list[Message] = []

    async def handler(msg: Message) -> None:
        received.append(msg)

    topic = f"concentrator/conc-1/smartMeterMessage/m-{uuid.uuid4().hex[:6]}/meterReading"
    payload = bytes(range(256)) * 400  # 100 KiB, larger than one socket read
    async with session(shared_mosquitto, "gridwire-cloud", payload_views=views) as sub, \
            session(shared_mosquitto, "conc-1") as pub:
        await sub.subscribe(topic, handler)
        await pub.publish(topic, payload, properties=publish_properties(user_properties={"gw-seq": "1"}))
        await pub.publish(topic, b"", properties=publish_properties(user_properties={"gw-seq": "2"}))
        await collect_until(received, 2)
    assert [type(m.payload) for m in received] == [memoryview if views else bytes] * 2
    assert [bytes(m.payload) for m in received] == [payload, b""]
    assert [m.user_properties for m in received] == [{"gw-seq": "1"}, {"gw-seq": "2"}]


async def test_wrong_password_is_a_connect_error(shared_mosquitto):
    bad = MqttSession(client_id="intruder", host=shared_mosquitto.host, port=shared_mosquitto.port,
                      username="conc-1", password="wrong")
    with pytest.raises(ConnectError, match="refused"):
        await bad.connect()
    await bad.close()


async def test_concentrator_cannot_publish_outside_its_subtree(shared_mosquitto):
    async with session(shared_mosquitto, "conc-1") as pub:
        with pytest.raises(NegativeAckError) as err:
            await pub.publish("concentrator/conc-2/status", b"spoof")
        assert err.value.reason_code == 0x87  # not authorized
        await pub.publish("concentrator/conc-1/status", b"mine")


async def test_failed_handler_leaves_message_unacked_and_it_is_redelivered(shared_mosquitto):
    attempts: list[bytes] = []
    done = asyncio.Event()

    async def flaky(msg: Message) -> None:
        attempts.append(msg.payload)
        if len(attempts) == 1:
            raise RuntimeError("transient failure in handler")
        done.set()

    topic = f"concentrator/conc-1/smartMeterMessage/redeliver-{uuid.uuid4().hex[:6]}/meterReading"
    async with session(shared_mosquitto, "gridwire-cloud", client_id=f"cloud-{uuid.uuid4().hex[:6]}") as sub:
        await sub.subscribe(topic, flaky)
        async with session(shared_mosquitto, "conc-1") as pub:
            await pub.publish(topic, b"only-once")
        await asyncio.wait_for(done.wait(), 20)
        assert sub.connections == 2
    assert attempts == [b"only-once", b"only-once"]


async def test_durable_session_queues_while_subscriber_is_away(shared_mosquitto):
    client_id = f"durable-{uuid.uuid4().hex[:6]}"
    topic = f"concentrator/conc-1/smartMeterMessage/durable-{uuid.uuid4().hex[:6]}/meterReading"
    received: list[bytes] = []

    async def handler(msg: Message) -> None:
        received.append(msg.payload)

    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id) as sub:
        await sub.subscribe(topic, handler)
    async with session(shared_mosquitto, "conc-1") as pub:
        await asyncio.gather(*(pub.publish(topic, str(i).encode()) for i in range(500)))
    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id) as sub:
        sub._subscriptions[topic] = (handler, 1)  # the broker kept the subscription; route to handler
        await collect_until(received, 500)
    assert sorted(int(p) for p in received) == list(range(500))


async def test_shared_subscription_splits_messages_between_members(shared_mosquitto):
    topic_base = f"concentrator/conc-1/smartMeterMessage/shared-{uuid.uuid4().hex[:6]}"
    group = f"g{uuid.uuid4().hex[:6]}"
    got: dict[str, list[bytes]] = {"a": [], "b": []}

    def handler_for(name: str):
        async def handler(msg: Message) -> None:
            got[name].append(msg.payload)
        return handler

    async with session(shared_mosquitto, "gridwire-cloud") as a, session(shared_mosquitto, "gridwire-cloud") as b:
        await a.subscribe(f"$share/{group}/{topic_base}/+", handler_for("a"))
        await b.subscribe(f"$share/{group}/{topic_base}/+", handler_for("b"))
        async with session(shared_mosquitto, "conc-1") as pub:
            await asyncio.gather(*(pub.publish(f"{topic_base}/meterReading", str(i).encode()) for i in range(200)))

        async def both() -> None:
            while len(got["a"]) + len(got["b"]) < 200:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(both(), 20)
    assert got["a"] and got["b"]
    assert sorted(int(p) for p in got["a"] + got["b"]) == list(range(200))


async def test_publishes_in_flight_survive_a_broker_restart(mosquitto):
    topic = "concentrator/conc-1/smartMeterMessage/restart/meterReading"
    received: set[bytes] = set()

    async def handler(msg: Message) -> None:
        received.add(msg.payload)

    async with session(mosquitto, "gridwire-cloud", client_id="restart-sub") as sub:
        await sub.subscribe(topic, handler)
        async with session(mosquitto, "conc-1", client_id="restart-pub") as pub:
            async def publish_all() -> None:
                for i in range(2000):
                    await pub.publish(topic, str(i).encode())

            publisher = asyncio.create_task(publish_all())
            await collect_until(received, 300)
            await asyncio.to_thread(mosquitto.restart)
            await asyncio.wait_for(publisher, 60)
            await collect_until(received, 2000, timeout=60)
    assert received == {str(i).encode() for i in range(2000)}
    assert pub.connections >= 2
