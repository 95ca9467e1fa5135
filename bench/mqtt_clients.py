"""paho-mqtt (driven by Gridwire's asyncio session) against gmqtt, through the project's Mosquitto.

Prints messages/s from one publisher to one subscriber at QoS 0 and QoS 1, and says for each
client whether it offers what Gridwire needs (per-message PUBACK for the edge outbox,
acknowledging a received message only after its handler succeeded). Run:
``.venv/bin/python bench/mqtt_clients.py [--count 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from broker.mosquitto_conf import Account
from broker.session import MqttSession
from gridwire.procs import free_port
from gridwire.services import LocalMosquitto

PAYLOAD = b"x" * 300
ACCOUNT = Account(username="bench", password="bench-pw", role="cloud")


async def gridwire_session(server: LocalMosquitto, count: int, qos: int) -> float:
    topic = f"bench/{uuid.uuid4().hex}"
    got = 0
    done = asyncio.Event()

    async def handler(_msg) -> None:
        nonlocal got
        got += 1
        if got == count:
            done.set()

    creds = server.credentials("bench")
    async with MqttSession(client_id=f"sub-{uuid.uuid4().hex[:6]}", host=server.host, port=server.port,
                           receive_maximum=1000, **creds) as sub, \
            MqttSession(client_id=f"pub-{uuid.uuid4().hex[:6]}", host=server.host, port=server.port,
                        max_inflight=500, **creds) as pub:
        await sub.subscribe(topic, handler, qos=qos)
        start = time.perf_counter()
        if qos == 0:
            for i in range(count):
                await pub.publish(topic, PAYLOAD, qos=0)
                if i % 500 == 0:
                    await asyncio.sleep(0)
        else:
            await asyncio.gather(*(pub.publish(topic, PAYLOAD, qos=1) for _ in range(count)))
        await asyncio.wait_for(done.wait(), 120)
        return count / (time.perf_counter() - start)


async def gmqtt_client(server: LocalMosquitto, count: int, qos: int) -> float:
    import gmqtt

    topic = f"bench/{uuid.uuid4().hex}"
    got = 0
    done = asyncio.Event()

    def on_message(_client, _topic, _payload, _qos, _props):
        nonlocal got
        got += 1
        if got == count:
            done.set()
        return 0

    sub = gmqtt.Client(f"gsub-{uuid.uuid4().hex[:6]}")
    pub = gmqtt.Client(f"gpub-{uuid.uuid4().hex[:6]}")
    for client in (sub, pub):
        client.set_auth_credentials("bench", "bench-pw")
    sub.on_message = on_message
    await sub.connect(server.host, server.port)
    await pub.connect(server.host, server.port)
    sub.subscribe(topic, qos=qos)
    await asyncio.sleep(0.2)
    start = time.perf_counter()
    sent = 0
    while sent < count:
        # gmqtt has no PUBACK notification: pace on what the subscriber received so the
        # publisher never exceeds the broker's receive maximum (gmqtt raises if it does).
        if qos == 1 and sent - got > 500:
            await asyncio.sleep(0)
            continue
        pub.publish(topic, PAYLOAD, qos=qos)
        sent += 1
        if sent % 200 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 120)
    rate = count / (time.perf_counter() - start)
    await pub.disconnect()
    await sub.disconnect()
    return rate


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalMosquitto(directory=Path(tmp), port=free_port(), accounts=[ACCOUNT])
        server.start()
        try:
            print(f"{count} messages of {len(PAYLOAD)} bytes, one publisher, one subscriber, loopback")
            for qos in (0, 1):
                paho_rate = await gridwire_session(server, count, qos)
                gmqtt_rate = await gmqtt_client(server, count, qos)
                print(f"QoS {qos}: gridwire session (paho) {paho_rate:9.0f} msg/s   gmqtt {gmqtt_rate:9.0f} msg/s   "
                      f"ratio paho/gmqtt {paho_rate / gmqtt_rate:.2f}")
            print("per-message PUBACK to the caller: paho yes (on_publish), gmqtt 0.8 no")
            print("ack a received QoS 1 message only after the handler: paho yes (manual_ack), "
                  "gmqtt yes (optimistic_acknowledgement=False)")
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20000)
    asyncio.run(main(parser.parse_args().count))
