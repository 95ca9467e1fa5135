"""The simulated meter's power quality (pure): per-phase values as closed-form functions of time.

Phase voltages and currents are the meter model's own registers (1.0.x2.7.0, 1.0.x1.7.0);
a profile naming other voltage codes gets a voltage that swings a few volts over the day and
the hour, phase-shifted, with a deterministic flutter, pulled down (sag, to 80 %) or up (swell,
to 112 %) for ``EVENT_SECONDS`` by an event. Power factor, frequency and THD wander in their
usual bands. Sags and swells are events the test (or the demo) injects: each one is counted on
its phase and logged with its DSMR code.
Every value is exact for any instant, so a test computes what the meter must answer.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

from devices.profiles.power_quality import PowerQualitySpec, PqValue
from edge.dlms.meter_model import ENERGY_EPOCH, PHASE_CURRENT_OBIS, PHASE_VOLTAGE_OBIS, MeterModel

NOMINAL_V = 230.0
EVENT_SECONDS = 2.0
PHASE_SHIFT = {"L1": 0.0, "L2": 2 * math.pi / 3, "L3": 4 * math.pi / 3}
# Scaler (10^n) and DLMS unit code per quantity: V, A, none, Hz, %.
SCALERS = {"voltage": -1, "current": -2, "powerFactor": -3, "frequency": -2, "thdVoltage": -1, "thdCurrent": -1}
UNIT_CODES = {"voltage": 35, "current": 33, "powerFactor": 255, "frequency": 44, "thdVoltage": 56, "thdCurrent": 56}


def _flutter(obis: str, moment: datetime) -> float:
    """A deterministic -1..1 that changes every 10 s: noise a test can still compute."""
    slot = int((moment - ENERGY_EPOCH).total_seconds() // 10)
    digest = hashlib.blake2b(f"{obis}:{slot}".encode(), digest_size=2).digest()
    return int.from_bytes(digest, "big") / 32767.5 - 1.0


def engineering_value(model: MeterModel, value: PqValue, moment: datetime) -> float:
    """What ``value`` reads at true time ``moment``, in its unit (before scaling to an integer)."""
    t = (moment - ENERGY_EPOCH).total_seconds()
    shift = PHASE_SHIFT.get(value.phase or "L1", 0.0)
    day = 2 * math.pi * t / 86_400
    # The meter's own phase voltage and current registers (the simulator serves those).
    if value.obis in PHASE_VOLTAGE_OBIS:
        return model.phase_voltage_at(PHASE_VOLTAGE_OBIS.index(value.obis), moment) / 10
    if value.obis in PHASE_CURRENT_OBIS:
        return model.phase_current_at(PHASE_CURRENT_OBIS.index(value.obis), moment) / 100
    if value.quantity == "voltage":
        volts = (NOMINAL_V + 3.0 * math.sin(day + shift) + 1.5 * math.sin(2 * math.pi * t / 3600 + shift)
                 + 0.3 * _flutter(value.obis, moment))
        event = active_event(model, value.phase, moment)
        return volts * (0.8 if event == "sag" else 1.12 if event == "swell" else 1.0)
    if value.quantity == "current":
        share = (1.0 + 0.2 * math.sin(day + shift)) / 3.0
        return model.power_at(moment) * share / NOMINAL_V
    if value.quantity == "powerFactor":
        return 0.95 + 0.03 * math.sin(day / 2 + shift) + 0.005 * _flutter(value.obis, moment)
    if value.quantity == "frequency":
        return 50.0 + 0.03 * math.sin(2 * math.pi * t / 600) + 0.005 * _flutter(value.obis, moment)
    return 2.5 + 0.8 * math.sin(day + shift) + 0.1 * _flutter(value.obis, moment)  # THD, %


def register_value(model: MeterModel, value: PqValue, moment: datetime) -> int:
    """The register's integer value (its scaler applied by the reader)."""
    return round(engineering_value(model, value, moment) / 10 ** SCALERS[value.quantity])


def active_event(model: MeterModel, phase: str | None, moment: datetime) -> str | None:
    for at, kind, event_phase in model.power_quality_events:
        if event_phase == phase and at <= moment < at + timedelta(seconds=EVENT_SECONDS):
            return kind
    return None


def inject(model: MeterModel, kind: str, phase: str, at: datetime | None = None) -> None:
    """A voltage sag or swell on ``phase`` starting at true time ``at`` (default now)."""
    if kind not in ("sag", "swell") or phase not in PHASE_SHIFT:
        raise ValueError(f"no such power-quality event: {kind} on {phase}")
    model.power_quality_events.append(((at or model.true_now()).astimezone(UTC), kind, phase))
    model.power_quality_events.sort()


def count(model: MeterModel, kind: str, phase: str, moment: datetime) -> int:
    """How many ``kind`` events ``phase`` has had up to ``moment``."""
    return sum(1 for at, k, p in model.power_quality_events if k == kind and p == phase and at <= moment)


def event_rows(model: MeterModel, spec: PowerQualitySpec, moment: datetime,
               start: datetime | None = None, end: datetime | None = None) -> list[tuple[datetime, int]]:
    """The power-quality event log up to ``moment``: (meter time, DSMR code) within start..end."""
    offset = model.meter_time_at(moment) - moment
    rows = []
    for at, kind, phase in model.power_quality_events:
        code = spec.code_for(kind, phase)  # type: ignore[arg-type]
        meter_at = at + offset
        if code is None or at > moment or (start is not None and meter_at < start) or (end is not None and meter_at > end):
            continue
        rows.append((meter_at, code))
    return rows


def profile_rows(model: MeterModel, spec: PowerQualitySpec, start: datetime | None,
                 end: datetime | None) -> list[tuple[datetime, list[int]]]:
    """Power-quality profile captures (meter time) within start..end, over the model's history."""
    assert spec.profile is not None
    period = timedelta(minutes=spec.profile.period_minutes)
    meter_now = model.meter_now()
    offset = meter_now - model.true_now()
    newest = ENERGY_EPOCH + ((meter_now - ENERGY_EPOCH) // period) * period
    oldest = newest - timedelta(days=model.history_days) + period
    first = oldest if start is None else max(oldest, ENERGY_EPOCH + -((ENERGY_EPOCH - start) // period) * period)
    last = newest if end is None else min(newest, ENERGY_EPOCH + ((end - ENERGY_EPOCH) // period) * period)
    columns = [spec.value(obis) for obis in spec.profile.columns]
    rows = []
    moment = first
    while moment <= last:
        rows.append((moment, [register_value(model, column, moment - offset) for column in columns]))
        moment += period
    return rows
