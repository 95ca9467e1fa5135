"""The fast renderer (stored rows -> wire) against the pydantic reference, row shapes generated.

The reference rebuilds MeterReadings (cloud.store.rows.iter_readings) and renders them with
cloud.api.bulk (NDJSON, CSV) or MeterReadingsPage (a JSON page); the fast path must give the
same bytes (NDJSON, CSV) and the same parsed JSON (page), and skip, with a log line, the same
malformed rows. Then the same through the API against a real influxd.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.api.bulk import csv_header, csv_rows, ndjson_lines
from cloud.api.schemas import MeterReadingsPage
from cloud.api.wire_rows import WireRenderer
from cloud.store import ReadingQuery, schema
from cloud.store.rows import iter_readings, reading_or_none
from tests.cloud.api.conftest import Api
from tests.cloud.store.factories import T0, reading

META = ["meter", "reading_id", "fault_code", "historical", "seq", "meter_class", "concentrator", "rk"]
PIDS = ["OBIS_1.8.1", "OBIS_1.7.0", "OBIS_32.7.0", "status", "é ü,\"q\""]  # units implied for three
DAY_NS = int(T0.timestamp()) * 10**9


def rarely(common: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """``common`` 19 times in 20, else ``rare``: mostly plain rows, now and then an odd one."""
    # Not an end of the range: hypothesis favours both ends.
    return st.integers(0, 19).flatmap(lambda n: rare if n == 13 else common)


# What JSON escapes and what CSV quotes, beside whatever hypothesis makes up.
SPECIAL = ["a,b", 'say "hi"', "line\r\nbreak", "\r", "\n", " lead", "é\u2028\x7f\x00\t", "\\", ""]
texts = rarely(st.text(max_size=40) | st.sampled_from(SPECIAL), st.text(min_size=1020, max_size=1030))
odd = st.sampled_from([True, False, 0, 1, 2.5, "x", "12", float("inf"), [], {}])
stamps = rarely(st.integers(DAY_NS, DAY_NS + 86_400 * 10**9) | st.integers(0, 2**62) | st.just(DAY_NS + 123_456_789),
                st.integers(-(2**62), 2**62))
numbers = (st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70)
           | st.sampled_from([0.0, -0.0, 5, 1e16, 1.5e-7, 2.5e-5, 1e22]))
pids = rarely(st.sampled_from(PIDS), st.sampled_from(["p" * 129, ""]))


def column_value(draw: st.DrawFn, column: str, when: int) -> Any:
    """A stored value for ``column``: mostly what the store writes, sometimes anything."""
    if draw(st.integers(0, 59)) == 31:
        return draw(st.none() | odd | texts)
    if column == "time":
        return when
    if column == "meter":
        return draw(rarely(st.sampled_from(["meter-1", "é", 'meter,"7"\r\n']) | st.text(min_size=1, max_size=20),
                           st.sampled_from(["m/2", "x" * 129, ""])))
    if column == "reading_id":  # none: a lean point (its id derived)
        ident = uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))
        return draw(st.none() | rarely(st.just(str(ident)), st.sampled_from([str(ident).upper(), ident.hex,
                                                                             f"{{{ident}}}"])))
    if column == "rk":
        return draw(st.none() | rarely(st.integers(0, 2**23 - 1), st.integers(-(2**63), 2**63 - 1)))
    if column == "fault_code":
        return draw(st.none() | texts)
    if column == "historical":
        return draw(st.none() | st.booleans())
    if column == "seq":
        return draw(st.none() | st.integers(-(2**63), 2**63 - 1))
    if column == "meter_class":
        return draw(st.none() | rarely(st.sampled_from(["ELECTRICITY", "GAS", "WATER", "HEAT"]), st.just("NUCLEAR")))
    if column == "concentrator":
        return draw(st.none() | texts)
    pid, suffix = schema.split_field(column)
    if suffix == "":
        return draw(rarely(numbers, st.none()))
    if suffix == schema.TEXT_SUFFIX:
        return draw(st.none() | texts)
    if suffix == schema.UNIT_SUFFIX:
        return draw(st.none() | rarely(st.sampled_from(["kWh", "kW", "V", "", "µ°C"]) | texts, st.just("u" * 33)))
    return draw(st.none() | st.just(when) | stamps)


@st.composite
def stored_series(draw: st.DrawFn) -> tuple[list[str], list[list[Any]]]:
    """One result series as InfluxDB gives it: ``time`` first, then columns in name order."""
    meta = draw(st.lists(st.sampled_from(META), unique=True)) if draw(st.integers(0, 9)) == 7 else list(META)
    fields = []
    for pid in draw(st.lists(pids, min_size=1, max_size=4, unique=True)):
        suffixes = draw(st.sampled_from([[""], [schema.TEXT_SUFFIX], ["", schema.TEXT_SUFFIX]]))
        suffixes += draw(st.lists(st.sampled_from([schema.UNIT_SUFFIX, schema.DATE_SUFFIX]), unique=True))
        fields += [pid + s for s in suffixes]
    columns = ["time", *sorted(set(meta + fields))]
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        when = draw(stamps)
        rows.append([column_value(draw, c, when) for c in columns])
    return columns, rows


# One renderer across every example, as the API keeps one across requests.
SHARED = WireRenderer()


def reference_page(columns: list[str], rows: list[list[Any]]) -> dict:
    readings = list(iter_readings(columns, rows))
    page = MeterReadingsPage(meterReadings=readings, pageNumber=3, pageSize=100, totalRows=1234)
    return page.model_dump(mode="json", by_alias=True, exclude_none=True)


def warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.levelno == logging.WARNING and "skipping a stored row" in r.getMessage() for r in caplog.records)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(series=stored_series())
def test_fast_rendering_equals_the_reference(series: tuple[list[str], list[list[Any]]],
                                             caplog: pytest.LogCaptureFixture) -> None:
    columns, rows = series
    with caplog.at_level(logging.WARNING, logger="cloud.store.rows"):
        caplog.clear()
        expected_ndjson = ndjson_lines(iter_readings(columns, rows))
        expected_csv = csv_rows(iter_readings(columns, rows))
        expected_page = reference_page(columns, rows)
        skipped = warnings(caplog)
        caplog.clear()
        renderer = WireRenderer()
        assert renderer.ndjson(columns, rows) == expected_ndjson
        assert renderer.csv(columns, rows) == expected_csv
        page = renderer.page([(columns, rows)], page_number=3, page_size=100, total_rows=1234)
        assert json.loads(page) == expected_page
        assert warnings(caplog) == skipped  # the same malformed rows, each logged once per rendering
        # The API keeps one renderer for every request: caches filled by other answers change nothing.
        assert SHARED.page([(columns, rows)], page_number=3, page_size=100, total_rows=1234) == page


def test_plain_rows_take_the_fast_path_and_malformed_ones_are_logged(caplog: pytest.LogCaptureFixture,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    columns = ["time", "OBIS_1.8.1", "OBIS_1.8.1__unit", "meter", "reading_id"]
    good = [DAY_NS, 5, "kWh", "m1", str(uuid.uuid4())]
    bad = [DAY_NS, 5, "kWh", "m1", "not-a-uuid"]
    used: list[list[Any]] = []

    def counted(layout: Any, row: list[Any]) -> Any:
        used.append(row)
        return reading_or_none(layout, row)

    monkeypatch.setattr("cloud.api.wire_rows.reading_or_none", counted)
    with caplog.at_level(logging.WARNING, logger="cloud.store.rows"):
        out = WireRenderer().ndjson(columns, [good, bad, good])
    assert out.count("\n") == 2 and '"numericalValue":5.0' in out
    assert used == [bad]  # only the malformed row went to the reference, which skipped it
    assert warnings(caplog) == 1


# --- through the API, against a real influxd ---------------------------------------------------

async def test_api_pages_and_bulk_downloads_match_the_reference(api: Api) -> None:
    stored = [reading(f"meter {m},é\"", T0 + timedelta(minutes=15 * i), energy=1000 + i / 3, power=float(i % 4),
                      text=None if i % 3 else f"state, \"{i}\"\n", fault=None if i % 5 else "F1",
                      historical=i % 2 == 0, unit=None if i % 4 == 0 else "kWh", sequence=i if i % 2 else None)
              for m in range(3) for i in range(30)]
    await api.store.write_readings(stored)
    headers = api.token("ops", scopes=["admin"])
    day = {"readingTimeStart": T0.isoformat(), "readingTimeEnd": (T0 + timedelta(days=1)).isoformat()}
    query = ReadingQuery(start=T0, end=T0 + timedelta(days=1))

    # (page, maxRows) -> rows on the page, (limit, offset) the reference asks for
    for number, max_rows, (limit, offset) in ((1, None, (50, 0)), (2, None, (40, 50)), (2, 60, (10, 50)),
                                              (1, 30, (30, 0))):
        body = {**day, "pageSize": 50, "pageNumber": number, **({"maxRows": max_rows} if max_rows else {})}
        r = await api.client.post("/v1/meterReadings", json=body, headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        expected = MeterReadingsPage(meterReadings=await api.store.query_readings(query, limit=limit, offset=offset),
                                     pageNumber=number, pageSize=50, totalRows=max_rows or 90)
        assert r.json() == expected.model_dump(mode="json", by_alias=True, exclude_none=True)
        assert len(r.json()["meterReadings"]) == limit

    link = (await api.client.post("/v1/meterReadings", json={**day, "responseFormat": "bulk"},
                                  headers=headers)).json()["bulkDownload"]
    reference = [x async for x in api.store.stream_readings(query)]
    assert len(reference) == 90
    r = await api.client.get(link["url"], headers=headers)
    assert r.content == ndjson_lines(reference).encode()
    r = await api.client.get(link["url"], params={"format": "csv"}, headers=headers)
    assert r.content == (csv_header() + csv_rows(reference)).encode()
