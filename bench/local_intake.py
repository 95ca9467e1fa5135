"""The concentrator's local listener (issue 16): readings per second an external adapter gets
confirmed, and the concentrator's and the local broker's CPU per reading.

One adapter publishes N readings at QoS 1 (its gw-seq, adapter/{id}/ack as Response Topic),
at most ``--window`` unconfirmed at once, to the concentrator's own Mosquitto (the generated
config, dynamic security). The concentrator process (``gridwire concentrator run``) takes each
into its durable outbox (one fsynced commit per message), then PUBACKs it and confirms it. Its
cloud broker is left unreachable, so what is measured is the intake alone: the readings stay in
its outbox for the forwarder.

    .venv/bin/python bench/local_intake.py                      # 2,000 readings, window 100
    .venv/bin/python bench/local_intake.py --readings 5000 --window 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeliveryAck, MeterReading
from broker.session import Message, MqttSession, publish_properties
from edge.config import load_config
from edge.local_broker import local_accounts
from gridwire.procs import ManagedProcess, free_port, wait_for_port
from gridwire.services import LocalMosquitto

PASSWORD = "bench-adapter-pw"
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def reading(n: int) -> bytes:
    when = (T0 + timedelta(seconds=n)).isoformat()
    return MeterReading.model_validate({
        "meterReadingIdentifier": str(MeterReading.derive_id("meter-a", T0 + timedelta(seconds=n))),
        "readingTime": when,
        "propertyValues": [{"unit": "kWh", "date": when, "numericalValue": 1000 + n * 0.25,
                            "operationalPropertyDefinition": {"propertyId": "OBIS_1.8.1"}}],
        "meterIndividual": {"meterIndividualId": "meter-a"},
    }).model_dump_json(by_alias=True, exclude_none=True).encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(work: Path, local_port: int) -> Path:
    (work / "cupboard.yaml").write_text("meterIndividualId: meter-a\n")
    path = work / "concentrator.toml"
    path.write_text(
        'concentrator_id = "bench-1"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {free_port()}\nreconnect_max = 60\n\n'
        f'[local]\nport = {local_port}\npassword = "bench-local-pw"\n\n'
        f'[[local.adapters]]\nadapter_id = "cupboard"\nadapter_config = "cupboard.yaml"\npassword = "{PASSWORD}"\n')
    return path


async def until_subscribed(port: int) -> None:
    """Publish a probe until the concentrator confirms it: its session on the broker exists (a
    message published before it subscribed the first time is not kept for it)."""
    confirmed = asyncio.Event()

    async def on_ack(message: Message) -> None:
        confirmed.set()

    async with MqttSession(client_id="bench-probe", host="127.0.0.1", port=port, username="cupboard",
                           password=PASSWORD, session_expiry=0, clean_start=True) as session:
        ack_topic = topics.adapter_ack("cupboard")
        await session.subscribe(ack_topic, on_ack)
        props = publish_properties(response_topic=ack_topic, user_properties={SEQ_PROPERTY: "0"})
        while not confirmed.is_set():
            await session.publish(topics.local_meter_message("meter-a", "meterReading"), reading(0), qos=1,
                                  properties=props)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(confirmed.wait(), 0.5)


async def publish_all(port: int, count: int, window: int) -> float:
    """Seconds from the first publish to the last confirmation."""
    confirmed: set[int] = set()
    done = asyncio.Event()
    slots = asyncio.Semaphore(window)
    ack_topic = topics.adapter_ack("cupboard")

    async def on_ack(message: Message) -> None:
        for seq in DeliveryAck.model_validate_json(message.payload).expand():
            if 1 <= seq <= count and seq not in confirmed:
                confirmed.add(seq)
                slots.release()
        if len(confirmed) == count:
            done.set()

    payloads = [reading(n) for n in range(count)]
    async with MqttSession(client_id="bench-cupboard", host="127.0.0.1", port=port, username="cupboard",
                           password=PASSWORD, max_inflight=window) as session:
        await session.subscribe(ack_topic, on_ack)
        topic = topics.local_meter_message("meter-a", "meterReading")
        began = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for n, body in enumerate(payloads, start=1):
                await slots.acquire()
                props = publish_properties(response_topic=ack_topic, user_properties={SEQ_PROPERTY: str(n)})
                tg.create_task(session.publish(topic, body, qos=1, properties=props))
        await asyncio.wait_for(done.wait(), 600)
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=2000)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        local_port = free_port()
        config = write_config(work, local_port)
        local = load_config(config).local
        assert local is not None
        broker = LocalMosquitto(directory=work / "local-broker", port=local_port, accounts=local_accounts(local))
        broker.start()
        concentrator = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "concentrator", "run", str(config),
                                            "--log-level", "WARNING"], log=work / "concentrator.log")
        concentrator.start()
        try:
            wait_for_port(local_port, proc=concentrator.proc, log=concentrator.log)
            asyncio.run(until_subscribed(local_port))
            assert concentrator.proc is not None and broker.process.proc is not None
            cpu = cpu_seconds(concentrator.proc.pid), cpu_seconds(broker.process.proc.pid)
            seconds = asyncio.run(publish_all(local_port, args.readings, args.window))
            used = cpu_seconds(concentrator.proc.pid) - cpu[0], cpu_seconds(broker.process.proc.pid) - cpu[1]
        finally:
            concentrator.stop()
            broker.stop()
    n = args.readings
    print(f"load average {os.getloadavg()[0]:.1f}; {n:,} readings, at most {args.window} unconfirmed")
    print(f"  confirmed to the adapter: {n / seconds:,.0f} readings/s ({seconds:.2f} s)")
    print(f"  concentrator CPU {used[0] / n * 1e6:,.0f} us/reading; local Mosquitto CPU {used[1] / n * 1e6:,.0f} us/reading")


if __name__ == "__main__":
    main()
