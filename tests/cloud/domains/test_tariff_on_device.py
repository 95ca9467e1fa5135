"""Tariff switching on the device, end to end: API -> domain -> core -> concentrator executor -> the
real DLMS handler writes the meter's two single action schedules (class 22) -> the simulated meter
switches its disconnector by itself at the scheduled times of a fake clock, link or no link; and the
same for a Modbus relay, whose schedule lives in its holding registers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from broker.schemas import ConcentratorStatus, MeterReading
from cloud.domains.concentrator_schedules import ConcentratorScheduleKeeper
from cloud.domains.device_schedules import DeviceScheduleStore
from cloud.domains.process import resend_as_requested
from cloud.registry import DeviceType
from edge.commands.meter_handlers import dlms_handlers, modbus_handlers
from edge.dlms import DlmsMeterAdapter, DlmsMeterConfig, DlmsMeterSimulator, MeterModel, SecurityMode, ServerSecurity
from edge.modbus import ModbusSimulator, load_map
from edge.modbus.config import ModbusMeterConfig
from edge.modbus.source import ModbusConnections, ModbusMeterSource, build_sources
from edge.polling import MeterPoller
from edge.switching import SwitchPoint
from tests.cloud.core.harness import CONCENTRATOR, METER, Stack, session_for
from tests.cloud.domains.test_end_to_end import _run
from tests.cloud.domains.test_loadcontrol import RELAY, register_modbus
from tests.fixtures.clock import ManualClock
from tests.fixtures.waiting import poll_until, wait_for

TUESDAY_NOON = datetime(2026, 3, 10, 12, 7, 30, tzinfo=UTC)
SCHEDULE = {"entries": [{"time": "22:00", "high": False},
                        {"time": "07:00", "high": True, "days": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY",
                                                                 "FRIDAY"]}]}


async def _discard(_reading: MeterReading) -> None:
    return None


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(TUESDAY_NOON)


@pytest.fixture
async def meter(stack: Stack, clock: ManualClock) -> AsyncIterator[tuple[DlmsMeterSimulator, DlmsMeterAdapter]]:
    model = MeterModel(time_source=clock, drift_epoch=TUESDAY_NOON, history_days=1)
    async with DlmsMeterSimulator(model=model, security=ServerSecurity(mode=SecurityMode.NONE),
                                  name="tariff-meter") as sim:
        config = DlmsMeterConfig.model_validate({"meter_id": METER, "host": "127.0.0.1", "port": sim.port,
                                                 "security": "none", "timeout_s": 2.0, "profile": "smr-5"})
        adapter = DlmsMeterAdapter(config=config)
        poller = MeterPoller(sink=_discard)
        poller.add(adapter)
        assert stack.executor is not None
        stack.executor.register(METER, dlms_handlers(adapter=adapter, poller=poller, completeness=lambda _m, _d: {}))
        yield sim, adapter


async def test_the_meter_holds_the_schedule_and_switches_by_itself(stack: Stack, clock: ManualClock,
                                                                  meter: tuple[DlmsMeterSimulator, DlmsMeterAdapter]) -> None:
    sim, adapter = meter
    note, result = await _run(stack, "tariffswitching", f"{METER}/schedule", SCHEDULE)
    assert note["_topic"] == "app/org-a/tariffswitching/setSchedule"
    assert result["status"] == "SUCCEEDED", result
    assert result["result"]["switchPoints"] == 12  # 7 openings, 5 closings
    assert result["result"]["entries"] == [
        {"days": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"], "time": "07:00", "index": 1,
         "closed": True},
        {"days": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"], "time": "22:00",
         "index": 1, "closed": False}]
    held = await adapter.read_relay_schedule()
    assert SwitchPoint(6, 22 * 60, 1, False) in held and SwitchPoint(6, 7 * 60, 1, True) not in held

    # The concentrator is gone: the meter switches on its own schedule.
    await stack.stop_concentrator()
    assert await adapter.read_output_state() is True
    clock.advance(timedelta(hours=9, minutes=52))  # Tuesday 21:59:30
    assert await adapter.read_output_state() is True
    clock.advance(timedelta(minutes=1))  # 22:00:30: low tariff, relay open
    assert await adapter.read_output_state() is False
    clock.advance(timedelta(hours=9))  # Wednesday 07:00:30: closed again
    assert await adapter.read_output_state() is True
    clock.now = datetime(2026, 3, 14, 21, 0, tzinfo=UTC)  # Saturday evening, unread since Wednesday morning
    assert await adapter.read_output_state() is False  # open since Friday 22:00
    clock.now = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)  # Sunday noon: no closing on weekends
    assert await adapter.read_output_state() is False
    moments = [(at.strftime("%a %H:%M"), p.closed) for at, p in sim.model.relay_schedule.switched]
    assert moments[:2] == [("Tue 22:00", False), ("Wed 07:00", True)]
    assert moments[-3:] == [("Fri 07:00", True), ("Fri 22:00", False), ("Sat 22:00", False)]


@pytest.mark.parametrize(("entries", "reason"), [
    ([{"time": "22:00", "index": 2, "high": False}], "one disconnector"),
    ([{"time": "22:00", "high": False}, {"time": "22:00", "high": True, "days": ["MONDAY"]}], "both ways"),
])
async def test_schedules_the_meter_cannot_hold_fail_at_the_edge(stack: Stack, meter, entries: list,
                                                                reason: str) -> None:
    _, result = await _run(stack, "tariffswitching", f"{METER}/schedule", {"entries": entries})
    assert result["status"] == "FAILED"
    error = result["commands"][0]["error"]
    assert error["code"] == "INVALID_PARAMETERS" and reason in error["message"]
    sim, adapter = meter
    assert sim.model.relay_schedule.points == []


@pytest.mark.parametrize("entry", [{"time": "25:00", "high": False}, {"time": "7:00", "high": True},
                                   {"time": "07:00"}, {"time": "07:00", "high": True, "days": ["MONTAG"]},
                                   {"time": "07:00", "high": True, "index": 17}])
async def test_bad_schedules_are_refused_by_the_api(stack: Stack, meter, entry: dict) -> None:
    answer = await stack.post(f"/v1/tariffswitching/devices/{METER}/schedule", {"entries": [entry]})
    assert answer.status_code == 422, answer.text


@pytest.fixture
async def relay(stack: Stack, clock: ManualClock) -> AsyncIterator[tuple[ModbusSimulator, ModbusMeterSource]]:
    """A four-load Modbus relay behind conc-1 whose schedule runs on the test's clock."""
    async with ModbusSimulator(register_map=load_map("load-control-relay"), clock=lambda: 0.0,
                               wall_clock=clock) as sim:
        connections = ModbusConnections()
        config = ModbusMeterConfig.model_validate({"meterIndividualId": RELAY, "registerMap": "load-control-relay",
                                                   "tcp": {"host": "127.0.0.1", "port": sim.port}, "timeout": 2})
        [source] = build_sources([config], connections)
        poller = MeterPoller(sink=_discard)
        poller.add(source)
        assert stack.executor is not None
        stack.executor.register(RELAY, modbus_handlers(source=source, poller=poller, completeness=lambda _m, _d: {}))
        await register_modbus(stack, RELAY, DeviceType.LOAD_CONTROL)
        try:
            yield sim, source
        finally:
            connections.close()


async def test_a_modbus_relay_keeps_its_schedule_and_switches_by_itself(stack: Stack, clock: ManualClock,
                                                                       relay) -> None:
    sim, source = relay
    body = {"entries": [{"time": "06:30", "high": True, "index": 2, "days": ["SATURDAY", "SUNDAY"]},
                        {"time": "23:00", "high": False, "index": 2},
                        {"time": "12:30", "high": True, "index": 4, "days": ["TUESDAY"]}]}
    _, result = await _run(stack, "tariffswitching", f"{RELAY}/schedule", body)
    assert result["status"] == "SUCCEEDED", result
    assert result["result"]["switchPoints"] == 2 + 7 + 1
    assert await source.adapter.read_schedule() == sorted(
        [SwitchPoint(6, 390, 2, True), SwitchPoint(7, 390, 2, True), SwitchPoint(2, 750, 4, True)]
        + [SwitchPoint(day, 23 * 60, 2, False) for day in range(1, 8)])

    await stack.stop_concentrator()
    sim.set_value("relay_2", True)  # on by hand before the evening
    clock.advance(timedelta(minutes=23))  # Tuesday 12:30:30
    values = await source.adapter.read_values()
    assert (values["relay_4_state"], values["relay_2_state"]) == (True, True)
    clock.now = datetime(2026, 3, 10, 23, 0, 1, tzinfo=UTC)
    assert (await source.adapter.read_values())["relay_2_state"] is False
    clock.now = datetime(2026, 3, 14, 6, 31, tzinfo=UTC)  # Saturday morning
    assert (await source.adapter.read_values())["relay_2_state"] is True
    assert [at.strftime("%a %H:%M") for at, _ in sim.switching.switched] == [
        "Tue 12:30", "Tue 23:00", "Wed 23:00", "Thu 23:00", "Fri 23:00", "Sat 06:30"]


async def test_a_modbus_relay_refuses_relays_it_does_not_have(stack: Stack, relay) -> None:
    _, result = await _run(stack, "tariffswitching", f"{RELAY}/schedule",
                           {"entries": [{"time": "06:30", "high": True, "index": 5}]})
    assert result["status"] == "FAILED"
    assert result["commands"][0]["error"]["code"] == "INVALID_PARAMETERS"
    sim, _source = relay
    assert sim.switching.points == []


async def test_a_schedule_that_expired_while_the_concentrator_was_away_is_sent_when_it_connects(
        stack: Stack, meter: tuple[DlmsMeterSimulator, DlmsMeterAdapter]) -> None:
    sim, adapter = meter
    keeper_session = session_for(stack.broker, "gridwire-cloud")
    await keeper_session.connect()
    schedules = DeviceScheduleStore(stack.registry.engine)
    keeper = ConcentratorScheduleKeeper(session=keeper_session, store=schedules, requests=stack.requests,
                                        registry=stack.registry,
                                        resend=resend_as_requested(session=keeper_session, registry=stack.registry,
                                                                   requests=stack.requests))
    await keeper.start()
    try:
        await stack.stop_concentrator()
        answer = await stack.post(f"/v1/tariffswitching/devices/{METER}/schedule", SCHEDULE, ttlSeconds=1)
        assert answer.status_code == 202, answer.text
        first = answer.json()["correlationId"]
        ended = await poll_until(lambda: stack.result("tariffswitching", first), lambda r: r["status"] != "PENDING",
                                 timeout=30, what="the schedule's request to expire")
        assert ended["status"] in ("EXPIRED", "TIMEOUT"), ended
        assert sim.model.relay_schedule.points == []

        executor = await stack.start_concentrator()
        poller = MeterPoller(sink=_discard)
        poller.add(adapter)
        executor.register(METER, dlms_handlers(adapter=adapter, poller=poller, completeness=lambda _m, _d: {}))
        assert stack.concentrator_session is not None

        async def birth(session: int) -> None:
            status = ConcentratorStatus(concentrator_id=CONCENTRATOR, state="ONLINE", timestamp=datetime.now(UTC),
                                        session=session)
            assert stack.concentrator_session is not None
            await stack.concentrator_session.publish(f"concentrator/{CONCENTRATOR}/status", status.to_wire(), qos=1)

        await birth(1)
        await wait_for(lambda: keeper.resent == 1, timeout=20, what="the schedule sent again")
        state = await schedules.get(METER)
        assert state is not None and state.sent_correlation != first and state.resends == 1
        note = await stack.notification(state.sent_correlation, timeout=20)
        assert note["status"] == "SUCCEEDED", note
        held = await adapter.read_relay_schedule()
        assert SwitchPoint(6, 22 * 60, 1, False) in held

        await birth(1)  # the same connection's periodic status: nothing to do
        await birth(2)  # the next connection: the re-send succeeded, so the meter holds it
        await poll_until(lambda: schedules.get(METER), lambda s: s is not None and s.confirmed, timeout=20,
                         what="the schedule confirmed")
        assert keeper.resent == 1
    finally:
        await keeper_session.close()
