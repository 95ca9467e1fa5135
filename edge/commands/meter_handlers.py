"""Command handlers for the meters a concentrator polls (DLMS and Modbus), for the CommandExecutor.

Every handler that talks to a meter holds the poller's ``exclusive(meter_id)`` (``read_now``
goes through ``poll_now``, which takes it itself), so a command never interleaves with a
poll's DLMS association or a Modbus request on the same bus. Meter errors become stable
command error codes: a transient one DEVICE_UNREACHABLE, any other DEVICE_ERROR.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from broker.lean import MeterReading
from edge.commands.errors import CommandFailed, DeviceUnreachable, ErrorCode, InvalidParameters
from edge.commands.executor import CommandHandler
from edge.commands.key_change import key_change_handler
from edge.commands.load_control import load_control_handlers, parse_schedule, schedule_result
from edge.dlms.alarms import decode_alarms, decode_events
from edge.polling import MeterError, MeterPoller

CompletenessQuery = Callable[[str, int], dict[str, float]]

# read_profile bounds: a month of 15-minute captures is 2,976 rows, so 3,000 fits a whole range.
MAX_PROFILE_RANGE = timedelta(days=31)
MAX_PROFILE_ROWS = 3_000


@asynccontextmanager
async def meter_errors() -> AsyncIterator[None]:
    """Turn a meter failure into the command failure the core understands."""
    try:
        yield
    except MeterError as exc:
        if exc.transient:
            raise DeviceUnreachable(str(exc)) from exc
        raise CommandFailed(ErrorCode.DEVICE_ERROR, str(exc)) from exc


def reading_result(readings: list[MeterReading]) -> dict[str, Any]:
    """What ``read_now`` answers: the readings' times, ids and values by property id."""
    return {"readings": [{
        "meterReadingIdentifier": str(r.meter_reading_identifier),
        "readingTime": r.reading_time.isoformat(),
        "values": _values(r),
    } for r in readings]}


def _values(reading: MeterReading) -> dict[str, Any]:
    return {pv.property_id: ({"value": pv.numerical_value, "unit": pv.unit} if pv.numerical_value is not None
                             else {"text": pv.text_value}) for pv in reading.property_values}


def profile_result(readings: list[MeterReading], *, limit: int = MAX_PROFILE_ROWS) -> dict[str, Any]:
    """What ``read_profile`` answers: up to ``limit`` rows (time + values), and whether it cut any."""
    rows = [{"readingTime": r.reading_time.isoformat(), "values": _values(r)} for r in readings[:limit]]
    return {"rows": rows, "rowCount": len(readings), "truncated": len(readings) > limit}


def profile_range(params: dict[str, Any]) -> tuple[datetime, datetime]:
    """The ``from``/``to`` of a read_profile command, checked: both aware, to > from, at most 31 days."""
    start, end = _moment(params, "from", None), _moment(params, "to", None)
    if start is None or end is None:
        raise InvalidParameters("read_profile needs 'from' and 'to'")
    if end <= start:
        raise InvalidParameters("'to' must be after 'from'")
    if end - start > MAX_PROFILE_RANGE:
        raise InvalidParameters(f"the range may span at most {MAX_PROFILE_RANGE.days} days")
    return start, end


def _moment(params: dict[str, Any], key: str, default: datetime | None) -> datetime | None:
    raw = params.get(key)
    if raw is None:
        return default
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise InvalidParameters(f"{key} must be an ISO 8601 time, not {raw!r}") from None
    if moment.tzinfo is None:
        raise InvalidParameters(f"{key} must carry a timezone offset")
    return moment


def common_handlers(*, meter_id: str, poller: MeterPoller,
                    completeness: CompletenessQuery) -> dict[str, CommandHandler]:
    """Handlers every polled meter has: read_now and get_completeness."""

    async def read_now(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors():
            return reading_result(await poller.poll_now(meter_id))

    async def get_completeness(params: dict[str, Any]) -> dict[str, Any]:
        days = int(params.get("days", 7))
        if not 1 <= days <= 31:
            raise InvalidParameters("days must be within 1..31")
        return {"completeness": completeness(meter_id, days)}

    return {"read_now": read_now, "get_completeness": get_completeness}


def power_quality_handlers(*, adapter: Any, poller: MeterPoller) -> dict[str, CommandHandler]:
    """Power quality on a DLMS meter whose profile has ``powerQuality`` objects."""
    meter_id = adapter.meter_id

    async def get_power_quality(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors(), poller.exclusive(meter_id):
            return await adapter.read_power_quality()

    async def read_power_quality_profile(params: dict[str, Any]) -> dict[str, Any]:
        start, end = profile_range(params)
        async with meter_errors(), poller.exclusive(meter_id):
            profile = await adapter.read_power_quality_profile(start, end)
        rows = profile.pop("rows")
        return {"from": start.isoformat(), "to": end.isoformat(), **profile, "rows": rows[:MAX_PROFILE_ROWS],
                "rowCount": len(rows), "truncated": len(rows) > MAX_PROFILE_ROWS}

    async def read_power_quality_events(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors(), poller.exclusive(meter_id), adapter.session():
            counters = (await adapter.read_power_quality()).get("counters", {})
            events = await adapter.read_power_quality_events()
        return {"counters": counters, "events": events}

    return {"get_power_quality": get_power_quality, "read_power_quality_profile": read_power_quality_profile,
            "read_power_quality_events": read_power_quality_events}


def dlms_handlers(*, adapter: Any, poller: MeterPoller, completeness: CompletenessQuery,
                  backfill: Callable[..., Any] | None = None,
                  clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                  key_store: Any = None) -> dict[str, CommandHandler]:
    """Handlers for one DLMS meter (``adapter`` is an :class:`edge.dlms.DlmsMeterAdapter`; ``key_store``
    the concentrator's :class:`edge.dlms.key_store.DlmsKeyStore`, None without a sealing key)."""
    meter_id = adapter.meter_id

    async def get_clock(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors(), poller.exclusive(meter_id):
            moment, status = await adapter.read_clock()
        return {"time": moment.isoformat(), "status": status, "offsetSeconds": (moment - clock()).total_seconds()}

    async def set_clock(params: dict[str, Any]) -> dict[str, Any]:
        moment = _moment(params, "time", None) or clock()
        async with meter_errors(), poller.exclusive(meter_id):
            await adapter.set_clock(moment)
        return {"time": moment.isoformat()}

    async def disconnect(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors(), poller.exclusive(meter_id):
            return {"outputState": await adapter.disconnect()}

    async def connect(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors(), poller.exclusive(meter_id):
            return {"outputState": await adapter.reconnect()}

    async def get_output_state(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors(), poller.exclusive(meter_id):
            return {"outputState": await adapter.read_output_state()}

    async def read_profile(params: dict[str, Any]) -> dict[str, Any]:
        start, end = profile_range(params)
        async with meter_errors(), poller.exclusive(meter_id):
            readings = await adapter.read_load_profile(start, end)
        return {"from": start.isoformat(), "to": end.isoformat()} | profile_result(readings)

    async def read_alarms(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors(), poller.exclusive(meter_id), adapter.session():
            bits = await adapter.read_alarm_register()
            events = await adapter.read_event_log()
        return {"alarmRegister": bits, "alarms": decode_alarms(bits), "events": decode_events(events)}

    async def get_firmware_version(_params: dict[str, Any]) -> dict[str, Any]:
        async with meter_errors(), poller.exclusive(meter_id):
            return {"firmwareVersion": await adapter.read_firmware_version()}

    async def set_relay_schedule(params: dict[str, Any]) -> dict[str, Any]:
        points = parse_schedule(params)
        if any(p.index != 1 for p in points):
            raise InvalidParameters(f"{meter_id} has one disconnector (relay 1) to schedule")
        async with meter_errors(), poller.exclusive(meter_id):
            held = await adapter.write_relay_schedule(points)
        return schedule_result(points, held, meter_id)

    handlers = common_handlers(meter_id=meter_id, poller=poller, completeness=completeness)
    handlers["set_relay_schedule"] = set_relay_schedule
    handlers["change_keys"] = key_change_handler(adapter=adapter, poller=poller, store=key_store,
                                                 meter_errors=meter_errors)
    if getattr(adapter.profile, "power_quality", None) is not None:
        handlers.update(power_quality_handlers(adapter=adapter, poller=poller))
    handlers.update(get_firmware_version=get_firmware_version, get_clock=get_clock, set_clock=set_clock, disconnect=disconnect, connect=connect,
                    get_output_state=get_output_state, read_profile=read_profile, read_alarms=read_alarms)
    if backfill is not None:
        async def run_backfill(params: dict[str, Any]) -> dict[str, Any]:
            async with meter_errors():
                count = await backfill(meter_id, start=_moment(params, "start", None), end=_moment(params, "end", None))
            return {"readings": count}

        handlers["backfill"] = run_backfill
    return handlers


def modbus_handlers(*, source: Any, poller: MeterPoller, completeness: CompletenessQuery) -> dict[str, CommandHandler]:
    """Handlers for one Modbus meter (``source`` is an :class:`edge.modbus.ModbusMeterSource`)."""
    meter_id = source.meter_id

    async def write_register(params: dict[str, Any]) -> dict[str, Any]:
        point = params.get("point") or params.get("name")
        if not isinstance(point, str) or "value" not in params:
            raise InvalidParameters("write_register needs 'point' (a point name of the register map) and 'value'")
        value = params["value"]
        async with meter_errors(), poller.exclusive(meter_id):
            await source.write_point(point, value)
        return {"point": point, "value": value}

    handlers = common_handlers(meter_id=meter_id, poller=poller, completeness=completeness)
    handlers["write_register"] = write_register
    handlers.update(load_control_handlers(source=source, poller=poller, meter_errors=meter_errors))
    return handlers
