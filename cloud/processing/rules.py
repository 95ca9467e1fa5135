"""Validation rules for cumulative register values (pure: no I/O).

Which properties are cumulative registers comes from the catalogue: a number property whose
allowed units are all energies or volumes (``OBIS_1.8.0`` in kWh, ``GAS_volume_of_gas`` in m3).
Values are kept in their family's base unit (kWh, kvarh, kVAh, m3), so a meter that sends Wh
one day and kWh the next still makes one series. docs/PROCESSING.md gives every rule.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from cloud.catalogue.models import OperationalPropertyDefinition

if TYPE_CHECKING:
    from cloud.settings import ProcessingOptions

# The rules, by the names flagged readings and the API carry.
REGISTER_DECREASED = "register_decreased"
SPIKE = "spike"
IMPLAUSIBLE_VALUE = "implausible_value"
FUTURE_TIME = "future_time"
TOO_OLD = "too_old"
CLOCK_DRIFT = "clock_drift"
RULES = (REGISTER_DECREASED, SPIKE, IMPLAUSIBLE_VALUE, FUTURE_TIME, TOO_OLD, CLOCK_DRIFT)

# unit -> (family, factor to the family's base unit)
UNITS: dict[str, tuple[str, float]] = {
    "Wh": ("energy", 0.001), "kWh": ("energy", 1.0), "MWh": ("energy", 1000.0),
    "MJ": ("energy", 1 / 3.6), "GJ": ("energy", 1000 / 3.6),
    "varh": ("reactive", 0.001), "kvarh": ("reactive", 1.0),
    "VAh": ("apparent", 0.001), "kVAh": ("apparent", 1.0),
    "m3": ("volume", 1.0),
}
BASE_UNITS = {"energy": "kWh", "reactive": "kvarh", "apparent": "kVAh", "volume": "m3"}

_NS = 1_000_000_000
_HOUR_NS = 3600 * _NS
# A free-running clock (a concentrator that started without network) is assumed to drift at
# most this much: a quartz crystal's tolerance with room for temperature.
CLOCK_DRIFT_RATE = 100e-6


@dataclass(frozen=True, slots=True)
class Limits:
    """Plausibility for one meter class and register family: the largest value a register may
    hold and the fastest it may rise (base units per hour)."""

    max_register: float
    max_rate_per_hour: float


# Per meter class and family: a large household or small business connection, with margin.
CLASS_LIMITS: dict[tuple[str, str], Limits] = {
    ("ELECTRICITY", "energy"): Limits(max_register=1e9, max_rate_per_hour=250.0),
    ("ELECTRICITY", "reactive"): Limits(max_register=1e9, max_rate_per_hour=250.0),
    ("ELECTRICITY", "apparent"): Limits(max_register=1e9, max_rate_per_hour=250.0),
    ("GAS", "volume"): Limits(max_register=1e8, max_rate_per_hour=100.0),
    ("GAS", "energy"): Limits(max_register=1e9, max_rate_per_hour=1000.0),
    ("WATER", "volume"): Limits(max_register=1e8, max_rate_per_hour=25.0),
    ("HEAT", "energy"): Limits(max_register=1e9, max_rate_per_hour=1000.0),
    ("HEAT", "volume"): Limits(max_register=1e8, max_rate_per_hour=50.0),
}
DEFAULT_LIMITS = Limits(max_register=1e10, max_rate_per_hour=10_000.0)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """How far a reading's time may be from the processing's clock and from true time."""

    future_seconds: float = 300.0
    max_age_seconds: float = 400 * 86_400.0
    clock_drift_seconds: float = 60.0

    @classmethod
    def of(cls, options: ProcessingOptions) -> Thresholds:
        return cls(future_seconds=options.future_seconds, max_age_seconds=options.max_age_seconds,
                   clock_drift_seconds=options.clock_drift_seconds)


class RegisterPoint(NamedTuple):
    """One register value: at ``t`` (ns), in the base unit, measured or failed (with its rules).
    A tuple: a month of them is read back for every late reading."""

    t: int
    value: float
    failed: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        return not self.failed


def is_register(definition: OperationalPropertyDefinition) -> bool:
    """Whether the catalogue's property is a cumulative register (energy or volume)."""
    return (definition.value_type == "number" and bool(definition.allowed_units)
            and all(unit in UNITS for unit in definition.allowed_units))


def to_base(value: float, unit: str) -> tuple[float, str]:
    """The value in its family's base unit, and that unit; ValueError for a unit of no family."""
    try:
        family, factor = UNITS[unit]
    except KeyError:
        raise ValueError(f"unit {unit!r} is not an energy or volume") from None
    return value * factor, BASE_UNITS[family]


def limits_for(meter_class: str | None, unit: str) -> Limits:
    family = UNITS[unit][0] if unit in UNITS else ""
    return CLASS_LIMITS.get((meter_class or "", family), DEFAULT_LIMITS)


def clock_error(*, free_running_seconds: float | None, last_offset_seconds: float | None,
                meter_drift_seconds: float | None) -> float:
    """The worst error of the clock that stamped a reading, in seconds: the concentrator's clock
    if it ran free (its last known offset plus the drift it may have gathered since), or the
    meter's own clock as last measured and not corrected since."""
    error = 0.0
    if free_running_seconds is not None:
        error = abs(last_offset_seconds or 0.0) + free_running_seconds * CLOCK_DRIFT_RATE
    if meter_drift_seconds is not None:
        error = max(error, abs(meter_drift_seconds))
    return error


def validate(*, t: int, value: float, limits: Limits, neighbours: Sequence[RegisterPoint],
             exchanges: Sequence[int], now: int, thresholds: Thresholds, clock_error_seconds: float) -> tuple[str, ...]:
    """The rules a register value at ``t`` fails, in RULES order; () if it passes.

    ``neighbours`` are the series' points in time order (any point at ``t`` itself is left out:
    a reading sent again is judged as it was the first time); the value is compared with the
    measured one before it and the measured one after it, unless a meter exchange lies between.
    """
    failed: set[str] = set()
    if value < 0 or value > limits.max_register:
        failed.add(IMPLAUSIBLE_VALUE)
    if t > now + thresholds.future_seconds * _NS:
        failed.add(FUTURE_TIME)
    if t < now - thresholds.max_age_seconds * _NS:
        failed.add(TOO_OLD)
    if clock_error_seconds > thresholds.clock_drift_seconds:
        failed.add(CLOCK_DRIFT)
    before, after = measured_around(neighbours, t)
    for earlier, later in ((before, None), (None, after)):
        other = earlier or later
        if other is None or exchanged_between(exchanges, min(other.t, t), max(other.t, t)):
            continue
        low, high = (other.value, value) if earlier is not None else (value, other.value)
        if high < low:
            failed.add(REGISTER_DECREASED)
        elif (high - low) * _HOUR_NS > limits.max_rate_per_hour * abs(t - other.t):
            failed.add(SPIKE)
    return tuple(rule for rule in RULES if rule in failed)


def measured_around(points: Sequence[RegisterPoint], t: int) -> tuple[RegisterPoint | None, RegisterPoint | None]:
    """The last measured point before ``t`` and the first after it (points in time order)."""
    i = bisect.bisect_left(points, t, key=_time)
    before = next((p for p in reversed(points[:i]) if p.measured), None)
    j = bisect.bisect_right(points, t, key=_time)
    after = next((p for p in points[j:] if p.measured), None)
    return before, after


def exchanged_between(exchanges: Sequence[int], first: int, last: int) -> bool:
    """Whether a meter exchange happened in (first, last]."""
    i = bisect.bisect_right(exchanges, first)
    return i < len(exchanges) and exchanges[i] <= last


def _time(point: RegisterPoint) -> int:
    return point.t
