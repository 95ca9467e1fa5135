"""Days of a time zone the request chooses (``timeZone``), made from the stored hours or
quarter-hours, on DST days of 25 hours (Europe/Amsterdam, 2026-10-25) and 23 hours
(America/New_York, 2026-03-08), and in a half-hour zone (Asia/Kolkata): hand-computed values,
and the same as days computed from the register values in that zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from broker.schemas import MeterReading
from cloud.catalogue import default_catalogue
from cloud.migrations import migrate
from cloud.processing.facts import MeterFacts, MeterLocks
from cloud.processing.intervals import Interval
from cloud.processing.processor import Processor
from cloud.processing.series import Series
from cloud.processing.store import ProcessingStore
from cloud.registry.db import create_engine
from cloud.store.line_protocol import to_ns

METER = "meter-tz"
QUARTER = timedelta(minutes=15)
# Two spans of quarter-hour readings rising 0.25 kWh a quarter (1 kWh an hour).
AUTUMN = datetime(2026, 10, 24, tzinfo=UTC)   # 2026-10-24 00:00Z to 10-27 00:00Z
SPRING = datetime(2026, 3, 7, 12, tzinfo=UTC)  # 2026-03-07 12:00Z to 03-09 12:00Z
GAP = [AUTUMN + timedelta(days=1, hours=10, minutes=15 * i) for i in (1, 2, 3)]  # inside every zone's day
NEW_YORK_MIDNIGHT = datetime(2026, 3, 9, 4, tzinfo=UTC)  # not read: that day's end is estimated


def _times() -> list[datetime]:
    autumn = [AUTUMN + k * QUARTER for k in range(0, 3 * 96 + 1)]
    spring = [SPRING + k * QUARTER for k in range(0, 2 * 96 + 1)]
    return [t for t in autumn + spring if t not in GAP and t != NEW_YORK_MIDNIGHT]


def _reading(when: datetime) -> MeterReading:
    value = 100.0 + (when - SPRING) / QUARTER * 0.25 if when < AUTUMN else 5000.0 + (when - AUTUMN) / QUARTER * 0.25
    return MeterReading.model_validate({
        "meterReadingIdentifier": str(MeterReading.derive_id(METER, when)), "readingTime": when.isoformat(),
        "meterIndividual": {"meterIndividualId": METER, "physicalMeterType": {"physicalMeterClass": "ELECTRICITY"}},
        "propertyValues": [{"unit": "kWh", "date": when.isoformat(), "numericalValue": value,
                            "operationalPropertyDefinition": {"propertyId": "OBIS_1.8.0"}}]})


async def test_days_of_the_requested_zone_from_the_stored_hours(api, tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/registry.sqlite"
    await migrate(url)
    engine = create_engine(url)
    try:
        store = ProcessingStore(api.store)
        processor = Processor(store=store, facts=MeterFacts(engine), locks=MeterLocks(engine),
                              catalogue=default_catalogue(), clock=lambda: to_ns(datetime(2026, 11, 1, tzinfo=UTC)))
        readings = [_reading(t) for t in _times()]
        for i in range(0, len(readings), 50):  # a concentrator's batches
            await processor.process(METER, readings[i:i + 50])
        points = await store.window(METER, "OBIS_1.8.0", to_ns(SPRING - QUARTER), to_ns(AUTUMN + timedelta(days=4)))
    finally:
        await engine.dispose()
    headers = api.token("utility", meters=[METER])

    async def days(zone: str | None, first: str, last: str, interval: str = "day") -> list[tuple]:
        params = {"interval": interval, "from": first, "to": last, **({"timeZone": zone} if zone else {})}
        response = await api.client.get(f"/v1/meters/{METER}/consumption", headers=headers, params=params)
        assert response.status_code == 200, response.text
        assert response.json()["timeZone"] == (zone or "UTC")
        return [(v["start"][:16], v["end"][:16], v["value"], v["quality"], v["method"], v["readings"])
                for v in response.json()["values"]]

    # Amsterdam's 25-hour day: 22:00Z to 23:00Z, 25 kWh; the gap inside it is estimated in its
    # hours, but the day's own ends were read. 101 quarter-hours less the 3 not read, and less
    # the one at its end, which belongs to the next day.
    amsterdam = await days("Europe/Amsterdam", "2026-10-25T00:00:00+02:00", "2026-10-27T00:00:00+01:00")
    assert amsterdam == [
        ("2026-10-24T22:00", "2026-10-25T23:00", 25.0, "measured", None, 97),
        ("2026-10-25T23:00", "2026-10-26T23:00", 24.0, "measured", None, 96)]
    # New York's 23-hour day: 05:00Z to 04:00Z; its end was not read, so it is estimated.
    new_york = await days("America/New_York", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00")
    assert new_york == [("2026-03-08T05:00", "2026-03-09T04:00", 23.0, "estimated", "linear_interpolation", 92)]
    # India, +5:30: from the quarter-hours; 18:30Z to 18:30Z, 24 kWh, 96 less the 3 not read.
    kolkata = await days("Asia/Kolkata", "2026-10-25T00:00:00+05:30", "2026-10-26T00:00:00+05:30")
    assert kolkata == [("2026-10-24T18:30", "2026-10-25T18:30", 24.0, "measured", None, 93)]
    # The stored UTC days, for comparison: the same register, other boundaries.
    assert await days(None, "2026-10-25T00:00:00Z", "2026-10-26T00:00:00Z") == [
        ("2026-10-25T00:00", "2026-10-26T00:00", 24.0, "measured", None, 93)]
    # Each equals a day computed from the register values in that zone.
    series = Series(points)
    for zone, first in (("Europe/Amsterdam", datetime(2026, 10, 24, 22, tzinfo=UTC)),
                        ("America/New_York", datetime(2026, 3, 8, 5, tzinfo=UTC)),
                        ("Asia/Kolkata", datetime(2026, 10, 24, 18, 30, tzinfo=UTC))):
        (direct,) = series.aggregate(to_ns(first), to_ns(first), Interval.DAY, zone=ZoneInfo(zone))
        answer = await days(zone, first.isoformat(), (first + timedelta(hours=1)).isoformat())
        assert answer[0][2:] == (direct.value, direct.quality.value, direct.method, direct.readings), zone
    # A month of another zone whose first day was not read is missing; its readings: 289 - 3.
    october = await days("Europe/Amsterdam", "2026-10-01T00:00:00+02:00", "2026-10-31T00:00:00+01:00", "month")
    assert october == [("2026-09-30T22:00", "2026-10-31T23:00", None, "missing", None, 286)]
    unknown = await api.client.get(f"/v1/meters/{METER}/consumption", headers=headers, params={
        "interval": "day", "from": "2026-10-25T00:00:00Z", "to": "2026-10-26T00:00:00Z", "timeZone": "Mars/Olympus"})
    assert unknown.status_code == 422 and "Mars/Olympus" in unknown.text
