"""Weekly switching schedules, pure: entries to switch points, what comes due when, and the two
encodings devices keep them in (DLMS class 22 execution times, a Modbus relay's schedule block)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.modbus.register_map import RegisterMapError, ScheduleBlock, load_map, parse_map
from edge.dlms.cosem_schedule import decode_execution_times, encode_execution_times
from edge.modbus.schedule import decode_schedule, encode_schedule
from edge.switching import ScheduleError, SwitchingClock, SwitchPoint, due, entries_of, switch_points

MONDAY = datetime(2026, 3, 9, tzinfo=UTC)
points_st = st.lists(st.builds(SwitchPoint, weekday=st.integers(1, 7), minute=st.integers(0, 1439),
                               index=st.integers(1, 4), closed=st.booleans()), max_size=40)


def test_entries_become_switch_points_per_day() -> None:
    points = switch_points([{"time": "22:00", "closed": False},
                            {"time": "07:00", "closed": True, "days": ["MONDAY", "FRIDAY"], "index": 1}])
    assert len(points) == 9
    assert points[0] == SwitchPoint(1, 420, 1, True)
    assert entries_of(points) == [{"days": ["MONDAY", "FRIDAY"], "time": "07:00", "index": 1, "closed": True},
                                  {"days": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY",
                                            "SUNDAY"], "time": "22:00", "index": 1, "closed": False}]


@pytest.mark.parametrize("entries", [[], None, [{"time": "24:00", "closed": True}], [{"time": "7", "closed": True}],
                                     [{"time": "07:00", "closed": "yes"}], [{"time": "07:00", "closed": True,
                                                                             "days": ["FUNDAY"]}],
                                     [{"time": "07:00", "closed": True, "index": 0}],
                                     [{"time": "07:00", "closed": True}, {"time": "07:00", "closed": False}]])
def test_entries_a_device_cannot_hold_are_refused(entries) -> None:
    with pytest.raises(ScheduleError):
        switch_points(entries)


def test_due_finds_every_moment_in_the_window_in_order() -> None:
    points = [SwitchPoint(1, 60, 1, True), SwitchPoint(7, 1380, 1, False)]
    moments = due(points, MONDAY, MONDAY + timedelta(days=14))
    assert [m for m, _ in moments] == [MONDAY + timedelta(hours=1), MONDAY + timedelta(days=6, hours=23),
                                       MONDAY + timedelta(days=7, hours=1), MONDAY + timedelta(days=13, hours=23)]
    assert due(points, MONDAY + timedelta(hours=1), MONDAY + timedelta(hours=1)) == []


@given(points_st, st.integers(0, 20_000), st.integers(1, 30_000))
def test_settling_in_steps_switches_as_settling_once(points: list[SwitchPoint], start: int, span: int) -> None:
    begin = MONDAY + timedelta(minutes=start)
    once, steps = SwitchingClock(), SwitchingClock()
    once.store(points, begin)
    steps.store(points, begin)
    final = once.settle(begin + timedelta(minutes=span))
    stepped: dict[int, bool] = {}
    for minute in range(0, span + 1, max(1, span // 7)):
        stepped.update(steps.settle(begin + timedelta(minutes=minute)))
    stepped.update(steps.settle(begin + timedelta(minutes=span)))
    assert stepped == final
    assert once.switched == steps.switched


@given(points_st)
def test_modbus_block_round_trip(points: list[SwitchPoint]) -> None:
    block = ScheduleBlock(address=200, slots=50)
    unique = sorted({(p.weekday, p.minute, p.index): p for p in points}.values())
    words = encode_schedule(unique, block)
    assert len(words) == 101 and all(0 <= w < 65536 for w in words)
    assert decode_schedule(words, block) == unique


def test_modbus_block_refuses_too_many_entries_and_stray_words() -> None:
    block = ScheduleBlock(address=0, slots=2)
    with pytest.raises(ScheduleError, match="holds 2"):
        encode_schedule([SwitchPoint(1, m, 1, True) for m in (1, 2, 3)], block)
    with pytest.raises(ScheduleError):
        decode_schedule([3, 0, 0, 0, 0], block)
    with pytest.raises(ScheduleError, match="no weekday"):
        decode_schedule([1, 0x0100, 60, 0, 0], block)


def test_a_schedule_block_may_not_overlap_a_holding_point() -> None:
    document = load_map("load-control-relay").model_dump(by_alias=True, exclude_none=True)
    document["schedule"] = {"address": 5, "slots": 3}  # 5..11 holds switch_delay at 10
    with pytest.raises(RegisterMapError, match="overlaps the schedule block"):
        parse_map(document)


@given(st.lists(st.tuples(st.integers(1, 7), st.integers(0, 1439)), max_size=30))
def test_dlms_execution_times_round_trip(moments: list[tuple[int, int]]) -> None:
    from gurux_dlms.GXByteBuffer import GXByteBuffer
    from gurux_dlms.internal._GXCommon import _GXCommon
    from gurux_dlms.internal._GXDataInfo import _GXDataInfo

    encoded = encode_execution_times(moments)
    decoded = _GXCommon.getData(None, GXByteBuffer(bytearray(encoded)), _GXDataInfo())
    assert decode_execution_times(decoded) == sorted(set(moments))
