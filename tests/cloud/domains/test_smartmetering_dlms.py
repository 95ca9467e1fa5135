"""Smart metering end to end: API -> domain -> core -> concentrator executor -> the real
DLMS handlers -> a simulated DLMS meter over TCP, and the result back through the results API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from broker.schemas import MeterReading
from cloud.domains.smartmetering.translator import DOMAIN
from edge.commands.meter_handlers import dlms_handlers
from edge.dlms import (
    DlmsMeterAdapter,
    DlmsMeterConfig,
    DlmsMeterSimulator,
    MeterModel,
    SecurityMode,
    ServerSecurity,
)
from edge.dlms.alarms import alarm_bit
from edge.dlms.sim_firmware import SimFirmware
from edge.polling import MeterPoller
from tests.cloud.core.harness import METER, Stack
from tests.cloud.domains.test_end_to_end import _run
from tests.fixtures.clock import ManualClock

NOW = datetime(2026, 3, 10, 12, 7, 30, tzinfo=UTC)


async def _discard(_reading: MeterReading) -> None:
    return None


@pytest.fixture
def model() -> MeterModel:
    clock = ManualClock(NOW)
    return MeterModel(time_source=clock, drift_epoch=NOW, history_days=3)


@pytest.fixture
async def dlms_stack(stack: Stack, model: MeterModel) -> AsyncIterator[Stack]:
    """The platform with meter-1 served by the real DLMS handlers on a simulated meter (no security)."""
    async with DlmsMeterSimulator(model=model, security=ServerSecurity(mode=SecurityMode.NONE),
                                  name="e2e-meter") as sim:
        config = DlmsMeterConfig.model_validate({"meter_id": METER, "host": "127.0.0.1", "port": sim.port,
                                                 "security": "none", "timeout_s": 2.0, "profile": "smr-5"})
        adapter = DlmsMeterAdapter(config=config)
        poller = MeterPoller(sink=_discard)
        poller.add(adapter)
        assert stack.executor is not None
        stack.executor.register(METER, dlms_handlers(adapter=adapter, poller=poller,
                                                     completeness=lambda _m, _d: {}))
        yield stack


@pytest.mark.parametrize("bad", [{"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
                                 {"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
                                 {"from": "2026-03-01T00:00:00", "to": "2026-03-02T00:00:00Z"},
                                 {"to": "2026-03-02T00:00:00Z"}])
def test_periodic_reads_refuse_bad_ranges(bad: dict) -> None:
    with pytest.raises(ValidationError):
        DOMAIN.operation("periodicReads").commands(bad)


def test_periodic_reads_translate_to_read_profile() -> None:
    [spec] = DOMAIN.operation("periodicReads").commands(
        {"from": "2026-03-01T00:00:00+01:00", "to": "2026-03-31T00:00:00Z"})
    assert spec.name == "read_profile"
    assert spec.parameters == {"from": "2026-03-01T00:00:00+01:00", "to": "2026-03-31T00:00:00+00:00"}


async def test_periodic_reads_return_the_load_profile_of_the_range(dlms_stack: Stack, model: MeterModel) -> None:
    start, end = NOW - timedelta(hours=1), NOW
    body = {"from": start.isoformat(), "to": end.isoformat()}
    note, result = await _run(dlms_stack, "smartmetering", f"{METER}/periodicReads", body)
    assert note["_topic"] == "app/org-a/smartmetering/periodicReads"
    assert result["status"] == "SUCCEEDED", str(result["commands"])
    assert [c["name"] for c in result["commands"]] == ["read_profile"]
    rows = model.profile_rows(start, end)
    assert result["result"]["rowCount"] == len(rows) == 4 and result["result"]["truncated"] is False
    assert [r["readingTime"] for r in result["result"]["rows"]] == [r.time.isoformat() for r in rows]
    assert result["result"]["rows"][-1]["values"]["OBIS_2.8.2"]["value"] == pytest.approx(rows[-1].energy_wh[3] / 1000)


async def test_periodic_reads_refuse_bad_ranges_with_422(dlms_stack: Stack) -> None:
    for body in ({"from": NOW.isoformat(), "to": (NOW - timedelta(hours=1)).isoformat()},
                 {"from": (NOW - timedelta(days=32)).isoformat(), "to": NOW.isoformat()},
                 {"from": "2026-03-10T10:00:00", "to": NOW.isoformat()},
                 {"to": NOW.isoformat()}):
        answer = await dlms_stack.post(f"/v1/smartmetering/devices/{METER}/periodicReads", body)
        assert answer.status_code == 422, (body, answer.text)


async def test_read_alarms_decodes_register_and_event_log(dlms_stack: Stack, model: MeterModel) -> None:
    model.raise_alarm(alarm_bit("FRAUD_ATTEMPT"))
    model.log_event(1, NOW - timedelta(hours=2))
    model.log_event(2, NOW - timedelta(hours=1))
    note, result = await _run(dlms_stack, "smartmetering", f"{METER}/alarms")
    assert note["_topic"] == "app/org-a/smartmetering/alarms"
    assert result["status"] == "SUCCEEDED", str(result["commands"])
    assert result["result"]["alarmRegister"] == 1 << 13
    assert result["result"]["alarms"] == [{"bit": 13, "name": "FRAUD_ATTEMPT"}]
    assert [(e["name"], e["time"]) for e in result["result"]["events"]] == [
        ("POWER_FAILURE", (NOW - timedelta(hours=2)).isoformat()),
        ("POWER_RETURNED", (NOW - timedelta(hours=1)).isoformat())]


async def test_reads_switching_clock_and_firmware_reach_the_meter(dlms_stack: Stack, model: MeterModel) -> None:
    """The remaining smart-metering operations, through the real DLMS handlers to the simulated meter."""
    _, result = await _run(dlms_stack, "smartmetering", f"{METER}/actualReads")
    assert result["status"] == "SUCCEEDED", str(result["commands"])
    [reading] = result["result"]["readings"]
    assert reading["values"]["OBIS_1.8.1"]["unit"] == "kWh" and reading["values"]["OBIS_1.8.1"]["value"] > 0
    _, result = await _run(dlms_stack, "smartmetering", f"{METER}/disconnect")
    assert result["status"] == "SUCCEEDED" and result["result"] == {"outputState": False}, str(result)
    assert model.output_state is False
    _, result = await _run(dlms_stack, "smartmetering", f"{METER}/reconnect")
    assert result["status"] == "SUCCEEDED" and result["result"] == {"outputState": True}, str(result)
    assert model.output_state is True
    _, result = await _run(dlms_stack, "smartmetering", f"{METER}/synchronizeTime")
    assert result["status"] == "SUCCEEDED" and "time" in result["result"], str(result)
    _, result = await _run(dlms_stack, "smartmetering", f"{METER}/firmwareVersion")
    assert result["status"] == "SUCCEEDED" and result["result"] == {"firmwareVersion": SimFirmware().version}
