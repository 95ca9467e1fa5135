"""OMDP ``/v1/meterReadings``: query readings (JSON page or bulk link) and delete one reading."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from cloud.api.bulk import BulkLink, expiry, sign_link
from cloud.api.deps import AllowedMetersDep, ClockDep, PrincipalDep, SettingsDep, StoreDep
from cloud.api.schemas import BulkDownload, MeterReadingsBulkAnswer, MeterReadingsPage, MeterReadingsRequest

log = logging.getLogger(__name__)

# Starlette renamed the 422 constant; the number is what clients see.
UNPROCESSABLE = 422

router = APIRouter(prefix="/v1/meterReadings", tags=["meter readings"])


def privacy_refusal(minimum: int) -> HTTPException:
    # The count itself is not told: "3 readings above X" is exactly what the rule protects.
    return HTTPException(
        UNPROCESSABLE,
        f"the answer would hold fewer than {minimum} readings; smaller answers are refused to protect "
        "households' privacy (widen the time range, the meters or the filters)",
    )


@router.post("", response_model=MeterReadingsPage | MeterReadingsBulkAnswer, response_model_exclude_none=True,
             response_model_by_alias=True,
             responses={422: {"description": "invalid request, or an answer below the privacy minimum"},
                        401: {"description": "missing or invalid bearer token"},
                        503: {"description": "the time-series store is unavailable; retry later"}})
async def query_meter_readings(body: MeterReadingsRequest, settings: SettingsDep, store: StoreDep,
                               principal: PrincipalDep, allowed: AllowedMetersDep,
                               clock: ClockDep) -> MeterReadingsPage | MeterReadingsBulkAnswer:
    """Readings in a time range, optionally of some meters and with property filters.

    Only readings of meters the caller's organisation may read are seen or counted.
    """
    if body.page_size > settings.max_page_size:
        raise HTTPException(UNPROCESSABLE,
                            f"pageSize {body.page_size} is above the maximum of {settings.max_page_size}; "
                            "ask for responseFormat 'bulk' to get everything at once")
    query = body.to_query().restricted_to(allowed)
    matching = await store.count_readings(query)
    total = matching if body.max_rows is None else min(matching, body.max_rows)
    if total < settings.min_result_rows:
        raise privacy_refusal(settings.min_result_rows)

    reason = None
    if body.response_format == "bulk":
        reason = "bulk download requested"
    elif total > settings.bulk_threshold_rows:
        reason = (f"the answer holds {total} readings, more than the {settings.bulk_threshold_rows} "
                  "served as JSON; it is served as a bulk download instead")
    if reason is not None:
        expires_at = expiry(clock(), settings.bulk_link_ttl_seconds)
        link = BulkLink(org=principal.org, query=body.to_query(), max_rows=body.max_rows, format=body.bulk_format)
        assert settings.jwt_secret is not None
        try:
            token = sign_link(link, secret=settings.jwt_secret.get_secret_value(), expires_at=expires_at)
        except ValueError as exc:
            raise HTTPException(UNPROCESSABLE, str(exc)) from exc
        log.info("bulk link for org %s: %d readings, %s", principal.org, total, body.bulk_format)
        return MeterReadingsBulkAnswer(bulkDownload=BulkDownload(
            url=f"/v1/bulk/{token}", expiresAt=expires_at, format=body.bulk_format, totalRows=total, reason=reason))

    offset = (body.page_number - 1) * body.page_size
    if offset >= total:
        last = (total + body.page_size - 1) // body.page_size
        raise HTTPException(UNPROCESSABLE,
                            f"pageNumber {body.page_number} is past the last page ({last}) of this answer")
    readings = await store.query_readings(query, limit=min(body.page_size, total - offset), offset=offset)
    return MeterReadingsPage(meterReadings=readings, pageNumber=body.page_number, pageSize=body.page_size,
                             totalRows=total)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: {"description": "no such reading among the meters the caller may read"}})
async def delete_meter_reading(id: Annotated[uuid.UUID, Query(description="meterReadingIdentifier")],  # noqa: A002
                               store: StoreDep, principal: PrincipalDep, allowed: AllowedMetersDep) -> Response:
    """Delete one reading by its identifier."""
    if not await store.delete_reading(id, meters=allowed):
        # Same answer for "no such reading" and "not yours": existence is not disclosed.
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no meter reading {id}")
    log.info("org %s (%s) deleted reading %s", principal.org, principal.subject, id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
