"""The time-series store on InfluxDB, spoken over the v1 HTTP API (/write, /query, /ping).

InfluxDB 1.x serves these natively and 2.x/3.x serve them for compatibility (authenticate
with ``token`` there), so one client runs on all three. Writes are idempotent: a reading is
one point keyed by (meter, readingTime), so a redelivered reading overwrites itself.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import httpx
import msgspec

from broker.schemas import MeterReading
from cloud.store import query as influxql
from cloud.store import schema
from cloud.store.errors import StoreRejected, StoreUnavailable
from cloud.store.line_protocol import LineProtocolError, encode_reading
from cloud.store.query import ReadingQuery
from cloud.store.rows import iter_readings

# What InfluxDB answers for the statements after one that failed.
NOT_EXECUTED = "not executed"

# One result series as rows: (columns, values), values in column order ("time" in ns).
RowSeries = tuple[list[str], list[list[Any]]]

log = logging.getLogger(__name__)

# InfluxDB's default max-body-size is 25 MB; stay well under it whatever the batch size.
_MAX_BODY_BYTES = 8 * 1024 * 1024


class InfluxStore:
    """Meter readings in one InfluxDB database: write, query, count, stream, delete."""

    def __init__(self, *, url: str, database: str, username: str | None = None, password: str | None = None,
                 token: str | None = None, timeout: float = 10.0, batch_size: int = 5000,
                 retention_policy: str | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.batch_size = batch_size
        self.retention_policy = retention_policy
        self._params: dict[str, str] = {}
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Token {token}"
        elif username is not None:
            self._params.update(u=username, p=password or "")
        self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> InfluxStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # --- plumbing -----------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {exc!r}") from exc
        _raise_for_status(response)
        return response

    async def _query(self, statement: str, *, database: bool = True) -> list[dict[str, Any]]:
        """Run one statement; return its result's series (empty list when no rows)."""
        data = {"q": statement, "epoch": "ns", **self._params}
        if database:
            data["db"] = self.database
        response = await self._request("POST", "/query", data=data)
        return _series_of(response.json(), statement)

    # --- public API ----------------------------------------------------------------------------

    async def ping(self) -> str:
        """The server's version if it answers /ping; raises StoreUnavailable otherwise."""
        response = await self._request("GET", "/ping")
        return response.headers.get("X-Influxdb-Version", "unknown")

    async def ensure_database(self) -> None:
        """Create the database if missing (InfluxDB 1.x; on 2.x/3.x map a bucket with DBRP instead)."""
        await self._query(f"CREATE DATABASE {influxql.quote_identifier(self.database)}", database=False)

    async def write_readings(self, readings: Sequence[MeterReading | str], *,
                             concentrator_id: str | None = None) -> int:
        """Store ``readings``; return how many points were written.

        A ``str`` item is a reading already encoded as one line of line protocol (ingest
        encodes while it validates, see ``cloud.ingest.fast_encode``); it is sent as it is.
        Every reading is encoded before anything is sent, so a StoreRejected for bad readings
        means none of the batch was written. StoreUnavailable means retry the whole batch:
        points already written are simply overwritten by the retry.
        """
        lines: list[str] = []
        bad: list[str] = []
        problems: list[str] = []
        for reading in readings:
            if isinstance(reading, str):
                lines.append(reading)
                continue
            try:
                lines.append(encode_reading(reading, concentrator_id=concentrator_id))
            except LineProtocolError as exc:
                bad.append(str(reading.meter_reading_identifier))
                problems.append(str(exc))
        if bad:
            raise StoreRejected("; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else ""),
                                reading_ids=tuple(bad))
        return await self.write_lines(lines)

    async def write_lines(self, lines: Sequence[str]) -> int:
        """Send lines of line protocol (one point each) in bodies of at most ``batch_size``
        points; return how many were written. Errors as for ``write_readings``."""
        params = {"db": self.database, "precision": "ns", **self._params}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        written = 0
        for body, count in _chunks(lines, self.batch_size):
            await self._request("POST", "/write", params=params, content=body.encode("utf-8"))
            written += count
        log.debug("wrote %d points to %s", written, self.database)
        return written

    async def count_readings(self, query: ReadingQuery) -> int:
        """How many readings match ``query``."""
        if query.empty:
            return 0
        series = await self._query(influxql.count_statement(query))
        if not series:
            return 0
        return int(series[0]["values"][0][1] or 0)

    async def query_readings(self, query: ReadingQuery, *, limit: int | None = None,
                             offset: int = 0) -> list[MeterReading]:
        """Readings matching ``query`` in time order, ``limit`` of them from ``offset``."""
        readings: list[MeterReading] = []
        for columns, values in await self.query_rows(query, limit=limit, offset=offset):
            readings.extend(iter_readings(columns, values))
        return readings

    async def stream_readings(self, query: ReadingQuery, *, limit: int | None = None,
                              chunk_size: int = 5000) -> AsyncIterator[MeterReading]:
        """Readings matching ``query`` in time order, fetched in chunks (for bulk downloads)."""
        # Closed here, not left to the garbage collector, if our caller stops early.
        async with contextlib.aclosing(self.stream_rows(query, limit=limit, chunk_size=chunk_size)) as rows:
            async for columns, values in rows:
                for reading in iter_readings(columns, values):
                    yield reading

    async def query_rows(self, query: ReadingQuery, *, limit: int | None = None,
                         offset: int = 0) -> list[RowSeries]:
        """The stored rows behind ``query_readings`` (see ``cloud.store.rows`` for their layout),
        for callers that render them without building MeterReadings."""
        if query.empty or limit == 0:
            return []
        statement = influxql.select_statement(query, limit=limit, offset=offset)
        data = {"q": statement, "db": self.database, "epoch": "ns", **self._params}
        response = await self._request("POST", "/query", data=data)
        return _rows_of(response.content, statement)

    async def count_and_rows(self, query: ReadingQuery, *, limit: int,
                             offset: int = 0) -> tuple[int, list[RowSeries]]:
        """What ``count_readings`` and ``query_rows`` answer, asked in one request: a page of
        readings with its total costs one round trip to InfluxDB, not two."""
        if query.empty:
            return 0, []
        if limit == 0:
            return await self.count_readings(query), []
        counted, rows = await self.query_each([influxql.count_statement(query),
                                               influxql.select_statement(query, limit=limit, offset=offset)])
        if not counted or not counted[0][1]:
            return 0, rows
        return int(counted[0][1][0][1] or 0), rows

    async def stream_rows(self, query: ReadingQuery, *, limit: int | None = None,
                          chunk_size: int = 5000) -> AsyncIterator[RowSeries]:
        """The stored rows behind ``stream_readings``, one InfluxDB chunk (at most ``chunk_size``
        rows) at a time, so memory stays bounded whatever the size of the answer."""
        if query.empty or limit == 0:
            return
        statement = influxql.select_statement(query, limit=limit)
        data = {"q": statement, "db": self.database, "epoch": "ns",
                "chunked": "true", "chunk_size": str(chunk_size), **self._params}
        try:
            async with self._client.stream("POST", "/query", data=data) as response:
                if response.status_code >= 300:
                    await response.aread()
                    _raise_for_status(response)
                # One JSON document per line; a JSON text holds no raw newline, so splitting
                # the bytes on b"\n" is exact and skips decoding to str first.
                pending: list[bytes] = []
                # Closed when a chunk is refused or our caller stops early, so the connection
                # goes back at once rather than when the garbage collector finds the generator.
                async with contextlib.aclosing(response.aiter_bytes()) as blocks:
                    async for block in blocks:
                        pending.append(block)
                        if b"\n" not in block:
                            continue  # a chunk spans several blocks: join them once it is whole
                        *lines, rest = b"".join(pending).split(b"\n")
                        pending = [rest]
                        for line in lines:
                            for one in _rows_of(line, statement):
                                yield one
                for one in _rows_of(b"".join(pending), statement):
                    yield one
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} failed mid-stream: {exc!r}") from exc

    async def query_each(self, statements: Sequence[str]) -> list[list[RowSeries]]:
        """Several InfluxQL statements in one request; each one's series, in the statements' order."""
        if not statements:
            return []
        statement = ";".join(statements)
        data = {"q": statement, "db": self.database, "epoch": "ns", **self._params}
        response = await self._request("POST", "/query", data=data)
        try:
            answer = _ANSWER.decode(response.content)
        except msgspec.DecodeError as exc:
            raise StoreRejected(f"InfluxDB answered {statement[:200]!r} with unreadable JSON: {exc}") from exc
        if answer.error is not None:
            raise StoreRejected(f"InfluxDB refused {statement[:200]!r}: {answer.error}")
        each: list[list[RowSeries]] = []
        # After a statement fails the later ones answer "not executed": name the first failure,
        # and a missing database (a deployment fault, retried) whichever statement met it.
        missing = [r.error for r in answer.results if r.error is not None and "database not found" in r.error]
        if missing:
            raise StoreUnavailable(f"InfluxDB: {missing[0]}")
        if any(r.error == NOT_EXECUTED for r in answer.results) and not any(
                r.error not in (None, NOT_EXECUTED) for r in answer.results):
            # InfluxDB 1.x answers a batch on a missing database with only "not executed": ask
            # each statement alone for the reason (a failure path: one more request).
            for one in statements:
                await self._query(one)
            raise StoreRejected(f"InfluxDB did not execute {statement[:200]!r}")
        for result in answer.results:
            if result.error is not None:
                if "database not found" in result.error:
                    raise StoreUnavailable(f"InfluxDB: {result.error}")
                raise StoreRejected(f"InfluxDB refused {statement[:200]!r}: {result.error}")
            each.append([(one.columns, one.values) for one in result.series])
        return each

    async def find_reading(self, reading_id: uuid.UUID | str, *,
                           meters: frozenset[str] | None = None) -> tuple[str, int] | None:
        """(meter, ns timestamp) of the reading with this id, among ``meters`` (None: all)."""
        if meters is not None and not meters:
            return None
        reading_id = str(reading_id)
        for statement in (influxql.find_id_statement(reading_id, meters=meters),
                          influxql.find_key_statement(reading_id, meters=meters)):
            for one in await self._query(statement):
                columns = one["columns"]
                at_meter, at_time = columns.index("meter"), columns.index("time")
                for row in one.get("values", []):
                    meter, stamp = row[at_meter], int(row[at_time])
                    # A full point's id is stored; a lean point's is confirmed from meter and time.
                    if schema.READING_ID in columns or schema.is_derived(reading_id, meter, stamp):
                        return meter, stamp
        return None

    async def delete_reading(self, reading_id: uuid.UUID | str, *, meters: frozenset[str] | None = None) -> bool:
        """Delete the reading with this id; False if no such reading (among ``meters``)."""
        found = await self.find_reading(reading_id, meters=meters)
        if found is None:
            return False
        meter, stamp = found
        await self._query(influxql.delete_statement(meter, stamp))
        log.info("deleted reading %s (meter %s, t=%d)", reading_id, meter, stamp)
        return True


def _chunks(lines: Sequence[str], batch_size: int) -> list[tuple[str, int]]:
    """Group lines into write bodies of at most ``batch_size`` points and _MAX_BODY_BYTES."""
    if len(lines) <= batch_size and sum(map(len, lines)) + len(lines) <= _MAX_BODY_BYTES:
        # The usual case (one ingest batch): one join, no per-line bookkeeping.
        return [("\n".join(lines), len(lines))] if lines else []
    chunks: list[tuple[str, int]] = []
    current: list[str] = []
    size = 0
    for line in lines:
        if current and (len(current) >= batch_size or size + len(line) > _MAX_BODY_BYTES):
            chunks.append(("\n".join(current), len(current)))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        chunks.append(("\n".join(current), len(current)))
    return chunks


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except (ValueError, AttributeError):
        return response.text[:500]


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 300:
        return
    text = _error_text(response)
    # A missing database or refused credentials is a deployment fault, not bad data: retrying
    # once it is fixed stores everything, where rejecting would set good readings aside.
    if status >= 500 or status in (401, 403, 404, 429) or "database not found" in text:
        raise StoreUnavailable(f"InfluxDB answered {status}: {text}")
    raise StoreRejected(f"InfluxDB answered {status}: {text}")


def _series_of(document: dict[str, Any], statement: str) -> list[dict[str, Any]]:
    if "error" in document:
        raise StoreRejected(f"InfluxDB refused {statement[:200]!r}: {document['error']}")
    series: list[dict[str, Any]] = []
    for result in document.get("results", []):
        if "error" in result:
            error = str(result["error"])
            if "database not found" in error:
                raise StoreUnavailable(f"InfluxDB: {error}")
            raise StoreRejected(f"InfluxDB refused {statement[:200]!r}: {error}")
        series.extend(result.get("series", []))
    return series


class _Series(msgspec.Struct):
    columns: list[str] = []
    values: list[list[Any]] = []


class _Result(msgspec.Struct):
    series: list[_Series] = []
    error: str | None = None


class _Answer(msgspec.Struct):
    results: list[_Result] = []
    error: str | None = None


_ANSWER = msgspec.json.Decoder(_Answer)


def _rows_of(body: bytes, statement: str) -> list[RowSeries]:
    """The series of a /query answer (or of one chunk of it), decoded natively by msgspec."""
    if not body.strip():
        return []
    try:
        answer = _ANSWER.decode(body)
    except msgspec.DecodeError as exc:
        raise StoreRejected(f"InfluxDB answered {statement[:200]!r} with unreadable JSON: {exc}") from exc
    if answer.error is not None:
        raise StoreRejected(f"InfluxDB refused {statement[:200]!r}: {answer.error}")
    rows: list[RowSeries] = []
    for result in answer.results:
        if result.error is not None:
            if "database not found" in result.error:
                raise StoreUnavailable(f"InfluxDB: {result.error}")
            raise StoreRejected(f"InfluxDB refused {statement[:200]!r}: {result.error}")
        rows.extend((one.columns, one.values) for one in result.series)
    return rows
