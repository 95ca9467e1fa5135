"""Raw result rows (query_rows, stream_rows) against a real influxd: chunked streams are whole,
pages are the plain LIMIT/OFFSET rows, errors are clear."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from cloud.store import InfluxStore, ReadingQuery, StoreRejected, StoreUnavailable
from cloud.store.influx import RowSeries, _rows_of
from tests.cloud.store.factories import T0, reading
from tests.fixtures.influx import InfluxServer


@pytest.fixture
async def store(influxd: InfluxServer, influx_db: str) -> AsyncIterator[InfluxStore]:
    async with InfluxStore(url=influxd.url, database=influx_db, timeout=5.0) as s:
        yield s


def flat(series: list[RowSeries]) -> list[dict]:
    return [dict(zip(columns, row, strict=True)) for columns, values in series for row in values]


async def test_stream_rows_in_small_chunks_is_the_whole_answer(store: InfluxStore) -> None:
    await store.write_readings([reading(f"C{m}", T0 + timedelta(minutes=15 * i), energy=float(i),
                                        text="a\nb \"q\"" if i % 3 else None)
                                for m in range(4) for i in range(30)])
    query = ReadingQuery(start=T0, end=T0 + timedelta(days=1))
    whole = flat(await store.query_rows(query))
    chunks = [one async for one in store.stream_rows(query, chunk_size=7)]
    assert len(chunks) > 10 and all(len(values) <= 7 for _, values in chunks)
    assert flat(chunks) == whole and len(whole) == 120
    assert flat([one async for one in store.stream_rows(query, chunk_size=7, limit=12)]) == whole[:12]


async def test_missing_database_and_bad_statement_are_clear_errors(store: InfluxStore) -> None:
    query = ReadingQuery(start=T0, end=T0 + timedelta(days=1))
    with pytest.raises(StoreRejected, match="refused 'SELECT 1': boom"):
        _rows_of(b'{"results":[{"statement_id":0,"error":"boom"}]}', "SELECT 1")
    with pytest.raises(StoreRejected, match="unreadable JSON"):
        _rows_of(b'{"results":[{"series":[{"columns":["time"],"values":[[1,', "SELECT 1")
    store.database = "no_such_db_here"
    with pytest.raises(StoreUnavailable, match="database not found"):
        await store.query_rows(query, limit=5)
    with pytest.raises(StoreUnavailable, match="database not found"):
        [one async for one in store.stream_rows(query)]


async def test_pages_of_rows_are_slices_of_the_whole_answer(store: InfluxStore) -> None:
    # Readings of several meters share each time: the pages must still neither skip nor repeat.
    await store.write_readings([reading(f"P{m}", T0 + timedelta(minutes=15 * i), energy=float(i))
                                for m in range(5) for i in range(20)])
    query = ReadingQuery(start=T0, end=T0 + timedelta(days=1))
    whole = flat(await store.query_rows(query))
    pages = [flat(await store.query_rows(query, limit=9, offset=offset)) for offset in range(0, 108, 9)]
    assert [row for page in pages for row in page] == whole and len(whole) == 100
    assert await store.query_rows(query, limit=0) == []
    assert await store.query_rows(ReadingQuery(start=T0, end=T0, meters=frozenset())) == []


async def test_a_count_and_a_page_in_one_request_are_what_each_answers_alone(store: InfluxStore) -> None:
    await store.write_readings([reading(f"K{m}", T0 + timedelta(minutes=15 * i), energy=float(i))
                                for m in range(3) for i in range(40)])
    day = ReadingQuery(start=T0, end=T0 + timedelta(days=1))
    for query in (day, ReadingQuery(start=T0, end=T0 + timedelta(hours=2), meters=frozenset({"K1"})),
                  ReadingQuery(start=T0 - timedelta(days=2), end=T0 - timedelta(days=1)),
                  day.restricted_to(frozenset())):
        for limit, offset in ((100, 0), (7, 5), (10, 115), (3, 500), (0, 0)):
            count, rows = await store.count_and_rows(query, limit=limit, offset=offset)
            assert count == await store.count_readings(query)
            assert flat(rows) == flat(await store.query_rows(query, limit=limit, offset=offset))
    count, rows = await store.count_and_rows(day, limit=50, offset=100)
    assert count == 120 and len(flat(rows)) == 20
    store.database = "no_such_db_here"
    with pytest.raises(StoreUnavailable, match="database not found"):
        await store.count_and_rows(day, limit=5)
