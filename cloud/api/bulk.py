"""Bulk downloads: signed, expiring link tokens and the CSV / NDJSON renderings (pure).

A link token is an HS256 JWT of its own type holding the query, so any API process can
serve it (no shared state) and nobody can alter the query. It is not a credential: the
download still needs the caller's bearer token, of the same organisation.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import jwt

from broker.errors import NotFound
from broker.schemas import MeterReading
from cloud.auth import ALGORITHM
from cloud.store import PropertyFilter, ReadingQuery

BULK_TYPE = "bulk"
Format = Literal["csv", "ndjson"]
# Web servers and proxies commonly cap a request line near 8 KiB.
MAX_TOKEN_CHARS = 6000
CSV_COLUMNS = ("meterReadingIdentifier", "meterIndividualId", "readingTime", "faultCode", "historical",
               "propertyId", "numericalValue", "textValue", "unit", "date")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


class BulkLinkError(NotFound):
    """A link token that is not valid (404) or no longer valid (``expired``: 410)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class BulkLink:
    org: str
    query: ReadingQuery
    max_rows: int | None
    format: Format


def _pack(document: dict[str, Any]) -> str:
    raw = zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 9)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unpack(text: str) -> dict[str, Any]:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return json.loads(zlib.decompress(raw))


def sign_link(link: BulkLink, *, secret: str, expires_at: datetime) -> str:
    """The token for ``link``; raises ValueError if it would be too long for a URL."""
    q = link.query
    spec = {
        "start": q.start.isoformat(), "end": q.end.isoformat(),
        "meters": None if q.meters is None else sorted(q.meters),
        "filters": [[f.property_id, f.greater_than, f.less_than, f.equal_to, f.text_equal_to] for f in q.filters],
        "maxRows": link.max_rows, "format": link.format,
    }
    token = jwt.encode({"typ": BULK_TYPE, "org": link.org, "exp": int(expires_at.timestamp()), "q": _pack(spec)},
                       secret, algorithm=ALGORITHM)
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError("the request names too many meters or filters for a bulk link; split it into smaller ones")
    return token


def verify_link(token: str, *, secret: str, now: datetime) -> BulkLink:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp"], "verify_exp": False,
                                                                       "verify_iat": False, "verify_nbf": False})
        if claims.get("typ") != BULK_TYPE:
            raise BulkLinkError("not a bulk download link")
        spec = _unpack(claims["q"])
    except (jwt.PyJWTError, KeyError, ValueError, zlib.error) as exc:
        raise BulkLinkError("unknown bulk download link") from exc
    if now.timestamp() >= claims["exp"]:
        raise BulkLinkError("this bulk download link has expired; ask for the readings again", expired=True)
    query = ReadingQuery(
        start=datetime.fromisoformat(spec["start"]), end=datetime.fromisoformat(spec["end"]),
        meters=None if spec["meters"] is None else frozenset(spec["meters"]),
        filters=tuple(PropertyFilter(property_id=p, greater_than=g, less_than=lt, equal_to=e, text_equal_to=t)
                      for p, g, lt, e, t in spec["filters"]),
    )
    return BulkLink(org=claims["org"], query=query, max_rows=spec["maxRows"], format=spec["format"])


def expiry(now: datetime, ttl_seconds: int) -> datetime:
    return datetime.fromtimestamp(int(now.timestamp()) + ttl_seconds, UTC)


def ndjson_lines(readings: Iterable[MeterReading]) -> str:
    """One OMDP MeterReading JSON document per line."""
    return "".join(json.dumps(r.to_wire(), separators=(",", ":")) + "\n" for r in readings)


def csv_header() -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(CSV_COLUMNS)
    return buffer.getvalue()


def csv_rows(readings: Iterable[MeterReading]) -> str:
    """One CSV row per property value (long format), reading attributes repeated on each."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for r in readings:
        for v in r.property_values:
            writer.writerow([
                r.meter_reading_identifier, r.meter_id, r.reading_time.isoformat(), r.fault_code or "",
                "true" if r.historical else "false", v.property_id,
                "" if v.numerical_value is None else repr(v.numerical_value),
                "" if v.text_value is None else v.text_value, v.unit or "", v.date.isoformat(),
            ])
    return buffer.getvalue()
