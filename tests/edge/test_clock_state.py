"""The concentrator's clock state: free-running until the first time exchange, with the offset
last measured before this start (kept in the state database); stored and served by the cloud."""

from __future__ import annotations

from datetime import UTC, datetime

from broker import lean
from broker.schemas import ClockState, MeterIndividual, MeterReading, OperationalPropertyRef, PropertyValue
from cloud.api.wire_rows import WireRenderer
from cloud.store import schema
from cloud.store.line_protocol import encode_reading
from cloud.store.rows import iter_readings
from edge.clock_state import ConcentratorClock


def test_free_running_until_synced_and_the_last_offset_survives_a_restart(tmp_path):
    ticks = iter([100.0, 112.5, 130.0])
    clock = ConcentratorClock(tmp_path / "state.sqlite", monotonic=lambda: next(ticks), wall=lambda: 1_700_000_000.0)
    assert clock.state() == lean.ClockState(freeRunningSeconds=12.5)  # never compared, nothing known
    clock.synced(-0.75)
    assert clock.synchronised and clock.state() is None
    clock.close()

    again = ConcentratorClock(tmp_path / "state.sqlite", monotonic=lambda: 5.0)
    state = again.state()
    assert state == lean.ClockState(freeRunningSeconds=0.0, lastOffsetSeconds=-0.75,
                                    lastSyncedAt=datetime.fromtimestamp(1_700_000_000, UTC))
    again.close()


def test_the_cloud_stores_and_serves_the_clock_state_of_a_reading():
    at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    reading = MeterReading(
        meterReadingIdentifier=MeterReading.derive_id("m-1", at), readingTime=at,
        meterIndividual=MeterIndividual(meterIndividualId="m-1"),
        propertyValues=[PropertyValue(unit="kWh", date=at, numericalValue=1.5,
                                      operationalPropertyDefinition=OperationalPropertyRef(propertyId="OBIS_1.8.1"))],
        clock=ClockState(freeRunningSeconds=42.0, lastOffsetSeconds=-0.75))
    line = encode_reading(reading)
    assert f"{schema.CLOCK_FREE_RUNNING}=42.0" in line and f"{schema.CLOCK_LAST_OFFSET}=-0.75" in line

    columns = ["time", "meter", schema.READING_ID, schema.HISTORICAL, schema.CLOCK_FREE_RUNNING,
               schema.CLOCK_LAST_OFFSET, "OBIS_1.8.1", "OBIS_1.8.1__unit"]
    row = [int(at.timestamp() * 1e9), "m-1", str(reading.meter_reading_identifier), False, 42.0, -0.75, 1.5, "kWh"]
    plain = [*row[:4], None, None, *row[6:]]
    (back, other) = iter_readings(columns, [row, plain])
    assert back.clock == ClockState(freeRunningSeconds=42.0, lastOffsetSeconds=-0.75)
    assert other.clock is None and "OBIS_1.8.1" in {v.property_id for v in back.property_values}
    items = WireRenderer().json_items(columns, [row, plain])
    assert '"clock":{"synchronised":false,"freeRunningSeconds":42.0,"lastOffsetSeconds":-0.75}' in items[0]
    assert '"clock"' not in items[1]
