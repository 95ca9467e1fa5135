"""Power quality end to end: API -> domain -> core -> concentrator executor -> the real DLMS handlers ->
the simulated meter's power-quality objects (from the SMR 5 profile), with exact expected values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.registry import FunctionGroup
from devices.profiles import load_profile
from edge.dlms import MeterModel, pq_model
from tests.cloud.core.harness import METER, ORG_B, Stack
from tests.cloud.domains.test_end_to_end import _run
from tests.cloud.domains.test_smartmetering_dlms import NOW, dlms_stack, model  # noqa: F401 - fixtures

SPEC = load_profile("smr-5").power_quality
assert SPEC is not None


def expected(model: MeterModel, obis: str, at: datetime) -> float:
    value = SPEC.value(obis)
    return round(pq_model.register_value(model, value, at) * 10 ** pq_model.SCALERS[value.quantity], 4)


async def test_actual_values_per_phase(dlms_stack: Stack, model: MeterModel) -> None:
    note, result = await _run(dlms_stack, "powerquality", f"{METER}/actualValues")
    assert note["_topic"] == "app/org-a/powerquality/actualValues"
    assert result["status"] == "SUCCEEDED", result
    values = result["result"]
    assert values["phases"]["L2"]["voltage"] == pytest.approx(expected(model, "1.0.52.7.0.255", NOW))
    assert values["phases"]["L3"]["current"] == pytest.approx(expected(model, "1.0.71.7.0.255", NOW))
    assert values["phases"]["L1"]["powerFactor"] == pytest.approx(expected(model, "1.0.33.7.0.255", NOW))
    assert values["phases"]["L1"]["thdVoltage"] == pytest.approx(expected(model, "1.0.32.7.124.255", NOW))
    assert values["frequency"] == pytest.approx(expected(model, "1.0.14.7.0.255", NOW))
    assert 45 < values["frequency"] < 55 and all(200 < values["phases"][p]["voltage"] < 260 for p in ("L1", "L2", "L3"))
    assert values["counters"] == {p: {"sags": 0, "swells": 0} for p in ("L1", "L2", "L3")}
    assert values["units"]["voltage"] == "V"


async def test_profile_by_range(dlms_stack: Stack, model: MeterModel) -> None:
    start, end = NOW - timedelta(hours=2), NOW
    _, result = await _run(dlms_stack, "powerquality", f"{METER}/profile",
                           {"from": start.isoformat(), "to": end.isoformat()})
    assert result["status"] == "SUCCEEDED", result
    profile = result["result"]
    assert profile["columns"] == ["voltageL1", "voltageL2", "voltageL3", "frequency"]
    assert profile["rowCount"] == 12 and not profile["truncated"]  # 10:10 .. 12:00 every 10 minutes
    first = profile["rows"][0]
    at = datetime.fromisoformat(first["time"])
    assert at == datetime(2026, 3, 10, 10, 10, tzinfo=UTC)
    assert first["values"][1] == pytest.approx(expected(model, "1.0.52.7.0.255", at))
    assert first["values"][3] == pytest.approx(expected(model, "1.0.14.7.0.255", at))


async def test_sags_and_swells_are_counted_and_logged(dlms_stack: Stack, model: MeterModel) -> None:
    pq_model.inject(model, "sag", "L2", NOW - timedelta(minutes=5))
    pq_model.inject(model, "sag", "L2", NOW - timedelta(minutes=3))
    pq_model.inject(model, "swell", "L3", NOW - timedelta(minutes=1))
    pq_model.inject(model, "sag", "L3", NOW + timedelta(minutes=10))  # not yet
    _, result = await _run(dlms_stack, "powerquality", f"{METER}/events")
    assert result["status"] == "SUCCEEDED", result
    assert result["result"]["counters"] == {"L1": {"sags": 0, "swells": 0}, "L2": {"sags": 2, "swells": 0},
                                            "L3": {"sags": 0, "swells": 1}}
    assert [(e["code"], e["kind"], e["phase"]) for e in result["result"]["events"]] == [
        (77, "sag", "L2"), (77, "sag", "L2"), (81, "swell", "L3")]
    assert datetime.fromisoformat(result["result"]["events"][0]["time"]) == NOW - timedelta(minutes=5)


async def test_bad_ranges_and_missing_rights_are_refused(dlms_stack: Stack) -> None:
    bad = await dlms_stack.post(f"/v1/powerquality/devices/{METER}/profile",
                                {"from": NOW.isoformat(), "to": (NOW - timedelta(hours=1)).isoformat()})
    assert bad.status_code == 422
    answer = await dlms_stack.post(f"/v1/powerquality/devices/{METER}/actualValues", org=ORG_B)
    assert answer.status_code == 403 and "GET_POWER_QUALITY" in answer.json()["detail"]
    await dlms_stack.registry.grant(METER, ORG_B, FunctionGroup.MONITORING)
    answer = await dlms_stack.post(f"/v1/powerquality/devices/{METER}/actualValues", org=ORG_B)
    assert answer.status_code == 202
