"""The concentrator appliance: reads its meters, keeps readings in the durable outbox and
forwards them to the cloud, runs the core's commands on its meters, backfills gaps from the
meters' load profiles, and announces itself with a retained birth and an MQTT-will death.

P1 meters push telegrams (one reader task each); DLMS and Modbus meters are read by the
:class:`~edge.polling.MeterPoller` on their schedules. Every reading goes through
:meth:`Concentrator.submit` into the outbox and the :class:`~edge.completeness.ReadingLedger`.

Its MQTT session and its outbox are passed in (:meth:`Concentrator.from_config` builds both
from the config file); it sets the session's will and dead-letter sink, and closes both when
``run`` ends.

**Offline boot.** :meth:`Concentrator.run` starts the meters, the pollers, the P1 readers and
the outbox at once and connects to the broker in the background (the session's backoff with
jitter), so an appliance whose link comes up minutes or hours after power keeps reading into
its outbox meanwhile; forwarding, commands and firmware chunks begin with the connection. Its
first status after a connection says how long it was offline and how much it buffered then.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from broker import topics
from broker.backoff import Backoff
from broker.metrics_http import serving
from broker.lean import ConcentratorStatus, LiveBatchState, MeterHealth, MeterReading, OfflinePeriod, OutboxState
from broker.session import Message, MqttError, MqttSession, TlsSettings, Will
from edge.backfill import Backfiller
from edge.clock_state import ConcentratorClock
from edge.clock_sync import keep_meter_clocks
from edge.commands import CommandExecutor
from edge.completeness import ReadingLedger
from edge.config import ConfigError
from edge.dlms.push_listener import PushListener
from edge.events import DeviceEvents
from edge.local_intake import LocalIntake, adapter_individuals, adapter_meters
from edge.forwarder import Forwarder, LiveBatch
from edge.meter_set import MeterSet
from edge.metrics import concentrator_metrics
from edge.ota import FirmwareAgent
from edge.selfupdate.agent import self_update
from edge.selfupdate.releases import FACTORY
from edge.outbox import Keep, Outbox, OutboxFull
from edge.p1.forwarding import LiveReadings, P1Forwarding, run_live
from edge.polling import HealthTracker
from firmware_ota.downloader import Downloader
from firmware_ota.signing import load_trusted_keys

if TYPE_CHECKING:
    from devices.adapter_config import SmartMeterAdapterConfig
    from edge.config_lean import BrokerSettings, ConcentratorConfig, P1Meter
    from edge.p1.events import FailureLogWatch
    from edge.p1.reader import P1Reader

log = logging.getLogger(__name__)

SOFTWARE_VERSION = "gridwire-0.1.0"
# Interval slot of meters without a profile period of their own (P1) for completeness.
DEFAULT_PERIOD_S = 900.0
# Reopening a P1 port that failed: it is local, so no jitter is needed to spread a crowd.
P1_REOPEN = Backoff(initial=0.5, maximum=30.0, randomness=0.0)
P1_UNHEALTHY_AFTER = 3


def _utcnow() -> datetime:
    return datetime.now(UTC)


def broker_session(config: ConcentratorConfig) -> MqttSession:
    """The concentrator's MQTT session as its config describes it (not connected yet)."""
    return _session(config.broker, client_id=f"concentrator-{config.concentrator_id}")


def local_session(config: ConcentratorConfig) -> MqttSession | None:
    """The session on the local listener for external adapters (None: the config has none)."""
    if config.local is None:
        return None
    return _session(config.local, client_id=f"concentrator-{config.concentrator_id}-local")


def _session(b: BrokerSettings, *, client_id: str) -> MqttSession:
    tls = TlsSettings(ca_file=str(b.ca_file), cert_file=str(b.cert_file) if b.cert_file else None,
                      key_file=str(b.key_file) if b.key_file else None) if b.ca_file else None
    return MqttSession(client_id=client_id, host=b.host, port=b.port,
                       username=b.username, password=b.secret(), session_expiry=b.session_expiry,
                       max_inflight=b.max_inflight, tls=tls,
                       backoff=Backoff(initial=min(1.0, b.reconnect_max), maximum=b.reconnect_max))


class Concentrator:
    """One concentrator process. ``run()`` until ``stop`` is set; SIGKILL-safe by construction."""

    def __init__(self, *, config: ConcentratorConfig, session: MqttSession, outbox: Outbox,
                 clock: Callable[[], datetime] = _utcnow, local: MqttSession | None = None) -> None:
        """``session`` is not connected yet (:meth:`run` connects it); this concentrator sets
        its will and its dead-letter sink. ``local``: the session on the local listener for
        external adapters (config ``[local]``). ``run`` closes the sessions and the outbox at the end."""
        self.config = config
        self.cid = config.concentrator_id
        self.clock = clock
        self.outbox = outbox
        self.ledger = ReadingLedger(config.state)
        # Free-running until the first time exchange with the cloud (see edge/clock_state.py).
        self.clock_state = ConcentratorClock(config.state)
        # Health of P1 meters (push-only); polled meters' health comes from the poller.
        self.p1_health = HealthTracker(unhealthy_after=P1_UNHEALTHY_AFTER)
        self._birth_count = 0
        # Numbers this process's broker connections: milliseconds at the connect, so they
        # also grow across restarts. A connection's will and birth carry the same number.
        self._connection_number = 0
        # Messages from the cloud given up on (their handler failed every delivery).
        self.dead_letters = 0
        # The last reader of each P1 port (its telegram counts are metrics).
        self.p1_readers: dict[str, P1Reader] = {}
        # Meter ports currently open; lets a caller (the demo, tests) wait until the readers listen.
        self.open_ports = 0
        # Offline periods: when this one began (process start, then each lost connection), the
        # messages buffered in it, and the last one that a connection ended (for the status).
        self._offline_since = time.time()
        self._buffered_offline = 0
        self.last_offline: OfflinePeriod | None = None
        # Messages the outbox refused (full of messages kept before theirs): logged, counted.
        self.refused = 0
        # Each P1 meter's way to the outbox (aggregates or batches) and the live latest readings.
        self.p1_forwarding: dict[str, P1Forwarding] = {}
        self._p1_meters: dict[str, str] = {}  # port -> meter id
        self.live = LiveReadings()
        self.session = session
        session.set_will(self._will)
        session.set_dead_letter(self._dead_letter)
        b, batching = config.broker, config.live_batch
        self.forwarder = Forwarder(outbox=self.outbox, session=self.session, concentrator_id=self.cid,
                                   window=b.max_inflight, confirm_timeout=config.confirm_timeout,
                                   max_unconfirmed=config.max_unconfirmed,
                                   live_batch=LiveBatch(window_s=batching.window_s, max_readings=batching.max_readings)
                                   if batching.enabled else None)
        self.meters = MeterSet(config=config, sink=self._sink, clock=clock)
        # Device events (DLMS pushes, P1 power failure log, failed firmware) into the outbox, once each.
        self.events = DeviceEvents(outbox=self.outbox, concentrator_id=self.cid, state=config.state,
                                   notify=self.forwarder.notify)
        push = config.push
        self.push = PushListener(meters=[m for m in config.meters if m.protocol == "dlms"],
                                 sink=self.events.submit, host=push.host, port=push.port,
                                 serial_lines=push.serial, baudrate=push.baudrate, clock=clock,
                                 keys_of=self.meters.push_keys) if push.enabled else None
        self.poller = self.meters.poller
        self.backfiller = Backfiller(poller=self.poller, sources=self.meters.profile_sources,
                                     periods=self.meters.profile_periods, ledger=self.ledger, submit=self.submit,
                                     settings=config.backfill, clock=clock)
        self.meters.on_recovered(self.backfiller.on_recovered)
        self.executor = CommandExecutor(session=self.session, concentrator_id=self.cid)
        self.intake: LocalIntake | None = None
        if local is not None and config.local is not None:
            adapters = [(a.adapter_id, a.adapter_config) for a in config.local.adapters]
            try:
                owners = adapter_meters(adapters)
            except ValueError as exc:  # AdapterConfigError is one
                raise ConfigError(f"local.adapters: {exc}") from exc
            self.intake = LocalIntake(session=local, owners=owners, submit=self._take_external,
                                      individuals=adapter_individuals(adapters))
        self.firmware = self._firmware_agent()
        self.firmware.on_event = self.events.submit
        # Meters read since this process started, and how it asks to end (the self-update's
        # restart or rollback: the exit code for the supervisor).
        self.read_meters: set[str] = set()
        self.exit_code = 0
        self._stop: asyncio.Event | None = None
        self.self_update = self_update(config, downloader=self.firmware.downloader, problems=self.health_problems,
                                       end=self.end)
        self.executor.register(self.cid, {"update_firmware": self.self_update.handler()})
        for device_id, handlers in self.meters.command_handlers(completeness=self.completeness,
                                                                backfill=self.backfiller.backfill).items():
            if device_id in self.meters.dlms:
                handlers["update_firmware"] = self.firmware.handler_for(self.meters.dlms[device_id])
            self.executor.register(device_id, handlers)

    @classmethod
    def from_config(cls, config: ConcentratorConfig, *, clock: Callable[[], datetime] = _utcnow) -> Concentrator:
        """A concentrator with the broker session and the outbox its config describes."""
        outbox = Outbox(config.outbox, max_messages=config.outbox_limit)
        try:
            return cls(config=config, session=broker_session(config), outbox=outbox, clock=clock,
                       local=local_session(config))
        except BaseException:
            outbox.close()
            raise

    def _firmware_agent(self) -> FirmwareAgent:
        fw = self.config.firmware
        try:
            trusted = load_trusted_keys(fw.trusted_keys)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"firmware.trusted_keys: {exc}") from exc
        downloader = Downloader(session=self.session, concentrator_id=self.cid,
                                cache_dir=fw.cache_dir or self.config.state.parent / "firmware",
                                trusted=trusted, chunk_size=fw.chunk_size,
                                window=fw.window, batch=fw.batch, request_timeout=fw.request_timeout,
                                max_attempts=fw.max_attempts)
        return FirmwareAgent(downloader=downloader, exclusive=self.poller.exclusive)

    # --- readings in ----------------------------------------------------------------------------

    def submit(self, readings: Iterable[MeterReading], *, specific_topic: str | None = None,
               protocol: str = "p1") -> bool:
        """Put readings in the outbox (durably, now) and wake the forwarder; False if the outbox
        refused them (full of messages kept before theirs: logged and counted).

        Synchronous on purpose: once this returns the readings survive a crash, and there is no
        await between a reader taking bytes off the wire and this commit. ``protocol`` names
        how readings of meters this process does not poll came (their health in the status).
        """
        readings = list(readings)
        self.read_meters.update(reading.meter_id for reading in readings)
        by_class: dict[Keep, list[tuple[str, bytes]]] = {}
        clock = self.clock_state.state()
        for reading in readings:
            kind = specific_topic or (topics.ReadingTopic.HISTORICAL if reading.historical
                                      else topics.ReadingTopic.METER_READING)
            if clock is not None and not reading.historical and reading.meter_id in self.meters.periods:
                # Stamped by our clock (a poll), not the meter's (P1, load profile): say how sure it is.
                reading = reading.replace(clock=clock)
            keep = Keep.PROFILE if reading.historical else Keep.LIVE if specific_topic is None else Keep.EVENT
            local = topics.local_meter_message(reading.meter_id, kind)
            by_class.setdefault(keep, []).append((topics.forward_local(self.cid, local),
                                                  reading.wire_bytes()))
            if reading.meter_id not in self.meters.periods:
                self._mark_success(reading.meter_id, protocol)
        for keep, items in by_class.items():
            try:
                self.outbox.put_many(items, keep=keep)
            except OutboxFull as exc:
                # Not a meter's fault: the reader goes on; the loss is logged and in the status.
                self.refused += len(items)
                log.error("%d %s messages not kept: %s (%d refused since start)", len(items), keep.name.lower(),
                          exc, self.refused)
                return False
        if not self.session.connected.is_set():
            self._buffered_offline += len(readings)
        self.ledger.record(readings, self._period_of)
        self.forwarder.notify()
        return True

    def health_problems(self) -> list[str]:
        """What keeps this process from being healthy (a new version's check after an update):
        connected to the broker, the outbox forwarding, every configured meter read."""
        problems = []
        if not self.session.connected.is_set():
            problems.append("not connected to the broker")
        if self.forwarder.confirmed == 0 and len(self.outbox) > 0:
            problems.append(f"the outbox is not forwarding ({len(self.outbox)} messages wait, none confirmed)")
        if len(self.read_meters) < len(self.config.meters):
            problems.append(f"{len(self.config.meters) - len(self.read_meters)} of {len(self.config.meters)} "
                            "meters not read yet")
        return problems

    def end(self, code: int) -> None:
        """End :meth:`run` as a stop would, and exit with ``code`` (for the supervisor)."""
        self.exit_code = code
        if self._stop is not None:
            self._stop.set()

    def _take_external(self, readings: list[MeterReading]) -> bool:
        """Readings an external adapter sent on the local listener (checked by the intake)."""
        return self.submit(readings, protocol="adapter")

    async def _sink(self, reading: MeterReading) -> None:
        self.submit([reading])

    def _period_of(self, meter_id: str) -> float:
        return self.meters.periods.get(meter_id, DEFAULT_PERIOD_S)

    def completeness(self, meter_id: str, days: int) -> dict[str, float]:
        """{ISO date: intervals present / expected} of one meter for the last ``days`` days."""
        return self.ledger.report(meter_id, period_s=self._period_of(meter_id), days=days, now=self.clock())

    def _mark_success(self, meter_id: str, protocol: str) -> None:
        self.p1_health.register(meter_id, protocol)
        self.p1_health.record_success(meter_id, at=self.clock())

    def _mark_failure(self, meter_id: str, protocol: str, error: BaseException) -> None:
        self.p1_health.register(meter_id, protocol)
        self.p1_health.record_failure(meter_id, at=self.clock(), error=error)

    # --- status ---------------------------------------------------------------------------------

    def software_version(self) -> str:
        """What the status says this runs: the version an over-the-air update installed, else the package's."""
        version = self.self_update.version
        return f"gridwire-{version}" if version is not None and version != FACTORY else SOFTWARE_VERSION

    def _status(self, state: str, *, reason: str | None = None) -> ConcentratorStatus:
        online = state == "ONLINE"
        days = self.config.completeness_days
        return ConcentratorStatus(
            concentratorId=self.cid, state=state, timestamp=datetime.now(UTC), session=self._connection_number,
            softwareVersion=self.software_version(),
            meters=[*self._p1_health(), *self.poller.health()] if online else [],
            outboxBacklog=len(self.outbox) if online else None,
            outbox=self.outbox_state() if online else None,
            offline=self.last_offline if online else None,
            deadLetters=self.dead_letters if online else None,
            reason=reason or (f"host {socket.gethostname()}" if online else "connection lost"),
            completeness={m: self.completeness(m, days) for m in sorted(self.meters.periods)}
            if online and days else None,
            localIntake=self.intake.state() if online and self.intake is not None else None,
            liveBatch=self.live_batch_state(),
        )

    def live_batch_state(self) -> LiveBatchState:
        """Whether live readings go out in batches (the ``live_batch`` option), and how."""
        batching = self.config.live_batch
        if not batching.enabled:
            return LiveBatchState(enabled=False)
        return LiveBatchState(enabled=True, windowSeconds=batching.window_s, maxReadings=batching.max_readings)

    def outbox_state(self) -> OutboxState:
        """The outbox against its limit, and what it gave up at the limit since start."""
        shed = self.outbox.shed
        return OutboxState(messages=len(self.outbox), limit=self.outbox.max_messages, level=self.outbox.level,
                           shedLive=shed[Keep.LIVE], shedProfile=shed[Keep.PROFILE], shedEvents=shed[Keep.EVENT],
                           refused=self.refused)

    def _came_online(self) -> None:
        """A connection was made: close the offline period it ends (logged, and in the status)."""
        now = time.time()
        since = self.session.lost_at if self.session.lost_at is not None else self._offline_since
        self.last_offline = OfflinePeriod(since=datetime.fromtimestamp(since, UTC), seconds=round(now - since, 3),
                                          buffered=self._buffered_offline, boot=self.session.lost_at is None)
        self._buffered_offline = 0
        log.info("connected to the broker after %.1f s offline%s; %d messages buffered meanwhile, %d in the outbox",
                 self.last_offline.seconds, " since start" if self.last_offline.boot else "",
                 self.last_offline.buffered, len(self.outbox))

    def _p1_health(self) -> list[MeterHealth]:
        """P1 meters' health, with what each port's reader refused (CRC, cut short, ...) and why."""
        readers = {meter_id: self.p1_readers[port] for port, meter_id in self._p1_meters.items()
                   if port in self.p1_readers}
        out = []
        for health in self.p1_health.all():
            reader = readers.get(health.meter_id)
            if reader is not None and reader.errors:
                health = health.replace(telegram_errors=reader.errors, last_telegram_error=reader.last_problem)
            out.append(health)
        return out

    def _will(self) -> Will:
        """The death notice of the connection about to be made (asked before every attempt):
        numbered as that connection's birth will be, so monitoring can tell a late will of an
        older connection, of this process or an earlier one, from a current one."""
        self._connection_number = max(self._connection_number + 1, time.time_ns() // 1_000_000)
        return Will(topic=topics.concentrator_status(self.cid), payload=self._status("OFFLINE").to_wire())

    async def _dead_letter(self, message: Message, reason: str) -> None:
        """A message from the cloud whose handler failed on every delivery (a command, a chunk,
        a confirmation): the session has logged it, with its payload; count it for the status."""
        self.dead_letters += 1

    async def publish_status(self) -> None:
        await self.session.publish(topics.concentrator_status(self.cid), self._status("ONLINE").to_wire(),
                                   qos=1, retain=True)

    async def _status_loop(self) -> None:
        seen = 0
        while True:
            try:
                await asyncio.wait_for(self.session.wait_connection(seen), self.config.status_interval)
            except TimeoutError:
                if self.session.connected.is_set():
                    await self.publish_status()
                continue
            # A birth after every (re)connection: the broker may have published our will meanwhile.
            seen = self.session.connections
            self._came_online()
            self._birth_count += 1
            await self.publish_status()

    # --- meters ---------------------------------------------------------------------------------

    async def _run_p1(self, meter: P1Meter) -> None:
        from devices.adapter_config import load_adapter_config
        from edge.p1.events import FailureLogWatch

        adapter = load_adapter_config(meter.adapter_config)
        failure_log = FailureLogWatch(adapter.meter_individual_id, self.events.submit)
        self._p1_meters[meter.port] = adapter.meter_individual_id
        forwarding = self.p1_forwarding[meter.port] = P1Forwarding(
            policy=meter.forward, submit=self.submit, live=self.live, aggregate_s=meter.aggregate_s,
            batch_s=meter.batch_s, live_s=meter.live_s or None)
        try:
            await self._read_p1(meter, adapter, failure_log, forwarding)
        finally:
            forwarding.flush()  # what an open interval or batch holds, before the outbox closes

    async def _read_p1(self, meter: P1Meter, adapter: SmartMeterAdapterConfig, failure_log: FailureLogWatch,
                       forwarding: P1Forwarding) -> None:
        from edge.p1.reader import P1Reader

        failures = 0
        while True:
            try:
                async with P1Reader(port=meter.port, config=adapter, on_telegram=failure_log,
                                    **meter.smarty_keys()) as reader:
                    self.p1_readers[meter.port] = reader
                    failures = 0
                    self.open_ports += 1
                    try:
                        async for reading in reader.readings():
                            self._mark_success(reading.meter_id, "p1")
                            forwarding.add([reading])
                    finally:
                        self.open_ports -= 1
            except OSError as exc:
                delay = P1_REOPEN.delay(failures)
                failures += 1
                log.warning("P1 %s: %s; retrying in %.1fs", meter.port, exc, delay)
                self._mark_failure(adapter.meter_individual_id, "p1", exc)
                await asyncio.sleep(delay)

    # --- lifecycle ------------------------------------------------------------------------------

    def _connect_cloud(self) -> None:
        """Route what needs the broker (confirmations, firmware chunks, commands) and start
        connecting in the background. Routed before connecting, they are subscribed on every
        connection before anything else, and messages the broker redelivers at CONNACK find
        their handlers; chunk answers are subscribed before a command can start a download."""
        self.forwarder.route()
        self.firmware.route()
        self.executor.route()
        self.session.start()
        if self.intake is not None:
            self.intake.route()
            self.intake.session.start()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("concentrator %s starting; %d messages waiting in the outbox (limit %d); connecting to the broker "
                 "at %s:%d in the background", self.cid, len(self.outbox), self.outbox.max_messages,
                 self.config.broker.host, self.config.broker.port)
        self._offline_since = time.time()
        metrics = self.config.metrics
        try:
            self._connect_cloud()
            async with serving(concentrator_metrics(self), host=metrics.host, port=metrics.port,
                               name=f"concentrator-{self.cid}"), asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.forwarder.run(), name="forwarder"),
                         tg.create_task(self._status_loop(), name="status"),
                         tg.create_task(self.self_update.run(), name="self-update")]
                for meter in self.config.meters:
                    if meter.protocol == "p1":
                        tasks.append(tg.create_task(self._run_p1(meter), name=f"p1 {meter.port}"))
                # Always: the first time exchange ends the readings' free-running clock state.
                tasks.append(tg.create_task(keep_meter_clocks(
                    stop, session=self.session, concentrator_id=self.cid, meters=self.meters.dlms,
                    exclusive=self.poller.exclusive, interval=self.config.clock_check_interval,
                    threshold=timedelta(seconds=self.config.clock_drift_threshold), on_sync=self.clock_state.synced),
                    name="clocks"))
                if any(meter.protocol == "p1" for meter in self.config.meters):
                    tasks.append(tg.create_task(run_live(self.session, self.cid, live=self.live,
                                                         forwardings=lambda: list(self.p1_forwarding.values())),
                                                name="p1-live"))
                if self.push is not None:
                    tasks.append(tg.create_task(self.push.run(), name="dlms-push"))
                if self.intake is not None:
                    tasks.append(tg.create_task(self.intake.run(), name="local-intake"))
                for meter_id in self.backfiller.meter_ids:
                    tasks.append(tg.create_task(self.backfiller.at_start(meter_id), name=f"backfill:{meter_id}"))
                await self.poller.start()
                self._stop = stop
                try:
                    await stop.wait()
                finally:
                    await self.poller.stop()
                for task in tasks:
                    task.cancel()
        finally:
            self.meters.close()
            self.forwarder.flush()
            if self.session.connected.is_set():
                # A clean disconnect suppresses the will, so say goodbye ourselves.
                try:
                    await asyncio.wait_for(self.session.publish(
                        topics.concentrator_status(self.cid),
                        self._status("OFFLINE", reason="shut down").to_wire(), retain=True), 5)
                except (TimeoutError, MqttError):
                    log.warning("could not publish OFFLINE status on shutdown")
            if self.intake is not None:
                # Handlers still running finish their commit and acknowledge; nothing new is taken.
                await self.intake.session.drain(timeout=5)
                await self.intake.session.close()
                self.intake.close()
            await self.session.close()
            self.outbox.close()
            self.ledger.close()
            self.clock_state.close()
            self.events.close()
