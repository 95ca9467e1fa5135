"""The MQTT session against a real Mosquitto running the project's config."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from broker.errors import Unavailable
from broker.pki import CertificateAuthority
from broker.session import Backoff, ConnectError, Message, MqttSession, NegativeAckError, TlsSettings, publish_properties
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.waiting import wait_for


def session(server: MosquittoServer, user: str, **kwargs) -> MqttSession:
    client_id = kwargs.pop("client_id", f"{user}-{uuid.uuid4().hex[:8]}")
    return MqttSession(client_id=client_id, host=server.host, port=server.port, **server.credentials(user), **kwargs)


async def collect_until(received: list, count: int, timeout: float = 20.0) -> None:
    await wait_for(lambda: len(received) >= count, timeout=timeout, interval=0.01, what=f"{count} messages")


@pytest.mark.parametrize("qos", [0, 1])
async def test_publish_returns_after_puback_and_subscriber_receives_properties(shared_mosquitto, qos: int):
    received: list[Message] = []

    async def handler(msg: Message) -> None:
        received.append(msg)

    topic = f"concentrator/conc-1/smartMeterMessage/m-{uuid.uuid4().hex[:6]}/meterReading"
    async with session(shared_mosquitto, "gridwire-cloud") as sub, session(shared_mosquitto, "conc-1") as pub:
        await sub.subscribe(topic, handler, qos=qos)
        props = publish_properties(correlation_data=b"abc", response_topic="concentrator/conc-1/response",
                                   user_properties={"org": "org-a"}, message_expiry=30)
        await pub.publish(topic, b"hello", properties=props, qos=qos)
        await collect_until(received, 1)
    msg = received[0]
    assert (msg.topic, msg.qos, msg.retain) == (topic, qos, False)
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


async def assert_nothing_queued(broker, client_id: str, topic: str) -> None:
    """The durable session ``client_id`` holds nothing more on ``topic``: resumed, it gets only a
    marker published after it is back."""
    again: list[bytes] = []

    async def record(msg: Message) -> None:
        again.append(msg.payload)

    resumed = session(broker, "gridwire-cloud", client_id=client_id)
    resumed.route(topic, record)
    async with resumed:
        async with session(broker, "conc-1") as pub:
            await pub.publish(topic, b"marker")
        await wait_for(lambda: b"marker" in again, what="the marker", timeout=30)
    assert again == [b"marker"]


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
    sub = session(shared_mosquitto, "gridwire-cloud", client_id=client_id)
    sub.route(topic, handler)  # the broker kept the subscription: routed before the queued messages arrive
    async with sub:
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
        await wait_for(lambda: len(got["a"]) + len(got["b"]) == 200, timeout=20, what="all 200 messages")
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


async def test_a_stalled_tls_handshake_does_not_stop_the_rest_of_the_loop(tmp_path):
    """A broker that accepts TCP but never answers the TLS ClientHello (a slow WAN at its worst):
    while the session waits for the handshake, another coroutine on the loop keeps running."""
    ca = CertificateAuthority.create(tmp_path / "pki")
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()
        await reader.read()  # never answers; returns when the client goes

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    order: list[str] = []
    ticks = 0

    async def meter_reader() -> None:
        nonlocal ticks
        await accepted.wait()  # the session is inside its handshake now
        for _ in range(50):
            await asyncio.sleep(0.001)  # what is tested: a reader keeps its schedule during the handshake
            ticks += 1
        order.append("reader ticked")
        for writer in held:  # only now end the handshake
            writer.close()

    reader = asyncio.create_task(meter_reader(), name="meter-reader")
    stalled = MqttSession(client_id="stalled", host="127.0.0.1", port=port,
                          tls=TlsSettings(ca_file=str(ca.cert_file)), connect_timeout=30)
    try:
        with pytest.raises(ConnectError):
            await stalled.connect()
        order.append("connect gave up")
    finally:
        await stalled.close()
        await asyncio.wait_for(reader, 30)
        server.close()
        await server.wait_closed()
    assert order == ["reader ticked", "connect gave up"]
    assert ticks == 50


async def test_a_message_its_handler_always_fails_on_is_dead_lettered_and_acknowledged(shared_mosquitto):
    topic = f"concentrator/conc-1/smartMeterMessage/poison-{uuid.uuid4().hex[:6]}/meterReading"
    client_id = f"cloud-{uuid.uuid4().hex[:6]}"
    handled: list[bytes] = []
    sink_calls: list[tuple[bytes, str]] = []
    dead: list[tuple[bytes, str]] = []

    async def handler(msg: Message) -> None:
        handled.append(msg.payload)
        if msg.payload == b"poison":
            raise RuntimeError("cannot handle this one")

    async def dead_letter(msg: Message, reason: str) -> None:
        sink_calls.append((msg.payload, reason))
        if len(sink_calls) == 1:
            raise OSError("dead-letter store down")  # the message must stay, and come again
        dead.append((msg.payload, reason))

    fast = Backoff(initial=0.02, maximum=0.1)
    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id, max_deliveries=3,
                       dead_letter=dead_letter, backoff=fast) as sub:
        await sub.subscribe(topic, handler)
        async with session(shared_mosquitto, "conc-1") as pub:
            await pub.publish(topic, b"poison")
            await wait_for(lambda: dead, what="the poison dead-lettered", timeout=30)
            await pub.publish(topic, b"good")
            await wait_for(lambda: b"good" in handled, what="the next message handled", timeout=30)
        connections = sub.connections
    # Three failed deliveries, then the sink failed (the fourth came again) and took it.
    assert handled.count(b"poison") == 4
    assert [payload for payload, _ in sink_calls] == [b"poison", b"poison"]
    assert dead[0][0] == b"poison" and "4 deliveries" in dead[0][1] and "cannot handle this one" in dead[0][1]
    assert connections == 4 and sub.dead_lettered == 1

    # Acknowledged: the durable session holds nothing more for it.
    await assert_nothing_queued(shared_mosquitto, client_id, topic)


async def test_a_message_failing_for_want_of_a_collaborator_waits_and_is_never_dead_lettered(shared_mosquitto):
    """Failures the session calls transient (Unavailable, OSError) do not count towards the cap:
    the message comes again past max_deliveries and is handled once the collaborator is back.
    A failure of its own after them counts from one."""
    topic = f"concentrator/conc-1/smartMeterMessage/waits-{uuid.uuid4().hex[:6]}/meterReading"
    # With a cap of 2, the one failure of its own (the fourth delivery) is its first counted.
    outcomes = iter([Unavailable("database down"), ConnectionRefusedError("refused"), Unavailable("still down"),
                     RuntimeError("its own fault"), None])
    dead: list[str] = []
    done = asyncio.Event()

    async def handler(msg: Message) -> None:
        failure = next(outcomes)
        if failure is not None:
            raise failure
        done.set()

    async def dead_letter(msg: Message, reason: str) -> None:
        dead.append(reason)

    async with session(shared_mosquitto, "gridwire-cloud", client_id=f"waits-{uuid.uuid4().hex[:6]}",
                       max_deliveries=2, dead_letter=dead_letter, backoff=Backoff(initial=0.02, maximum=0.1)) as sub:
        await sub.subscribe(topic, handler)
        async with session(shared_mosquitto, "conc-1") as pub:
            await pub.publish(topic, b"reading")
        await asyncio.wait_for(done.wait(), 30)
        assert sub.connections == 5 and sub.dead_lettered == 0 and dead == []


async def test_every_task_the_session_runs_is_named_and_ended_by_close(shared_mosquitto):
    topic = f"concentrator/conc-1/smartMeterMessage/named-{uuid.uuid4().hex[:6]}/meterReading"
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(msg: Message) -> None:
        started.set()
        await release.wait()

    test_task = asyncio.current_task()
    before = asyncio.all_tasks()
    sub = session(shared_mosquitto, "gridwire-cloud", client_id=f"named-{uuid.uuid4().hex[:6]}")
    await sub.connect()
    await sub.subscribe(topic, slow)
    sub._force_reconnect()  # noqa: SLF001 - a reconnect starts its task and the resubscriptions
    assert await asyncio.wait_for(sub.wait_connection(1), 20) == 2
    async with session(shared_mosquitto, "conc-1") as pub:
        await pub.publish(topic, b"x")
    await asyncio.wait_for(started.wait(), 20)
    running = [t for t in asyncio.all_tasks() - before if t is not test_task]
    assert running and all(t.get_name().startswith("mqtt-") and t.get_name().endswith(sub.client_id)
                           for t in running), [t.get_name() for t in running]
    assert any(t.get_name().startswith("mqtt-handle") for t in running)
    await sub.close()
    assert all(t.done() for t in running)


async def test_what_a_restarted_durable_session_gets_before_it_subscribes_waits_for_its_handler(shared_mosquitto):
    """A restarted process subscribes after connecting; the broker sends its backlog right after
    CONNACK. Those messages wait for the handler instead of being acknowledged and dropped."""
    client_id = f"restarted-{uuid.uuid4().hex[:6]}"
    topic = f"concentrator/conc-1/smartMeterMessage/restart-{uuid.uuid4().hex[:6]}/meterReading"
    received: list[bytes] = []

    async def handler(msg: Message) -> None:
        received.append(msg.payload)

    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id) as sub:
        await sub.subscribe(topic, handler)
    async with session(shared_mosquitto, "conc-1") as pub:
        await asyncio.gather(*(pub.publish(topic, str(i).encode()) for i in range(200)))
    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id) as sub:
        await wait_for(lambda: len(sub._unrouted) > 0, timeout=10, what="the backlog to arrive")  # noqa: SLF001
        await sub.subscribe(topic, handler)
        await collect_until(received, 200)
    assert sorted(int(p) for p in received) == list(range(200))


async def test_a_message_no_handler_takes_is_dropped_after_the_grace(shared_mosquitto, monkeypatch):
    from broker import session as session_module

    monkeypatch.setattr(session_module, "UNROUTED_GRACE", 0.2)
    client_id = f"unrouted-{uuid.uuid4().hex[:6]}"
    topic = f"concentrator/conc-1/smartMeterMessage/unrouted-{uuid.uuid4().hex[:6]}/meterReading"
    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id) as sub:
        await sub.subscribe(topic, lambda _m: asyncio.sleep(0))
    async with session(shared_mosquitto, "conc-1") as pub:
        await pub.publish(topic, b"nobody")
    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id) as sub:
        await wait_for(lambda: len(sub._unrouted) > 0, timeout=10, what="the message")  # noqa: SLF001
        await wait_for(lambda: not sub._unrouted, timeout=10, what="the grace to pass")  # noqa: SLF001
    received: list[bytes] = []

    async def handler(msg: Message) -> None:
        received.append(msg.payload)

    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id) as sub:
        await sub.subscribe(topic, handler)
        async with session(shared_mosquitto, "conc-1") as pub:
            await pub.publish(topic, b"marker")
        await collect_until(received, 1)
    assert received == [b"marker"]  # acknowledged when dropped: not sent again


async def test_a_now_handler_takes_messages_without_a_task_and_they_are_acknowledged_when_settled(
        shared_mosquitto):
    """Messages a ``now`` handler takes are acknowledged only when it settles them; one settled
    with a failure is redelivered; one it declines goes to the subscription's handler."""
    topic = f"concentrator/conc-1/smartMeterMessage/now-{uuid.uuid4().hex[:6]}/meterReading"
    client_id = f"cloud-{uuid.uuid4().hex[:6]}"
    taken: list[tuple[bytes, object]] = []
    handled: list[bytes] = []

    def now(msg: Message, settle) -> bool:
        if msg.payload == b"decline":
            return False
        taken.append((msg.payload, settle))
        return True

    async def handler(msg: Message) -> None:
        handled.append(msg.payload)

    fast = Backoff(initial=0.02, maximum=0.1)
    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id, backoff=fast) as sub:
        await sub.subscribe(topic, handler, now=now)
        async with session(shared_mosquitto, "conc-1") as pub:
            for payload in (b"kept", b"failed", b"decline", b"held"):
                await pub.publish(topic, payload)
            await wait_for(lambda: len(taken) == 3 and handled == [b"decline"], what="three taken, one handled")
            assert [payload for payload, _ in taken] == [b"kept", b"failed", b"held"]
            assert not sub._handler_tasks and sub.handling == 3  # no task per taken message
            taken[0][1](None)
            # A round trip through the broker: the PUBACK queued before it is on the wire.
            await pub.publish(topic, b"next")
            await wait_for(lambda: len(taken) == 4, what="the next message taken")
            taken[1][1](RuntimeError("store refused it"))  # redelivered on a new connection
            await wait_for(lambda: sub.connections == 2 and len(taken) == 7, what="the unsettled redelivered")
        assert sorted(payload for payload, _ in taken[4:]) == [b"failed", b"held", b"next"]
        assert handled == [b"decline"]
        for _payload, settle in taken[2:]:  # the first connection's too: that connection is gone
            settle(None)
        assert sub.handling == 0
        await sub.drain(timeout=1)

    # Acknowledged: the durable session holds nothing more.
    await assert_nothing_queued(shared_mosquitto, client_id, topic)


async def test_a_route_offers_the_backlog_after_connack_to_its_now_handler(shared_mosquitto):
    """``route(..., now=...)`` as ``subscribe(..., now=...)``: what the broker sends right after
    CONNACK (queued while the durable session was away) is taken without a task, and is
    acknowledged once settled."""
    client_id = f"routed-{uuid.uuid4().hex[:6]}"
    topic = f"concentrator/conc-1/smartMeterMessage/route-{uuid.uuid4().hex[:6]}/meterReading"
    taken: list[bytes] = []
    handled: list[bytes] = []

    def now(msg: Message, settle) -> bool:
        taken.append(msg.payload)
        settle(None)
        return True

    async def handler(msg: Message) -> None:
        handled.append(msg.payload)

    async with session(shared_mosquitto, "gridwire-cloud", client_id=client_id) as sub:
        await sub.subscribe(topic, handler)
    async with session(shared_mosquitto, "conc-1") as pub:
        await asyncio.gather(*(pub.publish(topic, str(i).encode()) for i in range(50)))
    back = session(shared_mosquitto, "gridwire-cloud", client_id=client_id)
    back.route(topic, handler, now=now)
    async with back:
        await collect_until(taken, 50)
        assert not back._handler_tasks and back.handling == 0  # noqa: SLF001 - no task per message
    assert sorted(int(p) for p in taken) == list(range(50))
    assert handled == []
    await assert_nothing_queued(shared_mosquitto, client_id, topic)
