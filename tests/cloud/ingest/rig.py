"""Ingest as real OS processes, and a concentrator that publishes with ``gw-seq`` and collects
the cloud's DeliveryAcks: the pieces of the scale-out and failure tests."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from pathlib import Path

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeliveryAck, MeterReadingBatch, seq_list
from broker.session import Message, MqttSession, publish_properties
from gridwire.procs import ManagedProcess
from tests.factories import reading
from tests.fixtures.influx import stored_rows
from tests.fixtures.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
_SUMMARY = re.compile(r"stored (\d+) messages \((\d+) readings in (\d+) writes, (\d+) retries\), dead-lettered (\d+)")


class IngestProcess:
    """``gridwire cloud ingest`` in its own process, with a stable MQTT client id."""

    def __init__(self, *, mosquitto, influxd, database: str, client_id: str, directory: Path,
                 batch_delay: float = 0.05, env: dict[str, str] | None = None, registry: str | None = None) -> None:
        """``registry``: the database URL of a registry that knows the senders (ingest's
        default, refusing unknown senders); without one, ingest accepts any sender and keeps
        its dead letters in a database of its own."""
        self.client_id = client_id
        self._registry = registry
        self.log = directory / f"{client_id}.log"
        self._mosquitto, self._influxd, self._database = mosquitto, influxd, database
        self._directory = directory
        self._env = env or {}
        self._starts = 0
        self.process = self._process(batch_delay)

    def _process(self, batch_delay: float) -> ManagedProcess:
        env = {"GRIDWIRE_MQTT_HOST": self._mosquitto.host, "GRIDWIRE_MQTT_PORT": str(self._mosquitto.port),
               "GRIDWIRE_MQTT_USERNAME": "gridwire-cloud",
               "GRIDWIRE_MQTT_PASSWORD": self._mosquitto.credentials("gridwire-cloud")["password"],
               "GRIDWIRE_MQTT_CLIENT_ID": self.client_id, "GRIDWIRE_INGEST_BATCH_DELAY": str(batch_delay),
               "GRIDWIRE_INFLUX_URL": self._influxd.url, "GRIDWIRE_INFLUX_DATABASE": self._database,
               **self._senders(), **self._env}
        return ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "cloud", "ingest"], log=self.log,
                              env=env, cwd=ROOT)

    def _senders(self) -> dict[str, str]:
        if self._registry is not None:
            return {"GRIDWIRE_DATABASE_URL": self._registry, "GRIDWIRE_INGEST_SENDERS_REFRESH_SECONDS": "0.2"}
        return {"GRIDWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{self._directory}/{self.client_id}-dead.sqlite",
                "GRIDWIRE_INGEST_UNKNOWN_SENDERS": "accept"}

    def start(self, *, batch_delay: float | None = None, timeout: float = 30.0) -> None:
        """Start (again, with the same client id); return once it subscribed."""
        if batch_delay is not None:
            self.process = self._process(batch_delay)
        self._starts += 1
        self.process.start()

        def subscribed() -> bool:
            if self._log_text().count("subscribed to") >= self._starts:
                return True
            assert self.process.running, f"{self.client_id} exited:\n{self._log_text()[-3000:]}"
            return False

        wait_until(subscribed, timeout=timeout, what=f"{self.client_id} to subscribe")

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def summary(self) -> dict[str, int]:
        """What the last run stored, from the line a graceful stop logs."""
        found = _SUMMARY.findall(self._log_text())
        assert found, f"{self.client_id} logged no summary:\n{self._log_text()[-3000:]}"
        messages, readings, writes, retries, dead = map(int, found[-1])
        return {"messages": messages, "readings": readings, "writes": writes, "retries": retries, "dead": dead}

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def registered_fleet(url: str, fleet: dict[str, list[str]]) -> None:
    """A migrated registry at ``url`` that knows each concentrator of ``fleet`` and its meters."""
    from cloud.migrations import migrate
    from cloud.registry import Registry
    from cloud.registry.enums import DeviceType, Protocol
    from cloud.registry.schemas import DeviceCreate

    await migrate(url)
    async with Registry(url=url) as registry:
        for cid, meters in fleet.items():
            await registry.create_device(DeviceCreate(identification=cid, device_type=DeviceType.CONCENTRATOR,
                                                      protocol=Protocol.MQTT))
            for meter in meters:
                await registry.create_device(DeviceCreate(identification=meter, device_type=DeviceType.SMART_METER,
                                                          protocol=Protocol.DLMS, concentrator_id=cid))


def batch_payload(meter: str, first: int, count: int) -> bytes:
    """A MeterReadingBatch of ``count`` readings of ``meter`` from index ``first`` (tests.factories values)."""
    batch = MeterReadingBatch(meter_readings=[reading(meter, i) for i in range(first, first + count)])
    return batch.model_dump_json(by_alias=True, exclude_none=True).encode()


def expected_points(meter: str, first: int, count: int) -> dict[tuple[str, int], tuple[str, float]]:
    """(meter, time ns) -> (reading id, OBIS_1.8.1) for what ``batch_payload`` sends."""
    out = {}
    for i in range(first, first + count):
        r = reading(meter, i)
        out[(meter, int(r.reading_time.timestamp()) * 10**9)] = (str(r.meter_reading_identifier), 1000 + i * 0.25)
    return out


def stored_points(influxd, database: str) -> dict[tuple[str, int], tuple[str, float]]:
    """Every stored point, from influxd directly."""
    return {(meter, stamp): values for meter, stamp, values in stored_rows(influxd, database, "reading_id",
                                                                             "OBIS_1.8.1")}


class Concentrator:
    """Publishes like the edge forwarder (QoS 1, ``gw-seq``) and records the DeliveryAcks it gets."""

    def __init__(self, mosquitto, cid: str = "conc-1") -> None:
        self.cid = cid
        self.session = MqttSession(client_id=f"{cid}-{uuid.uuid4().hex[:6]}", host=mosquitto.host,
                                   port=mosquitto.port, max_inflight=100, **mosquitto.credentials(cid))
        self.acked: set[int] = set()
        # Sequence numbers refused for good: seq -> (MQTT 5 reason code, reason).
        self.refused: dict[int, tuple[int, str]] = {}
        self.ack_messages = 0
        self._changed = asyncio.Event()
        # A message sent as a live batch (``publish(..., batch=True)``): its readings' seqs, until acked.
        self._parts: dict[int, set[int]] = {}
        self._part_of: dict[int, int] = {}

    async def __aenter__(self) -> Concentrator:
        await self.session.connect()
        await self.session.subscribe(topics.concentrator_ack(self.cid), self._on_ack)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def _on_ack(self, message: Message) -> None:
        ack = DeliveryAck.model_validate_json(message.payload)
        for seq in ack.expand():
            number = self._part_of.pop(seq, None)
            if number is None:
                self.acked.add(seq)
                continue
            self._parts[number].discard(seq)
            if not self._parts[number]:
                self.acked.add(number)  # every reading of that batch is stored
        self.refused.update({r.seq: (r.reason_code, r.reason) for r in ack.refused})
        self.ack_messages += 1
        self._changed.set()

    async def publish(self, seq: int, meter: str, payload: bytes, *, batch: bool = False) -> None:
        """One message with ``gw-seq`` ``seq``; ``batch``: as a live batch instead, each reading with
        a seq of its own (``seq`` * 1000 + its index), ``seq`` counted acked once they all are."""
        if batch:
            count = len(MeterReadingBatch.model_validate_json(payload).meter_readings)
            parts = [seq * 1000 + i for i in range(count)]
            self._parts[seq] = set(parts)
            self._part_of.update(dict.fromkeys(parts, seq))
            await self.publish_batch(parts, payload)
            return
        topic = topics.concentrator_meter_message(self.cid, meter, "meterReading")
        await self.session.publish(topic, payload, qos=1,
                                   properties=publish_properties(user_properties={SEQ_PROPERTY: str(seq)}))

    async def publish_batch(self, seqs: list[int], payload: bytes) -> None:
        """A live batch (``concentrator/{cid}/batch/meterReading``): ``seqs`` are its readings', in order."""
        await self.session.publish(topics.concentrator_reading_batch(self.cid), payload, qos=1,
                                   properties=publish_properties(user_properties={SEQ_PROPERTY: seq_list(seqs)}))

    async def wait_acked(self, predicate, timeout: float = 30.0) -> None:
        """Return once ``predicate(acked)`` holds; TimeoutError otherwise."""
        async def watch() -> None:
            while not predicate(self.acked):
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(watch(), timeout)
