"""``GET /v1/meters/{id}/consumption``: a meter's consumption per interval, with each value's quality.

The values are what ``gridwire cloud processing`` keeps (docs/PROCESSING.md): deltas of a
cumulative register per 15 minutes, hour, day or month (days and months of
``GRIDWIRE_CONSUMPTION_TIME_ZONE``'s calendar, or of the zone the request names: made from the
stored hours or quarter-hours), measured, estimated across a gap,
or computed around readings that failed validation (named by rule). The OMDP API's rules hold:
only a meter the caller's organisation may read, and no answer resting on fewer readings than
the privacy minimum (the count itself is not told).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import AllowedMetersDep, PrincipalDep, QueryDatetime, SettingsDep, StoreDep
from cloud.api.routes.meter_readings import UNPROCESSABLE, privacy_refusal
from cloud.processing.intervals import FIRST_YEAR, LAST_YEAR, Interval, count, following, starts, storable
from cloud.processing.series import Quality
from cloud.processing.store import ProcessingStore, StoredConsumption
from cloud.processing.zones import STEPS, combine, part_for
from cloud.store.line_protocol import from_ns, to_ns

router = APIRouter(prefix="/v1/meters", tags=["consumption"])

# The most intervals one answer holds (a month of quarter-hours is 2,976).
MAX_INTERVALS = 10_000
# The most stored hours or quarter-hours read to make another zone's days or months (five years
# of hours, a year and a half of quarter-hours).
MAX_PARTS = 45_000


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ConsumptionValue(_Wire):
    """One interval's consumption: [start, end), the value in ``unit`` (null when it cannot be
    known), its quality, the validation rules readings in it failed, the estimation method if
    a boundary was estimated, and how many measured readings fell in it."""

    start: datetime
    end: datetime
    value: float | None
    quality: Quality
    rules: list[str] = Field(default_factory=list)
    method: str | None = None
    readings: int


class ConsumptionAnswer(_Wire):
    """A meter's consumption of one register per interval, oldest first."""

    meter_id: str = Field(alias="meterId")
    property_id: str = Field(alias="propertyId")
    interval: Interval
    time_zone: str = Field(alias="timeZone", description="The zone whose calendar days and months are.")
    unit: str | None
    values: list[ConsumptionValue]


@router.get("/{meter_id}/consumption", response_model=ConsumptionAnswer, response_model_by_alias=True,
            responses={404: {"description": "no such meter among the meters the caller may read"},
                       422: {"description": "invalid range, too many intervals, or an answer below the privacy minimum"},
                       503: {"description": "the time-series store is unavailable; retry later"}})
async def meter_consumption(
        meter_id: str, store: StoreDep, settings: SettingsDep, principal: PrincipalDep, allowed: AllowedMetersDep,
        start: Annotated[QueryDatetime, Query(alias="from", description="Start of the first interval (it holds this instant).")],
        end: Annotated[QueryDatetime, Query(alias="to", description="Intervals starting before this instant.")],
        interval: Annotated[Interval, Query(description="15min, hour, day or month (days and months in "
                                                                "timeZone's calendar).")] = Interval.DAY,
        property_id: Annotated[str, Query(alias="propertyId", max_length=128,
                                          description="The cumulative register.")] = "OBIS_1.8.0",
        time_zone: Annotated[str | None, Query(
            alias="timeZone", max_length=64,
            description="The IANA zone whose calendar days and months are cut in (Europe/Amsterdam); the "
                        "platform's consumption time zone if left out. Quarter-hours and hours stay on the UTC "
                        "grid.")] = None,
) -> ConsumptionAnswer:
    """Consumption of one cumulative register per interval, each value with its quality."""
    if allowed is not None and meter_id not in allowed:
        # Same answer for "no such meter" and "not yours": existence is not disclosed.
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no meter {meter_id!r} among the meters you may read")
    if not (storable(start) and storable(end)):
        raise HTTPException(UNPROCESSABLE, f"'from' and 'to' must lie in the years {FIRST_YEAR} to {LAST_YEAR}, "
                                           "the time-series store's range")
    first, stop = to_ns(start), to_ns(end)
    if stop <= first:
        raise HTTPException(UNPROCESSABLE, "'to' must be after 'from'")
    if count(first, stop, interval) > MAX_INTERVALS:
        raise HTTPException(UNPROCESSABLE, f"the range holds more than {MAX_INTERVALS} {interval.value} intervals; "
                                           "ask for a longer interval or a shorter range")
    stored_zone = settings.consumption.zone()
    zone = stored_zone if time_zone is None else _zone(time_zone)
    store_ = ProcessingStore(store)
    if interval in (Interval.DAY, Interval.MONTH) and zone.key != stored_zone.key:
        found = await _from_parts(store_, meter_id, property_id, interval, zone, first, stop)
    else:
        found = {one.start: one for one in await store_.consumption(
            meter_id, property_id, interval, next(starts(first, first, interval, zone)), stop)}
    values, unit, readings = [], None, 0
    for begin in starts(first, stop - 1, interval, zone):
        one = found.get(begin)
        finish = from_ns(following(begin, interval, zone))
        if one is None:
            values.append(ConsumptionValue(start=from_ns(begin), end=finish, value=None, quality=Quality.MISSING,
                                           readings=0))
            continue
        unit = unit or one.unit
        readings += one.readings
        values.append(ConsumptionValue(start=from_ns(begin), end=finish, value=one.value, quality=one.quality,
                                       rules=list(one.rules), method=one.method, readings=one.readings))
    if readings < settings.min_result_rows:
        raise privacy_refusal(settings.min_result_rows)
    return ConsumptionAnswer(meter_id=meter_id, property_id=property_id, interval=interval, time_zone=zone.key,
                             unit=unit, values=values)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HTTPException(UNPROCESSABLE, f"unknown time zone {name!r} (an IANA name such as Europe/Amsterdam)") \
            from exc


async def _from_parts(store: ProcessingStore, meter: str, prop: str, interval: Interval, zone: tzinfo, first: int,
                      stop: int) -> dict[int, StoredConsumption]:
    """Days or months of ``zone`` (not the one processing stores them in) from the stored hours,
    or quarter-hours where a boundary is not a whole UTC hour (docs/PROCESSING.md)."""
    begins = list(starts(first, stop - 1, interval, zone))
    boundaries = [*begins, following(begins[-1], interval, zone)]
    part = part_for(boundaries)
    if part is None:
        raise HTTPException(UNPROCESSABLE, f"{zone}'s days in this range do not start on a whole quarter-hour, "
                                           "the finest interval stored")
    if (boundaries[-1] - boundaries[0]) // STEPS[part] > MAX_PARTS:
        raise HTTPException(UNPROCESSABLE, f"{zone}'s {interval.value}s in this range are made from more than "
                                           f"{MAX_PARTS} stored {part.value} intervals; ask for a shorter range")
    parts = await store.consumption(meter, prop, part, boundaries[0], boundaries[-1])
    return {begin: combine(begin, end, parts, part) for begin, end in zip(boundaries, boundaries[1:], strict=False)}

