"""The worked example of docs/PROCESSING.md: one electricity meter's total import register over
two days, with a gap, a missing midnight and a spike, then the backfill that fills them.

Day D starts at a UTC midnight. Quarter k (0 = D 00:00) ends at register value
C(k) = 1000 + 0.25 k + 0.25 * clamp(k - 24, 0, 4) kWh: 0.25 kWh a quarter, 0.5 from 06:00 to 07:00.
Every value here is a multiple of 1/8, so the sums and differences are exact in binary floating point.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

PROPERTY = "OBIS_1.8.0"
QUARTER = timedelta(minutes=15)
GAP = (41, 42, 43)      # D 10:15, 10:30, 10:45: not read at first
MIDNIGHT = 96           # D+1 00:00: not read at first
SPIKE = 154             # D+1 14:30: sent as 5000 kWh, after the rest of the day
BACKFILL = {41: 1011.125, 42: 1011.375, 43: 1011.75, 96: 1025.0}  # what the meter's profile held


def register(k: int) -> float:
    return 1000 + 0.25 * k + 0.25 * min(max(k - 24, 0), 4)


def day_start(now: datetime) -> datetime:
    """Day D: three UTC days before ``now`` (recent enough for the age rule, never in the future)."""
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return today - timedelta(days=3)


def first_values() -> dict[int, float]:
    """Quarter -> value as first sent: D 00:00 to D+2 00:00 without the gap and the midnight."""
    values = {k: register(k) for k in range(0, 193) if k not in GAP and k not in (MIDNIGHT, SPIKE)}
    values[SPIKE] = 5000.0  # last: judged against the values on both sides of it
    return values


# The answers, by interval start as a quarter index: (value, quality, rules, method, readings).
DAYS_FIRST = {
    0: (25.0, "estimated", (), "linear_interpolation", 93),
    96: (24.0, "failed_validation", ("register_decreased", "spike"), "linear_interpolation", 94),
}
DAYS_AFTER = {
    0: (25.0, "measured", (), None, 96),
    96: (24.0, "failed_validation", ("register_decreased", "spike"), None, 95),
}
QUARTERS_FIRST = {40: (0.25, "estimated", (), "linear_interpolation", 1),
                  41: (0.25, "estimated", (), "linear_interpolation", 0),
                  42: (0.25, "estimated", (), "linear_interpolation", 0),
                  43: (0.25, "estimated", (), "linear_interpolation", 0),
                  44: (0.25, "measured", (), None, 1)}
QUARTERS_AFTER = {40: (0.125, "measured", (), None, 1),
                  41: (0.25, "measured", (), None, 1),
                  42: (0.375, "measured", (), None, 1),
                  43: (0.25, "measured", (), None, 1),
                  44: (0.25, "measured", (), None, 1)}
HOUR_10 = (1.0, "measured", (), None)  # D 10:00-11:00: measured at both ends, before and after


def payload(meter: str, when: datetime, value: float, *, historical: bool = False) -> bytes:
    """One MeterReading of the meter's total import register, as a concentrator forwards it."""
    from broker.schemas import MeterReading

    reading = MeterReading.model_validate({
        "meterReadingIdentifier": str(MeterReading.derive_id(meter, when)),
        "readingTime": when.isoformat(), "historical": historical,
        "propertyValues": [{"unit": "kWh", "date": when.isoformat(), "numericalValue": value,
                            "operationalPropertyDefinition": {"propertyId": PROPERTY}}],
        "meterIndividual": {"meterIndividualId": meter, "physicalMeterType": {"physicalMeterClass": "ELECTRICITY"}},
    })
    return reading.model_dump_json(by_alias=True, exclude_none=True).encode()
