"""The concentrator appliance: reads its meters, keeps readings in the durable outbox and
forwards them to the cloud, announcing itself with a retained birth and an MQTT-will death."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from datetime import UTC, datetime

from broker import topics
from broker.schemas import ConcentratorStatus, MeterHealth, MeterReading
from broker.session import MqttError, MqttSession, TlsSettings, Will
from edge.config import ConcentratorConfig, P1Meter
from edge.forwarder import Forwarder
from edge.outbox import Outbox

log = logging.getLogger(__name__)

SOFTWARE_VERSION = "gridwire-0.1.0"


class Concentrator:
    """One concentrator process. ``run()`` until ``stop`` is set; SIGKILL-safe by construction."""

    def __init__(self, *, config: ConcentratorConfig) -> None:
        self.config = config
        self.cid = config.concentrator_id
        self.outbox = Outbox(config.outbox)
        self.health: dict[str, MeterHealth] = {}
        self._birth_count = 0
        # Meter ports currently open; lets a caller (the demo, tests) wait until the readers listen.
        self.open_ports = 0
        b = config.broker
        tls = TlsSettings(ca_file=str(b.ca_file), cert_file=str(b.cert_file) if b.cert_file else None,
                          key_file=str(b.key_file) if b.key_file else None) if b.ca_file else None
        self.session = MqttSession(
            client_id=f"concentrator-{self.cid}", host=b.host, port=b.port, username=b.username,
            password=b.password.get_secret_value() if b.password else None, session_expiry=b.session_expiry,
            max_inflight=b.max_inflight, tls=tls,
            will=Will(topic=topics.concentrator_status(self.cid), payload=self._status("OFFLINE").to_wire()),
        )
        self.forwarder = Forwarder(outbox=self.outbox, session=self.session, concentrator_id=self.cid,
                                   window=b.max_inflight, confirm_timeout=config.confirm_timeout)

    # --- readings in ----------------------------------------------------------------------------

    def submit(self, readings: Iterable[MeterReading], *, specific_topic: str | None = None) -> None:
        """Put readings in the outbox (durably, now) and wake the forwarder.

        Synchronous on purpose: once this returns the readings survive a crash, and there is no
        await between a reader taking bytes off the wire and this commit.
        """
        items = []
        for reading in readings:
            kind = specific_topic or (topics.ReadingTopic.HISTORICAL if reading.historical
                                      else topics.ReadingTopic.METER_READING)
            local = topics.local_meter_message(reading.meter_id, kind)
            items.append((topics.forward_local(self.cid, local),
                          reading.model_dump_json(by_alias=True, exclude_none=True).encode()))
            self._mark_success(reading.meter_id, "p1")
        self.outbox.put_many(items)
        self.forwarder.notify()

    def _mark_success(self, meter_id: str, protocol: str) -> None:
        health = self.health.get(meter_id)
        now = datetime.now(UTC)
        if health is None:
            self.health[meter_id] = MeterHealth(meterId=meter_id, protocol=protocol, lastSuccess=now)
        else:
            health.last_success, health.consecutive_failures, health.healthy = now, 0, True

    # --- status ---------------------------------------------------------------------------------

    def _status(self, state: str, *, reason: str | None = None) -> ConcentratorStatus:
        return ConcentratorStatus(
            concentratorId=self.cid, state=state, timestamp=datetime.now(UTC), session=self._birth_count,
            softwareVersion=SOFTWARE_VERSION, meters=list(self.health.values()) if state == "ONLINE" else [],
            outboxBacklog=len(self.outbox) if state == "ONLINE" else None,
            reason=reason or (f"host {socket.gethostname()}" if state == "ONLINE" else "connection lost"),
        )

    async def publish_status(self) -> None:
        await self.session.publish(topics.concentrator_status(self.cid), self._status("ONLINE").to_wire(),
                                   qos=1, retain=True)

    async def _status_loop(self) -> None:
        seen = 0
        while True:
            # A birth after every (re)connection: the broker may have published our will meanwhile.
            if self.session.connections != seen:
                seen = self.session.connections
                self._birth_count += 1
                await self.publish_status()
            try:
                await asyncio.wait_for(self._wait_reconnect(seen), self.config.status_interval)
            except TimeoutError:
                await self.publish_status()

    async def _wait_reconnect(self, seen: int) -> None:
        while self.session.connections == seen:
            await asyncio.sleep(0.2)

    # --- meters ---------------------------------------------------------------------------------

    async def _run_p1(self, meter: P1Meter) -> None:
        from edge.adapter_config import load_adapter_config
        from edge.p1.reader import P1Reader

        adapter = load_adapter_config(meter.adapter_config)
        backoff = 0.5
        while True:
            try:
                async with P1Reader(port=meter.port, config=adapter) as reader:
                    backoff = 0.5
                    self.open_ports += 1
                    try:
                        async for reading in reader.readings():
                            self.submit([reading])
                    finally:
                        self.open_ports -= 1
            except OSError as exc:
                log.warning("P1 %s: %s; retrying in %.1fs", meter.port, exc, backoff)
                self._mark_failure(adapter.meter_individual_id, "p1", str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def _mark_failure(self, meter_id: str, protocol: str, error: str) -> None:
        health = self.health.setdefault(meter_id, MeterHealth(meterId=meter_id, protocol=protocol))
        health.consecutive_failures += 1
        health.last_error = error
        health.healthy = health.consecutive_failures < 3

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("concentrator %s starting; %d messages waiting in the outbox", self.cid, len(self.outbox))
        await self.session.connect()
        await self.forwarder.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.forwarder.run(), name="forwarder"),
                         tg.create_task(self._status_loop(), name="status")]
                for meter in self.config.meters:
                    if isinstance(meter, P1Meter):
                        tasks.append(tg.create_task(self._run_p1(meter), name=f"p1 {meter.port}"))
                await stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            self.forwarder.flush()
            if self.session.connected.is_set():
                # A clean disconnect suppresses the will, so say goodbye ourselves.
                try:
                    await asyncio.wait_for(self.session.publish(
                        topics.concentrator_status(self.cid),
                        self._status("OFFLINE", reason="shut down").to_wire(), retain=True), 5)
                except (TimeoutError, MqttError):
                    log.warning("could not publish OFFLINE status on shutdown")
            await self.session.close()
            self.outbox.close()
