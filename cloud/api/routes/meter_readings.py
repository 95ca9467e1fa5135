"""OMDP ``/v1/meterReadings``: query readings (JSON page or bulk link) and delete one reading."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from cloud.api.bulk import BulkLink, expiry, sign_link
from cloud.api.deps import AllowedMetersDep, ClockDep, PrincipalDep, SettingsDep, StoreDep, allowed_among
from cloud.api.schemas import BulkDownload, MeterReadingsBulkAnswer, MeterReadingsPage, MeterReadingsRequest
from cloud.api.wire_rows import WireRenderer
from cloud.store import InfluxStore, ReadingQuery
from cloud.store.influx import RowSeries

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
async def query_meter_readings(request: Request, body: MeterReadingsRequest, settings: SettingsDep, store: StoreDep,
                               principal: PrincipalDep, clock: ClockDep) -> MeterReadingsBulkAnswer | Response:
    """Readings in a time range, optionally of some meters and with property filters.

    Only readings of meters the caller's organisation may read are seen or counted.
    """
    if body.page_size > settings.max_page_size:
        raise HTTPException(UNPROCESSABLE,
                            f"pageSize {body.page_size} is above the maximum of {settings.max_page_size}; "
                            "ask for responseFormat 'bulk' to get everything at once")
    query = body.to_query()
    query = query.restricted_to(await allowed_among(request, principal, query.meters))
    offset = (body.page_number - 1) * body.page_size
    matching, rows = await _count_and_page(store, query, body, offset)
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

    if offset >= total:
        last = (total + body.page_size - 1) // body.page_size
        raise HTTPException(UNPROCESSABLE,
                            f"pageNumber {body.page_number} is past the last page ({last}) of this answer")
    # The page was asked for before the total was known: keep the rows the total allows.
    rows = _first(rows, total - offset)
    # A MeterReadingsPage, rendered straight from the stored rows (see cloud.api.wire_rows), by
    # the app's renderer: its caches of times and meters serve every request.
    renderer: WireRenderer = request.app.state.wire_renderer
    page = renderer.page(rows, page_number=body.page_number, page_size=body.page_size, total_rows=total)
    return Response(content=page, media_type="application/json")


async def _count_and_page(store: InfluxStore, query: ReadingQuery, body: MeterReadingsRequest,
                          offset: int) -> tuple[int, list[RowSeries]]:
    """The count and (for a JSON answer) the page's rows, asked of the store in one request: the
    page does not wait for the count. The rows are the same as when asked after counting (a
    shorter LIMIT gives a prefix of the same rows); they are dropped if the answer is refused
    or goes bulk."""
    cap = body.page_size if body.max_rows is None else min(body.page_size, body.max_rows - offset)
    if body.response_format == "bulk" or cap <= 0:
        return await store.count_readings(query), []
    return await store.count_and_rows(query, limit=cap, offset=offset)


def _first(rows: list[RowSeries], count: int) -> list[RowSeries]:
    """The first ``count`` rows of a result, whatever series they are in."""
    kept: list[RowSeries] = []
    for columns, values in rows:
        if count <= 0:
            break
        kept.append((columns, values[:count]))
        count -= len(values)
    return kept


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
