"""The read_profile and read_alarms command handlers against the simulated meter over TCP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from broker.schemas import MeterReading
from edge.commands.errors import InvalidParameters
from edge.commands.meter_handlers import dlms_handlers, profile_result
from edge.dlms import DlmsMeterAdapter, DlmsMeterConfig, DlmsMeterSimulator, MeterModel
from edge.dlms.alarms import alarm_bit
from edge.polling import MeterPoller
from tests.edge.dlms.conftest import ManualClock


async def _discard(_readings: list[MeterReading]) -> None:
    return None


def handlers_for(sim: DlmsMeterSimulator, config_for: Callable[..., DlmsMeterConfig]) -> dict:
    adapter = DlmsMeterAdapter(config=config_for(sim))
    poller = MeterPoller(sink=_discard)
    poller.add(adapter)  # not started: only its per-meter lock is used
    return dlms_handlers(adapter=adapter, poller=poller, completeness=lambda _m, _d: {})


async def test_read_profile_returns_the_rows_of_the_range(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                          clock: ManualClock,
                                                          config_for: Callable[..., DlmsMeterConfig]) -> None:
    handlers = handlers_for(lls_meter, config_for)
    start, end = clock.now - timedelta(hours=2), clock.now
    result = await handlers["read_profile"]({"from": start.isoformat(), "to": end.isoformat()})
    expected = model.profile_rows(start, end)
    assert result["rowCount"] == len(expected) == 8 and result["truncated"] is False
    assert [row["readingTime"] for row in result["rows"]] == [r.time.isoformat() for r in expected]
    first = result["rows"][0]["values"]
    assert first["OBIS_1.8.1"]["value"] == pytest.approx(expected[0].energy_wh[0] / 1000)
    assert first["OBIS_1.8.1"]["unit"] == "kWh"


@pytest.mark.parametrize(("start", "end", "message"), [
    ("2026-03-10T00:00:00+00:00", "2026-03-09T00:00:00+00:00", "after"),
    ("2026-01-01T00:00:00+00:00", "2026-03-09T00:00:00+00:00", "31 days"),
    ("2026-03-09T00:00:00", "2026-03-10T00:00:00+00:00", "timezone"),
    (None, "2026-03-10T00:00:00+00:00", "needs"),
])
async def test_read_profile_refuses_bad_ranges(lls_meter: DlmsMeterSimulator, start: str | None, end: str,
                                               message: str, config_for: Callable[..., DlmsMeterConfig]) -> None:
    handlers = handlers_for(lls_meter, config_for)
    params = {"to": end} | ({"from": start} if start else {})
    with pytest.raises(InvalidParameters, match=message):
        await handlers["read_profile"](params)
    assert lls_meter.connections_accepted == 0  # refused before touching the meter


async def test_profile_result_says_when_it_cut_rows(lls_meter: DlmsMeterSimulator, clock: ManualClock,
                                                   config_for: Callable[..., DlmsMeterConfig]) -> None:
    readings = await DlmsMeterAdapter(config=config_for(lls_meter)).read_load_profile(
        clock.now - timedelta(hours=5), clock.now)
    cut = profile_result(readings, limit=10)
    assert cut["truncated"] is True and cut["rowCount"] == len(readings) == 20 and len(cut["rows"]) == 10
    assert cut["rows"][-1]["readingTime"] == readings[9].reading_time.isoformat()
    assert profile_result(readings)["truncated"] is False


async def test_read_alarms_decodes_bits_and_events(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                   clock: ManualClock,
                                                   config_for: Callable[..., DlmsMeterConfig]) -> None:
    model.raise_alarm(alarm_bit("POWER_UP"))
    model.raise_alarm(alarm_bit("COMMUNICATION_ERROR_M_BUS_CHANNEL_1"))
    model.log_event(1, clock.now - timedelta(minutes=30))
    model.log_event(2, clock.now - timedelta(minutes=29))
    result = await handlers_for(lls_meter, config_for)["read_alarms"]({})
    assert result["alarmRegister"] == (1 << 2) | (1 << 16)
    assert [a["name"] for a in result["alarms"]] == ["POWER_UP", "COMMUNICATION_ERROR_M_BUS_CHANNEL_1"]
    assert result["events"] == [
        {"time": (clock.now - timedelta(minutes=30)).isoformat(), "code": 1, "name": "POWER_FAILURE"},
        {"time": (clock.now - timedelta(minutes=29)).isoformat(), "code": 2, "name": "POWER_RETURNED"},
    ]
    assert lls_meter.connections_accepted == 1  # register and log read in one association
