"""The concentrator's DLMS meter adapter: reads a meter per its profile and yields OMDP readings.

It satisfies the poller's :class:`edge.polling.source.MeterSource` (``read()``), and offers
the commands the core routes to DLMS meters (clock, disconnect/reconnect) and load-profile
reads for gap backfill. Each call runs in its own association unless made inside
``async with adapter.session():``, which shares one association between calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broker.lean import MeterIndividual, MeterReading, PhysicalMeterType, PropertyValue
from devices.profiles.loader import load_profile
from edge.dlms.alarms import ALARM_REGISTER_OBIS, STANDARD_EVENT_LOG_OBIS
from edge.dlms.client import DlmsAssociation
from edge.dlms.cosem_objects import from_gx_datetime, to_gx_datetime
from edge.dlms.counter_store import InvocationCounterStore
from edge.dlms.errors import DlmsAuthenticationError, DlmsProtocolError
from edge.dlms.image_objects import FIRMWARE_VERSION_OBIS
from edge.dlms.image_transfer import ImageTransferClient, TransferReport
from edge.dlms.mapping import meter_reading, property_value, unit_symbol
from edge.dlms.security_setup import key_transfer_request

if TYPE_CHECKING:
    from devices.profiles.lean import MeterProfile, PowerQualitySpec
    from edge.config_lean import DlmsMeterConfig

from gurux_dlms.objects.GXDLMSClock import GXDLMSClock  # noqa: I001  (after edge.dlms.client applied the fixes)
from gurux_dlms.objects.GXDLMSData import GXDLMSData
from gurux_dlms.objects.GXDLMSDisconnectControl import GXDLMSDisconnectControl
from gurux_dlms.objects.GXDLMSProfileGeneric import GXDLMSProfileGeneric
from gurux_dlms.objects.GXDLMSRegister import GXDLMSRegister

from edge.dlms.cosem_schedule import (
    CLOSE_SCHEDULE_OBIS,
    OPEN_SCHEDULE_OBIS,
    SCRIPT_DISCONNECT,
    SCRIPT_RECONNECT,
    WeeklyActionSchedule,
    split,
)
from edge.switching import SwitchPoint

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DlmsMeterAdapter:
    """Reads one DLMS meter (TCP/WRAPPER or serial/HDLC) and turns its values into OMDP MeterReadings."""

    protocol = "dlms"

    def __init__(self, *, config: DlmsMeterConfig, counters: InvocationCounterStore | None = None,
                 profile: MeterProfile | None = None, meter: MeterIndividual | None = None,
                 time_source: Callable[[], datetime] = _utcnow) -> None:
        self.config = config
        self.profile = profile or load_profile(config.profile)
        self.meter = meter or MeterIndividual(
            meterIndividualId=config.meter_id,
            physicalMeterType=PhysicalMeterType(physicalElementName=self.profile.name,
                                                physicalMeterClass=self.profile.meter_class))
        self._counters = counters
        self._time_source = time_source
        self._association: DlmsAssociation | None = None
        # Scaler and unit are static per register: read once per adapter, not per poll. Only the
        # two values are kept: a GXDLMSRegister with its attribute collections is about 0.8 KiB,
        # 0.9 MiB for 100 meters of 12 registers (issue 15: RSS); one is built per read instead.
        self._scalers: dict[str, tuple[float, Any]] = {}
        self._capture_objects: list[Any] | None = None
        # A key change cut short: the meter may hold the pending keys. Refused with the active keys,
        # an association tries ``pending_keys()`` (a config, or None) and, if the meter takes them,
        # keeps them and calls ``on_pending_confirmed()`` (the key store makes them active).
        self.pending_keys: Callable[[], DlmsMeterConfig | None] | None = None
        self.on_pending_confirmed: Callable[[], None] | None = None

    # --- MeterSource ----------------------------------------------------------------------
    @property
    def meter_id(self) -> str:
        return self.config.meter_id

    @property
    def bus(self) -> str:
        return self.config.bus or self.config.endpoint

    @property
    def interval(self) -> float:
        return self.config.interval_s

    async def read(self) -> list[MeterReading]:
        return [await self.read_registers()]

    # --- associations ---------------------------------------------------------------------
    @asynccontextmanager
    async def session(self) -> AsyncIterator[DlmsMeterAdapter]:
        """Share one association between the calls made inside the block."""
        if self._association is not None:
            yield self
            return
        association = await self._associate()
        self._association = association
        try:
            yield self
        finally:
            self._association = None
            await association.close()

    async def _associate(self) -> DlmsAssociation:
        association = DlmsAssociation(config=self.config, counters=self._counters)
        try:
            await association.open()
            return association
        except DlmsAuthenticationError:
            pending = self.pending_keys() if self.pending_keys is not None else None
            if pending is None:
                raise
        logger.warning("meter %s refused its active keys; trying the keys of a key change left pending", self.meter_id)
        association = DlmsAssociation(config=pending, counters=self._counters)
        await association.open()
        self.config = pending
        logger.warning("meter %s answered with the pending keys: they are its keys now", self.meter_id)
        if self.on_pending_confirmed is not None:
            self.on_pending_confirmed()
        return association

    async def accepts(self, config: DlmsMeterConfig) -> bool:
        """Whether the meter associates with ``config``'s keys (False: it refused them)."""
        try:
            async with DlmsAssociation(config=config, counters=self._counters):
                return True
        except DlmsAuthenticationError:
            return False

    async def transfer_keys(self, wrapped: dict[str, bytes]) -> None:
        """Hand the meter new keys (wrapped with its master key), in an association with the current keys."""
        async with self._link() as link:
            await link.call(key_transfer_request(link.client, wrapped))

    @asynccontextmanager
    async def _link(self) -> AsyncIterator[DlmsAssociation]:
        async with self.session():
            assert self._association is not None
            yield self._association

    # --- reads ----------------------------------------------------------------------------
    async def read_registers(self) -> MeterReading:
        """Read every register of the profile (value with scaler/unit) as one MeterReading."""
        async with self._link() as link:
            at = self._time_source().replace(microsecond=0)
            values: list[PropertyValue] = []
            for mapping in self.profile.registers:
                register = await self._register(link, mapping.source)
                await link.read(register, 2)
                values.append(property_value(mapping, value=register.value, source_unit=unit_symbol(register.unit),
                                             at=at))
        return meter_reading(meter=self.meter, reading_time=at, values=values)

    async def read_clock(self) -> tuple[datetime, int]:
        """The meter's clock (UTC) and its COSEM clock status byte."""
        async with self._link() as link:
            clock = GXDLMSClock(self.profile.clock_obis)
            await link.read(clock, 2)
        status = getattr(clock.time, "status", 0)
        return from_gx_datetime(clock.time), int(status or 0)

    async def set_clock(self, moment: datetime) -> None:
        """Write the meter's clock (attribute 2) to ``moment`` (an aware datetime)."""
        if moment.tzinfo is None:
            raise ValueError("set_clock needs an aware datetime")
        async with self._link() as link:
            clock = GXDLMSClock(self.profile.clock_obis)
            clock.time = to_gx_datetime(moment)
            await link.write(clock, 2)
        logger.info("meter %s: clock set to %s", self.meter_id, moment.isoformat())

    async def read_load_profile(self, start: datetime, end: datetime) -> list[MeterReading]:
        """Interval readings with start <= time <= end from the meter's load profile (historical)."""
        spec = self.profile.load_profile
        if spec is None:
            raise DlmsProtocolError(f"meter {self.meter_id}: profile {self.profile.name} has no load profile",
                                    meter_id=self.meter_id)
        async with self._link() as link:
            generic = GXDLMSProfileGeneric(spec.obis)
            if self._capture_objects is None:
                await link.read(generic, 3)
                self._capture_objects = list(generic.captureObjects)
            generic.captureObjects.clear()
            generic.captureObjects.extend(self._capture_objects)
            columns = [obj.logicalName for obj, _ in self._capture_objects]
            registers = {obis: await self._register(link, obis) for obis in columns[1:]
                         if self.profile.mapping_for(obis) is not None}
            rows = await link.read_rows_by_range(generic, start.astimezone(UTC), end.astimezone(UTC))
        return [self._profile_row(row, columns, registers) for row in rows]

    def _profile_row(self, row: list[Any], columns: list[str], registers: dict[str, GXDLMSRegister]) -> MeterReading:
        at = from_gx_datetime(row[0])
        values = []
        for obis, raw in zip(columns[1:], row[1:], strict=False):
            mapping = self.profile.mapping_for(obis)
            register = registers.get(obis)
            if mapping is None or register is None or raw is None:
                continue
            values.append(property_value(mapping, value=float(raw) * float(register.scaler),
                                         source_unit=unit_symbol(register.unit), at=at))
        return meter_reading(meter=self.meter, reading_time=at, values=values, historical=True)

    # --- alarms and events ----------------------------------------------------------------
    async def read_alarm_register(self, obis: str = ALARM_REGISTER_OBIS) -> int:
        """The alarm register's bit field (a uint32, one bit per alarm)."""
        async with self._link() as link:
            return int(await link.read(GXDLMSData(obis), 2) or 0)

    async def read_event_log(self, obis: str = STANDARD_EVENT_LOG_OBIS) -> list[tuple[datetime, int]]:
        """Every entry of an event log (clock, event code), as (UTC time, code) pairs."""
        async with self._link() as link:
            log = GXDLMSProfileGeneric(obis)
            await link.read(log, 3)
            await link.read(log, 2)
        return [(from_gx_datetime(row[0]), int(row[1])) for row in log.buffer]

    # --- disconnect control ---------------------------------------------------------------
    async def disconnect(self) -> bool:
        """remote_disconnect; returns the output state read back (False = load disconnected)."""
        return await self._switch(disconnect=True)

    async def reconnect(self) -> bool:
        """remote_reconnect; returns the output state read back (True = load connected)."""
        return await self._switch(disconnect=False)

    async def read_output_state(self) -> bool:
        async with self._link() as link:
            control = self._disconnect_control()
            return bool(await link.read(control, 2))

    async def _switch(self, *, disconnect: bool) -> bool:
        async with self._link() as link:
            control = self._disconnect_control()
            frames = control.remoteDisconnect(link.client) if disconnect else control.remoteReconnect(link.client)
            await link.call(frames)
            state = bool(await link.read(control, 2))
        logger.info("meter %s: %s, output state now %s", self.meter_id,
                    "disconnected" if disconnect else "reconnected", state)
        return state

    # --- power quality (the profile's powerQuality objects) -----------------------------------
    def _power_quality(self) -> PowerQualitySpec:
        if self.profile.power_quality is None:
            raise DlmsProtocolError(f"meter {self.meter_id}: profile {self.profile.name} has no power-quality "
                                    "objects", meter_id=self.meter_id)
        return self.profile.power_quality

    async def read_power_quality(self) -> dict[str, Any]:
        """Every power-quality value now: per phase (voltage, current, power factor, THD) and frequency."""
        spec = self._power_quality()
        phases: dict[str, dict[str, Any]] = {}
        result: dict[str, Any] = {"phases": phases}
        async with self._link() as link:
            for value in spec.values:
                register = await self._register(link, value.obis)
                await link.read(register, 2)
                reading = round(float(register.value), 4)
                if value.phase is None:
                    result[value.quantity] = reading
                else:
                    phases.setdefault(value.phase, {})[value.quantity] = reading
            counters: dict[str, dict[str, int]] = {}
            for counter in spec.counters:
                count = int(await link.read(GXDLMSData(counter.obis), 2) or 0)
                counters.setdefault(counter.phase, {})[f"{counter.kind}s"] = count
        result["units"] = {v.quantity: v.unit for v in spec.values}
        return result | ({"counters": counters} if counters else {})

    async def read_power_quality_profile(self, start: datetime, end: datetime) -> dict[str, Any]:
        """The power-quality profile's captures with start <= time <= end, scaled, by column."""
        spec = self._power_quality()
        if spec.profile is None:
            raise DlmsProtocolError(f"meter {self.meter_id}: no power-quality profile", meter_id=self.meter_id)
        async with self._link() as link:
            generic = GXDLMSProfileGeneric(spec.profile.obis)
            await link.read(generic, 3)
            columns = [obj.logicalName for obj, _ in generic.captureObjects]
            registers = {obis: await self._register(link, obis) for obis in columns[1:]}
            rows = await link.read_rows_by_range(generic, start.astimezone(UTC), end.astimezone(UTC))
        names = [f"{spec.value(obis).quantity}{spec.value(obis).phase or ''}" for obis in columns[1:]]
        return {"periodMinutes": spec.profile.period_minutes, "columns": names,
                "rows": [{"time": from_gx_datetime(row[0]).isoformat(),
                          "values": [round(float(raw) * float(registers[obis].scaler), 4)
                                     for obis, raw in zip(columns[1:], row[1:], strict=True)]} for row in rows]}

    async def read_power_quality_events(self) -> list[dict[str, Any]]:
        """The power-quality event log: time, code, and what the code means (sag/swell, phase)."""
        spec = self._power_quality()
        if spec.event_log is None:
            return []
        entries = await self.read_event_log(spec.event_log.obis)
        known = spec.event_log.codes
        return [{"time": at.isoformat(), "code": code,
                 **({"kind": known[code].kind, "phase": known[code].phase} if code in known else {})}
                for at, code in entries]

    # --- the disconnector's weekly schedule (tariff switching on the meter) ----------------
    async def write_relay_schedule(self, points: list[SwitchPoint]) -> list[SwitchPoint]:
        """Write the open and close moments to the two single action schedules (class 22), read
        them back, and return what the meter holds now."""
        if any(p.index != 1 for p in points):
            raise DlmsProtocolError(f"meter {self.meter_id}: a DLMS meter has one disconnector (relay 1)",
                                    meter_id=self.meter_id)
        self._disconnect_control()  # a profile without one has nothing to schedule
        opens, closes = split(points)
        async with self._link() as link:
            for obis, script, moments in ((OPEN_SCHEDULE_OBIS, SCRIPT_DISCONNECT, opens),
                                          (CLOSE_SCHEDULE_OBIS, SCRIPT_RECONNECT, closes)):
                schedule = WeeklyActionSchedule(obis, script=script)
                schedule.moments = moments
                for attribute in (2, 3, 4):
                    await link.write(schedule, attribute)
            held = await self._read_schedules(link)
        logger.info("meter %s: relay schedule written, %d switch points", self.meter_id, len(held))
        return held

    async def read_relay_schedule(self) -> list[SwitchPoint]:
        async with self._link() as link:
            return await self._read_schedules(link)

    @staticmethod
    async def _read_schedules(link: DlmsAssociation) -> list[SwitchPoint]:
        held: list[SwitchPoint] = []
        for obis, closed in ((OPEN_SCHEDULE_OBIS, False), (CLOSE_SCHEDULE_OBIS, True)):
            schedule = WeeklyActionSchedule(obis)
            await link.read(schedule, 4)
            held += [SwitchPoint(weekday, minute, 1, closed) for weekday, minute in schedule.moments]
        return sorted(held)

    async def set_push_destination(self, destination: str, *, push_setups: tuple[str, ...] | None = None) -> None:
        """Point the meter's push setups (class 40, attribute 3) at ``destination`` ("host:port", TCP)."""
        from gurux_dlms.objects.enums.ServiceType import ServiceType
        from gurux_dlms.objects.GXDLMSPushSetup import GXDLMSPushSetup

        from edge.dlms.push import PUSH_LAYOUTS

        async with self._link() as link:
            for obis in push_setups or tuple(PUSH_LAYOUTS):
                push = GXDLMSPushSetup(obis)
                push.service, push.destination = ServiceType.TCP, destination
                await link.write(push, 3)
        logger.info("meter %s: pushes go to %s", self.meter_id, destination)

    # --- firmware -------------------------------------------------------------------------------
    async def read_firmware_version(self) -> str:
        """The active firmware identifier (1.0.0.2.0.255) as text."""
        async with self._link() as link:
            raw = await link.read(GXDLMSData(FIRMWARE_VERSION_OBIS), 2)
        if isinstance(raw, (bytes, bytearray)):
            return bytes(raw).decode(errors="replace")
        return str(raw)

    async def update_firmware(self, *, identifier: bytes, image: bytes, activate: bool = True) -> TransferReport:
        """DLMS image transfer of ``image``: blocks (resuming a cut transfer), verify, activate.

        Raises :class:`edge.dlms.image_transfer.ImageTransferError` naming the failed step.
        """
        async with self._link() as link:
            client = ImageTransferClient(link=link)
            report = await client.transfer(identifier=identifier, image=image)
            await client.verify()
            if activate:
                await client.activate()
        logger.info("meter %s: image of %d bytes sent in %d blocks (%d sent now, resumed %s) in %.2fs",
                    self.meter_id, len(image), report.blocks_total, report.blocks_sent, report.resumed,
                    report.seconds)
        return report

    def _disconnect_control(self) -> GXDLMSDisconnectControl:
        if self.profile.disconnect_obis is None:
            raise DlmsProtocolError(f"meter {self.meter_id}: profile {self.profile.name} has no disconnect control",
                                    meter_id=self.meter_id)
        return GXDLMSDisconnectControl(self.profile.disconnect_obis)

    async def _register(self, link: DlmsAssociation, obis: str) -> GXDLMSRegister:
        """A register ``obis`` with its scaler and unit (read from the meter the first time), ready
        for its value to be read (gurux applies the scaler)."""
        register = GXDLMSRegister(obis)
        known = self._scalers.get(obis)
        if known is None:
            await link.read(register, 3)
            self._scalers[obis] = (register.scaler, register.unit)
        else:
            register.scaler, register.unit = known
        return register
