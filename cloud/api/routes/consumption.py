"""``GET /v1/meters/{id}/consumption``: a meter's consumption per interval, with each value's quality.

The values are what ``gridwire cloud processing`` keeps (docs/PROCESSING.md): deltas of a
cumulative register per 15 minutes, hour, day or month (days and months of
``GRIDWIRE_CONSUMPTION_TIME_ZONE``'s calendar), measured, estimated across a gap,
or computed around readings that failed validation (named by rule). The OMDP API's rules hold:
only a meter the caller's organisation may read, and no answer resting on fewer readings than
the privacy minimum (the count itself is not told).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import AllowedMetersDep, PrincipalDep, QueryDatetime, SettingsDep, StoreDep
from cloud.api.routes.meter_readings import UNPROCESSABLE, privacy_refusal
from cloud.processing.intervals import FIRST_YEAR, LAST_YEAR, Interval, count, following, starts, storable
from cloud.processing.series import Quality
from cloud.processing.store import ProcessingStore
from cloud.store.line_protocol import from_ns, to_ns

router = APIRouter(prefix="/v1/meters", tags=["consumption"])

# The most intervals one answer holds (a month of quarter-hours is 2,976).
MAX_INTERVALS = 10_000


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
        interval: Annotated[Interval, Query(description="15min, hour, day or month (days and months in the "
                                                                "platform's consumption time zone).")] = Interval.DAY,
        property_id: Annotated[str, Query(alias="propertyId", max_length=128,
                                          description="The cumulative register.")] = "OBIS_1.8.0",
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
    zone = settings.consumption.zone()
    found = {one.start: one for one in await ProcessingStore(store).consumption(
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
    return ConsumptionAnswer(meter_id=meter_id, property_id=property_id, interval=interval, unit=unit, values=values)

