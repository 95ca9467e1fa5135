"""The external adapter process: one meter read into a small durable outbox, forwarded to the
concentrator's local listener and deleted only once the concentrator confirms it.

The same parts as the concentrator, smaller: the meter is read by the edge's own readers (a P1
port's :class:`~edge.p1.reader.P1Reader`, the poller over a DLMS or Modbus meter), every reading
is committed to an :class:`~edge.outbox.Outbox` before anything else happens to it, and the
:class:`~edge.forwarder.Forwarder` publishes it at QoS 1 on ``smartMeterMessage/{meter}/{topic}``
with its sequence number and ``adapter/{id}/ack`` as Response Topic. The concentrator confirms
a message once its own outbox holds it, so neither a killed adapter, a killed local broker nor a
killed concentrator loses a reading: what is not confirmed is sent again (the cloud stores a
reading once, its id derives from meter and time). A message the concentrator refuses for good
(reason code in the confirmation) or the broker refuses (0x87: not this adapter's meter) is
logged and removed, so it cannot block the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from broker import topics
from broker.backoff import Backoff
from broker.lean import MeterReading
from broker.session import MqttSession, TlsSettings
from edge.config import P1Meter
from edge.forwarder import Forwarder
from edge.meter_set import MeterSet
from edge.outbox import Keep, Outbox, OutboxFull
from edge.standalone.config import StandaloneConfig

log = logging.getLogger(__name__)

P1_REOPEN = Backoff(initial=0.5, maximum=30.0, randomness=0.0)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def listener_session(config: StandaloneConfig) -> MqttSession:
    """The adapter's session on the concentrator's local listener (not connected yet)."""
    b = config.listener
    tls = TlsSettings(ca_file=str(b.ca_file), cert_file=str(b.cert_file) if b.cert_file else None,
                      key_file=str(b.key_file) if b.key_file else None) if b.ca_file else None
    return MqttSession(client_id=f"adapter-{config.adapter_id}", host=b.host, port=b.port, username=config.username,
                       password=b.secret(), session_expiry=b.session_expiry, max_inflight=b.max_inflight, tls=tls,
                       backoff=Backoff(initial=min(1.0, b.reconnect_max), maximum=b.reconnect_max))


class StandaloneAdapter:
    """One external adapter process; ``run()`` until ``stop`` is set. SIGKILL-safe like the concentrator."""

    def __init__(self, *, config: StandaloneConfig, session: MqttSession, outbox: Outbox,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self.config = config
        self.session = session
        self.outbox = outbox
        self.clock = clock
        ack = topics.adapter_ack(config.adapter_id)
        self.forwarder = Forwarder(outbox=outbox, session=session, ack_topic=ack, response_topic=ack,
                                   window=config.listener.max_inflight, confirm_timeout=config.confirm_timeout,
                                   max_unconfirmed=config.max_unconfirmed)
        self.meters = None if isinstance(config.meter, P1Meter) else MeterSet(config=config, sink=self._sink,
                                                                                clock=clock)
        # Readings kept in the outbox since start, and refused there (full of messages kept before theirs).
        self.kept = 0
        self.refused = 0

    @classmethod
    def from_config(cls, config: StandaloneConfig) -> StandaloneAdapter:
        outbox = Outbox(config.outbox, max_messages=config.outbox_limit)
        try:
            return cls(config=config, session=listener_session(config), outbox=outbox)
        except BaseException:
            outbox.close()
            raise

    def submit(self, readings: list[MeterReading]) -> None:
        """Commit readings to the outbox (durably, now) and wake the forwarder."""
        by_class: dict[Keep, list[tuple[str, bytes]]] = {}
        for reading in readings:
            kind = topics.ReadingTopic.HISTORICAL if reading.historical else topics.ReadingTopic.METER_READING
            keep = Keep.PROFILE if reading.historical else Keep.LIVE
            by_class.setdefault(keep, []).append((topics.local_meter_message(reading.meter_id, kind),
                                                  reading.wire_bytes()))
        for keep, items in by_class.items():
            try:
                self.outbox.put_many(items, keep=keep)
            except OutboxFull as exc:
                self.refused += len(items)
                log.error("%d readings not kept: %s (%d refused since start)", len(items), exc, self.refused)
                return
        self.kept += len(readings)
        for reading in readings:
            log.debug("kept reading of %s at %s", reading.meter_id, reading.reading_time.isoformat())
        self.forwarder.notify()

    async def _sink(self, reading: MeterReading) -> None:
        self.submit([reading])

    async def _read_p1(self, meter: P1Meter) -> None:
        from devices.adapter_config import load_adapter_config
        from edge.p1.forwarding import LiveReadings, P1Forwarding
        from edge.p1.reader import P1Reader

        adapter = load_adapter_config(meter.adapter_config)
        forwarding = P1Forwarding(policy=meter.forward, submit=self.submit, live=LiveReadings(),
                                  aggregate_s=meter.aggregate_s, batch_s=meter.batch_s, live_s=None)
        failures = 0
        try:
            while True:
                try:
                    async with P1Reader(port=meter.port, config=adapter, **meter.smarty_keys()) as reader:
                        failures = 0
                        async for reading in reader.readings():
                            forwarding.add([reading])
                except OSError as exc:
                    delay = P1_REOPEN.delay(failures)
                    failures += 1
                    log.warning("P1 %s: %s; retrying in %.1fs", meter.port, exc, delay)
                    await asyncio.sleep(delay)
        finally:
            forwarding.flush()  # what an open interval or batch holds, before the outbox closes

    async def run(self, stop: asyncio.Event) -> None:
        b = self.config.listener
        log.info("adapter %s starting; %d messages waiting in the outbox; connecting to the concentrator's "
                 "listener at %s:%d in the background", self.config.adapter_id, len(self.outbox), b.host, b.port)
        try:
            self.forwarder.route()
            self.session.start()
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.forwarder.run(), name="forwarder")]
                if isinstance(self.config.meter, P1Meter):
                    tasks.append(tg.create_task(self._read_p1(self.config.meter), name=f"p1 {self.config.meter.port}"))
                if self.meters is not None:
                    await self.meters.poller.start()
                try:
                    await stop.wait()
                finally:
                    if self.meters is not None:
                        await self.meters.poller.stop()
                for task in tasks:
                    task.cancel()
        finally:
            if self.meters is not None:
                self.meters.close()
            self.forwarder.flush()
            await self.session.close()
            self.outbox.close()
